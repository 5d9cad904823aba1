"""Confidence intervals over test images: percentile bootstrap of data-set metrics.

A test set is one sample of images; the bootstrap asks how much a data-set metric would move
had another sample of the same size been drawn. It resamples **images** with replacement
(never pixels: pixels of one image are not independent) and recomputes each metric from the
resampled per-image counts, exactly as the metric is computed on the whole set: IoU from
summed intersections and unions, Pd from summed matched and true targets, Fa from summed
false pixels and pixels, nIoU as the mean of per-image IoU. The interval covers test-set
sampling only, not the spread between training runs.

A metric is a function of summed per-image count columns (:class:`SummedMetric`), so any
count-based metric plugs in by naming its columns. Resample ``r`` draws the images
``np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))[r]``; one matrix
product of the draw counts [R, n] with the count table [n, k] gives every resample's sums.

    >>> from istd_kernels.metrics import BASIC_METRICS, bootstrap
    >>> table = {"intersection": [3, 0, 5, 2], "union": [4, 2, 5, 6]}
    >>> bootstrap(table, {"iou": BASIC_METRICS["iou"]}, ci=0.95)["iou"]   # value 10/17
    Interval(value=0.588..., low=..., high=..., undefined_resamples=0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class SummedMetric:
    """A data-set metric computed from the sums of per-image count columns.

    ``fn(*sums)`` receives one float64 array [R] per name in ``columns`` (the column summed
    over the images of each of R samples) and returns float64 [R], NaN where the metric is
    undefined (an empty denominator). ``higher_is_better`` orients comparison verdicts.
    """

    columns: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    higher_is_better: bool = True


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ratio_metric(numerator: str, denominator: str, higher_is_better: bool = True) -> SummedMetric:
    """``sum(numerator) / sum(denominator)``, undefined where the summed denominator is 0."""
    return SummedMetric((numerator, denominator), _divide, higher_is_better)


# Column names are those of the per-image rows of ``istd evaluate --per-image``; nIoU's are
# each image's IoU as scored (the empty-image rule applied) and 1 per scored image.
BASIC_METRICS: dict[str, SummedMetric] = {
    "iou": ratio_metric("intersection", "union"),
    "niou": ratio_metric("niou_score", "niou_images"),
    "pd": ratio_metric("detected", "targets"),
    "fa": ratio_metric("false_pixels", "pixels", higher_is_better=False),
}


class Interval(NamedTuple):
    """A metric on the whole set and its percentile interval; None where undefined.

    ``undefined_resamples`` counts the resamples in which the metric had no value (e.g. every
    drawn image without targets, for Pd); the interval comes from the others. From
    :func:`bootstrap_arrays`, a metric with one value per threshold or bin has nested lists.
    """

    value: float | None
    low: float | None
    high: float | None
    undefined_resamples: int


class Difference(NamedTuple):
    """``a - b`` of one metric under the same resamples, its interval and two-sided p-value."""

    a: float | None
    b: float | None
    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    undefined_resamples: int


def _check_table(counts: Mapping, name: str, arrays: bool = False) -> dict[str, np.ndarray]:
    """``counts`` as float64 columns of one length n >= 1: [n], or with ``arrays`` [n, ...]."""
    if not isinstance(counts, Mapping) or not counts:
        raise TypeError(f"{name} must be a non-empty mapping of column name -> per-image counts [n]; "
                        f"got {type(counts).__name__}")
    table = {}
    for col, values in counts.items():
        arr = np.asarray(values, dtype=np.float64)
        if (arr.ndim != 1 and not (arrays and arr.ndim > 1)) or arr.size == 0:
            raise ValueError(f"{name}[{col!r}] must be a {'[n, ...] array' if arrays else '1-D sequence'} of at "
                             f"least one number; got shape {arr.shape}")
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name}[{col!r}] must hold finite counts >= 0")
        table[col] = arr
    lengths = {col: len(a) for col, a in table.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name} columns must have one length (one entry per image); got {lengths}")
    return table


def _check_options(metrics: Mapping | None, n_resamples: int, ci: float,
                   seed: int) -> dict[str, SummedMetric]:
    metrics = BASIC_METRICS if metrics is None else metrics
    if not isinstance(metrics, Mapping) or not all(isinstance(m, SummedMetric) for m in metrics.values()):
        raise TypeError("metrics must map names to SummedMetric (e.g. BASIC_METRICS)")
    _check_resampling(n_resamples, ci, seed)
    return dict(metrics)


def _check_resampling(n_resamples: int, ci: float, seed: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an int >= 1; got {n_resamples!r}")
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1:
        raise ValueError(f"ci must be a probability strictly between 0 and 1 (e.g. 0.95); got {ci!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (the same seed gives the same intervals); got {seed!r}")


def _columns(table: dict[str, np.ndarray], metrics: dict[str, SummedMetric], name: str) -> list[str]:
    cols = sorted({c for m in metrics.values() for c in m.columns})
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)} needed by the metrics; "
                         f"it has {', '.join(table)}")
    return cols


def resample_sums(tables: list[dict[str, np.ndarray]], cols: list[str], n_resamples: int,
                  seed: int) -> list[dict[str, np.ndarray]]:
    """Per table ``{column: float64 [n_resamples, ...]}``: each column ([n] or [n, ...]) summed
    over each resample's images, the same images for every table (all tables have n rows)."""
    n = len(tables[0][cols[0]])
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    offsets = (np.arange(n_resamples, dtype=np.int64) * n)[:, None]
    weights = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
    # float64 products of integer counts are exact below 2**53
    flat = [t[c].reshape(n, -1) for t in tables for c in cols]
    sums = weights.astype(np.float64) @ np.concatenate(flat, 1)
    edges = np.cumsum([0] + [f.shape[1] for f in flat])
    k = len(cols)
    return [{c: sums[:, edges[i * k + j]:edges[i * k + j + 1]].reshape(n_resamples, *t[c].shape[1:])
             for j, c in enumerate(cols)} for i, t in enumerate(tables)]


