"""The ISTD metrics against an independent oracle.

The oracle (istd_kernels.metrics.reference) is the per-image loop of docs/metrics.md §2-§4 written the
plain way (skimage labels and regionprops, Python lists), sharing nothing with the batched
tensor implementation in istd_kernels.metrics. Masks are synthetic IR-like scenes: Gaussian spots thresholded into
small targets, predictions made from them by shifting, growing, shrinking, dropping and
adding false blobs.
"""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from tiers import example_counts

from istd_kernels.metrics import ROC, IoU, ISTDMetrics, NIoU, PdFa
from istd_kernels.metrics.reference import oracle_pdfa, oracle_pixels

SIZE = 64


# -- synthetic scenes -----------------------------------------------------------------------
def spots(rng, count, size=SIZE):
    """A float map of ``count`` Gaussian spots of random width and brightness."""
    rows, cols = np.mgrid[0:size, 0:size]
    out = np.zeros((size, size))
    for _ in range(count):
        r, c = rng.uniform(2, size - 2, 2)
        sigma = rng.uniform(0.6, 3.0)
        out += rng.uniform(0.7, 1.5) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma ** 2))
    return out


def scene(rng, size=SIZE):
    """(prediction probabilities, target mask) for one image."""
    target = spots(rng, rng.integers(0, 6), size) > 0.5
    pred = target.copy()
    change = rng.integers(0, 4)
    if change == 1:
        pred = np.roll(pred, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    elif change == 2:
        pred = ndimage.binary_dilation(pred, iterations=int(rng.integers(1, 3)))
    elif change == 3:
        pred = ndimage.binary_erosion(pred)
    if rng.random() < 0.3:  # miss a target
        lab, n = ndimage.label(pred)
        if n:
            pred[lab == rng.integers(1, n + 1)] = False
    pred |= spots(rng, rng.integers(0, 4), size) > 0.6  # false alarms
    # Probabilities on the correct side of 0.5, with some clutter that stays below it.
    prob = np.where(pred, rng.uniform(0.51, 1.0, pred.shape), rng.uniform(0.0, 0.49, pred.shape))
    return prob, target


def batch(seed, n=8, size=SIZE):
    rng = np.random.default_rng(seed)
    pairs = [scene(rng, size) for _ in range(n)]
    prob = torch.tensor(np.stack([p for p, _ in pairs]), dtype=torch.float32).unsqueeze(1)
    target = torch.tensor(np.stack([t for _, t in pairs]), dtype=torch.uint8).unsqueeze(1)
    return prob, target


def as_np(prob, target, threshold=0.5):
    return (prob[:, 0] > threshold).numpy(), target[:, 0].numpy() > 0


def pdfa_counts(metric):
    r = metric.compute()
    return {k: r[k] for k in ("detected", "targets", "false_pixels", "pixels")}


# -- Pd / Fa against the oracle -------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_pdfa_matches_oracle_on_random_scenes(seed, legacy):
    prob, target = batch(seed)
    m = PdFa(legacy=legacy)
    m.update(prob, target)
    r = m.compute()
    expect = oracle_pdfa(*as_np(prob, target), legacy=legacy)
    assert pdfa_counts(m) == expect
    assert r["pd"] == pytest.approx(expect["detected"] / expect["targets"] if expect["targets"] else 0.0)
    assert r["fa"] == pytest.approx(expect["false_pixels"] / expect["pixels"])


@pytest.mark.parametrize("distance", [1.5, 3.0, 5.0])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_pdfa_distance_and_connectivity(distance, connectivity):
    prob, target = batch(100 + connectivity, n=6)
    m = PdFa(distance=distance, connectivity=connectivity)
    m.update(prob, target)
    assert pdfa_counts(m) == oracle_pdfa(*as_np(prob, target), distance=distance, connectivity=connectivity)


def _square(img, r, c, k=2):
    img[r:r + k, c:c + k] = True


def test_equal_areas_legacy_undercounts_fa():
    # One target; the prediction finds it with a 2x2 blob and also has a 2x2 false blob
    # elsewhere. The by-value rule drops both areas of 4 px; the fixed rule counts 4 false px.
    target = np.zeros((1, 32, 32), bool)
    pred = np.zeros((1, 32, 32), bool)
    _square(target[0], 10, 10)
    _square(pred[0], 10, 10)
    _square(pred[0], 25, 20)
    _square(pred[0], 3, 25, k=3)  # a false blob of another area: counted by both rules
    results = {}
    for legacy in (False, True):
        m = PdFa(legacy=legacy)
        m.update(torch.from_numpy(pred), torch.from_numpy(target))
        results[legacy] = pdfa_counts(m)
        assert results[legacy] == oracle_pdfa(pred, target, legacy=legacy)
    assert results[False]["false_pixels"] == 4 + 9
    assert results[True]["false_pixels"] == 9
    assert results[False]["detected"] == results[True]["detected"] == 1


def _line_component(col_of_extra):
    """Target: one pixel at (20, 20). Prediction: a vertical bar at column 23, rows 16..24,
    plus one pixel at (20, col_of_extra): centroid (20, (9 * 23 + col_of_extra) / 10)."""
    target = np.zeros((1, 40, 40), bool)
    target[0, 20, 20] = True
    pred = np.zeros((1, 40, 40), bool)
    pred[0, 16:25, 23] = True
    pred[0, 20, col_of_extra] = True
    return pred, target


@pytest.mark.parametrize("extra_col, found", [(22, 1), (24, 0)])  # distances 2.9 and 3.1
def test_centroid_distance_near_threshold(extra_col, found):
    pred, target = _line_component(extra_col)
    m = PdFa()
    m.update(torch.from_numpy(pred), torch.from_numpy(target))
    r = pdfa_counts(m)
    assert r["detected"] == found
    assert r["false_pixels"] == (0 if found else 10)
    assert r == oracle_pdfa(pred, target)


def test_distance_is_strict():
    target = np.zeros((1, 16, 16), bool)
    pred = np.zeros((1, 16, 16), bool)
    target[0, 5, 5] = pred[0, 5, 8] = True  # exactly 3 px apart
    for distance, found in ((3.0, 0), (3.0001, 1)):
        m = PdFa(distance=distance)
        m.update(torch.from_numpy(pred), torch.from_numpy(target))
        assert m.compute()["detected"] == found


def test_first_remaining_prediction_in_label_order():
    # Two targets both within range of prediction X; X is first in label order, so the first
    # target takes it and the second must fall back on Y.
    target = np.zeros((1, 20, 30), bool)
    pred = np.zeros((1, 20, 30), bool)
    target[0, 10, 10] = target[0, 10, 14] = True
    pred[0, 10, 12] = pred[0, 10, 16] = True
    m = PdFa()
    m.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert pdfa_counts(m) == oracle_pdfa(pred, target) == {"detected": 2, "targets": 2, "false_pixels": 0,
                                                           "pixels": 600}


@example_counts(40, quick=10)
def test_pdfa_dense_tiny_components(examples):
    @settings(max_examples=examples, deadline=None)
    @given(st.integers(0, 2 ** 32 - 1), st.booleans())
    def check(seed, legacy):
        # Sparse random pixels on a small grid: many 1-3 px components, so equal areas and
        # contested matches are the rule here rather than the exception.
        rng = np.random.default_rng(seed)
        target = rng.random((3, 12, 12)) < 0.12
        pred = np.where(rng.random((3, 12, 12)) < 0.7, target, rng.random((3, 12, 12)) < 0.12)
        m = PdFa(legacy=legacy)
        m.update(torch.from_numpy(pred), torch.from_numpy(target))
        assert pdfa_counts(m) == oracle_pdfa(pred, target, legacy=legacy)
    check()


# -- IoU / nIoU ------------------------------------------------------------------------------
def test_iou_niou_hand_computed():
    pred = torch.zeros(3, 1, 4, 4)
    target = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    pred[0, 0, 0, 0:3] = 0.9        # image 0: P 3 px, T 2 px, overlap 2 -> 2/3
    target[0, 0, 0, 1:3] = 1
    pred[1, 0, 2, 2] = 0.7          # image 1: P 1 px, T 1 px elsewhere -> 0/2
    target[1, 0, 3, 3] = 255        # 0/255 masks read as binary
                                    # image 2: both empty
    iou, niou = IoU(), NIoU()
    iou.update(pred, target)
    niou.update(pred, target)
    assert iou.compute() == {"iou": pytest.approx(2 / 5), "intersection": 2, "union": 5}
    assert niou.compute() == {"niou": pytest.approx((2 / 3 + 0 + 0) / 3), "images": 3}
    one = NIoU(empty_as="one")
    one.update(pred, target)
    assert one.compute()["niou"] == pytest.approx((2 / 3 + 0 + 1) / 3)


@pytest.mark.parametrize("seed", range(3))
def test_iou_niou_match_oracle(seed):
    prob, target = batch(200 + seed)
    p, t = as_np(prob, target)
    inter, union, niou = oracle_pixels(p, t)
    m = ISTDMetrics()
    m.update(prob, target)
    r = m.compute()
    assert (r["intersection"], r["union"]) == (inter, union)
    assert r["niou"] == pytest.approx(niou)
    assert r["iou"] == pytest.approx(inter / union)


def test_all_zero_and_all_one():
    zeros = torch.zeros(2, 1, 16, 16)
    ones = torch.ones(2, 1, 16, 16)
    m = ISTDMetrics()
    m.update(zeros, zeros)
    r = m.compute()
    assert (r["iou"], r["niou"], r["pd"], r["fa"]) == (0.0, 0.0, 0.0, 0.0)
    assert r["targets"] == r["detected"] == r["false_pixels"] == 0 and r["pixels"] == 512
    m.reset()
    m.update(ones, ones)
    r = m.compute()
    assert (r["iou"], r["niou"], r["pd"], r["fa"]) == (1.0, 1.0, 1.0, 0.0)
    m.reset()
    m.update(ones, zeros)
    r = m.compute()
    assert (r["iou"], r["pd"], r["fa"], r["targets"]) == (0.0, 0.0, 1.0, 0)
    m.reset()
    m.update(zeros, ones)
    r = m.compute()
    assert (r["iou"], r["pd"], r["fa"], r["targets"], r["detected"]) == (0.0, 0.0, 0.0, 2, 0)


# -- input conventions -----------------------------------------------------------------------
def test_logits_equal_probabilities_after_sigmoid():
    prob, target = batch(7)
    # Logits kept away from 0, where sigmoid rounds to exactly 0.5 in float32.
    logit = torch.logit(prob.double()).float()
    logit = torch.where(logit.abs() < 1e-3, torch.full_like(logit, 1e-3).copysign(logit), logit)
    a, b = ISTDMetrics(logits=True), ISTDMetrics()
    a.update(logit, target)
    b.update(torch.sigmoid(logit), target)
    assert a.compute() == b.compute()


def test_bool_and_three_dim_inputs():
    prob, target = batch(8)
    a, b = ISTDMetrics(), ISTDMetrics(logits=True)
    a.update(prob, target)
    b.update(prob[:, 0] > 0.5, target[:, 0].bool())  # bool preds ignore the logits flag
    assert a.compute() == b.compute()
    binary = (prob > 0.5).to(torch.uint8)
    for pred in (binary, binary * 255, binary.bool()):
        roc = ROC([0.5])
        roc.update(pred, target)
        r = roc.compute()
        assert (r["detected"][0], r["false_pixels"][0], r["tp"][0]) == (
            a.compute()["detected"], a.compute()["false_pixels"], a.compute()["intersection"])


def test_empty_batch_is_a_no_op():
    prob, target = batch(9, n=4)
    empty_p, empty_t = prob[:0], target[:0]
    for make in (IoU, NIoU, PdFa, lambda: ROC([0.3, 0.5]), ISTDMetrics):
        fresh, m = make(), make()
        m.update(empty_p, empty_t)
        assert m.compute() == fresh.compute()
        m.update(prob, target)
        m.update(empty_p, empty_t)
        fresh.update(prob, target)
        assert m.compute() == fresh.compute()


def test_several_updates_equal_one():
    prob, target = batch(10, n=9)
    whole, parts = ISTDMetrics(legacy=True), ISTDMetrics(legacy=True)
    whole.update(prob, target)
    for lo, hi in ((0, 2), (2, 3), (3, 9)):
        parts.update(prob[lo:hi], target[lo:hi])
    assert parts.compute() == pytest.approx(whole.compute())
    roc_whole, roc_parts = ROC([0.2, 0.5, 0.9]), ROC([0.2, 0.5, 0.9])
    roc_whole.update(prob, target)
    for lo, hi in ((0, 4), (4, 9)):
        roc_parts.update(prob[lo:hi], target[lo:hi])
    assert roc_parts.compute() == roc_whole.compute()


def test_reset_and_repeated_compute():
    prob, target = batch(11, n=3)
    m = PdFa()
    m.update(prob, target)
    first = m.compute()
    assert m.compute() == first
    m.reset()
    assert m.compute() == PdFa().compute()


# -- ROC --------------------------------------------------------------------------------------
def test_roc_at_half_equals_pdfa_and_iou():
    prob, target = batch(12)
    roc = ROC(torch.tensor([0.5]))
    bundle = ISTDMetrics()
    roc.update(prob, target)
    bundle.update(prob, target)
    r, b = roc.compute(), bundle.compute()
    assert r["tp"] == [b["intersection"]]
    assert r["tp"][0] + r["fp"][0] + r["fn"][0] == b["union"]
    assert (r["detected"], r["false_pixels"]) == ([b["detected"]], [b["false_pixels"]])
    assert (r["pd"], r["fa"]) == ([b["pd"]], [b["fa"]])
    assert (r["targets"], r["pixels"]) == (b["targets"], b["pixels"])
    assert r["tp"][0] + r["fp"][0] + r["fn"][0] + r["tn"][0] == b["pixels"]


@pytest.mark.parametrize("backend", [None, "torch"])  # the fused CPU pass, the stacked maps
@pytest.mark.parametrize("legacy", [False, True])
def test_roc_sweep_matches_oracle(legacy, backend):
    # Continuous maps (blurred spots plus noise), so each threshold really changes the masks.
    rng = np.random.default_rng(13)
    maps = np.stack([np.clip(spots(rng, 4) + rng.normal(0, 0.08, (SIZE, SIZE)), 0, 1) for _ in range(5)])
    target = np.stack([spots(rng, 3) > 0.5 for _ in range(5)])
    target[:, :, :] |= maps > 0.6  # targets where the map is bright, so there is much to detect
    prob = torch.tensor(maps, dtype=torch.float32).unsqueeze(1)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    roc = ROC(thresholds, legacy=legacy, backend=backend)
    roc.update(prob, torch.from_numpy(target).unsqueeze(1))
    r = roc.compute()
    for i, thr in enumerate(thresholds):
        p = maps.astype(np.float32) > thr
        expect = oracle_pdfa(p, target, legacy=legacy)
        assert (r["detected"][i], r["false_pixels"][i]) == (expect["detected"], expect["false_pixels"])
        tp = int((p & target).sum())
        assert (r["tp"][i], r["fp"][i], r["fn"][i]) == (tp, int(p.sum()) - tp, int(target.sum()) - tp)
        assert r["tpr"][i] == pytest.approx(tp / target.sum())
    assert r["thresholds"] == thresholds


def test_roc_chunks_thresholds(monkeypatch):
    import istd_kernels.metrics.roc as roc_module

    prob, target = batch(14, n=3)
    thresholds = [0.1, 0.45, 0.5, 0.55, 0.95]
    whole = ROC(thresholds, backend="torch")  # the stacked path; the fused one has no chunks
    whole.update(prob, target)
    monkeypatch.setattr(roc_module, "_STACK_PIXELS", 2 * 3 * SIZE * SIZE)  # two thresholds at a time
    chunked = ROC(thresholds, backend="torch")
    chunked.update(prob, target)
    assert chunked.compute() == whole.compute()


@pytest.mark.parametrize("logits", [False, True])
def test_roc_fused_pass_equals_stacked_maps(logits, monkeypatch):
    import istd_kernels.metrics.roc as roc_module

    calls = []
    fused = roc_module.measure_pair
    monkeypatch.setattr(roc_module, "measure_pair", lambda *a: calls.append(fused(*a)) or calls[-1])
    prob, target = batch(18, n=4)
    prob[1, 0, 9, 9] = 0.25  # a pixel exactly at a threshold stays negative
    pred = torch.logit(prob) if logits else prob
    thresholds = [0.0, 0.25, 0.5, 0.8, 1.0]
    a, b = ROC(thresholds, logits=logits), ROC(thresholds, logits=logits, backend="torch")
    for m in (a, b):
        m.update(pred, target)
        m.update(pred[:2], target[:2])
    assert sum(c is not None for c in calls) == 2 * len(thresholds)  # only `a` took the fused pass
    assert a.compute() == b.compute()


def test_roc_logits_threshold_in_probability_units():
    prob, target = batch(15, n=4)
    logit = torch.logit(prob.double())
    a, b = ROC([0.25, 0.5, 0.75]), ROC([0.25, 0.5, 0.75], logits=True)
    a.update(prob.double(), target)
    b.update(logit, target)
    assert a.compute() == b.compute()


def test_roc_csv(tmp_path):
    prob, target = batch(16, n=2)
    roc = ROC([0.2, 0.8])
    roc.update(prob, target)
    path = tmp_path / "roc.csv"
    roc.save_csv(path)
    rows = list(csv.DictReader(open(path)))
    r = roc.compute()
    assert [float(row["threshold"]) for row in rows] == [0.2, 0.8]
    assert [float(row["pd"]) for row in rows] == pytest.approx(r["pd"])
    assert [int(row["false_pixels"]) for row in rows] == r["false_pixels"]


def test_roc_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    roc = ROC([0.5])
    with pytest.raises(ImportError, match="plot"):
        roc.plot(tmp_path / "roc.png")


def test_roc_plot(tmp_path):
    pytest.importorskip("matplotlib")
    prob, target = batch(17, n=2)
    roc = ROC([0.1, 0.5, 0.9])
    roc.update(prob, target)
    roc.plot(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 0


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [IoU, NIoU, PdFa, lambda: ROC([0.5]), ISTDMetrics])
def test_bad_input(make):
    m = make()
    good = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="pred and target"):
        m.update(good, torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="pred"):
        m.update(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="target"):
        m.update(good, torch.zeros(2, 8, 8, 1, 1))
    with pytest.raises(ValueError, match="pred"):
        m.update(torch.zeros(2, 3, 8, 8), good)
    with pytest.raises(TypeError, match="target"):
        m.update(good, np.zeros((2, 1, 8, 8)))
    with pytest.raises(TypeError, match="pred"):
        m.update([[0.0]], good)
    with pytest.raises(TypeError, match="pred"):
        m.update(torch.zeros(2, 1, 8, 8, dtype=torch.complex64), good)


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty_as"):
        NIoU(empty_as="nan")
    with pytest.raises(ValueError, match="distance"):
        PdFa(distance=0)
    with pytest.raises(TypeError, match="distance"):
        PdFa(distance="3")
    with pytest.raises(ValueError, match="connectivity"):
        PdFa(connectivity=6)
    with pytest.raises(ValueError, match="thresholds"):
        ROC([])
    with pytest.raises(ValueError, match="thresholds"):
        ROC([[0.5]])


