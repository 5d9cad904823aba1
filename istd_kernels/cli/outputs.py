"""Files the CLI writes: checked paths, written whole or not at all.

Every report (JSON, CSV, tables) goes to a temporary file in the destination's folder and is
renamed over the destination only once complete, so an interrupted or failing run (a full
disk, a permission error) never leaves a half-written file; the temporary file is removed on
failure. A destination that is a folder, or lies under a file, is refused with one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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
