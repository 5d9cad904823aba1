"""Issue 25's input rule for every metric class, basic and suite: mismatched shapes, non-finite
maps, values outside [0, 1] without ``logits=True`` and unknown rule names raise a ValueError
naming the argument, before any count changes; probabilities, 0/255 integer maps, bool maps
and logits with ``logits=True`` pass."""

from __future__ import annotations

import math

import pytest
import torch

from istd_kernels.metrics import ROC, HIoU, IoU, ISTDMetrics, NIoU, PdFa, PixelMetrics

METRICS = {
    "iou": lambda **kw: IoU(**kw),
    "niou": lambda **kw: NIoU(**kw),
    "pdfa": lambda **kw: PdFa(**kw),
    "pdfa_swept": lambda **kw: PdFa(thresholds=[0.2, 0.5], **kw),
    "pdfa_shooting": lambda **kw: PdFa(matching="shooting", **kw),
    "pdfa_opdc": lambda **kw: PdFa(matching="opdc", **kw),
    "hiou": lambda **kw: HIoU(**kw),
    "pixel": lambda **kw: PixelMetrics(**kw),
    "roc": lambda **kw: ROC([0.3, 0.5], **kw),
    "bundle": lambda **kw: ISTDMetrics(**kw),
    "bundle_all": lambda **kw: ISTDMetrics(metrics=("all",), **kw),
}
TARGET = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
TARGET[:, :, 2:4, 2:4] = 1


def _prob():
    return torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _with(value):
    p = _prob()
    p[1, 0, 5, 5] = value
    return p


BAD_MAPS = {
    "nan": (lambda: _with(math.nan), "pred must be finite"),
    "inf": (lambda: _with(math.inf), "pred must be finite"),
    "-inf": (lambda: _with(-math.inf), "pred must be finite"),
    "above_one": (lambda: _with(1.5), r"pred must hold probabilities in \[0, 1\] \(or pass logits=True\)"),
    "below_zero": (lambda: _with(-0.25), r"pred must hold probabilities in \[0, 1\] \(or pass logits=True\)"),
    "logits": (lambda: torch.logit(_prob().double().clamp(0.01, 0.99)).float(), "logits=True"),
    "shape": (lambda: torch.rand(2, 1, 8, 9), "pred and target must have the same shape"),
    "channels": (lambda: torch.rand(2, 3, 8, 8), "pred must be"),
}


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("bad", BAD_MAPS)
def test_bad_maps_raise_before_counting(name, bad):
    make_pred, match = BAD_MAPS[bad]
    m = METRICS[name]()
    m.update(_prob(), TARGET)
    want = m.compute()
    with pytest.raises(ValueError, match=match):
        m.update(make_pred(), TARGET)
    _assert_same(m.compute(), want)  # the bad batch left no trace


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_logits_raise_too(name, bad):
    with pytest.raises(ValueError, match="pred must be finite"):
        METRICS[name](logits=True).update(BAD_MAPS[bad][0](), TARGET)


@pytest.mark.parametrize("name", METRICS)
def test_good_maps_pass(name):
    prob = _prob()
    m = METRICS[name]()
    m.update(prob, TARGET)
    m.update((prob > 0.5).to(torch.uint8) * 255, TARGET)  # 0/255 integer maps are masks
    m.update(prob > 0.5, TARGET.bool())
    m.compute()
    with_logits = METRICS[name](logits=True)
    with_logits.update(torch.logit(prob.double().clamp(0.01, 0.99)).float(), TARGET)
    with_logits.compute()


@pytest.mark.parametrize("make, arg", [
    (lambda: PdFa(matching="nearest"), "matching"),
    (lambda: ISTDMetrics(metrics=("pdfa_nearest",)), "metrics"),
    (lambda: NIoU(empty_as="skip"), "empty_as"),
    (lambda: IoU(logits="yes"), "logits"),
    (lambda: HIoU(logits=2), "logits"),
])
def test_unknown_rule_names_name_their_argument(make, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        make()


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(got[k], v), k
        else:
            assert got[k] == v, k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["iou", "niou", "pdfa", "roc", "bundle"])
def test_on_a_gpu_the_basic_metrics_raise_at_compute(name):
    m = METRICS[name]()
    m.update(_with(2.0).cuda(), TARGET.cuda())  # no host sync in update
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.compute()
    m.reset()
    m.update(torch.logit(_prob().clamp(0.01, 0.99)).cuda(), TARGET.cuda())
    with pytest.raises(ValueError, match="logits=True"):
        m.compute()
