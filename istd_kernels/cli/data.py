"""Data set loading for the CLI: the BasicIRSTD and DNANet layouts of docs/metrics.md §7.

- BasicIRSTD: ``ROOT/images/<id>.png``, ``ROOT/masks/<id>.png``,
  ``ROOT/img_idx/train_<NAME>.txt`` and ``test_<NAME>.txt`` (``NAME`` = ROOT's folder name).
- DNANet / RRCA-Net: ``ROOT/images``, ``ROOT/masks`` and ``ROOT/<split>/train.txt``,
  ``test.txt`` (``50_50/`` for NUAA and NUDT, ``80_20/`` for IRSTD-1k).

Split files list ids (with or without an extension), one a line. An image is found as
``images/<id>`` with any of the usual extensions; its mask as ``masks/<id>`` or NUAA-SIRST's
``masks/<id>_pixels0``. RGB copies of images are converted to grey; masks follow the rule of
:mod:`.masks` (any nonzero pixel is target). Ids are resolved inside ``images/`` and ``masks/``:
an id that leaves them (``../x``, an absolute path, a symlink pointing outside) is an error.

Every path is checked when the data set is opened (a missing image or mask is named then,
not in the middle of an epoch); unreadable files are named when they are first read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from . import CLIError
from .imagefile import decode_image, read_bytes
from .masks import read_mask

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
LAYOUTS = ("auto", "basicirstd", "dnanet")


@dataclass
class Layout:
    """Where a data set's files are: its kind, folders and split files."""

    kind: str
    root: Path
    images: Path
    masks: Path
    train_list: Path
    test_list: Path


def _split_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "train.txt").is_file()
                  and (d / "test.txt").is_file())


