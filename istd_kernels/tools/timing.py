"""How this project times a call and what it compares the result with: the one timing helper
(:func:`time_call`) and the one peak-bandwidth table (:data:`PEAK_BW_TABLE`).

The GPU check (``tools/gpu_check``) and the benchmarks (``benchmarks/``) both use these, so a
figure in a GPU report and one in a benchmark table are measured the same way. Importing this
module needs no GPU; only timing on ``"cuda"`` and :func:`peak_bandwidth` touch the device.

On a GPU each sample is the CUDA-event time of ``calls`` back-to-back calls divided by
``calls`` (events measure device time; back-to-back calls keep the GPU busy, so a short
kernel is not timed as its launch latency). On the CPU, ``time.perf_counter``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

#: A sample lasts at least this long (seconds), so that event resolution and launch jitter
#: stay small against it.
MIN_SAMPLE_S = 1e-3
MAX_CALLS_PER_SAMPLE = 100

#: Peak DRAM bandwidth (bytes/s) by a substring of the device name, for when the device does
#: not report its memory clock and bus width. Datasheet figures; the first matching entry wins,
#: so a more specific name comes before a name it contains.
PEAK_BW_TABLE = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("A100-SXM4-80GB", 2.04e12),
                 ("A100-SXM4-40GB", 1.56e12), ("A100-PCIE-40GB", 1.56e12), ("RTX 3080 Ti", 0.912e12),
                 ("RTX 3090", 0.936e12), ("RTX 4090", 1.008e12), ("L40S", 0.864e12))


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise ValueError(f'device must be "cpu" or "cuda"; got {device!r}')


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


def time_call(fn: Callable[[], object], device: str, repeats: int, warmup: int,
              deadline: float = math.inf) -> dict:
    """Median, quartiles and minimum of ``fn``'s time per call, in ms.

    Args:
        fn: the call to time (no arguments; its result is ignored).
        device: ``"cpu"`` (``time.perf_counter``) or ``"cuda"`` (CUDA events).
        repeats: samples to take (int >= 1).
        warmup: untimed calls first (at least one is made).
        deadline: ``time.time()`` after which no further sample is taken (after at least one).

    Returns ``median_ms``, ``q1_ms``, ``q3_ms``, ``min_ms``, ``samples`` (how many were taken),
    ``calls_per_sample`` and ``timer``. Raises ValueError for another ``device`` or ``repeats < 1``.
    """
    _check_device(device)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1; got {repeats!r}")
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


def peak_bandwidth(device: int = 0) -> tuple[float | None, str]:
    """``(bytes/s, source)`` of CUDA device ``device``: from its memory clock and bus width
    (double data rate), else from :data:`PEAK_BW_TABLE`, else ``(None, why)``."""
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, f"device: {clock_khz / 1e3:.0f} MHz x {bus_bits} bit x 2"
    for key, bw in PEAK_BW_TABLE:
        if key in props.name:
            return bw, f"table entry {key!r}"
    return None, (f"unknown: {props.name} reports no memory clock and is not in the table "
                  "(fraction of peak not computed)")
