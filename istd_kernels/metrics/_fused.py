"""One pass over a CPU batch for everything :class:`~.bundle.ISTDMetrics` needs.

The C++ run scanner (``csrc/cpu/run_components.cpp``) reads the prediction and the target
once, thresholding a float32 prediction on the fly, and returns the per-image overlap
counts and both sets of component statistics. Separately, thresholding, counting the
overlap and measuring each mask read the batch four times and wrote a bool copy of it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..ops import _dispatch
from ..ops.components import MEASURE_OP, scanner_input
from ..ops.mask_stats import PAIR_OP
from ._base import binarize_target


class PairMeasure(NamedTuple):
    inter: Tensor          # int64 [N], |P and T|
    union: Tensor          # int64 [N], |P or T|
    pred_counts: Tensor    # int64 [N]
    pred_area: Tensor      # int64 [N, P]
    pred_centroid: Tensor  # float64 [N, P, 2]
    target_counts: Tensor  # int64 [N]
    target_centroid: Tensor  # float64 [N, G, 2]


def measure_pair(pred: Tensor, target: Tensor, threshold: float, connectivity: int,
                 backend: str | None) -> PairMeasure | None:
    """The fused measurement of checked [N, H, W] maps, the prediction positive where
    ``pred > threshold``, the target where ``target > 0.5``; or None when the C++ backend
    is not the one that would measure them (then the caller takes the separate ops).

    A float32 ``pred`` is compared with ``threshold`` rounded to float32, as ``pred >
    threshold`` does in PyTorch."""
    if pred.device.type != "cpu":
        return None
    if _dispatch.choose(MEASURE_OP, pred.device, torch.float32, backend) != "cpp":
        return None
    p, p_threshold = scanner_input(pred, threshold, lambda v: v > threshold)
    t, t_threshold = scanner_input(target, 0.5, binarize_target)
    out = _dispatch.impl(PAIR_OP, "cpp").forward(p, p_threshold, t, t_threshold, connectivity)
    inter, union, p_counts, p_area, p_centroid, _, t_counts, _, t_centroid, _ = out
    return PairMeasure(inter, union, p_counts, p_area, p_centroid, t_counts, t_centroid)
