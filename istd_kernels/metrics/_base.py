"""What every metric shares: input checks, binarisation, device-resident count state, merging
across processes.

The counts live in tensors on the device of the inputs and are only added to in ``update``;
reading them back to the host happens once, in ``compute``. Evaluation loops therefore run
without a host synchronisation per image (a data-dependent shape in the component matching
costs at most one per batch, see :mod:`.pdfa`).
"""

from __future__ import annotations

import warnings

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


class RangeCheck:
    """Warns once (per metric) when a floating-point ``pred`` given as probabilities has
    values outside [0, 1] (or NaN): logits passed without ``logits=True`` would otherwise be
    thresholded at 0.5 without a word.

    On the CPU the check reads the map when it comes; on a GPU the verdict stays on the
    device until ``compute`` (``flush``), so that ``update`` still needs no host sync.
    """

    def __init__(self) -> None:
        self.warned = False
        self._pending: Tensor | None = None

    def see(self, pred: Tensor, logits: bool) -> None:
        if logits or self.warned or not pred.dtype.is_floating_point or pred.numel() == 0:
            return
        low, high = torch.aminmax(pred)
        outside = ~((low >= 0) & (high <= 1))  # NaN fails both comparisons
        if pred.device.type == "cpu":
            if outside:
                self._warn()
        else:
            self._pending = outside if self._pending is None else self._pending | outside

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not self.warned and bool(pending):
            self._warn()

    def _warn(self) -> None:
        self.warned = True
        # stacklevel 4: the caller of the metric's update or compute.
        warnings.warn("pred has values outside [0, 1] (or NaN) although logits=False: they are thresholded at 0.5 as "
                      "probabilities. Pass logits=True for logits, or apply sigmoid first.", UserWarning,
                      stacklevel=4)


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
        self.range_check = RangeCheck()
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
        self.range_check.flush()
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
