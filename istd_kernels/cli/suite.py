"""``istd evaluate --metrics ... --thresholds K``: the metrics beyond IoU, nIoU, Pd and Fa
(:class:`~istd_kernels.metrics.bundle.ExtraMetrics`), their table in the papers' units and
their JSON form.
"""

from __future__ import annotations

from . import CLIError

# Printed rows (the curves and raw counts go to --json only); Fa-like rows print x 1e-6,
# every other row in percent.
_PDFA_ROWS = ("pd", "fa", "precision", "recall", "f1")
_PIXEL_ROWS = tuple(f"{m}_{level}_binary" for level in ("ds", "s")
                    for m in ("iou", "precision", "recall", "fmeasure", "fpr")) + ("ap", "auc_roc")


def parse_metrics(text: str) -> tuple[str, ...]:
    """``--metrics`` (basic, all, or a comma list of names) as the names it chooses."""
    from ..metrics.bundle import check_metric_names
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    try:
        check_metric_names(names)
    except ValueError as e:
        raise CLIError(f"--metrics: {e}") from None
    return names


def suite_thresholds(k: int, threshold: float) -> tuple[float, ...] | None:
    """The sweep of ``--thresholds K`` (0, 1/K, ..., (K-1)/K, as PyIRSTDMetrics' num_bins=K),
    or for K = 1 the one ``--threshold`` cut (None at the default 0.5)."""
    from ..metrics.sweep import linspace_thresholds
    if k == 1:
        return None if threshold == 0.5 else (threshold,)
    return linspace_thresholds(k)


def jsonable(values: dict) -> dict:
    """Tensors as lists, numbers as they are."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in values.items()}


def suite_rows(values: dict, thresholds: tuple[float, ...] | None, intervals: dict | None = None) -> list[list[str]]:
    """The table (header first) of the printed keys of ``values`` (an ExtraMetrics result,
    :func:`jsonable`), one column per threshold; with ``intervals`` (``{key: Interval}``,
    :func:`.intervals.suite_intervals`) each cell is ``value [low, high]``."""
    from .intervals import fmt, fmt_interval
    cuts = thresholds or (0.5,)
    rows = [["metric", *(f"> {t:g}" for t in cuts)]]
    keys = [p + k for p in ("shooting_", "opdc_") for k in _PDFA_ROWS] + [
        "hiou", "seg_iou", "seg_mrg_err", "seg_itf_err", "seg_pcp_err", "loc_iou", "loc_s2m_err", "loc_m2s_err",
        "loc_itf_err", "loc_pcp_err"] + list(_PIXEL_ROWS)
    for key in (k for k in keys if k in values):
        if intervals is None:
            cells = [fmt(v, key) for v in _listed(values[key])]
        else:
            cells = [fmt_interval(*triple, key) for triple in zip(*(_listed(x) for x in intervals[key][:3]))]
        label = key + (" (x1e-6)" if key.endswith("_fa") else " (%)")
        rows.append([label, *cells, *([""] * (len(cuts) - len(cells)))])  # pixel rows: at --threshold
    return rows


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def per_image_columns(values: dict, thresholds: tuple[float, ...] | None,
                      curve_edges: list[float]) -> tuple[list[str], list[list]]:
    """``(header, cells per image)`` of the suite's per-image values (``Scorer.extra_per_image``:
    ``{key: [n, ...]}``) for the ``--per-image`` CSV. A key with one value per threshold of
    the sweep gets one column each, ``KEY@>T``; a pixel curve one per point, ``KEY@>=EDGE``
    (``curve_edges``, the curve's order); a key with one value just ``KEY``. Counts are
    written as integers, ratios with 10 significant digits, undefined values (NaN) empty."""
    header, columns = [], []
    for key, v in values.items():
        flat = v.reshape(v.shape[0], -1)
        if flat.shape[1] == 1:
            names = [key]
        elif key.endswith("_dynamic"):
            names = [f"{key}@>={e:g}" for e in curve_edges]
        else:
            names = [f"{key}@>{t:g}" for t in thresholds]
        header += names
        columns += [[_cell(x) for x in flat[:, j].tolist()] for j in range(flat.shape[1])]
    return header, [list(row) for row in zip(*columns)]


def _cell(x) -> str | int:
    if isinstance(x, int):
        return x
    return "" if x != x else f"{x:.10g}"  # x != x: NaN, an undefined ratio


def report_suite_intervals(named_scorers, args, blocks: list[dict]) -> None:
    """``--ci`` with ``--metrics``: print each scorer's suite table with ``value [low, high]``
    cells and add its intervals to its JSON block (``blocks``, from ``report_intervals``)."""
    from .compare import render_table
    from .intervals import suite_intervals
    for (name, scorer), block in zip(named_scorers, blocks):
        if scorer.extra:
            found = suite_intervals(scorer, args)
            rows = suite_rows({k: iv.value for k, iv in found.items()}, scorer.sweep, found)
            print(f"{name}, the suite's printed metrics:\n{render_table(rows, 'text')}")
            block["suite"] = {k: iv._asdict() for k, iv in found.items()}

