"""The target-level metric suite (PdFa's three matching rules with precision/recall/F1, and
hIoU with its error terms) against PyIRSTDMetrics 1.0.2, the reference implementation of
those rules, on randomised soft maps and masks; and OPDC's default (paper) rule against a
dense reference written here.

PyIRSTDMetrics pins numpy < 2; install it next to ours with
``pip install --no-deps pyirstdmetrics==1.0.2`` (it needs scipy and scikit-image).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from skimage import measure

from istd_kernels.metrics import ISTDMetrics
from istd_kernels.metrics.hiou import HIOU_KEYS, HIoU
from istd_kernels.metrics.pdfa import PdFa
from istd_kernels.metrics.pixel_curves import MEASURES, PixelMetrics, pixel_keys

pm = pytest.importorskip("py_irstd_metrics", reason="PyIRSTDMetrics is not installed: "
                         "pip install --no-deps pyirstdmetrics==1.0.2")

TEN = np.linspace(0, 1, 10, endpoint=False)
KINDS = ("blobs", "chains", "border", "equal", "clutter", "empty", "full")
# Every kind at the single cut; the ten-threshold sweep of the slower kinds (PyIRSTDMetrics'
# loops are the time here) runs in the slow tier.
CASES = [(kind, 1) for kind in KINDS] + [
    pytest.param(kind, 10, marks=[pytest.mark.slow] if kind in ("equal", "border", "chains") else [])
    for kind in KINDS]


# -- scenes ---------------------------------------------------------------------------------
def _box(m, r, c, a, b):
    m[max(0, r - a):r + a + 1, max(0, c - b):c + b + 1] = True


def target_mask(rng, kind, h, w):
    m = np.zeros((h, w), bool)
    if kind == "full":
        m[:] = True
    elif kind == "chains":  # diagonal runs: one component under 8-connectivity, many under 4
        for _ in range(rng.integers(1, 4)):
            r, c, n = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 8)
            for k in range(n):
                m[min(r + k, h - 1), min(c + k, w - 1)] = True
    elif kind == "border":
        for _ in range(rng.integers(1, 5)):
            side = rng.integers(4)
            r = (0, h - 1, rng.integers(h), rng.integers(h))[side]
            c = (rng.integers(w), rng.integers(w), 0, w - 1)[side]
            _box(m, r, c, *rng.integers(0, 3, 2))
    elif kind == "equal":  # equal areas: ties in areas and in distances
        for r in range(4, h - 4, 10):
            for c in range(4, w - 4, 10):
                _box(m, r, c, 1, 1)
    elif kind != "empty":
        for _ in range(rng.integers(1, 7)):
            _box(m, rng.integers(h), rng.integers(w), *rng.integers(0, 3, 2))
    return m


def soft_map(rng, mask, kind):
    """A float32 probability map: the targets (shifted, grown or shrunk, some dropped) at
    random confidence, with false blobs and clutter, some values exactly on the thresholds."""
    h, w = mask.shape
    shifted = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1)) if rng.random() < 0.5 else mask
    p = np.where(shifted, rng.uniform(0.2, 1.0, mask.shape), 0.0)
    extra = np.zeros_like(mask)
    for _ in range(rng.integers(0, 4)):
        _box(extra, rng.integers(h), rng.integers(w), *rng.integers(0, 2, 2))
    p = np.maximum(p, np.where(extra, rng.uniform(0, 1, mask.shape), 0))
    clutter = 0.15 if kind == "clutter" else 0.02
    p = np.maximum(p, np.where(rng.random(mask.shape) < clutter, rng.uniform(0, 0.6, mask.shape), 0))
    on_cut = rng.random(mask.shape) < 0.02
    p = np.where(on_cut, rng.choice(TEN, mask.shape), p)
    return p.astype(np.float32)


def batch(seed, kind, n=4, h=32, w=40):
    rng = np.random.default_rng(seed)
    masks = np.stack([target_mask(rng, kind, h, w) for _ in range(n)])
    preds = np.stack([soft_map(rng, m, kind) for m in masks])
    if kind == "full":
        preds[0] = 1.0
    return preds, masks


# -- PyIRSTDMetrics ---------------------------------------------------------------------------
def oracle(rule, preds, masks, bins):
    make = {"distance": lambda: pm.ProbabilityDetectionAndFalseAlarmRate(num_bins=bins),
            "shooting": lambda: pm.ShootingRuleBasedProbabilityDetectionAndFalseAlarmRate(num_bins=bins),
            "opdc": lambda: pm.MatchingBasedMetrics(num_bins=bins),
            "hiou": lambda: pm.HierarchicalIoUBasedErrorAnalysis(num_bins=bins)}
    o = make[rule]()
    for p, m in zip(preds, masks):
        o.update(p, m)
    return o.get()


def ours(make, preds, masks, per_image=False):
    m = make()
    if per_image:
        for p, t in zip(preds, masks):
            m.update(torch.from_numpy(p[None]), torch.from_numpy(t[None]))
    else:
        m.update(torch.from_numpy(preds), torch.from_numpy(masks))
    return m.compute()


def assert_pdfa(rule, preds, masks, bins, per_image=False):
    thresholds = None if bins == 1 else TEN
    got = ours(lambda: PdFa(matching=rule, thresholds=thresholds, pyirstd=True), preds, masks, per_image)
    want = oracle(rule, preds, masks, bins)
    np.testing.assert_allclose(np.atleast_1d(got["pd"]), want["probability_detection"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.atleast_1d(got["fa"]), want["false_alarm"], rtol=0, atol=1e-15)
    if rule == "opdc":
        hiou = ours(lambda: HIoU(thresholds=thresholds, pyirstd=True), preds, masks, per_image)
        np.testing.assert_allclose(np.atleast_1d(hiou["hiou"]), want["hiou"], rtol=0, atol=1e-12)
    return got


def assert_hiou(preds, masks, bins, per_image=False):
    thresholds = None if bins == 1 else TEN
    got = ours(lambda: HIoU(thresholds=thresholds, pyirstd=True), preds, masks, per_image)
    want = oracle("hiou", preds, masks, bins)
    for key, value in want.items():
        np.testing.assert_allclose(np.atleast_1d(got[key]), value, rtol=0, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(np.atleast_1d(got["hiou"]), want["seg_iou"] * want["loc_iou"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind, bins", CASES)
@pytest.mark.parametrize("rule", ["distance", "shooting", "opdc"])
def test_pdfa_rules_equal_pyirstdmetrics(rule, kind, bins):
    got = assert_pdfa(rule, *batch(1, kind), bins)
    # Target-level precision and recall are the rule's own counts.
    assert np.allclose(got["recall"], got["pd"])
    predictions, matched = np.atleast_1d(got["predictions"]), np.atleast_1d(got["matched_predictions"])
    assert np.allclose(got["precision"], np.where(predictions > 0, matched / np.maximum(predictions, 1), 0))


@pytest.mark.parametrize("kind, bins", CASES)
def test_hiou_equals_pyirstdmetrics(kind, bins):
    assert_hiou(*batch(2, kind), bins)


@pytest.mark.parametrize("rule", ["distance", "shooting", "opdc"])
def test_per_image_loop_equals_batch(rule):
    preds, masks = batch(3, "blobs", n=3)
    assert_pdfa(rule, preds, masks, 10, per_image=True)
    assert_hiou(preds, masks, 10, per_image=True)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_randomised_sweep_equals_pyirstdmetrics(seed):
    kind = KINDS[seed % len(KINDS)]
    preds, masks = batch(100 + seed, kind, n=6, h=48, w=48)
    for bins in (1, 10):
        for rule in ("distance", "shooting", "opdc"):
            assert_pdfa(rule, preds, masks, bins)
        assert_hiou(preds, masks, bins)


# -- OPDC's paper rule (the default) ----------------------------------------------------------
def paper_opdc(pred_bin, mask, overlap=0.5, distance=3.0):
    """(matched, targets, predictions): the most pairs with IoU >= overlap at the least
    distance, then the most pairs closer than distance among the rest: dense, per image."""
    tl, pl = measure.label(mask, connectivity=2), measure.label(pred_bin, connectivity=2)
    tp_, pp_ = measure.regionprops(tl), measure.regionprops(pl)
    g, p = len(tp_), len(pp_)
    if not g or not p:
        return 0, g, p
    dist = np.array([[math.dist(a.centroid, b.centroid) for b in pp_] for a in tp_])
    iou = np.array([[np.sum((tl == a.label) & (pl == b.label)) / np.sum((tl == a.label) | (pl == b.label))
                     for b in pp_] for a in tp_])
    free_t, free_p, found = np.ones(g, bool), np.ones(p, bool), 0
    for ok in (iou >= overlap, dist < distance):
        ok = ok & free_t[:, None] & free_p[None, :]
        cost = np.where(ok, dist, dist[ok].sum() + 1.0)
        r, c = linear_sum_assignment(cost)
        keep = ok[r, c]
        free_t[r[keep]] = free_p[c[keep]] = False
        found += int(keep.sum())
    return found, g, p


@pytest.mark.parametrize("kind", ["blobs", "clutter", "equal", "chains", "empty"])
def test_default_opdc_is_the_paper_rule(kind):
    preds, masks = batch(4, kind, n=4)
    for t in (0.1, 0.3, 0.5):
        got = ours(lambda: PdFa(matching="opdc", thresholds=[t]), preds, masks)
        want = np.sum([paper_opdc(p.astype(np.float64) > t, m) for p, m in zip(preds, masks)], axis=0)
        assert (int(got["detected"][0]), int(got["targets"][0]), int(got["predictions"][0])) == tuple(want)


def test_pyirstd_counts_a_phantom_miss_on_images_without_targets():
    mask = np.zeros((2, 16, 16), bool)
    mask[0, 4:6, 4:6] = True
    pred = mask.astype(np.float32)
    pred[1, 10, 10] = 0.9  # a false alarm in the empty image
    paper = ours(lambda: PdFa(matching="opdc"), pred, mask)
    quirk = ours(lambda: PdFa(matching="opdc", pyirstd=True), pred, mask)
    assert (paper["pd"], paper["targets"]) == (1.0, 1)
    assert (quirk["pd"], quirk["targets"]) == (0.5, 2)
    assert paper["fa"] == quirk["fa"] == 1 / 512


def test_precision_recall_f1_by_hand():
    mask = np.zeros((1, 20, 20), bool)
    mask[0, 2:4, 2:4] = mask[0, 10:12, 10:12] = True
    pred = np.zeros((1, 20, 20), np.float32)
    pred[0, 2:4, 2:4] = 0.9      # found
    pred[0, 16:18, 2:4] = 0.9    # false
    pred[0, 2:4, 16:18] = 0.9    # false
    for rule in ("distance", "shooting", "opdc"):
        got = ours(lambda: PdFa(matching=rule), pred, mask)
        assert (got["precision"], got["recall"]) == (1 / 3, 1 / 2), rule
        assert got["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_thresholds_compare_as_float64():
    # float32(0.1) > 0.1 in float64; torch's own comparison would round 0.1 to float32 first.
    pred = torch.full((1, 4, 4), 0.1, dtype=torch.float32)
    target = torch.zeros(1, 4, 4, dtype=torch.bool)
    got = PdFa(matching="shooting", thresholds=[0.1, 0.2])
    got.update(pred, target)
    assert got.compute()["false_pixels"].tolist() == [16, 0]


@pytest.mark.parametrize("make, arg", [
    (lambda: PdFa(matching="nearest"), "matching"),
    (lambda: PdFa(matching="opdc", overlap=1.5), "overlap"),
    (lambda: PdFa(matching="shooting", box_radii=(4, 1)), "box_radii"),
    (lambda: PdFa(thresholds=[0.5, 1.0]), "thresholds"),
    (lambda: HIoU(distance=-1), "distance"),
])
def test_bad_arguments_name_themselves(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


@pytest.mark.parametrize("make", [lambda: PdFa(matching="opdc"), lambda: PdFa(thresholds=TEN), lambda: HIoU()])
@pytest.mark.parametrize("pred, match", [
    (torch.full((1, 8, 8), math.nan), "finite"),
    (torch.full((1, 8, 8), 2.0), r"\[0, 1\]"),
    (torch.zeros(1, 8, 9), "shape"),
])
def test_bad_maps_raise(make, pred, match):
    with pytest.raises(ValueError, match=match):
        make().update(pred, torch.zeros(1, 8, 8, dtype=torch.bool))


def test_logits_are_taken_with_logits_true():
    preds, masks = batch(5, "blobs", n=2)
    logits = torch.logit(torch.from_numpy(preds).double().clamp(1e-6, 1 - 1e-6))
    m = HIoU(logits=True)
    m.update(logits, torch.from_numpy(masks))
    want = ours(lambda: HIoU(), preds, masks)
    assert m.compute() == pytest.approx(want)
    assert set(want) == set(HIOU_KEYS)


# -- pixel measures and curves ----------------------------------------------------------------
_HANDLERS = {"iou": "IoUHandler", "precision": "PrecisionHandler", "recall": "RecallHandler", "fpr": "FPRHandler"}


def oracle_pixels(preds, masks, bins=10, threshold=0.5):
    """PyIRSTDMetrics' CMMetrics with every handler, sample-based ("s") and over the data set ("ds")."""
    handlers = {}
    for sample_based, level in ((True, "s"), (False, "ds")):
        for m in MEASURES:
            kw = {"with_dynamic": True, "with_binary": True, "sample_based": sample_based}
            handlers[f"{m}_{level}"] = (pm.FmeasureHandler(beta=0.3, **kw) if m == "fmeasure"
                                        else getattr(pm, _HANDLERS[m])(**kw))
    o = pm.CMMetrics(num_bins=bins, threshold=threshold, metric_handlers=handlers)
    for p, m in zip(preds, masks):
        o.update(p, m)
    return o.get()


