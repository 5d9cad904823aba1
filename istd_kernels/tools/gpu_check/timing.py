"""Timing of one call: warm-up, then samples of back-to-back calls, medians and spread.

On a GPU each sample is the CUDA-event time of ``calls`` back-to-back calls divided by
``calls`` (events measure device time; back-to-back calls keep the GPU busy, so a short
kernel is not timed as its launch latency). On the CPU, ``time.perf_counter``.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterable

import torch

from .worker import StepContext, StepDeadline

#: A sample lasts at least this long (seconds), so that event resolution and launch jitter
#: stay small against it.
MIN_SAMPLE_S = 1e-3
MAX_CALLS_PER_SAMPLE = 100


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _sample(fn: Callable[[], object], device: str, calls: int) -> float:
    """Seconds per call over ``calls`` back-to-back calls."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def time_call(fn: Callable[[], object], device: str, repeats: int, warmup: int, deadline: float) -> dict:
    """Median, quartiles and minimum of ``fn``'s time per call, in ms.

    Stops taking samples at ``deadline`` (``time.time()``), after at least one; the number
    taken is in ``samples``.
    """
    for _ in range(max(1, warmup)):
        fn()
    _sync(device)
    first = _sample(fn, device, 1)
    calls = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(MIN_SAMPLE_S / max(first, 1e-9))))
    times = []
    while len(times) < repeats and (not times or time.time() < deadline):
        times.append(_sample(fn, device, calls) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "q1_ms": q[0], "q3_ms": q[2], "min_ms": min(times),
            "samples": len(times), "calls_per_sample": calls,
            "timer": "cuda events" if device == "cuda" else "time.perf_counter"}


Case = tuple[dict, Callable[[], dict]]


def run_cases(ctx: StepContext, cases: Iterable[Case]) -> None:
    """Measure each case and record it: ``meta`` merged with what ``measure()`` returns.

    A case that raises is recorded with its ``error`` and the next one runs; once the step's
    deadline has passed, the remaining cases are recorded as not run and the step ends with
    :class:`StepDeadline`.
    """
    cut = 0
    for meta, measure in cases:
        base = dict(meta, kind="timing")
        if ctx.left() <= 0:
            cut += 1
            ctx.record(dict(base, error="not run: the step's time budget was used up"))
            continue
        try:
            ctx.record(dict(base, **measure()))
        except Exception as err:  # noqa: BLE001 - one failing case must not stop the others
            ctx.record(dict(base, error=f"{type(err).__name__}: {err}"[:500],
                            traceback=traceback.format_exc()[-1500:]))
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if cut:
        raise StepDeadline(f"{cut} case(s) not run: the step's time budget was used up")
