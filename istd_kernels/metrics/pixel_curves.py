"""Pixel-level precision, recall, F-measure, IoU and FPR, at one threshold and as threshold
curves, both over the data set (summed counts) and per sample (mean of per-image values),
as PyIRSTDMetrics 1.0.2's ``CMMetrics`` defines them; plus AP and AUC-ROC of the curves.

Curves: ``bins`` edges ``e_k = k / (bins - 1)`` (``numpy.linspace(0, 1, bins)``); the curve
has ``bins - 1`` points, ``pred >= e_k`` for k = bins - 2 down to 0 (highest threshold
first), as PyIRSTDMetrics' cumulative histogram orders them. docs/metrics.md has the
formulas and the full key list.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._base import Metric, binarize_target, check_flag, check_pair, check_values
from .pdfa import rates
from .sweep import above, at_least, count_true, flat_true, levels

MEASURES = ("iou", "precision", "recall", "fmeasure", "fpr")


def pixel_keys() -> tuple[str, ...]:
    """Every key :meth:`PixelMetrics.compute` returns."""
    return tuple(f"{m}_{level}_{kind}" for kind in ("binary", "dynamic") for level in ("ds", "s")
                 for m in MEASURES) + ("ap", "auc_roc")


def measures(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor, beta2: float, empty: float = 0.0) -> dict[str, Tensor]:
    """The five measures of float64 confusion counts (any shape), ``empty`` where a denominator
    is 0 (the F-measure of P = R = 0 is 0 either way)."""
    p, r = rates(tp, tp + fp, empty), rates(tp, tp + fn, empty)
    return {"iou": rates(tp, tp + fp + fn, empty), "precision": p, "recall": r,
            "fmeasure": rates((beta2 + 1) * p * r, beta2 * p + r), "fpr": rates(fp, fp + tn, empty)}


class PixelMetrics(Metric):
    """Pixel-level measures accumulated over a data set.

    Args:
        bins: number of histogram edges of the curves (>= 2; the curves have ``bins - 1``
            points).
        threshold: the binary measures use ``pred > threshold`` (a probability in [0, 1)).
        beta2: the F-measure's beta^2.
        logits: ``pred`` holds logits (a float64 sigmoid is applied first).
        pyirstd: ``*_ds_dynamic`` as PyIRSTDMetrics 1.0.2 returns it, the mean of per-image
            curves (its ``sample_based=False`` only affects the binary measures); by
            default it is the curve of the summed counts.

    ``compute()`` -> the :func:`pixel_keys`: ``{m}_{ds,s}_binary`` floats and
    ``{m}_{ds,s}_dynamic`` float64 [bins - 1] tensors for m in iou, precision, recall,
    fmeasure, fpr (``ds``: of the data set's summed counts; ``s``: mean over images), and
    ``ap`` (area under the data-set precision-recall curve, step rule) and ``auc_roc``
    (trapezoids under the data-set (FPR, recall) curve from (0, 0)).

    Raises ValueError for mismatched shapes, a non-finite ``pred`` or (without ``logits``)
    one outside [0, 1].
    """

    def __init__(self, bins: int = 10, threshold: float = 0.5, beta2: float = 0.3, logits: bool = False,
                 pyirstd: bool = False, distributed: bool = True) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an int >= 2; got {bins!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
            raise ValueError(f"threshold must be a probability in [0, 1); got {threshold!r}")
        if isinstance(beta2, bool) or not isinstance(beta2, (int, float)) or not (math.isfinite(beta2) and beta2 > 0):
            raise ValueError(f"beta2 must be a positive number; got {beta2!r}")
        self.bins, self.threshold, self.beta2 = bins, float(threshold), float(beta2)
        self.edges = [k / (bins - 1) for k in range(bins - 1)]  # numpy.linspace(0, 1, bins)[:-1]
        self.logits = check_flag(logits, "logits")
        self.pyirstd = check_flag(pyirstd, "pyirstd")
        super().__init__(distributed)

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        k = self.bins - 1
        return {"binary_counts": torch.zeros(4, dtype=torch.int64, device=device),
                "curve_counts": torch.zeros(4, k, dtype=torch.int64, device=device),
                "binary_sums": torch.zeros(len(MEASURES), dtype=torch.float64, device=device),
                "curve_sums": torch.zeros(len(MEASURES), k, dtype=torch.float64, device=device),
                "images": torch.zeros((), dtype=torch.int64, device=device)}

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        check_values(p, self.logits)
        if p.shape[0] == 0:
            return
        mask = binarize_target(t).flatten(1)
        values = levels(p, (0.0,), self.logits)[0].flatten(1)
        n, k = values.shape[0], self.bins - 1
        # Every count comes from one histogram of how many cuts each pixel reaches (pred >= c).
        # The curves' float64 edges compare as float64 (at_least); the binary threshold, a
        # Python float, compares in the map's dtype as numpy >= 2 does in CMMetrics:
        # pred > t there is pred >= the next value of the dtype above t.
        binary_cut = torch.tensor(self.threshold, dtype=values.dtype)
        cuts = torch.stack([at_least(values, e) for e in self.edges] +
                           [torch.nextafter(binary_cut, torch.tensor(math.inf, dtype=values.dtype))])
        cuts, order = torch.sort(cuts, stable=True)
        hist = _histogram(values, mask, cuts.to(values.device))
        total = hist.sum(2)                                                        # [N, 2]: bg, fg
        at_or_above = torch.empty_like(hist[:, :, :k + 1])
        at_or_above[:, :, order.to(values.device)] = total[:, :, None] - hist.cumsum(2)[:, :, :k + 1]
        bg, fg = total[:, 0], total[:, 1]
        tp, fp = at_or_above[:, 1, k], at_or_above[:, 0, k]
        binary = torch.stack((tp, fp, bg - fp, fg - tp))                          # [4, N]
        tps, fps = at_or_above[:, 1, :k].flip(1), at_or_above[:, 0, :k].flip(1)   # highest edge first, [N, K]
        curve = torch.stack((tps, fps, bg[:, None] - fps, fg[:, None] - tps))    # [4, N, K]
        state = self._on(p.device)
        state["binary_counts"] += binary.sum(1)
        state["curve_counts"] += curve.sum(1)
        per_binary = measures(*binary.double(), self.beta2)
        per_curve = measures(*curve.double(), self.beta2)
        state["binary_sums"] += torch.stack([per_binary[m].sum(0) for m in MEASURES])
        state["curve_sums"] += torch.stack([per_curve[m].sum(0) for m in MEASURES])
        state["images"] += n

    def values(self, c: dict[str, Tensor], empty: float = 0.0) -> dict[str, Tensor]:
        """The :func:`pixel_keys` from the state's counts with any leading dims (per image, per
        resample): binary measures float64 [...], curves [..., bins - 1]; ``empty`` as for
        :meth:`.PdFa.values` (a sample-based mean over no image is ``empty`` too)."""
        images = c["images"].to(torch.float64)
        ds_binary = measures(*c["binary_counts"].double().unbind(-1), self.beta2, empty)
        ds_curve = measures(*c["curve_counts"].double().unbind(-2), self.beta2, empty)
        s_binary = rates(c["binary_sums"], images.unsqueeze(-1), empty)
        s_curve = rates(c["curve_sums"], images[..., None, None], empty)
        out = {}
        for i, m in enumerate(MEASURES):
            out[f"{m}_ds_binary"], out[f"{m}_s_binary"] = ds_binary[m], s_binary[..., i]
            out[f"{m}_ds_dynamic"] = s_curve[..., i, :] if self.pyirstd else ds_curve[m]
            out[f"{m}_s_dynamic"] = s_curve[..., i, :]
        out["ap"], out["auc_roc"] = areas(ds_curve)
        return {k: out[k] for k in pixel_keys()}

    def compute(self) -> dict:
        return self.present(self.values({k: v.cpu() for k, v in self.sync().items()}))

    def present(self, out: dict[str, Tensor]) -> dict:
        """``compute()``'s form of :meth:`values` (without leading dims)."""
        return {k: float(v) if v.dim() == 0 else v for k, v in out.items()}


