"""Saved predictions of any model, for ``istd evaluate --pred DIR``.

A prediction folder holds one file per image, named by the image's id (its file stem):
PNG/BMP/TIFF masks or probability maps (8-bit 0-255 or 16-bit 0-65535), or ``.npy`` /
``.npz`` arrays (one array per file). Each map becomes a float32 probability map in [0, 1]:

- 8-bit images are divided by 255, 16-bit images by 65535, except when every image of the
  folder holds only the values 0 and 1 (and one holds a 1): those are 0/1 masks, read as they are;
- float arrays with values in [0, 1] are taken as they are; float or integer arrays whose
  largest value lies in (1, 255] are read as 0-255 maps and divided by 255;
- ``scale`` (``--pred-scale``) other than ``"auto"`` divides every map by that number.

A negative value (logits?), NaN, or a value above the scale is an error naming the file. A
pixel is then positive when its probability is > the threshold (0.5 unless ``--threshold``),
so an 8-bit map is positive from 128 up and a 0/255 or 0/1 mask is read exactly.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import CLIError
from .data import IMAGE_EXTS

PRED_EXTS = (".png", ".bmp", ".tif", ".tiff", ".npy", ".npz")
_IMAGE_PREDS = (".png", ".bmp", ".tif", ".tiff")
SCALES = ("auto", "1", "255", "65535")


def index_folder(folder: str) -> dict[str, Path]:
    """``{stem: file}`` for the prediction files in ``folder``; an empty or ambiguous folder is an error."""
    root = Path(folder)
    if not root.is_dir():
        raise CLIError(f"--pred {root} is not a folder (expected a folder of predictions named by image id)")
    found: dict[str, Path] = {}
    for f in sorted(root.iterdir()):
        if not (f.is_file() and f.suffix.lower() in PRED_EXTS):
            continue
        if f.stem in found:
            raise CLIError(f"--pred {root} holds both {found[f.stem].name} and {f.name} for id {f.stem!r}; keep one")
        found[f.stem] = f
    if not found:
        raise CLIError(f"--pred {root} holds no prediction files (expected {', '.join(PRED_EXTS)} files "
                       f"named by image id)")
    return found


def _id_stem(ident: str) -> str:
    return Path(ident).stem if Path(ident).suffix.lower() in IMAGE_EXTS else ident


class Matched(NamedTuple):
    pairs: list[tuple[int, Path]]   # (index into the split's ids, prediction file)
    missing: list[str]              # ids without a prediction
    extra: list[str]                # prediction stems without an id


def match_ids(ids: Sequence[str], index: dict[str, Path], folder: str, strict: bool) -> Matched:
    """Pair the split's ids with prediction files by stem; with ``strict`` any mismatch is an error."""
    stems = [_id_stem(i) for i in ids]
    pairs = [(k, index[s]) for k, s in enumerate(stems) if s in index]
    missing = [i for i, s in zip(ids, stems) if s not in index]
    extra = sorted(set(index) - set(stems))
    if strict and (missing or extra):
        raise CLIError(f"--strict: --pred {folder} lacks {len(missing)} id(s) of the split"
                       f"{' (' + ', '.join(missing[:5]) + ')' if missing else ''} and has {len(extra)} file(s) "
                       f"without an id{' (' + ', '.join(extra[:5]) + ')' if extra else ''}")
    if not pairs:
        raise CLIError(f"--pred {folder}: no file is named after an id of the split (e.g. {stems[0]}.png)")
    return Matched(pairs, missing, extra)


def _load_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            if len(z.files) != 1:
                raise CLIError(f"prediction {path} holds {len(z.files)} arrays ({', '.join(z.files[:5])}); "
                               f"expected exactly one")
            return z[z.files[0]]
    except (OSError, ValueError, EOFError) as e:
        raise CLIError(f"cannot read prediction {path}: {' '.join(str(e).split()) or type(e).__name__}") from e


def _load_image(path: Path) -> np.ndarray:
    import cv2
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise CLIError(f"cannot read prediction {path} (damaged or not an image file)")
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[2] == 1 else cv2.cvtColor(arr[..., :3], cv2.COLOR_BGR2GRAY)
    return arr


def _as_map(arr: np.ndarray, path: Path) -> np.ndarray:
    """Drop leading and trailing unit dimensions ([1, 1, H, W], [H, W, 1]) down to [H, W]."""
    shape = list(arr.shape)
    while len(shape) > 2 and shape[0] == 1:
        shape.pop(0)
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    if len(shape) != 2:
        raise CLIError(f"prediction {path} has shape {tuple(arr.shape)}; expected one map [H, W] "
                       f"(or [1, H, W], [1, 1, H, W])")
    return arr.reshape(shape)


