"""What every metric shares: input checks, binarisation, device-resident count state, merging
across processes.

The counts live in tensors on the device of the inputs and are only added to in ``update``;
reading them back to the host happens once, in ``compute``. Evaluation loops therefore run
without a host synchronisation per image (a data-dependent shape in the component matching
costs at most one per batch, see :mod:`.pdfa`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import backend as _backend
from ..ops._checks import check_tensor

_ACCEPTED = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
             torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_maps(value: object, name: str) -> Tensor:
    """``value`` ([N, 1, H, W] or [N, H, W]) as an [N, H, W] view."""
    check_tensor(value, name, None, _ACCEPTED)
    if value.is_meta:
        raise ValueError(f"{name} must hold data to be counted; got a tensor on the meta device")
    if value.dim() == 4:
        if value.shape[1] != 1:
            raise ValueError(f"{name} must be [N, 1, H, W] or [N, H, W]; got shape {tuple(value.shape)} "
                             f"(one channel expected)")
        return value[:, 0]
    if value.dim() != 3:
        raise ValueError(f"{name} must be [N, 1, H, W] or [N, H, W]; got shape {tuple(value.shape)}")
    return value


def check_pair(pred: object, target: object) -> tuple[Tensor, Tensor]:
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
    """The binary prediction of docs/metrics.md §1: probability > 0.5, i.e. logit > 0. Bool maps are
    already binary and are taken as they are, whatever ``logits`` says."""
    if pred.dtype == torch.bool:
        return pred
    return pred > (0 if logits else 0.5)


def check_flag(value: object, name: str) -> bool:
    """``value`` as a bool: True/False (or 1/0); anything else is a TypeError naming it, since
    ``bool("False")`` is True."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r}")


def check_backend(backend: object) -> str | None:
    """``backend`` checked when the metric is made rather than at its first update."""
    if backend is not None:
        _backend.requested(backend)  # raises ValueError naming the backend
    return backend


def check_values(pred: Tensor, logits: bool) -> None:
    """The one rule for a ``pred``'s values: ValueError when a floating-point ``pred`` holds NaN
    or infinities, or values outside [0, 1] while ``logits`` is False (logits thresholded at
    0.5 as probabilities would give a wrong number without a word). One host read of its min
    and max; integer and bool maps (0/1, 0/255) are masks and pass."""
    if not pred.dtype.is_floating_point or pred.numel() == 0:
        return
    if pred.device.type == "cpu" and pred.dtype in (torch.float32, torch.float64):
        # numpy's min and max (NaN propagates): torch's threaded aminmax took 3 ms for one
        # 512x512 map on the busy 2-core machine.
        values = pred.detach().numpy()
        _check_range(float(values.min()), float(values.max()), logits)
        return
    _check_range(*(float(v) for v in torch.aminmax(pred)), logits)


def _check_range(low: float, high: float, logits: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):  # NaN propagates into aminmax
        raise ValueError("pred must be finite; got NaN or infinite values")
    if not logits and not (0.0 <= low and high <= 1.0):
        raise ValueError(f"pred must hold probabilities in [0, 1] (or pass logits=True); got values in "
                         f"[{low}, {high}]")


class ValueCheck:
    """:func:`check_values` for metrics whose ``update`` needs no host sync.

    On the CPU the map is checked when it comes and a bad one raises before any count. On a
    GPU its min and max stay on the device until ``compute`` or ``sync`` (``flush``), which
    raise the same ValueError then (the counts already hold the bad batch: ``reset`` first).
    """

    def __init__(self) -> None:
        self._pending: Tensor | None = None

    def see(self, pred: Tensor, logits: bool) -> None:
        if not pred.dtype.is_floating_point or pred.numel() == 0:
            return
        if pred.device.type == "cpu":
            check_values(pred, logits)
            return
        low, high = torch.aminmax(pred)
        seen = torch.stack((low, high)).double()
        if logits:  # only finiteness matters: keep the range inside [0, 1] when finite
            seen = torch.where(torch.isfinite(seen), 0.5, seen)
        if self._pending is not None:  # minimum/maximum propagate NaN
            seen = torch.stack((torch.minimum(seen[0], self._pending[0]), torch.maximum(seen[1], self._pending[1])))
        self._pending = seen

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            _check_range(*pending.tolist(), False)


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
        self.distributed = check_flag(distributed, "distributed")
        self.value_check = ValueCheck()
        self._state: dict[str, Tensor] = {}
        self.reset()

    # -- state ------------------------------------------------------------------------
    def _init_state(self, device: torch.device) -> dict[str, Tensor]:
        raise NotImplementedError

    def reset(self) -> None:
        device = next(iter(self._state.values())).device if self._state else torch.device("cpu")
        self._state = self._init_state(device)

    def _on(self, device: torch.device) -> dict[str, Tensor]:
        """The state, moved (once) to the device the inputs come on."""
        first = next(iter(self._state.values()))
        if first.device != device:
            self._state = {k: v.to(device) for k, v in self._state.items()}
        return self._state

    def sync(self) -> dict[str, Tensor]:
        """Copies of the count tensors, summed over all processes when running distributed."""
        self.value_check.flush()
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
