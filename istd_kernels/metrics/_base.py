"""What every metric shares: input checks, binarisation, device-resident count state, merging
across processes.

The counts live in tensors on the device of the inputs and are only added to in ``update``;
reading them back to the host happens once, in ``compute``. Evaluation loops therefore run
without a host synchronisation per image (a data-dependent shape in the component matching
costs at most one per batch, see :mod:`.pdfa`).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor

from ..ops._checks import check_tensor

_ACCEPTED = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
             torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_maps(value: object, name: str) -> Tensor:
    """``value`` ([N, 1, H, W] or [N, H, W]) as an [N, H, W] view."""
    check_tensor(value, name, None, _ACCEPTED)
    if value.dim() == 4:
        if value.shape[1] != 1:
            raise ValueError(f"{name} must be [N, 1, H, W] or [N, H, W]; got shape {tuple(value.shape)} "
                             f"(one channel expected)")
        return value[:, 0]
    if value.dim() != 3:
        raise ValueError(f"{name} must be [N, 1, H, W] or [N, H, W]; got shape {tuple(value.shape)}")
    return value


def check_pair(pred: object, target: object) -> Tuple[Tensor, Tensor]:
    """Both inputs as [N, H, W] views, with matching shapes and devices."""
    p = as_maps(pred, "pred")
    t = as_maps(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape; got pred {tuple(pred.shape)} "
                         f"and target {tuple(target.shape)}")
    if p.device != t.device:
        raise ValueError(f"target must be on the device of pred ({p.device}); got {t.device}")
    return p, t


def binarize_pred(pred: Tensor, logits: bool) -> Tensor:
    """The binary prediction of SPEC §5: probability > 0.5, i.e. logit > 0. Bool maps are
    already binary and are taken as they are, whatever ``logits`` says."""
    if pred.dtype == torch.bool:
        return pred
    return pred > (0 if logits else 0.5)


def binarize_target(target: Tensor) -> Tensor:
    # > 0.5 reads 0/1 floats, 0/1 integers and 0/255 PNG masks alike.
    return target if target.dtype == torch.bool else target > 0.5


class Metric:
    """Base class: subclasses declare their count tensors in ``_init_state`` and add to them
    in ``update``.

    ``distributed=True`` (the default) all-reduces (sums) the counts in ``compute`` when
    ``torch.distributed`` is initialised, so that every rank returns the metric of the
    whole data set. Only raw counts are summed, never ratios, which is what makes the
    merge exact. ``compute`` works on copies: calling it twice, or updating after it, is
    safe.
    """

    def __init__(self, distributed: bool = True) -> None:
        self.distributed = bool(distributed)
        self._state: Dict[str, Tensor] = {}
        self.reset()

    # -- state ------------------------------------------------------------------------
    def _init_state(self, device: torch.device) -> Dict[str, Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        device = next(iter(self._state.values())).device if self._state else torch.device("cpu")
        self._state = self._init_state(device)

    def _on(self, device: torch.device) -> Dict[str, Tensor]:
        """The state, moved (once) to the device the inputs come on."""
        first = next(iter(self._state.values()))
        if first.device != device:
            self._state = {k: v.to(device) for k, v in self._state.items()}
        return self._state

    def sync(self) -> Dict[str, Tensor]:
        """Copies of the count tensors, summed over all processes when running distributed."""
        counts = {k: v.clone() for k, v in self._state.items()}
        dist = torch.distributed
        if not (self.distributed and dist.is_available() and dist.is_initialized()):
            return counts
        # A rank that saw no batch still holds CPU tensors, which NCCL cannot reduce; it must
        # take part in the collective all the same, or the other ranks would wait forever.
        needs_cuda = dist.get_backend() == "nccl"
        for name, v in counts.items():
            if needs_cuda and v.device.type != "cuda":
                moved = v.to(torch.device("cuda", torch.cuda.current_device()))
                dist.all_reduce(moved, op=dist.ReduceOp.SUM)
                counts[name] = moved.to(v.device)
            else:
                dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return counts

    # -- interface --------------------------------------------------------------------
    def update(self, pred: Tensor, target: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def __call__(self, pred: Tensor, target: Tensor) -> None:
        self.update(pred, target)


def ratio(num: float, den: float) -> float:
    """num / den, with 0 for an empty data set rather than a ZeroDivisionError or NaN."""
    return float(num) / float(den) if den else 0.0
