"""Object-level probability of detection (Pd) and false-alarm rate (Fa), docs/metrics.md §4.

Rule: label prediction and ground truth into connected components (8-connectivity by
default; labels in raster order of each component's first pixel). For each ground-truth
component in label order, the first still-unmatched predicted component (in label order)
whose centroid lies at Euclidean distance < ``distance`` px is counted as a detection and
removed from the candidates. Pd = detections / ground-truth components; Fa = predicted
pixels outside matched components / all pixels.

The greedy matching runs for the whole batch at once on the device, in memory and time
linear in the number of components (G targets, P predictions), never G x P:

1. Candidates: predicted centroids are sorted into a grid of cells as wide as ``distance``,
   so the predictions near a target lie in the 3 x 3 cells around it (:func:`.near.near_pairs`).
2. Greedy order: the sequential rule is replayed in rounds over those pairs
   (:func:`_resolve`); each round settles every target whose choice no earlier target can
   still change, which takes a few tens of rounds even on pure noise masks (see there
   for the worst case).

Images are independent (components are numbered over the batch in (image, label) order),
and the same code runs on CPU and GPU. Host synchronisation: the pair lists have
data-dependent sizes, so a batch costs a few reads of counts plus one per round, never one
per image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import ops as _ops
from . import rules
from ._base import Metric, binarize_pred, binarize_target, check_backend, check_flag, check_pair, check_values
from .near import near_pairs
from .sweep import above, check_thresholds, cut_maps, levels


def measure(mask_bin: Tensor, connectivity: int = 8, backend: str | None = None
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Components of binary [N, H, W] masks: (counts int64 [N], area int64 [N, M],
    centroid float64 [N, M, 2]), padded with zeros past each image's count.

    Uses :func:`istd_kernels.ops.measure_components`: on the CPU no label image is built.
    M, the largest count in the batch, is known on the host afterwards (the padded shapes
    depend on it), which on a GPU is one synchronisation.
    """
    stats = _ops.measure_components(mask_bin, connectivity=connectivity, backend=backend)
    return stats.counts.to(torch.int64), stats.area.to(torch.int64), stats.centroid.to(torch.float64)


def match(target_counts: Tensor, target_centroid: Tensor, pred_counts: Tensor, pred_area: Tensor,
          pred_centroid: Tensor, distance: float = 3.0, legacy: bool = False) -> tuple[Tensor, Tensor]:
    """Greedy centroid matching of docs/metrics.md §4 for a batch; returns per-image (detected, false
    pixels), both int64 [N].

    Args (as :func:`measure` returns them, all on one device):
        target_counts: int64 [N]; target_centroid: float64 [N, G, 2].
        pred_counts: int64 [N]; pred_area: int64 [N, P]; pred_centroid: float64 [N, P, 2].
        distance: strict centroid distance in pixels.

    ``legacy=True`` reproduces the older DNANet count of false pixels: the areas of the
    matched components are removed from the list of predicted areas *by value*, so an
    unmatched component whose area equals that of any matched component in the same image is
    not counted as false either. Detections are the same under both rules.
    """
    g_max, p_max = target_centroid.shape[1], pred_centroid.shape[1]
    device = pred_area.device
    valid_t = torch.arange(g_max, device=device) < _check_counts(target_counts, "target_counts", g_max)[:, None]
    valid_p = torch.arange(p_max, device=device) < _check_counts(pred_counts, "pred_counts", p_max)[:, None]
    taken = _greedy(valid_t, target_centroid, valid_p, pred_centroid, distance)
    detected = taken.sum(1)
    if legacy:
        kept = valid_p & ~_same_area_as_matched(pred_area, taken)
    else:
        kept = valid_p & ~taken
    return detected, (pred_area * kept).sum(1)


def _check_counts(counts: Tensor, name: str, padded: int) -> Tensor:
    """``counts`` [N] in [0, padded], read in one host synchronisation."""
    if counts.numel():
        low, high = (int(v) for v in torch.aminmax(counts))
        if low < 0 or high > padded:
            raise ValueError(f"{name} must lie in [0, {padded}] (the padded component dimension); "
                             f"got values in [{low}, {high}]")
    return counts


def _greedy(valid_t: Tensor, target_centroid: Tensor, valid_p: Tensor, pred_centroid: Tensor,
            distance: float) -> Tensor:
    """[N, P] mask of the predictions taken by the greedy rule.

    Components are flattened over the batch in (image, label) order, so that "earlier in
    label order" is "smaller flat index" within an image and images never compete.
    """
    taken = torch.zeros_like(valid_p)
    t_img, t_idx = valid_t.nonzero(as_tuple=True)
    p_img, p_idx = valid_p.nonzero(as_tuple=True)
    if t_img.numel() == 0 or p_img.numel() == 0:
        return taken
    pair_t, pair_p = near_pairs(t_img, target_centroid[t_img, t_idx], p_img, pred_centroid[p_img, p_idx],
                                 distance)
    won = _resolve(pair_t, pair_p, t_img.numel(), p_img.numel())
    taken[p_img[won], p_idx[won]] = True
    return taken


