"""The whole metric suite (Pd/Fa under the distance, shooting and OPDC rules, hIoU, pixel
measures and curves) on the CPU: 64 IR-like 512x512 soft maps at 10 thresholds.

- ``ISTDMetrics(metrics=("all",), thresholds=10 cuts)`` on the batch, and the same called
  64 times on one image each (how most test scripts call metrics);
- against PyIRSTDMetrics 1.0.2's loop (its five classes, image by image). That loop takes
  seconds an image, so it is timed once on ``BASE_IMAGES`` of the 64 images and scaled to
  64 (its time is a sum over images); the figure is recorded as ``baseline_median_s``;
- the overhead of one call on a 64x64 image.

Skips where pyirstdmetrics is not installed (``pip install --no-deps pyirstdmetrics==1.0.2``).
The machine is shared: read the figures with its load (``uptime``) in mind, and with the
torch thread count (``OMP_NUM_THREADS``; recorded as ``torch_threads``): on busy cores the
batch path ran 2.3x slower at 2 threads than at 1 (docs/metrics.md §12).
"""

import time

import numpy as np
import pytest
import torch
from masks import SIZE, N, project_pairs

from istd_kernels.metrics import ISTDMetrics

pm = pytest.importorskip("py_irstd_metrics", reason="pip install --no-deps pyirstdmetrics==1.0.2")

CUTS = tuple(np.linspace(0, 1, 10, endpoint=False).tolist())
BASE_IMAGES = 2
GROUP = "metrics: suite cpu 64x512x512 soft maps, 10 thresholds"
_base: dict[str, float] = {}


def soft_maps(n=N, size=SIZE, seed=3):
    """float32 probability maps: the targets' pixels at 0.5-1, sparse clutter (about 500
    specks an image) at 0-0.6, zero elsewhere; and the bool targets."""
    prob, target = project_pairs(n, size, seed)
    rng = np.random.default_rng(seed)
    detected = prob > 0.5
    soft = np.where(detected, rng.uniform(0.5, 1.0, prob.shape), 0.0)
    clutter = rng.random(prob.shape) < 0.002
    return np.maximum(soft, np.where(clutter, rng.uniform(0, 0.6, prob.shape), 0)).astype(np.float32), target


@pytest.fixture(scope="module")
def maps():
    return soft_maps()


def pyirstd_loop(prob, target):
    ms = [pm.ProbabilityDetectionAndFalseAlarmRate(num_bins=10),
          pm.ShootingRuleBasedProbabilityDetectionAndFalseAlarmRate(num_bins=10),
          pm.MatchingBasedMetrics(num_bins=10), pm.HierarchicalIoUBasedErrorAnalysis(num_bins=10),
          pm.CMMetrics(num_bins=10, metric_handlers={
              f"{name}_{tag}": cls(with_dynamic=True, with_binary=True, sample_based=tag == "s")
              for tag in ("s", "ds") for name, cls in (("iou", pm.IoUHandler), ("precision", pm.PrecisionHandler),
                                                       ("recall", pm.RecallHandler), ("fpr", pm.FPRHandler))})]
    for p, t in zip(prob, target):
        for m in ms:
            m.update(p, t)
    return [m.get() for m in ms]


def ours(prob, target, per_image):
    m = ISTDMetrics(metrics=("all",), thresholds=CUTS, pyirstd=True)
    if per_image:
        for i in range(prob.shape[0]):
            m.update(prob[i:i + 1], target[i:i + 1])
    else:
        m.update(prob, target)
    return m.compute()


def _record(benchmark, per_image: bool = False):
    median = benchmark.stats.stats.median
    # The thread count matters on a shared machine: a busy core stalls torch's parallel regions.
    benchmark.extra_info.update({"images_per_s": round(N / median, 2), "per_image_loop": per_image,
                                 "torch_threads": torch.get_num_threads(),
                                 "baseline_median_s": round(_base["pyirstd"], 3),
                                 "speedup": round(_base["pyirstd"] / median, 2)})


def test_suite_pyirstdmetrics_loop(benchmark, maps):
    prob, target = maps
    benchmark.group = GROUP
    benchmark.pedantic(pyirstd_loop, (prob[:BASE_IMAGES], target[:BASE_IMAGES]), rounds=1, iterations=1)
    _base["pyirstd"] = benchmark.stats.stats.median * N / BASE_IMAGES
    benchmark.extra_info.update({"impl": f"PyIRSTDMetrics 1.0.2, {BASE_IMAGES} images timed, scaled to {N}",
                                 "scaled_s": round(_base["pyirstd"], 3)})


@pytest.mark.parametrize("per_image", [False, True], ids=["batch64", "loop64x1"])
def test_suite_istd(benchmark, maps, per_image):
    if "pyirstd" not in _base:
        start = time.perf_counter()
        pyirstd_loop(maps[0][:BASE_IMAGES], maps[1][:BASE_IMAGES])
        _base["pyirstd"] = (time.perf_counter() - start) * N / BASE_IMAGES
    prob, target = (torch.from_numpy(a) for a in maps)
    got = ours(prob[:2], target[:2], per_image)
    want = pyirstd_loop(maps[0][:2], maps[1][:2])
    assert np.allclose(got["opdc_pd"], want[2]["probability_detection"], rtol=0, atol=1e-12)
    assert np.allclose(got["hiou"], want[3]["seg_iou"] * want[3]["loc_iou"], rtol=0, atol=1e-12)
    benchmark.group = GROUP
    benchmark.pedantic(ours, (prob, target, per_image), rounds=2, iterations=1, warmup_rounds=1)
    _record(benchmark, per_image)


def test_suite_call_overhead_64x64(benchmark):
    prob, target = (torch.from_numpy(a) for a in soft_maps(1, 64, seed=4))
    m = ISTDMetrics(metrics=("all",), thresholds=CUTS)
    benchmark.group = "metrics: suite cpu one 64x64 call, 10 thresholds"
    benchmark(m.update, prob, target)
