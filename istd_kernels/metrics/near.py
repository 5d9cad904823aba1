"""The candidate search of the Pd/Fa matching rules: every (target, prediction) pair of an
image whose centroids are closer than ``distance``, found through a grid of cells so that the
work grows with the number of components and candidates, never with their product
(docs/metrics.md §4). Shared by the greedy rule (pdfa.py) and the optimal-assignment rules
(rules.py)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Cells per axis of the matching grid at most: keeps (image, row cell, column cell) keys far
# inside int64 for any batch, at the price of larger cells when `distance` is tiny.
_MAX_CELLS = 1 << 16


def near_pairs(t_img: Tensor, t_cent: Tensor, p_img: Tensor, p_cent: Tensor, distance: float
                ) -> tuple[Tensor, Tensor]:
    """All (target, prediction) index pairs of one image whose centroids are closer than
    ``distance``, from flat lists ([G] images, [G, 2] centroids; [P], [P, 2]).

    Predictions are bucketed into a grid of square cells at least ``distance`` wide, so a
    target's candidates lie in its own cell and the 8 around it: the work and memory grow
    with G + P + the candidates found, never with G x P.
    """
    # A hair wider than `distance`: a pair closer than `distance` then never lands two cells
    # apart through the rounding of the division below.
    low, high = (float(v) for v in torch.aminmax(torch.cat((t_cent, p_cent))))
    cell = max(distance * (1 + 2.0 ** -20), (high - low) / (_MAX_CELLS - 3))
    side = int((high - low) / cell) + 3  # cells per axis, one spare on each side for the neighbours

    def keys(img: Tensor, cent: Tensor) -> Tensor:
        rc = ((cent - low) / cell).floor().to(torch.int64) + 1
        return (img * side + rc[:, 0]) * side + rc[:, 1]

    p_keys, p_order = torch.sort(keys(p_img, p_cent), stable=True)
    # The three cells left of, at and right of a target's column have consecutive keys, so
    # each of the rows above, at and below it is one range of the sorted predictions.
    device = p_keys.device
    row_start = (keys(t_img, t_cent)[:, None] + torch.tensor([-side - 1, -1, side - 1], device=device)).view(-1)
    lo = torch.searchsorted(p_keys, row_start)
    count = torch.searchsorted(p_keys, row_start + 2, right=True) - lo               # [G * 3]
    # The range of each candidate. (repeat_interleave does the same but took 16 ms on a
    # 60-element input on a loaded CPU, its thread pool's start-up; a search takes microseconds.)
    ends = torch.cumsum(count, 0)
    span = torch.searchsorted(ends, torch.arange(int(ends[-1]) if ends.numel() else 0, device=device), right=True)
    rank = torch.arange(span.numel(), device=device) - (ends - count)[span]
    pair_t, pair_p = span // 3, p_order[lo[span] + rank]
    d = t_cent[pair_t] - p_cent[pair_p]
    near = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] < squared_bound(distance)
    return pair_t[near], pair_p[near]


def squared_bound(distance: float) -> float:
    """The least float64 ``b`` with ``math.sqrt(b) >= distance``, so that ``d2 < b`` exactly when
    the reference's ``math.sqrt(d2) < distance`` (a correctly rounded square root).

    Not ``torch.sqrt(d2) < distance``: float64 ``torch.sqrt`` on the CPU is not correctly
    rounded in every build (torch 2.13.0+cpu returns 1.414213562373095 for 2.0, one ulp low),
    which let a centroid exactly ``sqrt(2)`` away match at ``distance=sqrt(2)``.
    """
    b = distance * distance
    while b > 0 and math.sqrt(math.nextafter(b, 0.0)) >= distance:
        b = math.nextafter(b, 0.0)
    while math.sqrt(b) < distance:
        b = math.nextafter(b, math.inf)
    return b
