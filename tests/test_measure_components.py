"""measure_components (statistics without label images) and the fused CPU pass of
ISTDMetrics, against the separate ops they replace."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_components import cv2_stats, diagonal_chains, ir_like_masks, ours_as_rows, zigzag
from test_metrics import batch
from tiers import example_counts

from istd_kernels import BackendUnavailableError
from istd_kernels.metrics import ISTDMetrics, _fused
from istd_kernels.ops import component_stats, connected_components, measure_components

BACKENDS = ["torch", "cpp"]
CONNS = [8, 4]


def expected_stats(mask, conn):
    labels, counts = connected_components(mask, conn, backend="torch")
    return component_stats(labels, counts, backend="torch")


def assert_same_stats(got, want):
    for name in ("counts", "area", "centroid", "bbox"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.shape, b.shape)
        # Bitwise, centroids included: both divide the same integer sums once.
        assert torch.equal(a, b), name


@example_counts(150)
def test_random_masks_equal_label_then_measure(examples):
    @settings(max_examples=examples, deadline=None)
    @given(n=st.integers(1, 3), h=st.integers(1, 30), w=st.integers(1, 30),
           density=st.sampled_from([0.03, 0.3, 0.5, 0.6, 0.8, 1.0]), seed=st.integers(0, 2**32 - 1),
           conn=st.sampled_from(CONNS))
    def check(n, h, w, density, seed, conn):
        mask = torch.from_numpy(np.random.default_rng(seed).random((n, h, w)) < density)
        want = expected_stats(mask, conn)
        for backend in BACKENDS:
            assert_same_stats(measure_components(mask, conn, backend=backend), want)
    check()


@pytest.mark.parametrize("conn", CONNS)
def test_structured_masks(conn):
    h, w = 23, 17
    masks = [diagonal_chains(h, w), zigzag(h, w), np.ones((h, w), bool), np.zeros((h, w), bool),
             np.eye(h, w, dtype=bool) | np.eye(h, w, k=3, dtype=bool)]
    comb = np.zeros((h, w), bool)
    comb[0, :] = True
    comb[:, ::2] = True  # a comb: every tooth joins through the top row, found late
    masks.append(comb[::-1].copy())
    mask = torch.from_numpy(np.stack(masks))
    assert_same_stats(measure_components(mask, conn, backend="cpp"), expected_stats(mask, conn))


@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 1, 40), (2, 40, 1), (2, 1, 9), (1, 3, 17),
                                   (0, 5, 7), (2, 0, 4), (2, 4, 0)])
def test_thin_and_empty_shapes(shape):
    rng = np.random.default_rng(sum(shape))
    mask = torch.from_numpy(rng.random(shape) < 0.5)
    got = measure_components(mask, backend="cpp")
    assert got.counts.shape == (shape[0],)
    assert_same_stats(got, expected_stats(mask, 8))


@pytest.mark.parametrize("conn", CONNS)
def test_ir_like_masks_match_opencv(conn):
    masks = ir_like_masks(6, 256, seed=11 + conn)
    got = measure_components(torch.from_numpy(masks), conn, backend="cpp")
    for i, m in enumerate(masks):
        assert ours_as_rows(got, i) == cv2_stats(m, conn)


def test_mask_dtypes_and_threshold():
    rng = np.random.default_rng(5)
    prob = rng.random((2, 21, 19))
    prob[0, 3, :] = 0.5  # exactly 0.5 is background, as `probability > 0.5`
    prob[1, 4, 2:9] = np.nan  # NaN is background
    fg = torch.from_numpy(prob > 0.5)
    want = expected_stats(fg, 8)
    p = torch.from_numpy(prob)
    for mask in (fg, fg.to(torch.uint8) * 255, fg.to(torch.int64), fg.to(torch.int8), p, p.float()):
        assert_same_stats(measure_components(mask, backend="cpp"), want)
    for mask in (p.half(), p.bfloat16()):  # rounding to half may move values across 0.5
        assert_same_stats(measure_components(mask, backend="cpp"), expected_stats(mask > 0.5, 8))


def test_non_contiguous_mask():
    base = torch.from_numpy(np.random.default_rng(3).random((3, 30, 40)) < 0.4)
    mask = base.transpose(1, 2)[:, ::2, 1:]
    assert_same_stats(measure_components(mask, backend="cpp"), expected_stats(mask.contiguous(), 8))


def test_bad_input():
    m = torch.zeros(2, 5, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="mask"):
        measure_components(m[0])
    with pytest.raises(TypeError, match="mask"):
        measure_components(m.to(torch.complex64))
    with pytest.raises(TypeError, match="mask"):
        measure_components(m.numpy())
    with pytest.raises(ValueError, match="connectivity"):
        measure_components(m, connectivity=6)
    with pytest.raises(BackendUnavailableError, match="cuda"):
        measure_components(m, backend="cuda")


# --- the fused pass of ISTDMetrics ---------------------------------------------------------


def separate(pred_bin, target_bin, conn):
    """What ISTDMetrics measures without the fused pass, from bool maps."""
    p = measure_components(pred_bin, conn, backend="torch")
    t = measure_components(target_bin, conn, backend="torch")
    inter = (pred_bin & target_bin).flatten(1).sum(1)
    union = (pred_bin | target_bin).flatten(1).sum(1)
    return inter, union, p, t


@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("logits", [False, True])
def test_measure_pair_equals_separate_ops(conn, logits):
    prob, target = batch(seed=conn + 2 * logits, n=5)
    prob, target = prob[:, 0], target[:, 0]
    prob[1, 7, 3:12] = float("nan")
    pred = torch.logit(prob) if logits else prob
    threshold = 0.0 if logits else 0.5
    for p_in in (pred, pred.double(), pred > threshold):
        for t_in in (target, target.bool(), target.float(), target.to(torch.int32)):
            got = _fused.measure_pair(p_in, t_in, threshold, conn, None)
            inter, union, ps, ts = separate(p_in > threshold if p_in.dtype != torch.bool else p_in,
                                            t_in > 0.5, conn)
            assert torch.equal(got.inter, inter) and torch.equal(got.union, union)
            assert torch.equal(got.pred_counts, ps.counts) and torch.equal(got.pred_area, ps.area)
            assert torch.equal(got.pred_centroid, ps.centroid)
            assert torch.equal(got.target_counts, ts.counts) and torch.equal(got.target_centroid, ts.centroid)


def test_measure_pair_only_on_cpp():
    prob, target = batch(seed=1, n=2)
    assert _fused.measure_pair(prob[:, 0], target[:, 0], 0.5, 8, "torch") is None
    assert _fused.measure_pair(prob[:, 0], target[:, 0], 0.5, 8, None) is not None


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("logits", [False, True])
def test_istd_metrics_fused_equals_separate(monkeypatch, legacy, logits):
    calls = []
    fused = _fused.measure_pair
    monkeypatch.setattr("istd_kernels.metrics.bundle.measure_pair",
                        lambda *a: calls.append(fused(*a)) or calls[-1])
    a, b = ISTDMetrics(legacy=legacy, logits=logits), ISTDMetrics(legacy=legacy, logits=logits, backend="torch")
    for seed in range(3):
        prob, target = batch(seed=10 + seed, n=6)
        pred = torch.logit(prob) if logits else prob
        a.update(pred, target)
        b.update(pred, target)
    # Both metrics ask; only the default one gets a measurement, the torch one falls back.
    assert [c is not None for c in calls] == [True, False] * 3
    ra, rb = a.compute(), b.compute()
    assert ra == rb
    assert ra["targets"] > 0 and ra["false_pixels"] > 0  # the scenes exercise both counts


def test_istd_metrics_fused_edge_batches():
    for pred, target in ((torch.zeros(3, 9, 11), torch.zeros(3, 9, 11)),
                         (torch.ones(3, 9, 11), torch.ones(3, 9, 11)),
                         (torch.ones(2, 9, 11), torch.zeros(2, 9, 11)),
                         (torch.zeros(0, 9, 11), torch.zeros(0, 9, 11))):
        a, b = ISTDMetrics(), ISTDMetrics(backend="torch")
        a.update(pred, target)
        b.update(pred, target)
        assert a.compute() == b.compute()


@pytest.mark.cuda
@pytest.mark.parametrize("conn", CONNS)
def test_cuda_backend_equals_cpp(conn):
    masks = torch.from_numpy(np.concatenate([ir_like_masks(4, 200, seed=conn),
                                             np.random.default_rng(conn).random((2, 200, 200)) < 0.5]))
    want = measure_components(masks, conn, backend="cpp")
    got = measure_components(masks.cuda(), conn, backend="cuda")
    assert got.counts.is_cuda and got.centroid.is_cuda
    assert_same_stats(type(got)(*(t.cpu() for t in got)), want)
