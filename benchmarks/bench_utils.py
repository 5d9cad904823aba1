"""Shared benchmark helpers: device naming, GPU-aware timing, same-run baselines.

Each case records in ``extra_info``: the device, images/s, the speedup over the eager
PyTorch baseline of the same case measured in this run, and on a GPU the peak memory and
the CUDA-event median of :func:`istd_kernels.tools.timing.time_call` (the timing helper the
GPU check uses too). Group names start with the suite's section: ``ops:``, ``metrics:`` or
``models:``.
"""

import platform

import pytest
import torch

from istd_kernels.tools.timing import time_call

_baselines = {}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def skip_unless_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("GPU case: no CUDA GPU on this machine (torch.cuda.is_available() is False)")


def synced(fn, device):
    """``fn`` followed by a device synchronisation, so that wall time covers the GPU work."""
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def measure(benchmark, fn, device, key, batch, baseline=None):
    """Benchmark ``fn`` and record its figures; ``baseline`` is the eager-PyTorch fn of the case.

    The case whose ``baseline`` is None *is* the baseline: its median is kept for the
    cases measured after it. If the baseline was not run (``-k`` filtering), it is timed here.
    """
    run = synced(fn, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    benchmark(run)
    if benchmark.disabled:  # --benchmark-disable: the case ran once, as a test; nothing was timed
        return
    median = benchmark.stats.stats.median
    info = benchmark.extra_info
    if device == "cuda":
        # Device time from CUDA events over back-to-back calls; the pytest-benchmark wall times
        # above include the final synchronisation.
        info["cuda_event_median_ms"] = round(time_call(fn, device, repeats=20, warmup=3)["median_ms"], 4)
    info["device"] = device_name(device)
    info["images_per_s"] = round(batch / median, 2)
    if device == "cuda":
        info["peak_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if baseline is None:
        _baselines[key] = median
        info["speedup"] = 1.0
    else:
        base = _baselines.get(key)
        if base is None:
            # Wall time of the synchronised call, the clock of pytest-benchmark's median above.
            wall = time_call(synced(baseline, device), "cpu", repeats=5, warmup=1)
            base = _baselines[key] = wall["median_ms"] / 1e3
        info["speedup"] = round(base / median, 3)
    info["baseline_median_s"] = _baselines[key]


def write_noisy_predictions(folder, data, ids, missed: float, seed: int, size: int) -> None:
    """8-bit probability PNGs in ``folder`` (created) made from the masks of the data set
    ``data`` for ``ids``: each target kept with probability ``1 - missed`` and shifted by up to
    2 px, 0-2 false blobs per image, background noise below 0.5 (what the evaluate and compare
    benchmarks score)."""
    import cv2
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in ids:
        mask = cv2.imread(str(data / "masks" / f"{i}.png"), cv2.IMREAD_GRAYSCALE) > 0
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        pred = np.zeros_like(mask)
        for k in range(1, n):
            if rng.random() >= missed:
                dr, dc = rng.integers(-2, 3, 2)
                pred |= np.roll(labels == k, (dr, dc), (0, 1))
        for _ in range(rng.integers(0, 3)):
            r, c = rng.integers(0, size - 3, 2)
            pred[r:r + rng.integers(1, 4), c:c + rng.integers(1, 4)] = True
        prob = np.where(pred, rng.integers(150, 256, pred.shape), rng.integers(0, 110, pred.shape))
        assert cv2.imwrite(str(folder / f"{i}.png"), prob.astype(np.uint8))
