"""Files the CLI writes: checked paths, written whole or not at all.

Every report (JSON, CSV, tables) goes to a temporary file in the destination's folder and is
renamed over the destination only once complete, so an interrupted or failing run (a full
disk, a permission error) never leaves a half-written file; the temporary file is removed on
failure. A destination that is a folder, or lies under a file, is refused with one line.

Nothing is lost: an output folder that is, contains or lies inside an input folder or a data
set's ``images/`` / ``masks/`` is refused (:func:`check_not_inputs`), and so is replacing an
existing file without ``--overwrite`` (:func:`check_new_files`, called with every file a run
will write before it writes the first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import CLIError


def check_output_path(path: str, flag: str) -> Path:
    """``path`` as a Path if a file can be written there; else a :class:`CLIError` naming ``flag``."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{flag} {p} is a folder; expected a file name such as {p / 'results.json'}")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"{flag} {p} lies under {parent}, which is a file, not a folder")
    return p


def check_output_folder(path: str, flag: str) -> Path:
    """``path`` as a Path if it is (or can become) a folder; else a :class:`CLIError` naming ``flag``."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{flag} {p} is a file; expected a folder")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise CLIError(f"{flag} {p} lies under {parent}, which is a file, not a folder")
    return p


def _within(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b)


def _dataset_folder(folder: Path) -> Path | None:
    """``folder`` itself, or its ancestor, when it is a data set's ``images/`` or ``masks/``."""
    for f in (folder, *folder.parents):
        if f.name in ("images", "masks") and (f.parent / "images").is_dir() and (f.parent / "masks").is_dir():
            return f
    return None


def check_not_inputs(out: str | Path, flag: str, inputs: Iterable[str | Path] = (),
                     files: Iterable[str | Path] = ()) -> Path:
    """Refuse an output folder ``out`` that is, contains or lies inside one of the ``inputs``
    folders, that is the folder of one of the input ``files``, or that is, lies inside or holds
    a data set's ``images/`` or ``masks/``; a :class:`CLIError` naming ``flag`` and the folder.
    Returns ``out`` as a Path."""
    p = Path(out)
    real = p.resolve()
    for file in files:
        if Path(file).resolve().parent == real:
            raise CLIError(f"{flag} {p} is the folder of the input {file}; writing there could replace inputs: "
                           f"choose another {flag}")
    for folder in inputs:
        f = Path(folder).resolve()
        if _within(real, f) or _within(f, real):
            where = "is" if real == f else ("lies inside" if _within(real, f) else "contains")
            raise CLIError(f"{flag} {p} {where} the input folder {folder}; writing there could replace inputs: "
                           f"choose another {flag}")
    found = _dataset_folder(real)
    if found is None and (real / "images").is_dir() and (real / "masks").is_dir():
        found = real / "images"
    if found is not None:
        raise CLIError(f"{flag} {p} {'is' if found == real else 'lies inside' if _within(real, found) else 'holds'} "
                       f"the data set folder {found}; writing there could replace images or ground truth: "
                       f"choose another {flag}")
    return p


def overwrite_flag(p) -> None:
    """``--overwrite`` on the argparse parser ``p`` of a command that writes into ``--out``."""
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out that this run "
                   "would write (default: refuse)")


def check_new_files(paths: Sequence[Path], flag: str, overwrite: bool) -> None:
    """Refuse to replace files a run did not create: unless ``overwrite`` (``--overwrite``), any
    of ``paths`` (the files the run is about to write) that exists already is a :class:`CLIError`."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of the files this run writes)" if len(existing) > 1 else ""
        raise CLIError(f"{flag}: {existing[0]} already exists{more}; istd does not replace files it did not "
                       f"write in this run: pass --overwrite to replace them, or choose another {flag}")


def write_via_temp(path: Path, write: Callable[[Path], None], flag: str) -> None:
    """Create ``path`` through ``write(temporary path)`` (a file beside it with the same
    suffix, so that writers choosing a format by suffix still work), then a rename."""
    path = check_output_path(str(path), flag)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CLIError(f"cannot write {flag} {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, flag: str) -> None:
    """``text`` at ``path``, synced to disk before the rename."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    write_via_temp(path, write, flag)


def write_json(path: Path, obj: object, flag: str) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    write_text(path, json.dumps(obj, indent=1), flag)


def write_image(path: Path, image, flag: str) -> None:
    """An image file (format from the suffix) written by OpenCV, atomically."""
    import cv2

    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"OpenCV could not write {tmp.suffix} files there")
    write_via_temp(path, write, flag)