def resolve_layout(data: str, layout: str = "auto", split: str | None = None) -> Layout:
    """Find a data set's layout under ``data`` (``DIR/NAME``); raise :class:`CLIError` if none fits.

    ``layout="auto"`` takes BasicIRSTD when ``img_idx/`` exists, else DNANet. For DNANet,
    ``split`` names the split folder; without it the one folder holding ``train.txt`` and
    ``test.txt`` is used (several: the user must choose).
    """
    if layout not in LAYOUTS:
        raise CLIError(f"--layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    root = Path(data)
    if not root.exists():
        raise CLIError(f"data set folder {root} does not exist (expected DIR/NAME holding images/ and masks/)")
    if not root.is_dir():
        raise CLIError(f"data set path {root} is not a folder (expected DIR/NAME holding images/ and masks/)")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise CLIError(f"data set folder {root} has no {sub}/ folder (expected {root / sub})")
    if layout == "auto":
        layout = "basicirstd" if (root / "img_idx").is_dir() else "dnanet"
    if layout == "basicirstd":
        name = root.resolve().name
        idx = root / "img_idx"
        train, test = idx / f"train_{name}.txt", idx / f"test_{name}.txt"
    else:
        if split is not None:
            sdir = root / split
            if not sdir.is_dir():
                raise CLIError(f"split folder {sdir} does not exist (expected {sdir}/train.txt and test.txt)")
        else:
            found = _split_dirs(root)
            if not found:
                raise CLIError(f"no split files under {root}: expected img_idx/train_{root.resolve().name}.txt "
                               f"(BasicIRSTD) or a folder such as {root / '50_50'} with train.txt and "
                               f"test.txt (DNANet)")
            if len(found) > 1:
                raise CLIError(f"{root} has several split folders ({', '.join(d.name for d in found)}); "
                               f"choose one with --split")
            sdir = found[0]
        train, test = sdir / "train.txt", sdir / "test.txt"
    # Each split file is checked when it is read: scoring the test split needs no train list.
    return Layout(layout, root, root / "images", root / "masks", train, test)


def read_ids(path: Path) -> list[str]:
    """The ids listed in a split file; a missing or empty file is an error naming it."""
    if not path.is_file():
        raise CLIError(f"split file {path} does not exist (expected a list of image ids, one a line)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CLIError(f"cannot read split file {path}: {e}") from e
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise CLIError(f"split file {path} is empty (expected image ids, one a line)")
    return ids


def _find(folder: Path, stem: str, suffixes: Sequence[str] = ("",)) -> Path | None:
    if Path(stem).suffix.lower() in IMAGE_EXTS and (folder / stem).is_file():
        return folder / stem
    base = Path(stem).stem if Path(stem).suffix.lower() in IMAGE_EXTS else stem
    for suffix in suffixes:
        for ext in IMAGE_EXTS:
            p = folder / f"{base}{suffix}{ext}"
            if p.is_file():
                return p
    return None


def _check_id(layout: Layout, ident: str) -> None:
    """An id names a file inside ``images/`` and ``masks/``: no absolute path, no ``..``."""
    if Path(ident).is_absolute() or ".." in Path(ident).parts:
        raise CLIError(f"split file id {ident!r} leaves the data set folder {layout.root}: ids name files inside "
                       f"{layout.images} and {layout.masks} (no absolute paths, no '..')")


def _inside(folder: Path, found: Path | None, ident: str) -> Path | None:
    """``found`` if it resolves inside ``folder`` (whose own symlink is followed); else an error."""
    if found is not None and not found.resolve().is_relative_to(folder.resolve()):
        raise CLIError(f"split file id {ident!r} resolves to {found.resolve()}, outside {folder} (a symlink "
                       f"pointing out of the data set); copy the file into the data set instead")
    return found


def find_pairs(layout: Layout, ids: Sequence[str]) -> list[tuple[str, Path, Path]]:
    """``(id, image path, mask path)`` for every id; raises naming the first missing file or the
    first id that leaves the data set (see the module note)."""
    pairs = []
    for i in ids:
        _check_id(layout, i)
        image = _inside(layout.images, _find(layout.images, i), i)
        mask = _inside(layout.masks, _find(layout.masks, i, ("", "_pixels0")), i)
        if image is None:
            have = f" (its mask {mask} exists)" if mask is not None else ""
            raise CLIError(f"image for id {i!r} not found: expected {layout.images / i}.png or another "
                           f"image extension{have}")
        if mask is None:
            raise CLIError(f"mask for id {i!r} not found: expected {layout.masks / i}.png")
        pairs.append((i, image, mask))
    return pairs


def read_grey(path: Path) -> np.ndarray:
    """An image file as uint8 ``[H, W]``: RGB/RGBA converted to grey, 16-bit scaled to 8 bits.

    A damaged file (unreadable, or a JPEG/PNG cut short) is a :class:`CLIError` naming it.
    """
    import cv2
    arr = decode_image(read_bytes(path), path)
    if arr.dtype == np.uint16:
        arr = (arr / 257).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise CLIError(f"image {path} has pixel type {arr.dtype}; expected 8- or 16-bit")
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if arr.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        arr = arr[..., 0] if arr.shape[2] == 1 else cv2.cvtColor(arr, code)
    return arr


def image_tensor(arr: np.ndarray) -> Tensor:
    """uint8 ``[H, W]`` -> float32 ``[1, H, W]`` in [0, 1] (grey / 255, docs/networks.md §1)."""
    return torch.from_numpy(arr.astype(np.float32) / 255.0)[None]


class ISTDDataset(Dataset):
    """One split of a data set: items are ``(image [1,H,W] float, mask [1,H,W] float 0/1, id)``.

    Args:
        data: ``DIR/NAME``; layout, split: see :func:`resolve_layout`.
        subset: ``"train"`` or ``"test"``.
        crop: training crop size: a random ``crop x crop`` window (images smaller than that are
            zero-padded first); None keeps the whole image.
        flip: random horizontal and vertical flips.
        seed: with :meth:`set_epoch`, fixes the crops and flips of every item: they are drawn
            from ``default_rng([seed, epoch, index])``, so they do not depend on the number of
            DataLoader workers or on where a resumed run restarted.
    """

    def __init__(self, data: str, subset: str, layout: str = "auto", split: str | None = None,
                 crop: int | None = None, flip: bool = False, seed: int = 0) -> None:
        self.layout = resolve_layout(data, layout, split)
        lst = self.layout.train_list if subset == "train" else self.layout.test_list
        self.pairs = find_pairs(self.layout, read_ids(lst))
        self.crop, self.flip, self.seed, self.epoch = crop, flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose crops and flips :meth:`__getitem__` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        ident, ipath, mpath = self.pairs[index]
        image, mask = read_grey(ipath), read_mask(mpath)
        if image.shape != mask.shape:
            raise CLIError(f"mask {mpath} is {mask.shape[1]}x{mask.shape[0]} but its image {ipath} is "
                           f"{image.shape[1]}x{image.shape[0]}; expected equal sizes")
        x, y = image_tensor(image), torch.from_numpy(mask.astype(np.float32))[None]
        if self.crop or self.flip:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.crop:
                x, y = _random_crop(x, y, self.crop, rng)
            if self.flip:
                if rng.random() < 0.5:
                    x, y = x.flip(-1), y.flip(-1)
                if rng.random() < 0.5:
                    x, y = x.flip(-2), y.flip(-2)
        return x, y, ident


def _random_crop(x: Tensor, y: Tensor, size: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    h, w = x.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        x, y = F.pad(x, (0, pw, 0, ph)), F.pad(y, (0, pw, 0, ph))
        h, w = x.shape[-2:]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return x[:, top:top + size, left:left + size], y[:, top:top + size, left:left + size]


def pad_collate(batch):
    """Stack items of different sizes: zero-pad each at the bottom and right to the largest.

    Returns ``(images [N,1,H,W], masks [N,1,H,W], ids, sizes)``; ``sizes[i] = (h, w)`` is image
    i's own size, so predictions can be cropped back before they are scored (the padding
    must not count as background pixels in Fa).
    """
    h = max(item[0].shape[-2] for item in batch)
    w = max(item[0].shape[-1] for item in batch)
    xs, ys, ids, sizes = [], [], [], []
    for x, y, ident in batch:
        ih, iw = x.shape[-2:]
        xs.append(F.pad(x, (0, w - iw, 0, h - ih)))
        ys.append(F.pad(y, (0, w - iw, 0, h - ih)))
        ids.append(ident)
        sizes.append((ih, iw))
    return torch.stack(xs), torch.stack(ys), ids, sizes
