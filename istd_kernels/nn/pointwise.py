"""1x1 convolutions as batched matrix products on the CPU (docs/performance.md, issue 30)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layout import per_image

# The dtypes whose batched products accumulate like oneDNN's convolution (in their own width):
# half types keep nn.Conv2d, so their rounding stays the convolution's.
_MATMUL_DTYPES = (torch.float32, torch.float64)


def _runs_as_matmul(conv: nn.Conv2d, x: Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in _MATMUL_DTYPES and x.dtype == conv.weight.dtype
            and x.dim() == 4 and x.is_contiguous() and x.shape[1] == conv.in_channels
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def conv1x1(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a 1x1, stride-1, unpadded ``conv`` (any ``groups``, with or without bias).

    Shapes: ``x`` ``[N, Cin, H, W]`` -> ``[N, Cout, H, W]``, ``N >= 0``. On contiguous (NCHW)
    float32/float64 CPU tensors outside autocast it runs as one ``baddbmm``/``bmm`` over
    (image, group): oneDNN's NCHW 1x1 convolution measured 1.4-14x slower forward and up to
    2.5x slower forward+backward than the product at DLC-Attention's shapes (batch 1 and 8,
    docs/performance.md). Any other input (CUDA, channels_last, half types, autocast, a wrong
    shape, which ``conv`` then reports) goes to ``conv`` itself, and so does tracing by
    ``torch.compile``, whose CPU graphs run convolutions channels_last (where oneDNN is fast)
    and would have to convert the layout around a product.
    """
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1):
        raise ValueError(f"conv must be a 1x1, stride-1, unpadded nn.Conv2d; got {conv}")
    if not _runs_as_matmul(conv, x):
        return conv(x)
    n, c, h, w = x.shape
    g, cout = conv.groups, conv.out_channels
    og, cg = cout // g, c // g
    xs = x.view(n * g, cg, h * w)
    weight = per_image(conv.weight.view(g, og, cg), n)
    if conv.bias is None:
        y = torch.bmm(weight, xs)
    else:
        y = torch.baddbmm(per_image(conv.bias.view(g, og, 1), n), weight, xs)
    return y.view(n, cout, h, w)
