"""Pixel-level metrics: IoU over the data set and nIoU (mean of per-image IoU), docs/metrics.md §2-§3."""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import _dispatch
from ..ops.mask_stats import OVERLAP_OP
from ._base import Metric, binarize_pred, binarize_target, check_flag, check_pair, ratio


def intersection_union(pred_bin: Tensor, target_bin: Tensor, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """Per-image |P and T| and |P or T| (int64 [N]) of bool [N, H, W] maps.

    On the CPU the C++ extension counts both in one pass over the bytes; torch's reductions
    of bool maps widen them to int64 first and were 10-20x slower on 64 x 512 x 512 masks.
    """
    name = _dispatch.choose(OVERLAP_OP, pred_bin.device, torch.float32, backend)
    return _dispatch.impl(OVERLAP_OP, name).forward(pred_bin, target_bin)


class _OverlapMetric(Metric):
    """A metric fed by the per-image overlap counts of each batch (subclasses define ``_add``).

    ``update`` raises ValueError for mismatched shapes, a non-finite ``pred`` or (without
    ``logits``) one outside [0, 1] (on a GPU at ``compute``: :class:`._base.ValueCheck`).
    """

    def __init__(self, logits: bool = False, distributed: bool = True) -> None:
        self.logits = check_flag(logits, "logits")
        super().__init__(distributed)

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        self.value_check.see(p, self.logits)
        self._add(*intersection_union(binarize_pred(p, self.logits), binarize_target(t)), p.device)

    def _add(self, inter: Tensor, union: Tensor, device: torch.device) -> None:
        raise NotImplementedError


class IoU(_OverlapMetric):
    """Data-set IoU: sum over images of |P and T| / sum over images of |P or T|.

    ``compute()`` -> ``{"iou", "intersection", "union"}``; IoU is 0.0 when the union is
    empty (nothing predicted and nothing to find in the whole data set).
    """

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        return {"intersection": torch.zeros((), dtype=torch.int64, device=device),
                "union": torch.zeros((), dtype=torch.int64, device=device)}

    def _add(self, inter: Tensor, union: Tensor, device: torch.device) -> None:
        state = self._on(device)
        state["intersection"] += inter.sum()
        state["union"] += union.sum()

    def compute(self) -> dict:
        c = {k: int(v) for k, v in self.sync().items()}
        return {"iou": ratio(c["intersection"], c["union"]), **c}


class NIoU(_OverlapMetric):
    """nIoU: the mean over images of each image's IoU.

    An image where both P and T are empty has no IoU; the reference implementation scores it
    0 (its IoU is inter / (eps + union)), which is the default ``empty_as="zero"``.
    ``empty_as="one"`` scores it 1 (a correct "nothing here"). ``compute()`` ->
    ``{"niou", "images"}``.
    """

    def __init__(self, empty_as: str = "zero", logits: bool = False, distributed: bool = True) -> None:
        if empty_as not in ("zero", "one"):
            raise ValueError(f'empty_as must be "zero" or "one"; got {empty_as!r}')
        self.empty_as = empty_as
        super().__init__(logits, distributed)

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        # float64: a sum of per-image ratios; over 1e6 images the rounding stays < 1e-9.
        return {"iou_sum": torch.zeros((), dtype=torch.float64, device=device),
                "images": torch.zeros((), dtype=torch.int64, device=device)}

    def _add(self, inter: Tensor, union: Tensor, device: torch.device) -> None:
        state = self._on(device)
        empty_score = 1.0 if self.empty_as == "one" else 0.0
        per_image = torch.where(union > 0, inter.double() / union.clamp(min=1).double(), empty_score)
        state["iou_sum"] += per_image.sum()
        state["images"] += inter.shape[0]

    def compute(self) -> dict:
        c = self.sync()
        images = int(c["images"])
        return {"niou": ratio(float(c["iou_sum"]), images), "images": images}
