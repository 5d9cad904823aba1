"""Hierarchical IoU (hIoU) with its error analysis, as PyIRSTDMetrics 1.0.2 defines it.

Targets and predicted components are matched by OPDC (:func:`.rules.opdc_image`). Over the
TP matched pairs, FP unmatched predictions and FN unmatched targets of the data set:

    seg_iou = mean IoU of the matched pairs          loc_iou = TP / (TP + FP + FN)
    hiou    = seg_iou * loc_iou

``seg_iou`` misses 1 by the matched pairs' pixel errors, each a share of the pair's union
averaged over the pairs: ``seg_mrg_err`` (predicted pixels on other targets: merged
targets), ``seg_itf_err`` (other false pixels: interference) and ``seg_pcp_err`` (missed
target pixels: perception). ``loc_iou`` misses 1 by the unmatched components, each counted
once over TP + FP + FN: ``loc_itf_err`` (predictions with no candidate target at all),
``loc_pcp_err`` (targets with no candidate prediction), ``loc_m2s_err`` (predictions that
had a candidate but lost it in the assignment: many-to-single) and ``loc_s2m_err`` (the
same for targets: single-to-many). A candidate pair has IoU >= ``overlap`` or centroids
closer than ``distance``. docs/metrics.md has the formulas.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import rules
from ._base import Metric, binarize_target, check_backend, check_flag, check_pair, check_values
from .pdfa import check_matching_args, check_overlap, rates
from .sweep import check_thresholds, cut_maps, levels

HIOU_KEYS = ("hiou", "seg_iou", "seg_mrg_err", "seg_itf_err", "seg_pcp_err", "loc_iou", "loc_s2m_err",
             "loc_m2s_err", "loc_itf_err", "loc_pcp_err")


class HIoU(Metric):
    """hIoU and its error terms accumulated over a data set.

    Args:
        overlap, distance: OPDC's IoU and centroid-distance thresholds.
        thresholds: None (``pred > 0.5``, or logit > 0) or probabilities in [0, 1) (see
            :mod:`.sweep`): every value is then a float64 tensor with one entry per threshold.
        connectivity: 8 (PyIRSTDMetrics) or 4.
        pyirstd: match as PyIRSTDMetrics 1.0.2 does (see :class:`.PdFa`), which its
            numbers equal then.
        logits, backend, distributed: as for :class:`.PdFa`.

    ``compute()`` -> the :data:`HIOU_KEYS` (floats, or tensors with ``thresholds``); a
    ratio with an empty denominator is 0.

    Raises ValueError for mismatched shapes, a non-finite ``pred``, or (without ``logits``)
    one outside [0, 1].
    """

    def __init__(self, overlap: float = 0.5, distance: float = 3.0, thresholds=None, connectivity: int = 8,
                 logits: bool = False, backend: str | None = None, distributed: bool = True,
                 pyirstd: bool = False) -> None:
        self.distance, self.connectivity = check_matching_args(distance, connectivity)
        self.overlap = check_overlap(overlap)
        self.thresholds = check_thresholds(thresholds)
        self.logits = check_flag(logits, "logits")
        self.backend = check_backend(backend)
        self.pyirstd = check_flag(pyirstd, "pyirstd")
        super().__init__(distributed)

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        k = 1 if self.thresholds is None else len(self.thresholds)
        # float64 sums: the counts stay exact integers far past any data set's size.
        return {"opdc_sums": torch.zeros(k, len(rules.OPDC_FIELDS), dtype=torch.float64, device=device)}

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        check_values(p, self.logits)
        if p.shape[0] == 0:
            return
        values, cuts = levels(p, self.thresholds, self.logits)
        add = self.sweep(binarize_target(t), values, cuts)
        for k, pred_bin in enumerate(cut_maps(values, cuts)):
            add(k, pred_bin, None, {})

    def sweep(self, target_bin: Tensor, values: Tensor, cuts: tuple[float, ...], target: rules.Labelled | None = None):
        """As :meth:`.PdFa.sweep`: ``add(k, pred_bin, pred, shared)`` counts cut ``k``."""
        state = self._on(values.device)
        if target is None:
            target = rules.label(target_bin, self.connectivity, self.backend, index=True)
        pixels = values.shape[1] * values.shape[2]

        def add(k: int, pred_bin: Tensor, pred: rules.Labelled | None, shared: dict) -> None:
            if pred is None:
                pred = rules.label(pred_bin, self.connectivity, self.backend)
            sums = rules.opdc_sums_of(shared, target, pred, pixels, self.overlap, self.distance, self.pyirstd)
            state["opdc_sums"][k] += torch.from_numpy(sums).to(values.device)
        return add

    def values(self, c: dict[str, Tensor], empty: float = 0.0) -> dict[str, Tensor]:
        """The :data:`HIOU_KEYS` (float64 [..., K]) from the state's ``opdc_sums`` [..., K, F]
        with any leading dims (per image, per resample); ``empty`` as for :meth:`.PdFa.values`."""
        sums = c["opdc_sums"]
        s = {f: sums[..., i] for i, f in enumerate(rules.OPDC_FIELDS)}
        tp, objects = s["tp"], s["tp"] + s["fp_objs"] + s["fn_objs"]
        out = {"seg_iou": rates(s["tp_iou"], tp, empty), "seg_mrg_err": rates(s["seg_mrg"], tp, empty),
               "seg_itf_err": rates(s["seg_itf"], tp, empty), "seg_pcp_err": rates(s["seg_pcp"], tp, empty),
               "loc_iou": rates(tp, objects, empty)}
        out.update({f"loc_{f}_err": rates(s[f], objects, empty) for f in ("s2m", "m2s", "itf", "pcp")})
        return {"hiou": out["seg_iou"] * out["loc_iou"], **out}

    def compute(self) -> dict:
        return self.present(self.values({"opdc_sums": self.sync()["opdc_sums"].cpu()}))

    def present(self, out: dict[str, Tensor]) -> dict:
        """``compute()``'s form of :meth:`values` (without leading dims)."""
        if self.thresholds is None:
            return {k: float(v[0]) for k, v in out.items()}
        return out