def _resolve(pair_t: Tensor, pair_p: Tensor, targets: int, preds: int) -> Tensor:
    """[P] bool: the predictions the sequential greedy rule takes, given the near pairs.

    Runs in rounds over the pairs still open. A target takes its first open candidate when
    it is also that candidate's first open target: every earlier target that could still
    want the candidate has then been settled, so the sequential loop would give it the same
    one. The first open target of the batch always qualifies, so each round settles at least
    one target; on noise masks a few tens of rounds settle 19 K targets. A chain of targets
    each left with the candidate its predecessor did not take settles one link per round (a
    row of alternating target and prediction dots: one round per dot), so time is at worst
    O(longest chain x pairs), while memory stays O(G + P + pairs). Settled targets and taken
    predictions leave the pair list, which only shrinks.
    """
    device = pair_t.device
    won = torch.zeros(preds, dtype=torch.bool, device=device)
    settled = torch.zeros(targets, dtype=torch.bool, device=device)
    none = torch.iinfo(torch.int64).max
    pairs = torch.stack((pair_t, pair_p))
    while pairs.shape[1]:
        pair_t, pair_p = pairs
        first_p = torch.full((targets,), none, device=device).scatter_reduce_(0, pair_t, pair_p, "amin")
        first_t = torch.full((preds,), none, device=device).scatter_reduce_(0, pair_p, pair_t, "amin")
        take_t, take_p = pairs[:, (first_p[pair_t] == pair_p) & (first_t[pair_p] == pair_t)]
        won[take_p] = True
        settled[take_t] = True
        pairs = pairs[:, ~(won[pair_p] | settled[pair_t])]
    return won


def _same_area_as_matched(pred_area: Tensor, taken: Tensor) -> Tensor:
    """[N, P]: whether a prediction's area equals that of any matched prediction in its image."""
    n, p_max = pred_area.shape
    if p_max == 0:
        return torch.zeros_like(taken)
    # One key per (image, area) pair; membership of every prediction's key in the set of
    # matched keys is then a single sorted search over the batch.
    image = torch.arange(n, device=pred_area.device)[:, None]
    keys = image * (pred_area.max() + 1) + pred_area
    matched = torch.where(taken, keys, torch.full_like(keys, -1))
    return torch.isin(keys, matched)


MATCHING_RULES = ("distance", "shooting", "opdc")
_COUNTS = ("detected", "targets", "predictions", "matched_predictions", "false_pixels")


