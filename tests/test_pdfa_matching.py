"""Pd/Fa matching at scale: the grid-and-rounds matcher of istd_kernels.metrics.pdfa against
the sequential reference loop (istd_kernels.metrics.reference), on dense, sparse and tied
inputs, and its memory bound on a mask with 40 K targets and 40 K predictions.

Timings are in benchmarks/test_metrics_bench.py (dense-mask matching), not here.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from istd_kernels.metrics import ISTDMetrics, PdFa, near
from istd_kernels.metrics import pdfa as pdfa_module
from istd_kernels.metrics.pdfa import match
from istd_kernels.metrics.reference import greedy_match, oracle_pdfa

COUNT_KEYS = ("detected", "targets", "false_pixels", "pixels")


def pdfa_counts(pred, target, **kwargs):
    m = PdFa(**kwargs)
    m.update(torch.from_numpy(pred), torch.from_numpy(target))
    r = m.compute()
    return {k: r[k] for k in COUNT_KEYS}


def padded(per_image):
    """Lists of (row, col) centroids per image -> counts int64 [N], centroids float64 [N, M, 2]."""
    m = max((len(c) for c in per_image), default=0)
    cent = torch.zeros(len(per_image), m, 2, dtype=torch.float64)
    for i, c in enumerate(per_image):
        if c:
            cent[i, :len(c)] = torch.tensor(c, dtype=torch.float64)
    return torch.tensor([len(c) for c in per_image], dtype=torch.int64), cent


def taken_by_matcher(truths, preds, distance, device="cpu"):
    """The set of (image, prediction) pairs the batched matcher takes."""
    t_counts, t_cent = padded(truths)
    p_counts, p_cent = padded(preds)
    valid = lambda counts, m: torch.arange(m) < counts[:, None]  # noqa: E731
    taken = pdfa_module._greedy(valid(t_counts, t_cent.shape[1]).to(device), t_cent.to(device),
                                valid(p_counts, p_cent.shape[1]).to(device), p_cent.to(device), distance)
    return {(int(i), int(j)) for i, j in taken.nonzero().tolist()}


# Half-pixel lattice points in a small square: duplicated centroids (tied label order) and
# distances of exactly 1, 1.5, 2, 2.5, 3 (tied with the threshold) are the rule here.
_points = st.lists(st.tuples(st.integers(0, 16), st.integers(0, 16)).map(lambda rc: (rc[0] / 2, rc[1] / 2)),
                   max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_points, _points), min_size=1, max_size=3),
       st.sampled_from([0.5, 1.0, 1.5, math.sqrt(2), 2.0, 2.5, 3.0, 3.0001, 5.0]))
def test_matcher_equals_reference_loop_with_ties(images, distance):
    truths = [t for t, _ in images]
    preds = [p for _, p in images]
    expect = {(i, j) for i, (t, p) in enumerate(images) for j in greedy_match(t, p, distance)}
    assert taken_by_matcher(truths, preds, distance) == expect


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.sampled_from([0.1, 0.25, 0.4, 0.6]), st.booleans(),
       st.sampled_from([None, "torch"]), st.sampled_from([4, 8]))
def test_dense_masks_equal_reference_loop(seed, density, legacy, backend, connectivity):
    rng = np.random.default_rng(seed)
    target = rng.random((3, 16, 16)) < density
    pred = rng.random((3, 16, 16)) < density
    assert pdfa_counts(pred, target, legacy=legacy, backend=backend, connectivity=connectivity) == \
        oracle_pdfa(pred, target, legacy=legacy, connectivity=connectivity)


@pytest.mark.parametrize("seed", range(3))
def test_noise_masks_equal_reference_loop(seed):
    # ~700 components a side: thousands of candidate pairs and many rounds of settling.
    rng = np.random.default_rng(seed)
    target = rng.random((1, 96, 96)) < 0.15
    pred = rng.random((1, 96, 96)) < 0.15
    for legacy in (False, True):
        assert pdfa_counts(pred, target, legacy=legacy) == oracle_pdfa(pred, target, legacy=legacy)


@pytest.mark.parametrize("distance, found", [(math.sqrt(2), 0), (1.5, 100)])
def test_lattice_at_the_threshold(distance, found):
    # Every prediction sits exactly sqrt(2) from a target: strictly-less rejects all of them.
    target = np.zeros((1, 40, 40), bool)
    pred = np.zeros((1, 40, 40), bool)
    target[0, ::4, ::4] = True
    pred[0, 1::4, 1::4] = True
    counts = pdfa_counts(pred, target, distance=distance)
    assert counts == oracle_pdfa(pred, target, distance=distance)
    assert counts["detected"] == found


def test_sparse_and_empty_images_in_one_batch():
    rng = np.random.default_rng(5)
    target = np.zeros((4, 64, 64), bool)
    pred = np.zeros((4, 64, 64), bool)
    target[0] = rng.random((64, 64)) < 0.2      # dense next to ...
    pred[0] = rng.random((64, 64)) < 0.2
    target[1, 10, 10] = pred[1, 11, 12] = True  # ... one target, found
    pred[2, 30:33, 30:33] = True                # ... a false alarm alone
    target[3, 50, 50] = True                    # ... a miss alone
    assert pdfa_counts(pred, target) == oracle_pdfa(pred, target)


def test_coarse_grid_gives_the_same_counts(monkeypatch):
    # Cells far wider than `distance` (a huge image or a tiny distance) only add candidates
    # that the distance test then rejects.
    rng = np.random.default_rng(6)
    target = rng.random((2, 48, 48)) < 0.15
    pred = rng.random((2, 48, 48)) < 0.15
    expect = oracle_pdfa(pred, target)
    monkeypatch.setattr(near, "_MAX_CELLS", 4)
    assert pdfa_counts(pred, target) == expect


@pytest.mark.parametrize("name", ["target_counts", "pred_counts"])
@pytest.mark.parametrize("bad", [-1, 5])
def test_match_rejects_counts_outside_the_padding(name, bad):
    args = {"target_counts": torch.tensor([1, 2]), "target_centroid": torch.zeros(2, 3, 2, dtype=torch.float64),
            "pred_counts": torch.tensor([2, 1]), "pred_area": torch.ones(2, 3, dtype=torch.int64),
            "pred_centroid": torch.zeros(2, 3, 2, dtype=torch.float64)}
    args[name] = torch.tensor([bad, 1])
    with pytest.raises(ValueError, match=name):
        match(**args)


_DENSE_800 = """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import torch
    from istd_kernels.metrics import ISTDMetrics, PdFa
    t = torch.zeros(1, 1, 800, 800, dtype=torch.bool)
    p = torch.zeros_like(t)
    t[0, 0, ::4, ::4] = True
    p[0, 0, 1::4, 1::4] = True
    for m in (ISTDMetrics(), PdFa(backend="torch")):
        m.update(p, t)
        r = m.compute()
        print(r["targets"], r["detected"], r["false_pixels"])
"""


def test_forty_thousand_components_in_bounded_memory():
    # One [G, P] float64 distance block would be 12.8 GB here; the process may map 3 GiB.
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_DENSE_800)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["40000 40000 0", "40000 40000 0"]


@pytest.mark.cuda
def test_cuda_matcher_equals_cpu():
    rng = np.random.default_rng(7)
    target = torch.from_numpy(rng.random((4, 256, 256)) < 0.15)
    pred = torch.from_numpy(rng.random((4, 256, 256)) < 0.15)
    for legacy in (False, True):
        cpu, gpu = ISTDMetrics(legacy=legacy), ISTDMetrics(legacy=legacy)
        cpu.update(pred, target)
        gpu.update(pred.cuda(), target.cuda())
        assert gpu.compute() == cpu.compute()
    truths = [[tuple(c) for c in (rng.integers(0, 17, (30, 2)) / 2).tolist()] for _ in range(3)]
    preds = [[tuple(c) for c in (rng.integers(0, 17, (30, 2)) / 2).tolist()] for _ in range(3)]
    assert taken_by_matcher(truths, preds, 3.0, "cuda") == taken_by_matcher(truths, preds, 3.0)
