"""Ground-truth masks: one reading rule for training and scoring, and a survey that warns
about masks the rule may read differently from what their author meant.

The rule (the field's loaders, BasicIRSTD and DNANet, count any nonzero pixel as target):

- grey masks, 8- or 16-bit (or float): a pixel is target when its value is not 0, so 0/1,
  0/128, 0/255 and 0/65535 masks give the same binary mask;
- colour masks (RGB, RGBA): target when any colour channel is not 0 (a red 255,0,0 pixel is
  target; the alpha channel is ignored);
- palette PNGs: target when the palette index is not 0, whatever colours the palette holds.

Saved predictions (``istd evaluate --pred``) follow their own rule, probability > threshold:
see :mod:`.predictions`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import CLIError
from .imagefile import decode_image, is_palette_png, read_bytes

RULE = ("any nonzero pixel is target (grey: value != 0; colour: any channel != 0; palette PNG: index != 0), "
        "as in BasicIRSTD and DNANet; see docs/cli.md")


def _palette_indices(data: bytes, path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise CLIError(f"mask {path} is a palette PNG, which istd reads with Pillow: pip install pillow") from None
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _stored(path: Path) -> np.ndarray:
    """A mask file's values as stored ([H, W] or [H, W, C]), checked."""
    data = read_bytes(path, "mask")
    arr = _palette_indices(data, path) if is_palette_png(data) else decode_image(data, path, "mask")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise CLIError(f"mask {path} holds {arr.dtype} values; expected numbers")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise CLIError(f"mask {path} contains NaN")
    if arr.ndim not in (2, 3):
        raise CLIError(f"mask {path} has shape {arr.shape}; expected [H, W] or [H, W, channels]")
    return arr


def _colours(arr: np.ndarray) -> np.ndarray:
    """The channels of a colour mask that the rule reads (the alpha channel is not one)."""
    return arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]


def _binary(arr: np.ndarray) -> np.ndarray:
    return (_colours(arr) != 0).any(axis=2) if arr.ndim == 3 else arr != 0


def load_mask(path: Path) -> tuple[np.ndarray, int]:
    """``(bool mask [H, W], number of distinct stored values)`` of a mask file, by the module's rule.

    Distinct values are grey levels, colours or palette indices. An unreadable or damaged
    file, NaN values, or a layout other than [H, W] / [H, W, C] is a :class:`CLIError` naming it.
    """
    arr = _stored(path)
    if arr.ndim == 3:
        colour = _colours(arr)
        distinct = len(np.unique(colour.reshape(-1, colour.shape[2]), axis=0))
    else:
        distinct = int(np.count_nonzero(np.bincount(arr.ravel()))) if arr.dtype == np.uint8 else len(np.unique(arr))
    return _binary(arr), distinct


def read_mask(path: Path) -> np.ndarray:
    """A mask file as bool ``[H, W]`` by the module's rule (see :func:`load_mask`; without its
    count of distinct values, which took as long as the decoding)."""
    return _binary(_stored(path))


def survey_masks(paths: Iterable[Path], data: str) -> dict:
    """Read every mask of a data set once and warn (on stdout, ``istd: warning: ...``) when

    - some mask holds more than two distinct values: one warning for the data set naming the
      rule and the first such mask (IRSTD-1k's anti-aliased edges, a probability map saved as
      a mask, ...);
    - every mask is empty: training or scoring against it finds nothing.

    Returns ``{"masks": n, "multi_valued": n, "empty": n}``. ``data`` names the data set.
    """
    paths = list(dict.fromkeys(paths))
    multi, empty, first = 0, 0, None
    for p in paths:
        mask, distinct = load_mask(p)
        if distinct > 2:
            multi, first = multi + 1, first or (p, distinct)
        empty += not mask.any()
    if multi:
        print(f"istd: warning: {multi} of {len(paths)} masks of {data} hold more than two distinct values "
              f"(e.g. {first[0]}: {first[1]}); istd reads them by its rule: {RULE}", flush=True)
    if paths and empty == len(paths):
        print(f"istd: warning: all {len(paths)} masks of {data} are empty (no nonzero pixel): there is no target "
              f"to train on or to find; check the masks ({RULE})", flush=True)
    return {"masks": len(paths), "multi_valued": multi, "empty": empty}