@pytest.mark.parametrize("thresholds, error", [
    ("0.5", TypeError), (0.5, TypeError), (None, TypeError), (["a"], TypeError), ([True, 0.5], TypeError),
    (torch.tensor([True]), TypeError), ([2.0], ValueError), ([-0.1, 0.5], ValueError),
    ([float("nan")], ValueError),
])
def test_roc_thresholds_errors_name_the_argument(thresholds, error):
    with pytest.raises(error, match="thresholds must be .* probabilities in \\[0, 1\\]"):
        ROC(thresholds)


def test_roc_thresholds_accept_tensors_arrays_and_iterables():
    expect = [0.25, 0.5]
    for given_ in (expect, tuple(expect), np.array(expect), torch.tensor(expect), (t for t in expect)):
        assert ROC(given_).thresholds.tolist() == expect


@pytest.mark.parametrize("make, name", [
    (lambda: PdFa(logits="no"), "logits"), (lambda: IoU(logits="False"), "logits"),
    (lambda: ROC([0.5], legacy="yes"), "legacy"), (lambda: ISTDMetrics(legacy=None), "legacy"),
    (lambda: NIoU(distributed="x"), "distributed"),
])
def test_flags_must_be_booleans(make, name):
    # bool("False") is True: a string flag was silently taken as set.
    with pytest.raises(TypeError, match=name):
        make()