@pytest.mark.parametrize("kind", KINDS)
def test_pixel_metrics_equal_pyirstdmetrics(kind):
    preds, masks = batch(7, kind)
    for bins, threshold in ((10, 0.5), (5, 0.3)):
        want = oracle_pixels(preds, masks, bins, threshold)
        got = ours(lambda: PixelMetrics(bins=bins, threshold=threshold, pyirstd=True), preds, masks)
        paper = ours(lambda: PixelMetrics(bins=bins, threshold=threshold), preds.astype(np.float64), masks)
        assert set(got) == set(pixel_keys())
        for name, value in want.items():
            assert got[f"{name}_binary"] == pytest.approx(value["binary"], abs=1e-12), name
            np.testing.assert_allclose(got[f"{name}_dynamic"], value["dynamic"], rtol=0, atol=1e-12, err_msg=name)
        # The default data-set curve is that of the summed counts: the binary rule at each edge
        # (in float64, where p > nextafter(e, -1) is p >= e).
        for edge in np.linspace(0, 1, bins)[1:-1] if bins == 5 else ():
            at = ours(lambda: PixelMetrics(bins=bins, threshold=float(np.nextafter(edge, -1))),
                      preds.astype(np.float64), masks)
            k = bins - 2 - int(round(edge * (bins - 1)))
            for m in MEASURES:
                assert float(paper[f"{m}_ds_dynamic"][k]) == pytest.approx(at[f"{m}_ds_binary"], abs=1e-12)


