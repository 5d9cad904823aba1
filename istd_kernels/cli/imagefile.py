"""Image files as the CLI reads them: whole, decoded by OpenCV, every damage named.

:func:`decode_image` is the one place where data set files (images and masks) are read from
disk; :mod:`.data` turns the result into grey images and :mod:`.masks` into binary masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import CLIError

# Markers a complete file of these formats ends with. OpenCV decodes a truncated JPEG or PNG
# into a partly grey image and only prints a warning, so completeness is checked on the bytes.
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"
_PNG_HEAD = b"\x89PNG\r\n\x1a\n"


def _truncation(data: bytes) -> str | None:
    """Why ``data`` (a JPEG or PNG file's bytes) is cut short, or None."""
    if data[:2] == b"\xff\xd8" and _JPEG_END not in data[-64:]:
        return "the JPEG data ends before its end-of-image marker"
    if data[:8] == _PNG_HEAD and _PNG_END not in data[-64:]:
        return "the PNG data ends before its IEND chunk"
    return None


def read_bytes(path: Path, what: str = "image") -> bytes:
    """The whole file at ``path``; unreadable or truncated (JPEG, PNG) is a :class:`CLIError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CLIError(f"cannot read {what} {path}: {e.strerror or e}") from None
    damage = _truncation(data)
    if damage:
        raise CLIError(f"{what} {path} is damaged: {damage} (the file is truncated)")
    return data


def is_palette_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG whose pixels are palette indices (IHDR colour type 3)."""
    return data[:8] == _PNG_HEAD and len(data) > 25 and data[25] == 3


def decode_image(data: bytes, path: Path, what: str = "image") -> np.ndarray:
    """``data`` decoded as stored (``cv2.IMREAD_UNCHANGED``: [H, W] or [H, W, C] BGR(A), 8 or
    16 bits; palettes expanded to colours); an undecodable file is a :class:`CLIError`."""
    import cv2
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if arr is None or arr.size == 0:
        raise CLIError(f"cannot read {what} {path} (missing, empty or not an image file)")
    return arr