@pytest.mark.parametrize("make", [lambda: PdFa(backend="bogus"), lambda: ROC([0.5], backend="bogus"),
                                  lambda: ISTDMetrics(backend=3)])
def test_backend_checked_when_the_metric_is_made(make):
    with pytest.raises(ValueError, match="backend"):
        make()


@pytest.mark.parametrize("make", [IoU, NIoU, PdFa, lambda: ROC([0.5]), ISTDMetrics])
def test_meta_tensors_are_refused(make):
    with pytest.raises(ValueError, match="pred must hold data"):
        make().update(torch.zeros(1, 1, 8, 8, device="meta"), torch.zeros(1, 1, 8, 8, device="meta"))


# -- multi-process merge -------------------------------------------------------------------------
def _distributed_worker(rank, world, init_file, out_file):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        prob, target = batch(18, n=6)
        m = ISTDMetrics(legacy=True)
        m.update(prob[rank::world], target[rank::world])
        roc = ROC([0.3, 0.5])
        roc.update(prob[rank::world], target[rank::world])
        result = {"bundle": m.compute(), "roc": roc.compute()}
        if rank == 0:
            torch.save(result, out_file)
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_merge_is_exact(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    out = tmp_path / "result.pt"
    torch.multiprocessing.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2)
    merged = torch.load(out)
    prob, target = batch(18, n=6)
    m = ISTDMetrics(legacy=True)
    m.update(prob, target)
    roc = ROC([0.3, 0.5])
    roc.update(prob, target)
    assert merged["bundle"] == pytest.approx(m.compute())
    assert merged["roc"] == roc.compute()


@pytest.mark.cuda
def test_cuda_matches_cpu():
    prob, target = batch(19)
    thresholds = [0.3, 0.5, 0.7]
    for legacy in (False, True):
        cpu, gpu = ISTDMetrics(legacy=legacy), ISTDMetrics(legacy=legacy)
        cpu.update(prob, target)
        gpu.update(prob.cuda(), target.cuda())
        assert gpu.compute() == pytest.approx(cpu.compute())
    cpu_roc, gpu_roc = ROC(thresholds), ROC(thresholds)
    cpu_roc.update(prob, target)
    gpu_roc.update(prob.cuda(), target.cuda())
    assert gpu_roc.compute() == cpu_roc.compute()
