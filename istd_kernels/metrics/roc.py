"""Threshold sweeps: pixel TPR/FPR and object Pd/Fa per threshold, docs/metrics.md §5.

Each ``update`` binarises the prediction at every threshold at once, stacks the binary maps
along the batch dimension and runs the pixel counts and the Pd/Fa matching of
:mod:`.pdfa` on that stack, so a sweep costs a few batched calls rather than one pass per
threshold. Thresholds are processed in chunks that keep the stack under a fixed number of
pixels, which bounds memory for long sweeps on large batches.

On the CPU with the C++ extension, float32 maps take a path without the stack: one fused
pass per threshold (:mod:`._fused`) reads the map, thresholds it on the fly and measures
it with the target, which is far cheaper than writing and re-reading T binary maps.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from . import roc_plot
from ._base import Metric, binarize_target, check_backend, check_flag, check_pair, ratio
from ._fused import measure_pair
from .pdfa import check_matching_args, match, measure
from .pixel import intersection_union

_STACK_PIXELS = 1 << 25
_PER_THRESHOLD = ("tp", "fp", "fn", "tn", "detected", "false_pixels")


def _check_thresholds(thresholds: object) -> Tensor:
    """``thresholds`` as a float64 CPU tensor [T] of probabilities in [0, 1]."""
    expected = "a non-empty 1-D tensor or sequence of probabilities in [0, 1]"
    if isinstance(thresholds, (str, bytes)) or not isinstance(thresholds, (Tensor, Iterable)):
        raise TypeError(f"thresholds must be {expected}; got {thresholds!r}")
    if not isinstance(thresholds, Tensor):
        items = thresholds if hasattr(thresholds, "__array__") else list(thresholds)  # numpy: as a whole
        try:
            if any(isinstance(v, (bool, str, bytes)) for v in items):
                raise TypeError("booleans or strings")
            thresholds = torch.as_tensor(items, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"thresholds must be {expected}; got {items!r}") from None
    if thresholds.dtype in (torch.bool, torch.complex64, torch.complex128) or thresholds.is_meta:
        raise TypeError(f"thresholds must be {expected}; got a {thresholds.dtype} tensor on {thresholds.device}")
    t = thresholds.detach().to("cpu", torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"thresholds must be {expected}; got shape {tuple(t.shape)}")
    outside = t[~((t >= 0) & (t <= 1))]  # NaN included
    if outside.numel():
        raise ValueError(f"thresholds must be {expected}; got {outside.tolist()}")
    return t


class ROC(Metric):
    """Pixel TPR/FPR and object Pd/Fa at each of ``thresholds``.

    Args:
        thresholds: 1-D tensor or sequence of probabilities; a pixel is positive when its
            probability is > the threshold (so 0.5 gives the binary rule of docs/metrics.md §1).
        logits: ``pred`` holds logits; the comparison is then ``logit > log(t / (1 - t))``,
            which at t = 0.5 is exactly the ``logit > 0`` rule of the other metrics.
        distance, connectivity, legacy, backend: as for :class:`~.pdfa.PdFa`.

    Bool and integer predictions are read as the numbers they hold (0/1, 0/255).
    ``compute()`` returns lists, one entry per threshold in the order given:
    ``thresholds, tpr, fpr, pd, fa`` and the raw counts ``tp, fp, fn, tn, detected,
    false_pixels``, plus the scalars ``targets`` and ``pixels``.

    Raises ValueError for mismatched shapes, a non-finite ``pred`` or (without ``logits``)
    one outside [0, 1] (on a GPU at ``compute``: :class:`._base.ValueCheck`).
    """

    def __init__(self, thresholds: Tensor | Sequence[float], logits: bool = False,
                 distance: float = 3.0, connectivity: int = 8, legacy: bool = False,
                 backend: str | None = None, distributed: bool = True) -> None:
        self.thresholds = _check_thresholds(thresholds)
        self.logits = check_flag(logits, "logits")
        self.distance, self.connectivity = check_matching_args(distance, connectivity)
        self.legacy = check_flag(legacy, "legacy")
        self.backend = check_backend(backend)
        super().__init__(distributed)

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        n = self.thresholds.numel()
        state = {k: torch.zeros(n, dtype=torch.int64, device=device) for k in _PER_THRESHOLD}
        state["targets"] = torch.zeros((), dtype=torch.int64, device=device)
        state["pixels"] = torch.zeros((), dtype=torch.int64, device=device)
        return state

    def _levels(self, pred: Tensor, bool_pred: bool) -> Tensor:
        """Thresholds in the units and dtype of ``pred``, as a [T, 1, 1, 1] tensor on its device.

        Casting to pred's dtype makes ``ROC([t])`` binarise exactly as ``pred > t`` does for
        a Python number ``t`` (0.1 compared as float32 0.1 against a float32 map, not as
        float64 0.1, which would flip pixels equal to float32 0.1).
        """
        t = self.thresholds
        if self.logits and not bool_pred:
            t = torch.logit(t)  # 0 -> -inf, 1 -> inf: "everything" and "nothing", as intended
        return t.to(pred.device, pred.dtype).view(-1, 1, 1, 1)

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        self.value_check.see(p, self.logits)
        n, h, w = p.shape
        if n == 0:
            return
        self._on(p.device)
        if p.dtype == torch.float32 and self._update_fused(p, t):
            return
        target_bin = binarize_target(t)
        t_counts, t_area, t_cent = measure(target_bin, self.connectivity, self.backend)
        # Bool and integer maps (0/1, 0/255) are compared with fractional thresholds as floats.
        values = p if p.dtype.is_floating_point else p.double()
        levels = self._levels(values, p.dtype == torch.bool)
        # Every foreground pixel lies in exactly one component; summing the areas avoids a
        # reduction over the bool map, which PyTorch widens to int64 first.
        positives = t_area.sum()
        chunk = max(1, _STACK_PIXELS // max(1, n * h * w))
        for start in range(0, levels.shape[0], chunk):
            stop = min(start + chunk, levels.shape[0])
            c = stop - start
            stack = values.unsqueeze(0) > levels[start:stop]                      # [c, N, H, W]
            flat = stack.reshape(c * n, h, w)
            overlaps = [intersection_union(level, target_bin) for level in stack]   # c x ([N], [N])
            tp = torch.stack([inter.sum() for inter, _ in overlaps])
            predicted = torch.stack([union.sum() for _, union in overlaps]) - positives + tp
            p_counts, p_area, p_cent = measure(flat, self.connectivity, self.backend)
            detected, false_pixels = match(t_counts.repeat(c), t_cent.repeat(c, 1, 1), p_counts, p_area,
                                           p_cent, self.distance, self.legacy)
            self._accumulate(slice(start, stop), tp, predicted, positives, n * h * w,
                             detected.view(c, n).sum(1), false_pixels.view(c, n).sum(1))
        self._state["targets"] += t_counts.sum()
        self._state["pixels"] += n * h * w

    def _update_fused(self, p: Tensor, t: Tensor) -> bool:
        """The CPU path for float32 maps: one C++ pass per threshold thresholds the map on
        the fly and measures it with the target (see :mod:`._fused`), so no stack of binary
        maps is built. Returns False where that path does not apply."""
        n, h, w = p.shape
        levels = self._levels(p, False).view(-1).tolist()  # float32 values, exactly
        first = measure_pair(p, t, levels[0], self.connectivity, self.backend)
        if first is None:
            return False
        positives = first.union.sum() + first.inter.sum() - first.pred_area.sum()
        for i, level in enumerate(levels):
            m = first if i == 0 else measure_pair(p, t, level, self.connectivity, self.backend)
            detected, false_pixels = match(m.target_counts, m.target_centroid, m.pred_counts, m.pred_area,
                                           m.pred_centroid, self.distance, self.legacy)
            tp = m.inter.sum()
            predicted = m.union.sum() - positives + tp
            self._accumulate(i, tp, predicted, positives, n * h * w, detected.sum(), false_pixels.sum())
        self._state["targets"] += first.target_counts.sum()
        self._state["pixels"] += n * h * w
        return True

    def _accumulate(self, at, tp: Tensor, predicted: Tensor, positives: Tensor, pixels: int,
                    detected: Tensor, false_pixels: Tensor) -> None:
        """Adds the counts of the thresholds ``at`` (an index or a slice)."""
        state = self._state
        state["tp"][at] += tp
        state["fp"][at] += predicted - tp
        state["fn"][at] += positives - tp
        state["tn"][at] += pixels - predicted - positives + tp
        state["detected"][at] += detected
        state["false_pixels"][at] += false_pixels

    def compute(self) -> dict:
        c = {k: v.tolist() for k, v in self.sync().items()}
        targets, pixels = int(c.pop("targets")), int(c.pop("pixels"))
        out: dict[str, object] = {"thresholds": self.thresholds.tolist()}
        out["tpr"] = [ratio(tp, tp + fn) for tp, fn in zip(c["tp"], c["fn"])]
        out["fpr"] = [ratio(fp, fp + tn) for fp, tn in zip(c["fp"], c["tn"])]
        out["pd"] = [ratio(d, targets) for d in c["detected"]]
        out["fa"] = [ratio(f, pixels) for f in c["false_pixels"]]
        out.update(c)
        out["targets"], out["pixels"] = targets, pixels
        return out

    def save_csv(self, path: str | os.PathLike) -> None:
        """One row per threshold: the rates, then the raw counts they come from."""
        r = self.compute()
        columns = ["thresholds", "tpr", "fpr", "pd", "fa", *_PER_THRESHOLD]
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["threshold", *columns[1:], "targets", "pixels"])
            for i in range(len(r["thresholds"])):
                out.writerow([repr(float(r["thresholds"][i])), *(r[k][i] for k in columns[1:]),
                              r["targets"], r["pixels"]])

    def plot(self, path: str | os.PathLike, model: str | None = None, data: str | None = None):
        """Save the pixel ROC (TPR % vs FPR) and the object curve (Pd % vs Fa x 1e-6) side by
        side, false alarms on log axes, titled with ``model`` and ``data`` when given; returns
        the matplotlib Figure. See :mod:`.roc_plot`."""
        return roc_plot.draw(self.compute(), path, model=model, data=data)
