"""The metric set the ISTD papers report (IoU, nIoU, Pd, Fa), updated together."""

from __future__ import annotations

from torch import Tensor

from ._base import RangeCheck, binarize_pred, binarize_target, check_pair
from ._fused import measure_pair
from .pdfa import PdFa
from .pixel import IoU, NIoU, intersection_union


class ISTDMetrics:
    """IoU, nIoU and Pd/Fa over the same predictions.

    ``compute()`` -> ``{"iou", "niou", "pd", "fa"}`` and the raw counts
    (``intersection, union, images, detected, targets, false_pixels, pixels``). Values are
    fractions; the paper tables print IoU, nIoU and Pd in percent and Fa x 1e-6.

    On the CPU with the C++ extension, ``update`` reads each batch once: thresholding,
    overlap counts and the components of both maps come from one pass that builds no label
    images (``backend="torch"`` takes the separate ops instead).
    """

    def __init__(self, distance: float = 3.0, logits: bool = False, legacy: bool = False,
                 empty_as: str = "zero", connectivity: int = 8, backend: str | None = None,
                 distributed: bool = True) -> None:
        self.iou = IoU(logits=logits, distributed=distributed)
        self.niou = NIoU(empty_as=empty_as, logits=logits, distributed=distributed)
        self.pdfa = PdFa(distance=distance, connectivity=connectivity, legacy=legacy, logits=logits,
                         backend=backend, distributed=distributed)
        self.logits = self.iou.logits
        self.range_check = RangeCheck()

    def _metrics(self):
        return (self.iou, self.niou, self.pdfa)

    def update(self, pred: Tensor, target: Tensor) -> None:
        # Checked, thresholded and counted once for all members; a bad batch raises before
        # any member changes.
        p, t = check_pair(pred, target)
        self.range_check.see(p, self.logits)
        fused = measure_pair(p, t, 0.0 if self.logits else 0.5, self.pdfa.connectivity, self.pdfa.backend)
        if fused is not None:
            inter, union = fused.inter, fused.union
            self.pdfa._add_measured(fused.target_counts, fused.target_centroid, fused.pred_counts,
                                    fused.pred_area, fused.pred_centroid, p.numel())
        else:
            pred_bin, target_bin = binarize_pred(p, self.logits), binarize_target(t)
            inter, union = intersection_union(pred_bin, target_bin)
            self.pdfa._add(pred_bin, target_bin)
        self.iou._add(inter, union, p.device)
        self.niou._add(inter, union, p.device)

    __call__ = update

    def compute(self) -> dict:
        self.range_check.flush()
        out: dict = {}
        for m in self._metrics():
            out.update(m.compute())
        head = {k: out.pop(k) for k in ("iou", "niou", "pd", "fa")}
        return {**head, **out}

    def sync(self) -> dict:
        """The members' count tensors, summed over processes when running distributed."""
        self.range_check.flush()
        out: dict = {}
        for m in self._metrics():
            out.update(m.sync())
        return out

    def reset(self) -> None:
        for m in self._metrics():
            m.reset()
