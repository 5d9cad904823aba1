"""Files of a training run that must survive a kill or a power loss: checkpoints, logs, the lock.

Every write goes to a temporary file beside its target, is flushed and ``fsync``-ed, renamed
over the target, and then the folder is ``fsync``-ed: after a crash the target is the old file
or the new one, never an empty or partial one. A full disk is reported as one ``istd: error:``
line and the partial temporary file is removed. Temporaries left by a killed run
(``.NAME.tmpPID``) are removed when the next run takes the folder's lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import torch

from . import CLIError

LOCK_NAME = ".istd-train.lock"
_TMP_MARK = ".tmp"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    """Write ``path`` through ``write(file)`` so that a crash leaves the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CLIError(f"no space left on the device while writing {path}; the partial file was removed "
                           f"and {path.name} is unchanged") from None
        raise CLIError(f"cannot write {path}: {e.strerror or e}") from None


def save_checkpoint(obj: dict, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically and durably (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temporaries(run: Path) -> list:
    """Delete ``.NAME.tmpPID`` files a killed run left in ``run``; returns their names."""
    stale = [p for p in run.glob(f".*{_TMP_MARK}*") if p.is_file() and p.name != LOCK_NAME]
    for p in stale:
        p.unlink(missing_ok=True)
    return sorted(p.name for p in stale)


class RunLock:
    """An exclusive lock on a run folder: a second ``istd train`` into it is refused at once.

    ``flock`` is released by the kernel when the holder dies, so a killed run never leaves the
    folder locked.
    """

    def __init__(self, run: Path) -> None:
        self.run = Path(run)
        self._fd = None

    def __enter__(self) -> RunLock:
        if self.run.exists() and not self.run.is_dir():
            raise CLIError(f"--out {self.run} is a file; expected a folder for the run (it is created if missing)")
        try:
            self.run.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.run / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CLIError(f"cannot create the run folder {self.run}: {e.strerror or e}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise CLIError(f"another istd train (pid {holder}) is writing to {self.run}; wait for it to finish "
                           f"or choose another --out") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def read_checkpoint(path: str) -> dict:
    """Load a weights file on the CPU (tensors only: no arbitrary pickles), naming it on failure."""
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"weights file {p} does not exist (expected a checkpoint written by istd train, "
                       f"e.g. RUN/best.pt)")
    with open(p, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK..); older torch wrote a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise CLIError(f"weights file {p} is not a checkpoint (it is not a file written by torch.save); "
                       f"expected e.g. RUN/best.pt")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged or foreign file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e):
            first = "it holds Python objects other than tensors, which istd does not unpickle"
        raise CLIError(f"cannot load weights file {p}: {first}") from e
    if not isinstance(obj, dict):
        raise CLIError(f"weights file {p} holds a {type(obj).__name__}; expected a checkpoint or state_dict")
    return obj
