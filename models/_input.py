"""Input handling shared by the networks: shape check and padding to the U-Net's multiple."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def check_and_pad(x: object, in_chans: int, multiple: int) -> tuple[Tensor, int, int]:
    """``(padded x, H, W)``: ``x`` ``[N, in_chans, H, W]`` zero-padded at the bottom and right to
    a multiple of ``multiple``, so that every pooling level divides evenly; the caller crops its
    output back to ``H x W``. Zero padding matches what the convolutions assume at the border
    and works for any size (reflect padding needs the pad to be smaller than the image).

    Raises ValueError naming ``x`` and the expected shape for anything else.
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != in_chans:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape [N, {in_chans}, H, W]; got {shape}")
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple)), h, w