# Above this share of nonzero pixels, histogramming every pixel beats gathering the nonzero ones.
_SPARSE_SHARE = 1 / 16


def _histogram(values: Tensor, mask: Tensor, cuts: Tensor) -> Tensor:
    """int64 [N, 2, C + 1]: per image, background (0) or target (1) pixels, how many of the
    sorted ``cuts`` [C] each pixel value reaches (``bucketize(right=True)``), of ``values``
    and bool ``mask`` [N, P].

    IR maps are mostly exact zeros: when few pixels are not, only those are bucketed and
    the zeros are added to the bucket of 0 from the mask's counts (one pass over the map
    instead of a bucketize, an index computation and a bincount over every pixel)."""
    n, c = values.shape[0], cuts.numel()
    nonzero = above(values, 0.0)  # values are probabilities: not 0 is > 0
    if int(count_true(nonzero)) > _SPARSE_SHARE * values.numel():
        image = torch.arange(n, dtype=torch.int32, device=values.device)[:, None]
        return _bincount(image, mask, _reached(values, cuts), n, c)
    where = flat_true(nonzero).to(values.device)
    hist = _bincount((where // values.shape[1]).to(torch.int32), mask.reshape(-1)[where],
                     _reached(values.reshape(-1)[where], cuts), n, c)
    fg = count_true(mask, 1).to(values.device)
    zeros = torch.stack((mask.shape[1] - fg, fg), 1) - hist.sum(2)                 # [N, 2]
    hist[:, :, int(_reached(values.new_zeros(1), cuts)[0])] += zeros
    return hist


def _reached(values: Tensor, cuts: Tensor) -> Tensor:
    """int32: how many of the sorted ``cuts`` each value reaches (``bucketize(right=True)``;
    on the CPU numpy's searchsorted: torch's threaded bucketize took 4 ms on a 1-element
    tensor on the busy 2-core machine)."""
    if values.device.type == "cpu":
        found = np.searchsorted(cuts.numpy(), values.detach().numpy(), side="right")
        return torch.from_numpy(found.astype(np.int32, copy=False))
    return torch.bucketize(values, cuts, right=True, out_int32=True)


def _bincount(image: Tensor, mask: Tensor, reached: Tensor, n: int, c: int) -> Tensor:
    # One count per (image, background or target, cuts reached): a single bincount (int32
    # slots: a quarter of the memory traffic of int64 over the whole batch).
    slot = (image * 2 + mask.to(torch.int32)) * (c + 1) + reached
    return torch.bincount(slot.flatten(), minlength=n * 2 * (c + 1)).view(n, 2, c + 1)


def areas(curve: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """AP (sum of precision x recall steps) and AUC-ROC (trapezoids under recall over FPR)
    of curves [..., K] ordered from the highest threshold down, both starting from recall =
    FPR = 0; float64 [...]."""
    zero = torch.zeros_like(curve["recall"][..., :1])
    recall, fpr = torch.cat((zero, curve["recall"]), -1), torch.cat((zero, curve["fpr"]), -1)
    ap = ((recall[..., 1:] - recall[..., :-1]) * curve["precision"]).sum(-1)
    auc = ((fpr[..., 1:] - fpr[..., :-1]) * (recall[..., 1:] + recall[..., :-1]) / 2).sum(-1)
    return ap, auc
