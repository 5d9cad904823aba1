"""One pass over a CPU batch for everything :class:`~.bundle.ISTDMetrics` needs.

The C++ run scanner (``csrc/cpu/run_components.cpp``) reads the prediction and the target
once, thresholding a float32 prediction on the fly, and returns the per-image overlap
counts and both sets of component statistics. Separately, thresholding, counting the
overlap and measuring each mask read the batch four times and wrote a bool copy of it.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .. import backend as _backend
from ..extensions import cpu_extension
from ..ops.components import BACKENDS, MEASURE_OP


class PairMeasure(NamedTuple):
    inter: Tensor          # int64 [N], |P and T|
    union: Tensor          # int64 [N], |P or T|
    pred_counts: Tensor    # int64 [N]
    pred_area: Tensor      # int64 [N, P]
    pred_centroid: Tensor  # float64 [N, P, 2]
    target_counts: Tensor  # int64 [N]
    target_centroid: Tensor  # float64 [N, G, 2]


def _bytes(value: Tensor, float_threshold: float) -> Tuple[Tensor, Optional[float]]:
    """``value`` as the scanner reads it: float32 with ``float_threshold``, or uint8 where
    non-zero is foreground. For bool and uint8 maps both rules of SPEC §5 (> 0.5, and > 0
    for logits) mean non-zero, so they are passed as they are."""
    if value.dtype == torch.float32:
        return value.contiguous(), float_threshold
    if value.dtype in (torch.bool, torch.uint8):
        return value.contiguous().view(torch.uint8), None
    return (value > float_threshold).contiguous().view(torch.uint8), None


def measure_pair(pred: Tensor, target: Tensor, logits: bool, connectivity: int,
                 backend: Optional[str]) -> Optional[PairMeasure]:
    """The fused measurement of checked [N, H, W] maps, or None when the C++ backend is not
    the one that would measure them (then the caller takes the separate ops)."""
    if pred.device.type != "cpu":
        return None
    if _backend.select(MEASURE_OP, BACKENDS, pred.device, torch.float32, backend) != "cpp":
        return None
    p, p_threshold = _bytes(pred, 0.0 if logits else 0.5)
    t, t_threshold = _bytes(target, 0.5)
    out = cpu_extension().module.measure_pair(p, p_threshold, t, t_threshold, connectivity)
    inter, union, p_counts, p_area, p_centroid, _, t_counts, _, t_centroid, _ = out
    return PairMeasure(inter, union, p_counts, p_area, p_centroid, t_counts, t_centroid)