def test_ap_and_auc_of_a_perfect_and_a_useless_map():
    mask = np.zeros((1, 16, 16), bool)
    mask[0, 4:8, 4:8] = True
    perfect = ours(lambda: PixelMetrics(), mask.astype(np.float32), mask)
    assert (perfect["ap"], perfect["auc_roc"]) == (1.0, 1.0)
    flat = ours(lambda: PixelMetrics(), np.full((1, 16, 16), 0.5, np.float32), mask)
    assert flat["auc_roc"] == pytest.approx(0.5)
    assert flat["ap"] == pytest.approx(16 / 256)


@pytest.mark.parametrize("kwargs, arg", [({"bins": 1}, "bins"), ({"threshold": 1.0}, "threshold"),
                                         ({"beta2": 0}, "beta2")])
def test_pixel_metrics_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        PixelMetrics(**kwargs)


# -- the bundle -------------------------------------------------------------------------------
def test_bundle_all_equals_its_members():
    preds, masks = batch(8, "blobs")
    got = ours(lambda: ISTDMetrics(metrics=("all",), thresholds=TEN), preds, masks)
    basic = ours(lambda: ISTDMetrics(), preds, masks)
    assert {k: got[k] for k in basic} == basic
    opdc = ours(lambda: PdFa(matching="opdc", thresholds=TEN), preds, masks)
    shooting = ours(lambda: PdFa(matching="shooting", thresholds=TEN), preds, masks)
    hiou = ours(lambda: HIoU(thresholds=TEN), preds, masks)
    pixel = ours(lambda: PixelMetrics(), preds, masks)
    for prefix, member in (("opdc_", opdc), ("shooting_", shooting), ("", hiou), ("", pixel)):
        for k, v in member.items():
            assert torch.equal(torch.as_tensor(got[prefix + k]), torch.as_tensor(v)), prefix + k
    picked = ours(lambda: ISTDMetrics(metrics=["hiou"]), preds, masks)
    assert set(picked) == set(basic) | set(HIOU_KEYS)


