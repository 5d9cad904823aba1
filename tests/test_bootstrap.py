"""The bootstrap of :mod:`istd_kernels.metrics.bootstrap` against a direct loop, its scaling
with the number of images, paired differences, undefined metrics and bad arguments."""

import numpy as np
import pytest

from istd_kernels.metrics import BASIC_METRICS, bootstrap, paired_bootstrap, ratio_metric


def table(n=60, seed=0):
    """A per-image count table with the columns of BASIC_METRICS (512x512 images)."""
    rng = np.random.default_rng(seed)
    union = rng.integers(20, 200, n)
    inter = (union * rng.uniform(0.2, 0.9, n)).astype(int)
    targets = rng.integers(1, 4, n)
    return {"intersection": inter, "union": union, "niou_score": inter / union, "niou_images": np.ones(n),
            "detected": np.minimum(targets, rng.integers(0, 4, n)), "targets": targets,
            "false_pixels": rng.integers(0, 40, n), "pixels": np.full(n, 512 * 512)}


def test_iou_equals_a_recomputation_loop():
    t, r, seed, ci = table(50), 300, 7, 0.9
    got = bootstrap(t, {"iou": BASIC_METRICS["iou"]}, n_resamples=r, ci=ci, seed=seed)["iou"]
    draws = np.random.default_rng(seed).integers(0, 50, size=(r, 50))
    loop = [t["intersection"][d].sum() / t["union"][d].sum() for d in draws]
    low, high = np.percentile(loop, [5, 95])
    assert got.value == t["intersection"].sum() / t["union"].sum()
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-15), pytest.approx(high, abs=1e-15))
    assert got.undefined_resamples == 0


def test_every_basic_metric_matches_the_loop():
    t, r = table(30, 1), 200
    got = bootstrap(t, n_resamples=r, ci=0.95, seed=2)
    draws = np.random.default_rng(2).integers(0, 30, size=(r, 30))
    for name, (num, den) in {"niou": ("niou_score", "niou_images"), "pd": ("detected", "targets"),
                             "fa": ("false_pixels", "pixels")}.items():
        loop = [t[num][d].sum() / t[den][d].sum() for d in draws]
        assert got[name].low == pytest.approx(np.percentile(loop, 2.5), rel=1e-12), name
        assert got[name].high == pytest.approx(np.percentile(loop, 97.5), rel=1e-12), name


def width(iv):
    return iv.high - iv.low


@pytest.mark.parametrize("tiles", [4, 16])
def test_intervals_shrink_as_one_over_sqrt_n(tiles):
    t = table(100, 3)
    tiled = {k: np.tile(v, tiles) for k, v in t.items()}
    base, big = bootstrap(t, n_resamples=2000, seed=0), bootstrap(tiled, n_resamples=2000, seed=0)
    for name in BASIC_METRICS:
        assert big[name].value == pytest.approx(base[name].value, rel=1e-12)
        assert width(big[name]) / width(base[name]) == pytest.approx(1 / np.sqrt(tiles), rel=0.15), name


def test_same_seed_same_interval_other_seed_other():
    t = table()
    assert bootstrap(t, seed=5) == bootstrap(t, seed=5)
    assert bootstrap(t, seed=5)["iou"] != bootstrap(t, seed=6)["iou"]


def test_identical_tables_differ_by_zero_with_p_one():
    t = table()
    for name, d in paired_bootstrap(t, {k: v.copy() for k, v in t.items()}, n_resamples=500).items():
        assert d.diff == 0 and d.low <= 0 <= d.high and d.p_value == 1.0, name


def degraded(t, fraction=0.3, seed=0):
    """``t`` with every target missed and nothing overlapping on ``fraction`` of the images."""
    hit = np.random.default_rng(seed).permutation(len(t["union"]))[:int(fraction * len(t["union"]))]
    out = {k: np.array(v, dtype=float) for k, v in t.items()}
    for k in ("intersection", "niou_score", "detected"):
        out[k][hit] = 0
    return out


def test_a_planted_difference_is_significant():
    t = table(80)
    d = paired_bootstrap(t, degraded(t), n_resamples=2000, seed=0)
    for name in ("iou", "niou", "pd"):
        assert d[name].diff > 0 and d[name].low > 0, name
        assert d[name].p_value == pytest.approx(2 / 2001), name    # every resampled difference > 0
    assert d["fa"].diff == 0 and d["fa"].p_value == 1.0


def test_no_targets_and_no_positives_are_undefined_not_nan():
    n = 10
    empty = {"intersection": np.zeros(n), "union": np.zeros(n), "niou_score": np.zeros(n),
             "niou_images": np.zeros(n), "detected": np.zeros(n), "targets": np.zeros(n),
             "false_pixels": np.zeros(n), "pixels": np.full(n, 64)}
    got = bootstrap(empty, n_resamples=100)
    for name in ("iou", "niou", "pd"):
        assert got[name][:3] == (None, None, None), name
    assert got["fa"][:3] == (0.0, 0.0, 0.0)
    d = paired_bootstrap(empty, empty, n_resamples=100)["pd"]
    assert (d.diff, d.low, d.high, d.p_value) == (None, None, None, None)


def test_resamples_without_targets_are_counted_and_left_out():
    t = table(20)
    t["targets"] = np.zeros(20, int)
    t["detected"] = np.zeros(20, int)
    t["targets"][0] = t["detected"][0] = 2    # one image holds every target
    got = bootstrap(t, n_resamples=1000, seed=0)["pd"]
    assert got.value == 1.0 and (got.low, got.high) == (1.0, 1.0)
    assert 300 < got.undefined_resamples < 420     # (19/20)^20 = 36 % of resamples miss image 0


def test_a_custom_metric_of_summed_columns():
    t = {"tp": [3, 1, 0], "fp": [1, 1, 2]}
    m = ratio_metric("tp", "fp")
    assert bootstrap(t, {"tp_per_fp": m}, n_resamples=100)["tp_per_fp"].value == 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"ci": 1.0}, "ci must be"), ({"ci": 0}, "ci must be"), ({"n_resamples": 0}, "n_resamples"),
    ({"seed": 1.5}, "seed"), ({"metrics": {"x": 1}}, "SummedMetric"),
])
def test_bad_options(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        bootstrap(table(), **kwargs)


def test_bad_tables():
    t = table()
    with pytest.raises(ValueError, match="lacks column"):
        bootstrap({k: v for k, v in t.items() if k != "union"})
    with pytest.raises(ValueError, match="one length"):
        bootstrap({**t, "union": t["union"][:-1]})
    with pytest.raises(ValueError, match="finite counts >= 0"):
        bootstrap({**t, "union": -t["union"]})
    with pytest.raises(TypeError, match="mapping"):
        bootstrap([1, 2])
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(t, table(61))
