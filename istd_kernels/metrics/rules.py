"""The target matching rules beyond the greedy centroid rule of :mod:`.pdfa`: the shooting
rule and overlap-priority matching with distance compensation (OPDC), as PyIRSTDMetrics
1.0.2 defines them (docs/metrics.md gives the formulas).

Labelling and every per-pixel count run on the inputs' device over the whole batch; only
per-component statistics and the sparse table of (target, prediction) overlaps come to the
host, where OPDC's optimal assignments run image by image with
``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..ops import connected_components_with_stats
from .near import near_pairs
from .sweep import count_true, flat_true, take, unique_indices


class Labelled(NamedTuple):
    """Components of a bool [N, H, W] batch: labels int32 [N, H, W], counts int64 [N],
    area int64 [N, M], centroid float64 [N, M, 2] (zero-padded past each image's count);
    for targets also ``fg``, the flat indices (int64) of the foreground pixels."""

    labels: Tensor
    counts: Tensor
    area: Tensor
    centroid: Tensor
    fg: Tensor | None = None


def label(mask_bin: Tensor, connectivity: int, backend: str | None, index: bool = False) -> Labelled:
    labels, stats = connected_components_with_stats(mask_bin, connectivity, backend)
    fg = flat_true(mask_bin) if index else None
    return Labelled(labels, stats.counts.to(torch.int64), stats.area.to(torch.int64),
                    stats.centroid.to(torch.float64), fg)


# -- shooting rule --------------------------------------------------------------------------

def box_neighbours(fg: Tensor, shape: tuple[int, int, int], radius: int) -> tuple[Tensor, Tensor]:
    """(which, where): for every foreground pixel ``fg[which]`` (flat indices into an
    [N, H, W] batch), the flat index ``where`` of each pixel of the (2 radius + 1)^2 box
    around it, clipped at the image's border. The work is foreground x box size, never the
    whole map.

    Box positions outside the image are clamped onto its border, which lands them on pixels
    of the same clipped box: repeats, harmless to the maximum and the ``unique`` the callers
    take. Clamping instead of dropping avoids a boolean-mask index, which on a busy 2-core
    machine cost 2 ms a call in torch's threaded nonzero (26 us on one thread)."""
    _, h, w = shape
    step = torch.arange(-radius, radius + 1, device=fg.device)
    dr, dc = step[:, None].expand(-1, len(step)).reshape(-1), step.repeat(len(step))  # the box's offsets
    row = (((fg // w) % h)[:, None] + dr).clamp_(0, h - 1)                          # [F, box]
    col = ((fg % w)[:, None] + dc).clamp_(0, w - 1)
    where = (fg // (h * w) * (h * w))[:, None] + row * w + col
    which = torch.arange(len(fg), device=fg.device)[:, None].expand_as(where)
    return which.reshape(-1), where.reshape(-1)


class ShootingPrep(NamedTuple):
    """What the shooting rule needs from a batch, whatever the threshold."""

    hit_level: Tensor   # [N, G]: target g is hit at threshold t iff hit_level > t
    near: Tensor        # int64 [K]: flat indices of the pixels within box_radii[0] of a target pixel
    close: Tensor       # int64 [L]: flat indices of the pixels within box_radii[1] of a target pixel
    target_counts: Tensor


def shooting_prep(values: Tensor, target: Labelled, box_radii: tuple[int, int]) -> ShootingPrep:
    """A target is hit when a predicted pixel lies in the box of radius ``box_radii[0]``
    around one of its pixels, i.e. when the maximum of ``values`` over those boxes exceeds
    the threshold: thresholding commutes with the maximum, so one pass serves every
    threshold. ``target`` must be labelled with ``index=True``."""
    n, m = target.area.shape
    which, near = box_neighbours(target.fg, values.shape, box_radii[0])
    owner = (target.fg // (values.shape[1] * values.shape[2])) * (m + 1) + \
        target.labels.reshape(-1)[target.fg].to(torch.int64)
    level = torch.full((n * (m + 1),), -torch.inf, dtype=values.dtype, device=values.device)
    level.scatter_reduce_(0, owner[which], values.reshape(-1)[near], "amax")
    close = unique_indices(box_neighbours(target.fg, values.shape, box_radii[1])[1], values.numel())
    return ShootingPrep(level.view(n, m + 1)[:, 1:], unique_indices(near, values.numel()), close, target.counts)


def shooting_counts(prep: ShootingPrep, pred_bin: Tensor, pred: Labelled, hit: Tensor) -> dict[str, Tensor]:
    """Counts of one threshold: detected targets (``hit``: bool [N, G], ``hit_level`` above
    the threshold), predicted components, those that touch a target's inner box (the rule's
    true predictions) and the predicted pixels outside every target's outer box (its false
    pixels)."""
    valid = torch.arange(hit.shape[1], device=pred_bin.device) < prep.target_counts[:, None]
    detected = (hit & valid).sum()
    image_pixels = pred_bin.shape[1] * pred_bin.shape[2]
    slots = pred.area.shape[1] + 1  # per image: background, then its components
    keys = (prep.near // image_pixels) * slots + take(pred.labels, prep.near).to(torch.int64)
    touching = count_true(unique_indices(keys, pred_bin.shape[0] * slots) % slots != 0)
    false_pixels = pred.area.sum() - count_true(take(pred_bin, prep.close))
    return {"detected": detected, "targets": prep.target_counts.sum(), "predictions": pred.counts.sum(),
            "matched_predictions": touching, "false_pixels": false_pixels}


# -- OPDC -----------------------------------------------------------------------------------

# The sums OPDC yields, in this order (hIoU's error analysis needs all of them).
OPDC_FIELDS = ("tp", "fp_objs", "fn_objs", "fp_area", "tp_iou", "seg_mrg", "seg_itf", "seg_pcp",
               "itf", "pcp", "m2s", "s2m")


class Flat(NamedTuple):
    """The components of a batch flattened in (image, label) order, on the host."""

    counts: np.ndarray    # int64 [N]
    offset: np.ndarray    # int64 [N]: flat index of each image's first component
    image: np.ndarray     # int64 [C]
    area: np.ndarray      # int64 [C]
    centroid: np.ndarray  # float64 [C, 2]


def flatten(lab: Labelled) -> Flat:
    counts = lab.counts.cpu().numpy()
    valid = (torch.arange(lab.area.shape[1], device=lab.counts.device) < lab.counts[:, None]).cpu().numpy()
    image = np.nonzero(valid)[0]
    return Flat(counts, np.cumsum(counts) - counts, image, lab.area.cpu().numpy()[valid],
                lab.centroid.cpu().numpy()[valid])


def overlap_table(target: Labelled, pred: Labelled, t: Flat, p: Flat) -> tuple[np.ndarray, ...]:
    """The pixels each (target, prediction) pair shares, over the batch, on the host: flat
    target and prediction indices and pixel counts (int64), sorted by (target, prediction).
    Only the target pixels are read (``target`` labelled with ``index=True``), and only
    overlapping pairs appear: its size is bounded by the targets' area, not by G x P."""
    g1, p1 = target.area.shape[1] + 1, pred.area.shape[1] + 1
    pl = take(pred.labels, target.fg).to(torch.int64)
    on = pl > 0
    fg = target.fg[on]
    img = fg // (target.labels.shape[1] * target.labels.shape[2])
    key = (img * g1 + target.labels.reshape(-1)[fg].to(torch.int64)) * p1 + pl[on]
    key, pixels = torch.unique(key, return_counts=True)
    key, pixels = key.cpu().numpy(), pixels.cpu().numpy()
    img = key // (g1 * p1)
    return t.offset[img] + (key // p1) % g1 - 1, p.offset[img] + key % p1 - 1, pixels


def opdc_batch(target: Labelled, pred: Labelled, pixels: int, overlap: float, distance: float,
               pyirstd: bool) -> np.ndarray:
    """float64 [len(OPDC_FIELDS)]: the OPDC sums of one threshold over a batch, by the
    paper's rule (:func:`opdc_sparse`) or, with ``pyirstd``, as PyIRSTDMetrics 1.0.2 runs it
    (:func:`opdc_image`)."""
    t, p = flatten(target), flatten(pred)
    shared = overlap_table(target, pred, t, p)
    if not pyirstd:
        return opdc_sparse(t, p, shared, overlap, distance)
    total = np.zeros(len(OPDC_FIELDS))
    t_end, p_end = t.offset + t.counts, p.offset + p.counts
    for i in range(len(t.counts)):
        ts, ps = slice(t.offset[i], t_end[i]), slice(p.offset[i], p_end[i])
        mine = (shared[0] >= t.offset[i]) & (shared[0] < t_end[i])
        local = (shared[0][mine] - t.offset[i], shared[1][mine] - p.offset[i], shared[2][mine])
        total += opdc_image(t.area[ts], t.centroid[ts], p.area[ps], p.centroid[ps], local, overlap, distance)
    return total


def opdc_sums_of(shared: dict, target: Labelled, pred: Labelled, pixels: int, overlap: float, distance: float,
                 pyirstd: bool) -> np.ndarray:
    """:func:`opdc_batch`, computed once per cut for all the metrics that share ``shared``
    (one dict per cut and batch) with the same settings."""
    key = ("opdc", overlap, distance, pyirstd)
    if key not in shared:
        shared[key] = opdc_batch(target, pred, pixels, overlap, distance, pyirstd)
    return shared[key]


def opdc_image(t_area, t_cent, p_area, p_cent, shared, overlap: float, distance: float) -> np.ndarray:
    """OPDC on one image as PyIRSTDMetrics 1.0.2 runs it: an optimal assignment on the
    centroid distances of *all* (target, prediction) pairs, of which the pairs with IoU >=
    ``overlap`` are kept; then an optimal assignment among the targets and predictions left,
    of which the pairs closer than ``distance`` are kept. Its matrices have at least one
    row and column, so an image without targets counts one missed target, one without
    predictions one false prediction. ``shared``: this image's :func:`overlap_table`, local
    indices. Memory: the image's G x P distance matrix."""
    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize takes 0.4 s to import

    g, p = len(t_area), len(p_area)
    # Nothing can match. (The padding sits H * W pixels away, so on an image of fewer pixels
    # than `distance` PyIRSTDMetrics would match it; no such image is evaluated here.)
    if g == 0 or p == 0:
        rows, cols = max(g, 1), max(p, 1)
        return np.array([0, cols, rows, p_area.sum(), 0, 0, 0, 0, cols, rows, 0, 0], dtype=np.float64)
    dist = np.linalg.norm(t_cent[:, None, :] - p_cent[None, :, :], axis=2)
    ti, pj, inter_px = shared
    inter = np.zeros((g, p))
    inter[ti, pj] = inter_px
    iou = inter / (t_area[:, None] + p_area[None, :] - inter)
    valid_iou, valid_dist = iou >= overlap, dist < distance
    matched = np.zeros((g, p), dtype=bool)
    if valid_iou.any():
        r, c = linear_sum_assignment(dist)
        matched[r, c] = True
        matched &= valid_iou
    if valid_dist.any():
        free_r, free_c = np.flatnonzero(~matched.any(1)), np.flatnonzero(~matched.any(0))
        r, c = linear_sum_assignment(dist[np.ix_(free_r, free_c)])
        keep = valid_dist[free_r[r], free_c[c]]
        matched[free_r[r[keep]], free_c[c[keep]]] = True
    r, c = np.nonzero(matched)
    candidate = valid_iou | valid_dist
    return opdc_sums(r, c, inter[r, c], t_area, p_area, shared, candidate.any(1), candidate.any(0))


def opdc_sparse(t: Flat, p: Flat, shared, overlap: float, distance: float) -> np.ndarray:
    """OPDC by its paper's definition, for a whole batch: the most pairs with IoU >=
    ``overlap``, at the least total centroid distance; then, among the targets and
    predictions left, the most pairs closer than ``distance``, at the least total distance.
    Candidates come from the overlap table and the grid search of :mod:`.near`, and each
    connected group of candidates is assigned on its own, so memory grows with the
    candidate pairs, never with G x P."""

    ti, pj, inter = shared
    iou = inter / (t.area[ti] + p.area[pj] - inter)
    first = iou >= overlap
    m1 = assign(ti[first], pj[first], _distance(t, p, ti[first], pj[first]), len(t.area), len(p.area))
    r, c = ti[first][m1], pj[first][m1]
    near_t = near_p = np.zeros(0, dtype=np.int64)
    if len(t.area) and len(p.area):
        near_t, near_p = (v.numpy() for v in near_pairs(
            torch.from_numpy(t.image), torch.from_numpy(t.centroid), torch.from_numpy(p.image),
            torch.from_numpy(p.centroid), distance))
    done_t, done_p = np.zeros(len(t.area), bool), np.zeros(len(p.area), bool)
    done_t[r], done_p[c] = True, True
    left = ~done_t[near_t] & ~done_p[near_p]
    a, b = near_t[left], near_p[left]
    m2 = assign(a, b, _distance(t, p, a, b), len(t.area), len(p.area))
    r, c = np.concatenate((r, a[m2])), np.concatenate((c, b[m2]))
    cand_t, cand_p = np.zeros(len(t.area), bool), np.zeros(len(p.area), bool)
    cand_t[ti[first]] = cand_p[pj[first]] = cand_t[near_t] = cand_p[near_p] = True
    # The matched pairs' shared pixels, looked up in the (target, prediction)-sorted table.
    keys, want = ti * len(p.area) + pj, r * len(p.area) + c
    at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    hit = (keys[at] == want) if len(keys) else np.zeros(len(want), bool)
    return opdc_sums(r, c, np.where(hit, inter[at] if len(keys) else 0, 0), t.area, p.area, shared, cand_t,
                     cand_p)


def _distance(t: Flat, p: Flat, ti: np.ndarray, pj: np.ndarray) -> np.ndarray:
    d = t.centroid[ti] - p.centroid[pj]
    return np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])


def assign(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """bool [pairs]: the candidate pairs (rows[k], cols[k]) of a maximum matching of least
    total cost. Each connected group of candidates is one small assignment problem, with
    the absent pairs priced above any sum of present ones (so more pairs always win)."""
    # imported here: scipy.optimize takes 0.4 s, which every `istd` command paid, these rules or not
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    chosen = np.zeros(len(rows), bool)
    if not len(rows):
        return chosen
    if np.bincount(rows).max() == 1 and np.bincount(cols).max() == 1:
        # No row or column in two pairs (the usual case): every pair is its own group and
        # is chosen, without the graph (scipy's set-up was half of a 64x64 call's time).
        chosen[:] = True
        return chosen
    graph = coo_matrix((np.ones(len(rows)), (rows, n_rows + cols)), shape=(n_rows + n_cols,) * 2)
    group = connected_components(graph, directed=False)[1][rows]
    sizes = np.bincount(group)
    chosen[sizes[group] == 1] = True
    for g in np.flatnonzero(sizes > 1):
        k = np.flatnonzero(group == g)
        ur, r_at = np.unique(rows[k], return_inverse=True)
        uc, c_at = np.unique(cols[k], return_inverse=True)
        big = cost[k].sum() + 1.0
        matrix = np.full((len(ur), len(uc)), big)
        matrix[r_at, c_at] = cost[k]
        pair = np.full((len(ur), len(uc)), -1)
        pair[r_at, c_at] = k
        a, b = linear_sum_assignment(matrix)
        chosen[pair[a, b][pair[a, b] >= 0]] = True
    return chosen


def opdc_sums(r, c, inter_rc, t_area, p_area, shared, cand_t, cand_p) -> np.ndarray:
    """The :data:`OPDC_FIELDS` of a matching: matched pairs (r, c) sharing ``inter_rc``
    pixels; ``cand_t``/``cand_p``: which targets/predictions had any candidate pair. A
    matched prediction's false pixels split into those on other targets (merge error) and
    the rest (interference)."""
    tp = len(r)
    fn, fp = len(t_area) - tp, len(p_area) - tp
    pcp, itf = int((~cand_t).sum()), int((~cand_p).sum())
    free = np.ones(len(p_area), bool)
    free[c] = False
    on_targets = np.bincount(shared[1], weights=shared[2], minlength=len(p_area))
    u = t_area[r] + p_area[c] - inter_rc
    false_px = p_area[c] - inter_rc
    merged = on_targets[c] - inter_rc
    missed = t_area[r] - inter_rc
    return np.array([tp, fp, fn, p_area[free].sum(), (inter_rc / u).sum(), (merged / u).sum(),
                     ((false_px - merged) / u).sum(), (missed / u).sum(), itf, pcp, fp - itf, fn - pcp],
                    dtype=np.float64)