@pytest.mark.parametrize("metrics", ["everything", ["iou", "nope"], [], 3])
def test_bundle_rejects_unknown_metric_names(metrics):
    with pytest.raises(ValueError, match="metrics"):
        ISTDMetrics(metrics=metrics)


def test_bundle_with_extras_rejects_a_bad_map_before_counting():
    m = ISTDMetrics(metrics=("all",))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.update(torch.full((1, 8, 8), 3.0), torch.zeros(1, 8, 8))
    assert m.compute()["images"] == 0


def test_docs_example():
    """docs/metrics.md §11, number for number."""
    t, p = np.zeros((2, 32, 32), bool), np.zeros((2, 32, 32), np.float32)
    t[0, 4:7, 4:7], p[0, 5:8, 4:7] = True, 0.9
    t[0, 20, 20], p[0, 22, 21] = True, 0.8
    t[0, 10:12, 25:27], p[0, 8:13, 23:28] = True, 0.7
    t[0, 28, 5] = True
    p[0, 2, 28:30] = p[0, 20, 24] = p[1, 16, 16] = 0.9
    table = {"distance": {}, "shooting": {"matching": "shooting"}, "opdc": {"matching": "opdc"},
             "pyirstd": {"matching": "opdc", "pyirstd": True}}
    got = {name: ours(lambda: PdFa(**kw), p, t) for name, kw in table.items()}
    want = {"distance": (75.00, 1953.12, 50.00, 60.00), "shooting": (50.00, 1464.84, 33.33, 40.00),
            "opdc": (75.00, 1953.12, 50.00, 60.00), "pyirstd": (40.00, 2441.41, 33.33, 36.36)}
    for name, (pd, fa, precision, f1) in want.items():
        g = got[name]
        assert (round(100 * g["pd"], 2), round(1e6 * g["fa"], 2), round(100 * g["precision"], 2),
                round(100 * g["f1"], 2)) == (pd, fa, precision, f1), name
    for flag, (hiou, seg, loc) in ((False, (9.43, 22.00, 42.86)), (True, (7.33, 33.00, 22.22))):
        h = ours(lambda: HIoU(pyirstd=flag), p, t)
        assert tuple(round(100 * h[k], 2) for k in ("hiou", "seg_iou", "loc_iou")) == (hiou, seg, loc)
    basic = ours(lambda: ISTDMetrics(), p, t)
    assert (round(100 * basic["iou"], 2), round(100 * basic["niou"], 2)) == (22.73, 11.63)


@pytest.mark.cuda
def test_cuda_equals_cpu():
    preds, masks = batch(9, "clutter")
    cpu = ours(lambda: ISTDMetrics(metrics=("all",), thresholds=TEN), preds, masks)
    m = ISTDMetrics(metrics=("all",), thresholds=TEN)
    m.update(torch.from_numpy(preds).cuda(), torch.from_numpy(masks).cuda())
    gpu = m.compute()
    assert set(gpu) == set(cpu)
    for k, v in cpu.items():
        assert torch.allclose(torch.as_tensor(gpu[k]).cpu().double(), torch.as_tensor(v).double(), rtol=0,
                              atol=1e-12), k