def _evaluate(metric: SummedMetric, sums: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(metric.fn(*(sums[c] for c in metric.columns)), dtype=np.float64)


def _full(metric: SummedMetric, table: dict[str, np.ndarray]) -> float | None:
    value = float(_evaluate(metric, {c: table[c].sum(keepdims=True) for c in metric.columns})[0])
    return None if np.isnan(value) else value


def _percentiles(samples: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    kept = samples[~np.isnan(samples)]
    if kept.size == 0:
        return None, None
    low, high = np.percentile(kept, [50 * (1 - ci), 50 * (1 + ci)])
    return float(low), float(high)


def bootstrap(per_image_counts: Mapping, metrics: Mapping[str, SummedMetric] | None = None,
              n_resamples: int = 2000, ci: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Percentile bootstrap intervals of data-set metrics over test images.

    Args:
        per_image_counts: ``{column: sequence [n]}``, one entry per image, finite and >= 0
            (for :data:`BASIC_METRICS`: intersection, union, niou_score, niou_images,
            detected, targets, false_pixels, pixels).
        metrics: ``{name: SummedMetric}``; default :data:`BASIC_METRICS`.
        n_resamples: number of resamples R (>= 1).
        ci: coverage of the interval, in (0, 1): the ``(1-ci)/2`` and ``(1+ci)/2``
            percentiles of the resampled values (numpy's linear interpolation).
        seed: the resamples are a function of ``seed`` and n alone.

    Returns:
        ``{name: Interval}``; a metric undefined on the whole set (no targets for Pd,
        nothing predicted and nothing to find for IoU) has value, low and high None.

    Raises:
        TypeError, ValueError: a malformed table, a missing column, or an option out of range.
    """
    metrics = _check_options(metrics, n_resamples, ci, seed)
    table = _check_table(per_image_counts, "per_image_counts")
    sums, = resample_sums([table], _columns(table, metrics, "per_image_counts"), int(n_resamples), int(seed))
    out = {}
    for name, metric in metrics.items():
        value, samples = _full(metric, table), _evaluate(metric, sums)
        low, high = _percentiles(samples, ci) if value is not None else (None, None)
        out[name] = Interval(value, low, high, int(np.isnan(samples).sum()))
    return out


def bootstrap_arrays(per_image_counts: Mapping, values: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
                     n_resamples: int = 2000, ci: float = 0.95, seed: int = 0) -> dict[str, Interval]:
    """Percentile bootstrap of metrics that are any function of count arrays summed over
    images (the metric suite's per-threshold and per-bin values), with the resamples of
    :func:`bootstrap` (same seed, same images).

    Args:
        per_image_counts: ``{column: array [n, ...]}``, one row per image, finite and >= 0.
        values: maps ``{column: float64 [B, ...]}`` (the columns summed over the images of
            each of B samples) to ``{name: float64 [B, ...]}``, NaN where undefined.
        n_resamples, ci, seed: as for :func:`bootstrap`.

    Returns:
        ``{name: Interval}``; for a metric of shape [...] beyond the sample axis, each field
        is a nested list of that shape (None where undefined) and ``undefined_resamples``
        one count per entry.

    Raises:
        TypeError, ValueError: a malformed table or an option out of range.
    """
    _check_resampling(n_resamples, ci, seed)
    table = _check_table(per_image_counts, "per_image_counts", arrays=True)
    cols = sorted(table)
    sums, = resample_sums([table], cols, int(n_resamples), int(seed))
    full = {k: np.asarray(v, dtype=np.float64)[0]
            for k, v in values({c: table[c].sum(0, keepdims=True) for c in cols}).items()}
    out = {}
    for name, samples in values(sums).items():
        samples = np.asarray(samples, dtype=np.float64).reshape(int(n_resamples), -1)
        entries = []
        for value, column in zip(full[name].ravel(), samples.T):
            low, high = _percentiles(column, ci) if not np.isnan(value) else (None, None)
            entries.append((None if np.isnan(value) else float(value), low, high, int(np.isnan(column).sum())))
        fields = [np.array([e[i] for e in entries], dtype=object).reshape(full[name].shape).tolist() for i in range(4)]
        out[name] = Interval(*fields)
    return out


def _p_value(diffs: np.ndarray) -> float | None:
    # Two-sided: twice the smaller tail mass on either side of 0, with the +1 correction
    # that keeps a finite number of resamples from claiming p = 0.
    kept = diffs[~np.isnan(diffs)]
    if kept.size == 0:
        return None
    below, above = (kept <= 0).sum(), (kept >= 0).sum()
    return float(min(1.0, 2 * (min(below, above) + 1) / (kept.size + 1)))


def paired_bootstrap(a: Mapping, b: Mapping, metrics: Mapping[str, SummedMetric] | None = None,
                     n_resamples: int = 2000, ci: float = 0.95, seed: int = 0) -> dict[str, Difference]:
    """Paired bootstrap of ``metric(a) - metric(b)``: both tables are resampled with the same
    image indices (row i of ``a`` and of ``b`` are the same test image).

    Args: as :func:`bootstrap`; ``a`` and ``b`` have the same number of rows.

    Returns:
        ``{name: Difference}``: both values, their difference, its percentile interval and a
        two-sided p-value for "no difference" (1.0 when the resampled differences are all 0;
        at least 2 / (R + 1)). Undefined on either side gives None.
    """
    metrics = _check_options(metrics, n_resamples, ci, seed)
    ta, tb = _check_table(a, "a"), _check_table(b, "b")
    na, nb = len(next(iter(ta.values()))), len(next(iter(tb.values())))
    if na != nb:
        raise ValueError(f"a and b must hold the same images (one row each); got {na} and {nb} rows")
    cols = _columns(ta, metrics, "a")
    _columns(tb, metrics, "b")  # raises when b lacks one
    sa, sb = resample_sums([ta, tb], cols, int(n_resamples), int(seed))
    out = {}
    for name, metric in metrics.items():
        va, vb = _full(metric, ta), _full(metric, tb)
        if va is None or vb is None:
            out[name] = Difference(va, vb, None, None, None, None, int(n_resamples))
            continue
        diffs = _evaluate(metric, sa) - _evaluate(metric, sb)
        low, high = _percentiles(diffs, ci)
        out[name] = Difference(va, vb, va - vb, low, high, _p_value(diffs), int(np.isnan(diffs).sum()))
    return out
