"""Inference on frames of any size: whole frames up to :data:`MAX_FRAME_PIXELS`, larger ones
in tiles (``--tile SIZE [--tile-overlap PX]`` of ``istd predict`` and ``istd evaluate --model``).

Tiling: the frame is cut into a grid of *cores* of ``SIZE - 2 * PX`` pixels; each core is run
with up to ``PX`` pixels of its neighbours on every side (a window of at most ``SIZE x SIZE``)
and only the core's logits are kept. The networks downsample, so every window starts on a
multiple of the network's stride multiple (``net.multiple``: 2**levels for LCRNet, 8 for
RRCA-Net): ``SIZE`` and ``PX`` must both be multiples of it, and then each window sees its
pixels on the same pooling grid as the whole frame. For a network whose output at a pixel
depends only on the input within ``PX`` pixels of it (a fully convolutional network whose
receptive field fits in the overlap), the stitched output equals the whole-frame output up to
float rounding. LCRNet (GroupNorm over each whole feature map) and RRCA-Net (channel attention
pooled over the whole map) also use statistics of the whole frame, so for them a tiled
output approximates the whole-frame one; larger tiles approximate it better.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import CLIError

# 4096 x 4096: the activations of LCRNet's first level alone take 1 GiB per feature map there.
MAX_FRAME_PIXELS = 4096 * 4096
DEFAULT_OVERLAP = 32


def _spans(n: int, core: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(window start, window end, core start, core end)`` along one axis of length ``n``."""
    return [(max(0, c - overlap), min(n, c + core + overlap), c, min(n, c + core)) for c in range(0, n, core)]


class FrameRunner(nn.Module):
    """``net`` with a frame-size check, run whole or in tiles: ``forward(x [N, C, H, W],
    return_logits=False)`` -> ``[N, 1, H, W]`` like ``net``.

    Args:
        net: a network with ``forward(x, return_logits)`` and optionally ``multiple`` (its
            stride multiple; 1 if absent).
        tile: window side in pixels (``--tile``), or None to run whole frames, which are then
            limited to :data:`MAX_FRAME_PIXELS`.
        overlap: pixels of context on each side of a core (``--tile-overlap``); None: the
            smallest multiple of ``net.multiple`` that is >= :data:`DEFAULT_OVERLAP`, or the
            largest the tile allows if that is smaller.

    Raises :class:`CLIError` for a tile or overlap that is not a multiple of ``net.multiple``,
    a core (``tile - 2 * overlap``) smaller than it, and a whole frame above the limit.
    """

    def __init__(self, net: nn.Module, tile: int | None = None, overlap: int | None = None) -> None:
        super().__init__()
        self.net, self.tile, self.overlap = net, tile, 0
        m = int(getattr(net, "multiple", 1))
        if tile is None:
            return
        if overlap is None:  # as near DEFAULT_OVERLAP as the tile allows
            overlap = max(0, min(-(-DEFAULT_OVERLAP // m) * m, (tile - m) // 2 // m * m))
        self.overlap = overlap
        if tile < 1 or tile % m or tile * tile > MAX_FRAME_PIXELS:
            raise CLIError(f"--tile must be a multiple of {m} (the network's stride multiple) between {m} and "
                           f"{int(MAX_FRAME_PIXELS ** 0.5)}; got {tile} (e.g. --tile {max(m, tile // m * m)})")
        if overlap < 0 or overlap % m or tile - 2 * overlap < m:
            raise CLIError(f"--tile-overlap must be a multiple of {m} (the network's stride multiple) in [0, "
                           f"{(tile - m) // 2 // m * m}] for --tile {tile}; got {overlap}")

    def forward(self, x: Tensor, return_logits: bool = False) -> Tensor:
        h, w = x.shape[-2:]
        if self.tile is None:
            if h * w > MAX_FRAME_PIXELS:
                raise CLIError(f"a {w}x{h} frame is larger than istd runs whole ({MAX_FRAME_PIXELS:,} pixels, e.g. "
                               f"{int(MAX_FRAME_PIXELS ** 0.5)}x{int(MAX_FRAME_PIXELS ** 0.5)}); pass --tile 1024 to "
                               f"run it in tiles")
            return self.net(x, return_logits=return_logits)
        if h <= self.tile and w <= self.tile:  # one window holds the frame: run it whole, exactly
            return self.net(x, return_logits=return_logits)
        core = self.tile - 2 * self.overlap
        out = None
        for y0, y1, cy0, cy1 in _spans(h, core, self.overlap):
            for x0, x1, cx0, cx1 in _spans(w, core, self.overlap):
                logits = self.net(x[..., y0:y1, x0:x1], return_logits=True)
                if out is None:
                    out = logits.new_empty((*logits.shape[:2], h, w))
                out[..., cy0:cy1, cx0:cx1] = logits[..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
        return out if return_logits else torch.sigmoid(out)
