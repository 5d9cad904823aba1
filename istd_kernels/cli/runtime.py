"""What the ``istd`` subcommands share while they run a model: autocast, progress, timed forwards,
and the two ways a run can end that are not its own errors: SIGTERM and a failed allocation."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator

SIGTERM_STATUS = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def sigterm_raises():
    """While active (in the main thread), SIGTERM raises :class:`Terminated` where the program is,
    so that it unwinds like Ctrl-C: temporary files are removed, locks released, and files written
    by rename (checkpoints, reports) stay the old or the new one. The previous handler is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def raise_terminated(signum, frame):
        if os.getpid() != owner:  # a forked DataLoader worker: the main process unwinds and ends it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# the size in the messages of torch's CPU allocator, its CUDA allocator, and numpy
_SIZES = (r"allocate (\d+) bytes", r"[Tt]ried to allocate ([\d.]+ [KMGTP]?i?B)",
          r"[Uu]nable to allocate ([\d.]+ [KMGTP]?i?B)")


def allocation_failure(e: BaseException) -> str | None:
    """The one-line message for a failed allocation (a ``MemoryError``, torch's "can't allocate
    memory" or CUDA "out of memory" errors), naming the size asked for and the ways to ask for
    less; None for any other error."""
    text = str(e)
    if not (isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text):
        return None
    size = "an unknown amount"
    for pattern in _SIZES:
        found = re.search(pattern, text)
        if found:
            value = found.group(1)
            size = f"{int(value):,} bytes ({int(value) / 2 ** 30:.1f} GiB)" if value.isdigit() else value
            break
    return (f"out of memory: the run tried to allocate {size}; ask for less with --tile SIZE (predict, evaluate "
            f"--model), a smaller --batch-size or --crop, or a smaller model")


def autocast(device, amp: bool):
    """Mixed precision for ``--amp`` (fp16 on a GPU, bf16 on the CPU); a disabled context otherwise."""
    import torch
    if not amp:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def draw_progress(prefix: str, step: int, total: int, text: str) -> None:
    """A progress bar redrawn in place on a terminal; one plain line per call in logs and pipes."""
    if sys.stdout.isatty():
        done = int(30 * step / max(total, 1))
        end = "\n" if step >= total else ""
        print(f"\r{prefix} [{'#' * done}{'.' * (30 - done)}] {step}/{total} {text}", end=end, flush=True)
    else:
        print(f"{prefix} step {step}/{total} {text}", flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


class Progress:
    """Progress over ``total`` steps: a bar redrawn every step on a terminal; in logs and pipes
    a line every ``every_steps`` steps (0: never by count), at least every ``every_s`` seconds
    and at the last step, with images/s and the time left."""

    def __init__(self, prefix: str, total: int, every_s: float = 30.0, every_steps: int = 0) -> None:
        self.prefix, self.total, self.every_s, self.every_steps = prefix, total, every_s, every_steps
        self.tty = sys.stdout.isatty()
        self.t0 = self.t_last = time.perf_counter()
        self.images = 0

    def step(self, step: int, images: int, text: str = "") -> None:
        """Step ``step`` (1-based) is done and covered ``images`` more images."""
        self.images += images
        now = time.perf_counter()
        due = self.tty or (self.every_steps and step % self.every_steps == 0) or now - self.t_last >= self.every_s
        if not due and step < self.total:
            return
        self.t_last = now
        rate = self.images / max(now - self.t0, 1e-9)
        left = (now - self.t0) / step * (self.total - step)
        draw_progress(self.prefix, step, self.total,
                      f"{text + ' ' if text else ''}{rate:.1f} img/s, {_clock(left)} left")


def timed_forwards(net, batches: Iterable, device, amp: bool, clock: list) -> Iterator[tuple]:
    """``(logits [N,1,H,W] float, masks, ids, sizes)`` for each batch of ``batches``, in eval mode
    without gradients; the seconds spent in forward passes (synchronised on a GPU, data loading
    excluded) are added to ``clock[0]``."""
    import torch
    net.eval()
    with torch.no_grad():
        for x, y, ids, sizes in batches:
            x, y = x.to(device), y.to(device)
            t0 = time.perf_counter()
            with autocast(device, amp):
                logits = net(x, return_logits=True).float()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            clock[0] += time.perf_counter() - t0
            yield logits, y, ids, sizes
