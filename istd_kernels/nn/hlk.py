"""HLKConv layer: the published module's parameters, run by the fused ``hlk_conv`` op."""

from __future__ import annotations

from torch import Tensor, nn

from ..ops._checks import check_positive_int
from ..ops.hlk_conv import decompose, hlk_conv


class HLKConv(nn.Module):
    """Hierarchical large-kernel convolution (LCRNet, docs/networks.md §2), a drop-in layer.

    ``y = conv1(cat([a, conv_spatial(a)]))`` with ``a = conv0(x)``: a depthwise ``k1 x k1``
    conv, a depthwise ``k2 x k2`` conv with dilation on its output, and a 1x1 from 2C to
    ``out_dim`` channels, where ``(k1, k2, dilation)`` comes from ``k_size`` by the published
    table (7: 3/3/2, 11: 3/5/2, 23: 5/7/3, 35: 5/11/3, 41: 5/13/3, 53: 5/17/3).

    The attributes ``conv0``, ``conv_spatial`` and ``conv1`` are plain ``nn.Conv2d`` layers
    with the published names and shapes, so a checkpoint of the authors' HLKConv.py loads with
    ``strict=True``; the forward never calls them but hands their parameters to the fused op
    (no concat, only ``x`` saved for the backward).

    ``groups=G`` makes it G independent HLKConvs over consecutive channel chunks (the 1x1
    becomes grouped), the form DLC-Attention uses to run many small ones in one call; the
    published layer is ``groups=1``.

    Shapes: input ``[N, dim, H, W]`` -> output ``[N, out_dim, H, W]`` (``out_dim`` defaults to
    ``dim``). The backend follows :func:`istd_kernels.use_backend` unless ``backend`` is given.
    """

    def __init__(self, dim: int, k_size: int = 7, out_dim: int | None = None, groups: int = 1,
                 backend: str | None = None, device=None, dtype=None):
        super().__init__()
        check_positive_int(dim, "dim")
        out_dim = check_positive_int(dim if out_dim is None else out_dim, "out_dim")
        what = f"a positive int dividing dim={dim} and out_dim={out_dim}"
        if check_positive_int(groups, "groups", what) and (dim % groups or out_dim % groups):
            raise ValueError(f"groups must be {what}; got {groups!r}")
        k1, k2, dilation = decompose(k_size)
        kw = dict(device=device, dtype=dtype)
        self.k_size, self.dilation, self.groups, self.backend = k_size, dilation, groups, backend
        self.conv0 = nn.Conv2d(dim, dim, k1, padding=k1 // 2, groups=dim, **kw)
        self.conv_spatial = nn.Conv2d(dim, dim, k2, padding=dilation * (k2 // 2), dilation=dilation, groups=dim,
                                      **kw)
        self.conv1 = nn.Conv2d(2 * dim, out_dim, 1, groups=groups, **kw)

    def forward(self, x: Tensor) -> Tensor:
        dim = self.conv0.in_channels
        if isinstance(x, Tensor) and x.dim() == 4 and x.shape[1] != dim:
            raise ValueError(f"x must have {dim} channels for HLKConv(dim={dim}); got shape {tuple(x.shape)}")
        return hlk_conv(x, self.conv0.weight, self.conv0.bias, self.conv_spatial.weight, self.conv_spatial.bias,
                        self.conv1.weight, self.conv1.bias, self.dilation, self.groups, backend=self.backend)

    def extra_repr(self) -> str:
        return f"k_size={self.k_size}, dilation={self.dilation}, groups={self.groups}"
