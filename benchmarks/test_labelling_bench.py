"""Labelling + component statistics on the CPU against OpenCV, on three sets of 64 512x512 masks.

The sets (``masks.py``): the project's IR-like predictions (about 3 components an image),
a second generator with blobs, diagonal chains and speckle false alarms in every other
image (about 200 components an image), and dense 50 % noise (about 930). The baseline of
each set is ``cv2.connectedComponentsWithStats`` called per image, 8-connectivity, which
returns label images and statistics. Against it, measured in the same run:

- ``connected_components_with_stats``: labels and statistics in one pass, with a fresh
  label tensor and with ``out=`` (a label buffer reused across calls);
- ``connected_components`` then ``component_stats``: the two calls, fresh and ``out=``;
- ``measure_components``: statistics only, no label images.
"""

import cv2
import numpy as np
import pytest
import torch
from bench_utils import measure
from masks import N, noise_masks, project_pairs, speckle_masks

from istd_kernels.ops import component_stats, connected_components, connected_components_with_stats, measure_components

SETS = {
    "project": lambda: project_pairs()[0] > 0.5,
    "speckle": speckle_masks,
    "noise50": noise_masks,
}


@pytest.fixture(scope="module", params=list(SETS))
def masks(request):
    fg = SETS[request.param]()
    return request.param, fg.astype(np.uint8), torch.from_numpy(fg)


def _group(name):
    return f"metrics: labelling+stats cpu {N}x512x512 {name} masks"


def _cv2_stats(masks):
    return [cv2.connectedComponentsWithStats(m, connectivity=8) for m in masks]


def test_labelling_cv2(benchmark, masks):
    name, masks_u8, _ = masks
    benchmark.group = _group(name)
    measure(benchmark, lambda: _cv2_stats(masks_u8), "cpu", benchmark.group, N)
    benchmark.extra_info["impl"] = "cv2 per image"


def _with_stats(mask, out=None):
    return connected_components_with_stats(mask, backend="cpp", out=out)


def _two_calls(mask, out=None):
    labels, counts = connected_components(mask, backend="cpp", out=out)
    return labels, component_stats(labels, counts, backend="cpp")


def _check_against_cv2(labels, stats, expected):
    """The first images' foreground, counts and (area, bbox) sets equal OpenCV's (its label
    numbering differs from the raster order, so components are compared as sorted rows)."""
    for i, (count, cv_labels, cv_stats, _) in enumerate(expected):
        k = int(stats.counts[i])
        assert k == count - 1 and np.array_equal(labels[i].numpy() > 0, cv_labels > 0)
        top, left, bottom, right = stats.bbox[i, :k].T.tolist()
        ours = sorted(zip(left, top, np.subtract(right, left), np.subtract(bottom, top), stats.area[i, :k].tolist()))
        assert ours == sorted(map(tuple, cv_stats[1:].tolist()))


# impl names fit the summary table's 28 columns: "with_stats" is connected_components_with_stats,
# "cc+stats" connected_components then component_stats.
CASES = {
    "with_stats": (_with_stats, False, "with_stats, fresh (cpp)"),
    "with_stats_out": (_with_stats, True, "with_stats, out= (cpp)"),
    "two_calls": (_two_calls, False, "cc+stats, fresh (cpp)"),
    "two_calls_out": (_two_calls, True, "cc+stats, out= (cpp)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_labelling_istd(benchmark, masks, case):
    name, masks_u8, mask_t = masks
    fn, use_out, impl = CASES[case]
    out = torch.empty(mask_t.shape, dtype=torch.int32) if use_out else None
    labels, stats = fn(mask_t, out)
    _check_against_cv2(labels, stats, _cv2_stats(masks_u8[:4]))
    benchmark.group = _group(name)
    measure(benchmark, lambda: fn(mask_t, out), "cpu", benchmark.group, N, baseline=lambda: _cv2_stats(masks_u8))
    benchmark.extra_info["impl"] = impl


def test_labelling_stats_only(benchmark, masks):
    name, masks_u8, mask_t = masks
    benchmark.group = _group(name)
    measure(benchmark, lambda: measure_components(mask_t, backend="cpp"), "cpu", benchmark.group, N,
            baseline=lambda: _cv2_stats(masks_u8))
    benchmark.extra_info["impl"] = "measure_components (cpp)"