class PdFa(Metric):
    """Pd and Fa (docs/metrics.md §4) accumulated over a data set, under one of three matching rules,
    with target-level precision, recall and F1.

    Args:
        distance: a predicted component detects a target when their centroids are closer
            than this (strictly), in pixels (rules "distance" and "opdc").
        connectivity: 8 (the reference) or 4.
        legacy: count false pixels with the older DNANet rule (see :func:`match`; rule
            "distance" only).
        logits: ``pred`` holds logits (threshold 0) instead of probabilities (threshold 0.5).
        backend: passed to the labelling ops of :mod:`istd_kernels.ops`.
        matching: "distance" (the greedy centroid rule above, the default), "shooting" (a
            target is detected when a predicted pixel lies within ``box_radii[0]`` of one of
            its pixels; false pixels are those farther than ``box_radii[1]`` from every
            target pixel) or "opdc" (overlap-priority matching with distance compensation:
            see :func:`.rules.opdc_sparse`). docs/metrics.md defines all three.
        overlap: the IoU a pair needs in OPDC's first stage.
        box_radii: (inner, outer) box radii of the shooting rule, ints with 0 < inner < outer.
        thresholds: None (binarise as above) or probabilities ``t_k`` in [0, 1): every
            count is then kept per threshold, for ``pred > t_k`` (see :mod:`.sweep`).
        pyirstd: run OPDC exactly as PyIRSTDMetrics 1.0.2 does, with its two departures from
            the rule's definition (docs/metrics.md): its first assignment runs over all pairs
            (a dense G x P matrix per image), and an image without targets counts one missed
            target (one without predictions one false prediction). Rule "opdc" only.

    ``compute()`` -> ``{"pd", "fa", "precision", "recall", "f1", "detected", "targets",
    "predictions", "matched_predictions", "false_pixels", "pixels"}``: Python numbers at
    ``thresholds=None``; otherwise float64 (ratios) and int64 (counts) tensors with one
    entry per threshold (``pixels`` stays a number). ``recall`` is ``pd``; ``precision`` is
    ``matched_predictions / predictions`` (under the shooting rule the predicted components
    that reach a target's inner box). Ratios with an empty denominator are 0.

    Errors: the rule arguments raise ValueError/TypeError naming them; mismatched shapes, a
    non-finite ``pred`` or (without ``logits``) one outside [0, 1] raise ValueError (the
    plain rule on a GPU: at ``compute``, see :class:`._base.ValueCheck`).
    """

    def __init__(self, distance: float = 3.0, connectivity: int = 8, legacy: bool = False,
                 logits: bool = False, backend: str | None = None, distributed: bool = True, *,
                 matching: str = "distance", overlap: float = 0.5, box_radii: tuple[int, int] = (1, 4),
                 thresholds=None, pyirstd: bool = False) -> None:
        self.distance, self.connectivity = check_matching_args(distance, connectivity)
        self.legacy = check_flag(legacy, "legacy")
        self.logits = check_flag(logits, "logits")
        self.backend = check_backend(backend)
        self.matching = check_rule(matching)
        self.overlap = check_overlap(overlap)
        self.box_radii = check_box_radii(box_radii)
        self.thresholds = check_thresholds(thresholds)
        self.pyirstd = check_flag(pyirstd, "pyirstd")
        super().__init__(distributed)

    @property
    def plain(self) -> bool:
        """The basic metric: the greedy rule at the one default cut."""
        return self.matching == "distance" and self.thresholds is None

    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        k = 1 if self.thresholds is None else len(self.thresholds)
        state = {name: torch.zeros(k, dtype=torch.int64, device=device) for name in _COUNTS}
        state["pixels"] = torch.zeros((), dtype=torch.int64, device=device)
        return state

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        if self.plain:
            self.value_check.see(p, self.logits)
            self._add(binarize_pred(p, self.logits), binarize_target(t))
            return
        check_values(p, self.logits)
        if p.shape[0] == 0:
            return
        target_bin = binarize_target(t)
        values, cuts = levels(p, self.thresholds, self.logits)
        add = self.sweep(target_bin, values, cuts)
        for k, pred_bin in enumerate(cut_maps(values, cuts)):
            add(k, pred_bin, None, {})

    def sweep(self, target_bin: Tensor, values: Tensor, cuts: tuple[float, ...], target: rules.Labelled | None = None):
        """Counts a batch cut by cut (what ``update`` does, open to :class:`.bundle.ExtraMetrics`,
        which labels each cut once for all its members): returns ``add(k, pred_bin, pred,
        shared)`` that counts cut ``k`` into the state. ``target``/``pred``: the labelled maps
        (``rules.label``; ``target`` with ``index=True``), or None to label here; ``shared``: a
        dict the members of one cut share (OPDC's sums, which hIoU needs too)."""
        state = self._on(values.device)
        state["pixels"] += values.numel()
        if self.matching == "distance":
            count = self._distance_sweep(target_bin)
        else:
            if target is None:
                target = rules.label(target_bin, self.connectivity, self.backend, index=True)
            if self.matching == "shooting":
                count = self._shooting_sweep(values, cuts, target)
            else:
                count = self._opdc_sweep(target, values.shape[1] * values.shape[2])

        def add(k: int, pred_bin: Tensor, pred: rules.Labelled | None, shared: dict) -> None:
            if pred is None and self.matching != "distance":
                pred = rules.label(pred_bin, self.connectivity, self.backend)
            for name, value in count(k, pred_bin, pred, shared).items():
                state[name][k] += torch.as_tensor(value, device=values.device).to(torch.int64)
        return add

    def _distance_sweep(self, target_bin: Tensor):
        t_counts, _, t_cent = measure(target_bin, self.connectivity, self.backend)

        def count(k: int, pred_bin: Tensor, pred, shared: dict) -> dict:
            if pred is None:
                p_counts, p_area, p_cent = measure(pred_bin, self.connectivity, self.backend)
            else:
                p_counts, p_area, p_cent = pred.counts, pred.area, pred.centroid
            detected, false_pixels = match(t_counts, t_cent, p_counts, p_area, p_cent, self.distance, self.legacy)
            return {"detected": detected.sum(), "targets": t_counts.sum(), "predictions": p_counts.sum(),
                    "matched_predictions": detected.sum(), "false_pixels": false_pixels.sum()}
        return count

    def _shooting_sweep(self, values: Tensor, cuts: tuple[float, ...], target: rules.Labelled):
        prep = rules.shooting_prep(values, target, self.box_radii)

        def count(k: int, pred_bin: Tensor, pred: rules.Labelled, shared: dict) -> dict:
            return rules.shooting_counts(prep, pred_bin, pred, above(prep.hit_level, cuts[k]))
        return count

    def _opdc_sweep(self, target: rules.Labelled, pixels: int):
        def count(k: int, pred_bin: Tensor, pred: rules.Labelled, shared: dict) -> dict:
            s = dict(zip(rules.OPDC_FIELDS, rules.opdc_sums_of(shared, target, pred, pixels, self.overlap,
                                                               self.distance, self.pyirstd).tolist()))
            return {"detected": s["tp"], "targets": s["tp"] + s["fn_objs"], "predictions": pred.counts.sum(),
                    "matched_predictions": s["tp"], "false_pixels": s["fp_area"]}
        return count

    def _add(self, pred_bin: Tensor, target_bin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Update from bool [N, H, W] maps (thresholds already applied); returns what
        :meth:`_add_measured` returns."""
        if pred_bin.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=pred_bin.device)
            return empty, empty, empty
        t_counts, _, t_cent = measure(target_bin, self.connectivity, self.backend)
        p_counts, p_area, p_cent = measure(pred_bin, self.connectivity, self.backend)
        return self._add_measured(t_counts, t_cent, p_counts, p_area, p_cent, pred_bin.numel())

    def _add_measured(self, t_counts: Tensor, t_cent: Tensor, p_counts: Tensor, p_area: Tensor,
                      p_cent: Tensor, pixels: int) -> tuple[Tensor, Tensor, Tensor]:
        """Update from the components of a batch (as :func:`measure` returns them); returns
        each image's (targets, detected, false pixels), int64 [N]."""
        state = self._on(p_counts.device)
        detected, false_pixels = match(t_counts, t_cent, p_counts, p_area, p_cent, self.distance, self.legacy)
        state["detected"] += detected.sum()
        state["matched_predictions"] += detected.sum()
        state["targets"] += t_counts.sum()
        state["predictions"] += p_counts.sum()
        state["false_pixels"] += false_pixels.sum()
        state["pixels"] += pixels
        return t_counts, detected, false_pixels

    def values(self, c: dict[str, Tensor], empty: float = 0.0) -> dict[str, Tensor]:
        """Every ``compute()`` key from count tensors as the state holds them, with any leading
        dims (per image, per resample): the ratios float64 [..., K], the counts as given.
        ``empty``: the value of a ratio with an empty denominator (0, or NaN for "undefined");
        F1 of precision = recall = 0 is 0 either way."""
        pd = rates(c["detected"], c["targets"], empty)
        precision = rates(c["matched_predictions"], c["predictions"], empty)
        return {"pd": pd, "fa": rates(c["false_pixels"], c["pixels"].unsqueeze(-1), empty), "precision": precision,
                "recall": pd, "f1": rates(2 * precision * pd, precision + pd), **c}

    def compute(self) -> dict:
        return self.present(self.values({k: v.cpu() for k, v in self.sync().items()}))

    def present(self, out: dict[str, Tensor]) -> dict:
        """``compute()``'s form of :meth:`values` (without leading dims)."""
        if self.thresholds is None:
            return {k: (v.item() if v.dtype.is_floating_point else int(v)) if v.dim() == 0 else
                    (float(v[0]) if v.dtype.is_floating_point else int(v[0])) for k, v in out.items()}
        out["pixels"] = int(out["pixels"])
        return out


def rates(num: Tensor, den: Tensor, empty: float = 0.0) -> Tensor:
    """float64 num / den elementwise, ``empty`` where den is 0 (an empty data set)."""
    num, den = num.to(torch.float64), torch.as_tensor(den).to(torch.float64)
    return torch.where(den != 0, num / torch.where(den != 0, den, 1.0), empty)


def check_rule(matching: object) -> str:
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {', '.join(map(repr, MATCHING_RULES))}; got {matching!r}")
    return matching


def check_overlap(overlap: object) -> float:
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not (0 <= overlap < 1):
        raise ValueError(f"overlap must be an IoU in [0, 1); got {overlap!r}")
    return float(overlap)


def check_box_radii(box_radii: object) -> tuple[int, int]:
    ok = (isinstance(box_radii, (tuple, list)) and len(box_radii) == 2
          and all(isinstance(r, int) and not isinstance(r, bool) for r in box_radii))
    if not ok or not (0 < box_radii[0] < box_radii[1]):
        raise ValueError(f"box_radii must be two ints (inner, outer) with 0 < inner < outer; got {box_radii!r}")
    return int(box_radii[0]), int(box_radii[1])


def check_matching_args(distance: object, connectivity: object) -> tuple[float, int]:
    if isinstance(distance, bool) or not isinstance(distance, (int, float)):
        raise TypeError(f"distance must be a number; got {distance!r}")
    if not (math.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a positive finite number of pixels; got {distance!r}")
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    return float(distance), int(connectivity)
