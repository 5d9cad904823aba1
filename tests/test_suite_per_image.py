"""The metric suite per image and with error bars (issues 25 and 29): ``values`` of per-image
count tensors equal the metrics of each image alone, ``istd evaluate --per-image`` writes
every selected key, and ``--ci`` gives the suite percentile bootstrap intervals equal to a
direct recomputation loop over the resampled images."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from cli_helpers import cli
from test_cli_suite import _scene

from istd_kernels.metrics import BASIC_METRICS, bootstrap, bootstrap_arrays
from istd_kernels.metrics.bundle import ExtraMetrics

CUTS = (0.0, 0.3, 0.6)


def maps(n=6, size=20, seed=0):
    """Soft maps and masks with blobs, clutter and an image without targets."""
    rng = np.random.default_rng(seed)
    target = np.zeros((n, size, size), bool)
    for i in range(n - 1):
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(1, size - 2, 2)
            target[i, r:r + rng.integers(1, 3), c:c + rng.integers(1, 3)] = True
    pred = np.clip(target * rng.uniform(0.2, 1, target.shape) + (rng.random(target.shape) < 0.04) * 0.5, 0, 1)
    return torch.from_numpy(pred.astype(np.float32)), torch.from_numpy(target)


def per_image_table(extra: ExtraMetrics, pred, target) -> dict:
    rows = []
    for i in range(pred.shape[0]):
        extra.update(pred[i:i + 1], target[i:i + 1])
        rows.append(extra.sync())
        extra.reset()
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def test_values_per_image_equal_each_image_alone_and_their_sum_the_batch():
    pred, target = maps()
    table = per_image_table(ExtraMetrics(("all",), thresholds=CUTS), pred, target)
    extra = ExtraMetrics(("all",), thresholds=CUTS)
    per_image = extra.values(table)
    for i in range(pred.shape[0]):
        alone = ExtraMetrics(("all",), thresholds=CUTS)
        alone.update(pred[i:i + 1], target[i:i + 1])
        for k, v in alone.compute().items():
            assert _flat(per_image[k][i]) == pytest.approx(_flat(v), abs=1e-12), (k, i)
    whole = ExtraMetrics(("all",), thresholds=CUTS)
    whole.update(pred, target)
    summed = extra.compute({k: v.sum(0) for k, v in table.items()})
    for k, v in whole.compute().items():
        assert _flat(summed[k]) == pytest.approx(_flat(v), abs=1e-12), k


def _flat(v) -> list[float]:
    return np.asarray(v, dtype=np.float64).ravel().tolist()


def test_empty_ratios_are_nan_on_request():
    pred, target = maps()
    table = per_image_table(ExtraMetrics(("pdfa_opdc", "pixel")), pred, target)
    got = ExtraMetrics(("pdfa_opdc", "pixel")).values(table, empty=math.nan)
    assert math.isnan(got["opdc_pd"][-1, 0])  # the last image has no target
    assert not math.isnan(got["opdc_pd"][0, 0])
    assert ExtraMetrics(("pdfa_opdc",)).values(table)["opdc_pd"][-1, 0] == 0  # the default: 0


def test_suite_intervals_equal_a_direct_loop():
    pred, target = maps(n=7, seed=3)
    n, r, seed, ci = pred.shape[0], 40, 5, 0.8
    members = ("pdfa_shooting", "hiou", "pixel")
    extra = ExtraMetrics(members, thresholds=CUTS)
    table = {k: v.double().numpy() for k, v in per_image_table(extra, pred, target).items()}

    def values(sums):
        got = extra.values({k: torch.from_numpy(v) for k, v in sums.items()}, empty=math.nan)
        return {k: got[k].numpy() for k in ("shooting_pd", "shooting_fa", "hiou", "fmeasure_s_binary", "ap",
                                            "precision_ds_dynamic")}
    got = bootstrap_arrays(table, values, n_resamples=r, ci=ci, seed=seed)
    draws = np.random.default_rng(seed).integers(0, n, size=(r, n))
    loop = []
    for d in draws:  # the metrics recomputed on the resampled images themselves
        m = ExtraMetrics(members, thresholds=CUTS)
        m.update(pred[d], target[d])
        loop.append({k: v.numpy() for k, v in m.values(m.sync(), empty=math.nan).items()})
    for key, iv in got.items():
        samples = np.stack([v[key] for v in loop]).reshape(r, -1)
        lows, highs = np.asarray(iv.low, dtype=float).ravel(), np.asarray(iv.high, dtype=float).ravel()
        for j in range(samples.shape[1]):
            kept = samples[~np.isnan(samples[:, j]), j]
            low, high = np.percentile(kept, [50 * (1 - ci), 50 * (1 + ci)])
            assert (lows[j], highs[j]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12)), (key, j)
            assert np.asarray(iv.undefined_resamples).ravel()[j] == r - kept.size
    whole = ExtraMetrics(members, thresholds=CUTS)
    whole.update(pred, target)
    assert got["hiou"].value == pytest.approx(whole.compute()["hiou"].tolist(), abs=1e-12)


def test_array_bootstrap_resamples_as_the_basic_one():
    rng = np.random.default_rng(0)
    union = rng.integers(5, 50, 30)
    t = {"intersection": (union * rng.uniform(0, 1, 30)).astype(int), "union": union}
    want = bootstrap(t, {"iou": BASIC_METRICS["iou"]}, n_resamples=300, ci=0.9, seed=4)["iou"]
    got = bootstrap_arrays({k: np.stack([v, 2 * v], 1) for k, v in t.items()},
                           lambda s: {"iou": s["intersection"] / s["union"]}, n_resamples=300, ci=0.9, seed=4)["iou"]
    assert got.value == [pytest.approx(want.value)] * 2
    assert got.low == [pytest.approx(want.low, abs=1e-15)] * 2 and got.high == [pytest.approx(want.high, abs=1e-15)] * 2


@pytest.mark.parametrize("kwargs, match", [({"n_resamples": 0}, "n_resamples"), ({"ci": 1.0}, "ci"),
                                           ({"seed": "x"}, "seed")])
def test_array_bootstrap_bad_options(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        bootstrap_arrays({"a": np.ones((3, 2))}, lambda s: s, **kwargs)


def test_array_bootstrap_bad_tables():
    with pytest.raises(ValueError, match="one length"):
        bootstrap_arrays({"a": np.ones((3, 2)), "b": np.ones(4)}, lambda s: s)
    with pytest.raises(ValueError, match="finite counts"):
        bootstrap_arrays({"a": np.full((3, 2), np.nan)}, lambda s: s)


def test_per_image_csv_holds_every_selected_key(tmp_path, capsys):
    d, preds, masks, maps_ = _scene(tmp_path)
    rc, _, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--metrics", "all", "--thresholds", "3",
                   "--per-image", tmp_path / "p.csv")
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    cuts = (0.0, 1 / 3, 2 / 3)
    assert [r["id"] for r in rows] == sorted(masks)
    for row in rows:
        alone = ExtraMetrics(("all",), thresholds=cuts)
        alone.update(torch.from_numpy(maps_[row["id"]])[None], torch.from_numpy(masks[row["id"]])[None])
        values = alone.values(alone.sync(), empty=math.nan)
        edges = list(reversed(alone.members["pixel"].edges))
        for key, v in values.items():
            flat = v.flatten().tolist()
            names = ([key] if len(flat) == 1 else [f"{key}@>={e:g}" for e in edges] if key.endswith("_dynamic")
                     else [f"{key}@>{t:g}" for t in cuts])
            for name, want in zip(names, flat, strict=True):
                cell = row[name]
                assert (cell == "") if want != want else float(cell) == pytest.approx(want, rel=1e-9), (name, cell)


def test_ci_covers_the_suite_in_json_and_table(tmp_path, capsys):
    d, preds, _, _ = _scene(tmp_path)
    rc, out, _ = cli(capsys, "evaluate", "--pred", preds, "--data", d, "--metrics", "pdfa_opdc,pixel",
                     "--thresholds", "2", "--ci", "0.9", "--bootstrap", "200", "--json", tmp_path / "r.json")
    assert rc == 0
    r = json.loads((tmp_path / "r.json").read_text())
    suite = r["intervals"]["suite"]
    ratios = {k for k, v in r["metrics"].items() if not k.startswith("opdc_") or k[5:] in
              ("pd", "fa", "precision", "recall", "f1")}
    assert set(suite) == ratios
    for k in ratios:
        assert suite[k]["value"] == pytest.approx(r["metrics"][k], abs=1e-12), k
    lows, highs = np.asarray(suite["opdc_pd"]["low"], float), np.asarray(suite["opdc_pd"]["high"], float)
    assert (lows <= np.asarray(suite["opdc_pd"]["value"])).all() and (highs >= lows).all()
    assert "the suite's printed metrics" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("opdc_pd (%)"))
    assert line.count("[") == 2