@functools.lru_cache(maxsize=8)
def _binary_image_folder(folder: str, mtime_ns: int) -> bool:
    """Whether every image file (PNG/BMP/TIFF) in ``folder`` holds only the values 0 and 1, and
    one holds a 1: then they are 0/1 masks, not 0-255 maps (``mtime_ns`` keys the cache)."""
    images = [f for f in sorted(Path(folder).iterdir()) if f.suffix.lower() in _IMAGE_PREDS and f.is_file()]
    found_one = False
    for f in images:  # stops at the first value above 1: a 0-255 folder costs one decode, not one per file
        top = int(_load_image(f).max(initial=0))
        if top > 1:
            return False
        found_one |= top == 1
    return found_one


def _detect_scale(arr: np.ndarray, path: Path) -> tuple[float, str]:
    if arr.dtype in (np.uint8, np.uint16) and _binary_image_folder(str(path.parent), path.parent.stat().st_mtime_ns):
        return 1.0, "0/1 mask (every image of the folder holds only 0 and 1)"
    if arr.dtype == np.uint8:
        return 255.0, "8-bit image 0-255 (divided by 255)"
    if arr.dtype == np.uint16:
        return 65535.0, "16-bit image 0-65535 (divided by 65535)"
    if arr.dtype == np.bool_:
        return 1.0, "binary array"
    top = float(arr.max()) if arr.size else 0.0
    if top <= 1.0:
        return 1.0, "array 0-1 (taken as probabilities)"
    if top <= 255.0:
        return 255.0, "array 0-255 (divided by 255)"
    raise CLIError(f"prediction {path} has values up to {top:g}; expected probabilities in [0, 1] or a 0-255 "
                   f"map (or give --pred-scale)")


def _decoded(path: Path) -> np.ndarray:
    """The stored map of one prediction file as [H, W], in its own dtype."""
    is_array = path.suffix.lower() in (".npy", ".npz")
    return _as_map(_load_array(path) if is_array else _load_image(path), path)


def _divisor(arr: np.ndarray, path: Path, scale: str) -> tuple[float, str]:
    if scale == "auto":
        return _detect_scale(arr, path)
    return float(scale), f"divided by {scale} (--pred-scale)"


def _above_scale(path: Path, top, scale: str) -> CLIError:
    return CLIError(f"prediction {path} has values up to {top:g}, above --pred-scale {scale}")


def _probabilities(arr: np.ndarray, path: Path, scale: str) -> tuple[np.ndarray, str]:
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise CLIError(f"prediction {path} holds {arr.dtype} values; expected numbers")
    values = arr.astype(np.float32)
    if np.isnan(values).any():
        raise CLIError(f"prediction {path} contains NaN")
    if values.size and values.min() < 0:
        raise CLIError(f"prediction {path} has negative values (min {values.min():g}): logits? Save "
                       f"probabilities (apply a sigmoid) or 0-255 maps")
    divisor, kind = _divisor(arr, path, scale)
    prob = values / np.float32(divisor) if divisor != 1.0 else values
    if prob.size and prob.max() > 1.0:
        raise _above_scale(path, values.max(), scale)
    return prob, kind


def read_prediction(path: Path, scale: str = "auto") -> tuple[np.ndarray, str]:
    """``(probability map float32 [H, W] in [0, 1], how it was scaled)`` from one prediction file."""
    return _probabilities(_decoded(path), path, scale)


def read_positive(path: Path, scale: str, threshold: float) -> tuple[np.ndarray, str]:
    """``(bool [H, W], how it was scaled)``: where the probability map of :func:`read_prediction`
    is > ``threshold``, with the same errors, for a caller that needs no probabilities.

    An 8- or 16-bit image skips the float map: its probability of each stored level is
    worked out once, in float32 as :func:`read_prediction` computes it, and since rounding
    the division keeps the order, the positive pixels are those from the first level above
    ``threshold`` up (a 512x512 map: 0.01 ms instead of several passes of float arithmetic).
    """
    arr = _decoded(path)
    if arr.dtype not in (np.uint8, np.uint16):
        prob, kind = _probabilities(arr, path, scale)
        return prob > threshold, kind
    divisor, kind = _divisor(arr, path, scale)
    levels = np.arange(np.iinfo(arr.dtype).max + 1, dtype=np.float32)
    prob = levels / np.float32(divisor) if divisor != 1.0 else levels
    top = int(arr.max(initial=0))
    if prob[top] > 1.0:
        raise _above_scale(path, levels[top], scale)
    first = np.flatnonzero(prob > threshold)
    return (arr >= int(first[0])) if first.size else np.zeros(arr.shape, bool), kind


def describe_kinds(kinds: Counter) -> str:
    """One line naming how the maps of a folder were read, e.g. ``40 x 8-bit image 0-255 (...)``."""
    return "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common())
