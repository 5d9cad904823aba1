"""DepthwiseConv2d: ``nn.Conv2d(groups=channels)`` running on istd_kernels' depthwise op."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops._checks import check_positive_int
from ..ops.depthwise import IntPair, depthwise_conv2d


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise convolution layer, a drop-in for ``nn.Conv2d(channels, channels, groups=channels)``.

    Same parameters (``weight`` ``[C, 1, kh, kw]``, ``bias`` ``[C]``), state_dict keys and
    initialisation as that ``nn.Conv2d``, so its checkpoints load with ``strict=True``.
    The backend follows :func:`istd_kernels.use_backend` unless ``backend`` is given.

    Shapes: input ``[N, C, H, W]`` -> output ``[N, C, Ho, Wo]``.
    """

    def __init__(self, channels: int, kernel_size: IntPair, padding: IntPair | str = 0,
                 dilation: IntPair = 1, bias: bool = True, stride: IntPair = 1, backend: str | None = None,
                 device=None, dtype=None):
        check_positive_int(channels, "channels")
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=channels, bias=bias, device=device, dtype=dtype)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"DepthwiseConv2d supports padding_mode='zeros' only; got {self.padding_mode!r}")
        return depthwise_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                backend=self.backend)
