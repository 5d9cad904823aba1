"""Per-image statistics of (prediction, target) pairs of binary masks, for the metrics.

Two routed ops, not public API: ``istd.mask_overlap`` counts ``|P and T|`` and ``|P or T|``
per image (torch reductions, or one C++ pass over the bytes: torch's reductions of bool
maps widen them to int64 first and were 10-20x slower on 64 x 512 x 512 masks), and
``istd.measure_pair``, the C++ run scanner's one pass over a pair that yields the overlap
counts and both masks' component statistics (``csrc/cpu/run_components.cpp``). The metrics
ask the registry (:mod:`._dispatch`) for both, like every other caller.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch

OVERLAP_OP = "istd.mask_overlap"
PAIR_OP = "istd.measure_pair"


def _overlap_torch(pred_bin: Tensor, target_bin: Tensor) -> tuple[Tensor, Tensor]:
    inter = (pred_bin & target_bin).flatten(1).sum(1, dtype=torch.int64)
    union = (pred_bin | target_bin).flatten(1).sum(1, dtype=torch.int64)
    return inter, union


def _overlap_cpp(pred_bin: Tensor, target_bin: Tensor) -> tuple[Tensor, Tensor]:
    kernel = _dispatch.extension_kernel("cpp", "mask_overlap")
    return kernel(pred_bin.contiguous().view(torch.uint8), target_bin.contiguous().view(torch.uint8))


_dispatch.register(OVERLAP_OP, "torch", _overlap_torch)
_dispatch.register(OVERLAP_OP, "cpp", _overlap_cpp)
# forward(pred, pred_threshold, target, target_threshold, connectivity): the scanner's inputs
# (see components.scanner_input); the caller runs it where measure_components would run cpp.
_dispatch.register(PAIR_OP, "cpp", _dispatch.extension_kernel("cpp", "measure_pair"))
