"""What the ``istd`` subcommands share while they run a model: autocast, progress, timed forwards."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator


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
