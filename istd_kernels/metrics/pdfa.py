"""Object-level probability of detection (Pd) and false-alarm rate (Fa), SPEC §5.

Rule: label prediction and ground truth into connected components (8-connectivity by
default; labels in raster order of each component's first pixel). For each ground-truth
component in label order, the first still-unmatched predicted component (in label order)
whose centroid lies at Euclidean distance < ``distance`` px is counted as a detection and
removed from the candidates. Pd = detections / ground-truth components; Fa = predicted
pixels outside matched components / all pixels.

The greedy matching runs for the whole batch at once on the device: centroids are padded
to [N, G] (ground truth) and [N, P] (prediction), and the only Python loop is over the
ground-truth index g < G, where G, the largest number of targets in one image, is small.
The matching is sequential in g by nature (a target can only take what earlier targets
left), but is independent across images, which is the dimension that is vectorised.

Host synchronisation: the padded shapes depend on the data, so a batch costs a few reads
of counts (the largest component count M, the grouping in :func:`match`, the candidate count K) -- a
fixed number per batch for ordinary masks, never one per image. Only images whose
[G, P] distance blocks exceed a memory bound (thousands of noise components) are split
into more groups.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from .. import ops as _ops
from ._base import Metric, binarize_pred, binarize_target, check_pair, ratio


def measure(mask_bin: Tensor, connectivity: int = 8, backend: Optional[str] = None
            ) -> Tuple[Tensor, Tensor, Tensor]:
    """Components of binary [N, H, W] masks: (counts int64 [N], area int64 [N, M],
    centroid float64 [N, M, 2]), padded with zeros past each image's count.

    Uses :func:`istd_kernels.ops.measure_components`: on the CPU no label image is built.
    M, the largest count in the batch, is known on the host afterwards (the padded shapes
    depend on it), which on a GPU is one synchronisation.
    """
    stats = _ops.measure_components(mask_bin, connectivity=connectivity, backend=backend)
    return stats.counts.to(torch.int64), stats.area.to(torch.int64), stats.centroid.to(torch.float64)


# Elements of the [images, G, P] distance block handled at once: bounds memory when a low
# threshold breaks a prediction into thousands of components.
_BLOCK_ELEMENTS = 1 << 24


def match(target_counts: Tensor, target_centroid: Tensor, pred_counts: Tensor, pred_area: Tensor,
          pred_centroid: Tensor, distance: float = 3.0, legacy: bool = False) -> Tuple[Tensor, Tensor]:
    """Greedy centroid matching of SPEC §5 for a batch; returns per-image (detected, false
    pixels), both int64 [N].

    ``legacy=True`` reproduces the older DNANet count of false pixels: the areas of the
    matched components are removed from the list of predicted areas *by value*, so an
    unmatched component whose area equals that of any matched component in the same image is
    not counted as false either. Detections are the same under both rules.
    """
    n, g_max = target_centroid.shape[:2]
    p_max = pred_centroid.shape[1]
    device = pred_area.device
    valid_p = torch.arange(p_max, device=device) < pred_counts[:, None]            # [N, P]
    taken = torch.zeros((n, p_max), dtype=torch.bool, device=device)
    if g_max and p_max:
        for rows, g, p in _blocks(target_counts, pred_counts):
            taken[rows, :p] = _greedy(target_counts[rows], target_centroid[rows, :g], valid_p[rows, :p],
                                      pred_centroid[rows, :p], distance)
    detected = taken.sum(1)
    if legacy:
        kept = valid_p & ~_same_area_as_matched(pred_area, taken)
    else:
        kept = valid_p & ~taken
    return detected, (pred_area * kept).sum(1)


def _blocks(target_counts: Tensor, pred_counts: Tensor):
    """Groups of images, as (index tensor, G, P) with G and P the group's largest counts,
    such that each group's [images, G, P] distance block stays under _BLOCK_ELEMENTS.

    Images are grouped in order of their prediction count, so that a batch mixing a few
    noisy maps (thousands of components) with clean ones (a handful) does not pad every
    image to the noisiest one; ROC stacks every threshold of a sweep into one batch, which
    is exactly that mix. Reading the counts is one host synchronisation per call.
    """
    counts = torch.stack([target_counts, pred_counts], 1).tolist()
    order = sorted((i for i, (g, p) in enumerate(counts) if g and p), key=lambda i: counts[i][1])
    device = pred_counts.device
    group: list = []
    g_max = 0
    for i in order:
        g, p = counts[i]
        # p is the group's largest count so far, since images come in increasing p.
        if group and (len(group) + 1) * max(g_max, g) * p > _BLOCK_ELEMENTS:
            yield torch.tensor(group, device=device), g_max, counts[group[-1]][1]
            group, g_max = [], 0
        group.append(i)
        g_max = max(g_max, g)
    if group:
        yield torch.tensor(group, device=device), g_max, counts[group[-1]][1]


def _greedy(target_counts: Tensor, target_centroid: Tensor, valid_p: Tensor, pred_centroid: Tensor,
            distance: float) -> Tensor:
    """[n, P] mask of the predictions taken by the greedy rule, for a block of images."""
    n, g_max = target_centroid.shape[:2]
    device = valid_p.device
    valid_t = torch.arange(g_max, device=device) < target_counts[:, None]          # [n, G]
    dr = target_centroid[:, :, None, 0] - pred_centroid[:, None, :, 0]              # [n, G, P]
    dc = target_centroid[:, :, None, 1] - pred_centroid[:, None, :, 1]
    # sqrt(dr^2 + dc^2) rather than a squared comparison: a centroid exactly at the
    # threshold then rounds as the reference's vector norm does.
    near = (torch.sqrt(dr * dr + dc * dc) < distance) & valid_t[:, :, None] & valid_p[:, None, :]
    # Only predictions near some target can be taken. Moving those to the front (a stable
    # sort keeps their label order) lets the sequential loop below run over K columns
    # instead of P, and K is a handful where P can be thousands of noise specks.
    candidate = near.any(1)                                                         # [n, P]
    k = int(candidate.sum(1).max())
    taken = torch.zeros_like(valid_p)
    if k == 0:
        return taken
    order = torch.sort((~candidate).to(torch.uint8), dim=1, stable=True).indices[:, :k]   # [n, K]
    near_k = near.gather(2, order[:, None, :].expand(n, g_max, k))                 # [n, G, K]
    taken_k = torch.zeros((n, k), dtype=torch.bool, device=device)
    for g in range(g_max):
        eligible = near_k[:, g] & ~taken_k
        # First eligible prediction in label order: the only one whose running count is 1.
        taken_k |= eligible & (eligible.cumsum(1) == 1)
    return taken.scatter(1, order, taken_k)


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


class PdFa(Metric):
    """Pd and Fa (SPEC §5) accumulated over a data set.

    Args:
        distance: a predicted component detects a target when their centroids are closer
            than this (strictly), in pixels.
        connectivity: 8 (the reference) or 4.
        legacy: count false pixels with the older DNANet rule (see :func:`match`).
        logits: ``pred`` holds logits (threshold 0) instead of probabilities (threshold 0.5).
        backend: passed to :func:`istd_kernels.ops.measure_components`.

    ``compute()`` -> ``{"pd", "fa", "detected", "targets", "false_pixels", "pixels"}``.
    Pd is 0.0 when the data set has no targets.
    """

    def __init__(self, distance: float = 3.0, connectivity: int = 8, legacy: bool = False,
                 logits: bool = False, backend: Optional[str] = None, distributed: bool = True) -> None:
        self.distance, self.connectivity = check_matching_args(distance, connectivity)
        self.legacy = bool(legacy)
        self.logits = bool(logits)
        self.backend = backend
        super().__init__(distributed)

    def _init_state(self, device: torch.device) -> Dict[str, Tensor]:
        return {k: torch.zeros((), dtype=torch.int64, device=device)
                for k in ("detected", "targets", "false_pixels", "pixels")}

    def update(self, pred: Tensor, target: Tensor) -> None:
        p, t = check_pair(pred, target)
        self._add(binarize_pred(p, self.logits), binarize_target(t))

    def _add(self, pred_bin: Tensor, target_bin: Tensor) -> None:
        """Update from bool [N, H, W] maps (thresholds already applied)."""
        if pred_bin.shape[0] == 0:
            return
        t_counts, _, t_cent = measure(target_bin, self.connectivity, self.backend)
        p_counts, p_area, p_cent = measure(pred_bin, self.connectivity, self.backend)
        self._add_measured(t_counts, t_cent, p_counts, p_area, p_cent, pred_bin.numel())

    def _add_measured(self, t_counts: Tensor, t_cent: Tensor, p_counts: Tensor, p_area: Tensor,
                      p_cent: Tensor, pixels: int) -> None:
        """Update from the components of a batch (as :func:`measure` returns them)."""
        state = self._on(p_counts.device)
        detected, false_pixels = match(t_counts, t_cent, p_counts, p_area, p_cent, self.distance, self.legacy)
        state["detected"] += detected.sum()
        state["targets"] += t_counts.sum()
        state["false_pixels"] += false_pixels.sum()
        state["pixels"] += pixels

    def compute(self) -> dict:
        c = {k: int(v) for k, v in self.sync().items()}
        return {"pd": ratio(c["detected"], c["targets"]), "fa": ratio(c["false_pixels"], c["pixels"]), **c}


def check_matching_args(distance: object, connectivity: object) -> Tuple[float, int]:
    if isinstance(distance, bool) or not isinstance(distance, (int, float)):
        raise TypeError(f"distance must be a number; got {distance!r}")
    if not (math.isfinite(distance) and distance > 0):
        raise ValueError(f"distance must be a positive finite number of pixels; got {distance!r}")
    if connectivity not in (4, 8) or isinstance(connectivity, bool):
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    return float(distance), int(connectivity)
