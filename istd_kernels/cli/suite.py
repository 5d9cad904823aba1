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


def suite_rows(values: dict, thresholds: tuple[float, ...] | None) -> list[list[str]]:
    """The table (header first) of the printed keys of ``values`` (an ExtraMetrics result,
    :func:`jsonable`), one column per threshold."""
    cuts = thresholds or (0.5,)
    rows = [["metric", *(f"> {t:g}" for t in cuts)]]
    keys = [p + k for p in ("shooting_", "opdc_") for k in _PDFA_ROWS] + [
        "hiou", "seg_iou", "seg_mrg_err", "seg_itf_err", "seg_pcp_err", "loc_iou", "loc_s2m_err", "loc_m2s_err",
        "loc_itf_err", "loc_pcp_err"]
    for key in keys:
        if key in values:
            per = values[key] if isinstance(values[key], list) else [values[key]]
            fa = key.endswith("_fa")
            rows.append([key + (" (x1e-6)" if fa else " (%)"), *(f"{v * (1e6 if fa else 100):.2f}" for v in per)])
    for key in _PIXEL_ROWS:  # at --threshold whatever the sweep
        if key in values:
            rows.append([key + " (%)", f"{100 * values[key]:.2f}", *([""] * (len(cuts) - 1))])
    return rows
