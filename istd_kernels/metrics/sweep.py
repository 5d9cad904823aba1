"""Threshold sweeps: the list of probability thresholds a metric is evaluated at, the checks
its ``pred`` must pass, and the exact ``pred > t`` binarisation.

``thresholds=None`` is the single binarisation of the basic metrics (probability > 0.5, or
logit > 0 with ``logits=True``); a list ``[t_1, ..., t_K]`` evaluates every metric at each
``pred > t_k`` (probabilities; logits go through a float64 sigmoid first). PyIRSTDMetrics'
``num_bins=K`` is ``thresholds=numpy.linspace(0, 1, K, endpoint=False)`` (and ``num_bins=1``
is ``thresholds=None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor


def check_thresholds(thresholds: object) -> tuple[float, ...] | None:
    """``thresholds`` (None, or a non-empty sequence of numbers in [0, 1)) as a tuple of floats."""
    if thresholds is None:
        return None
    if isinstance(thresholds, Tensor):
        thresholds = thresholds.tolist()
    try:
        values = tuple(thresholds)
    except TypeError:
        raise TypeError(f"thresholds must be None or a sequence of probabilities; got {thresholds!r}") from None
    if not values:
        raise ValueError("thresholds must hold at least one probability; got an empty sequence")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"thresholds must be probabilities in [0, 1) (pred > t); got {v!r} in {values!r}")
    return tuple(float(v) for v in values)


def linspace_thresholds(k: int) -> tuple[float, ...] | None:
    """The K thresholds of PyIRSTDMetrics' ``num_bins=K`` (None for K = 1: the plain 0.5 cut)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"the number of thresholds must be an int >= 1; got {k!r}")
    return None if k == 1 else tuple(float(i) / k for i in range(k))


def levels(pred: Tensor, thresholds: tuple[float, ...] | None, logits: bool) -> tuple[Tensor, tuple[float, ...]]:
    """``(values, cuts)``: the map and the cuts whose ``values > cut`` are the binary
    predictions. ``thresholds=None``: ``pred`` itself (0/1 for bool maps) cut at 0.5, or at 0
    with ``logits``; otherwise probabilities (logits through a float64 sigmoid) cut at each
    threshold. Values are float32 or float64 (half types and integers widen exactly)."""
    if thresholds is None:
        values = pred if pred.dtype in (torch.float32, torch.float64) else pred.to(torch.float32)
        return values, (0.0 if logits and pred.dtype != torch.bool else 0.5,)
    if logits and pred.dtype != torch.bool:
        return torch.sigmoid(pred.to(torch.float64)), thresholds
    return (pred if pred.dtype in (torch.float32, torch.float64) else pred.to(torch.float32)), thresholds


def above(values: Tensor, t: float) -> Tensor:
    """``values > t`` with ``t`` taken as the float64 it is, as numpy compares a float32 map
    with a float64 threshold; torch alone would round ``t`` to float32 first (0.1 rounds up,
    so a pixel equal to float32(0.1) would be dropped). Comparing with the largest value of
    ``values``' dtype that is <= t is the same test without widening the map."""
    cut = torch.tensor(t, dtype=torch.float64).to(values.dtype)
    if float(cut) > t:
        cut = torch.nextafter(cut, torch.tensor(-math.inf, dtype=values.dtype))
    if values.device.type == "cpu":  # numpy's compare: 4.7x torch 2.13+cpu's on 64 512x512 maps (5.7 vs 27 ms)
        return torch.from_numpy(np.greater(values.detach().numpy(), cut.numpy()))
    return values > cut.to(values.device)


def count_true(mask: Tensor, dim: int | None = None) -> Tensor:
    """int64 count of the True entries of bool ``mask`` (over ``dim``, or all). On the CPU
    numpy's count: torch 2.13+cpu's count_nonzero took 10x longer (9.7 vs 0.9 ms, 16.7M)."""
    if mask.device.type == "cpu":
        return torch.as_tensor(np.count_nonzero(mask.numpy(), axis=dim), dtype=torch.int64)
    return torch.count_nonzero(mask) if dim is None else torch.count_nonzero(mask, dim)


def zeros_like(like: Tensor) -> Tensor:
    """A zero tensor of ``like``'s shape, dtype and device; on the CPU numpy's (calloc):
    torch's threaded fill took 6 ms for a 512x512 bool map on the busy 2-core machine."""
    if like.device.type == "cpu" and like.dtype in _NUMPY:
        return torch.from_numpy(np.zeros(tuple(like.shape), dtype=_NUMPY[like.dtype]))
    return torch.zeros_like(like)


_NUMPY = {torch.bool: np.bool_, torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64,
          torch.int32: np.int32}


def flat_true(mask: Tensor) -> Tensor:
    """int64 [K]: the flat indices of the True entries of bool ``mask``, ascending. On the
    CPU numpy's flatnonzero: torch 2.13+cpu's nonzero took 7x longer (21 vs 2.8 ms, 16.7M)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero()[:, 0]


def at_least(values: Tensor, t: float) -> Tensor:
    """The smallest value of ``values``' dtype that is >= the float64 ``t`` (a 0-d tensor):
    ``values >= it`` is the float64 test ``values >= t`` that numpy's histogram makes."""
    cut = torch.tensor(t, dtype=torch.float64).to(values.dtype)
    if float(cut) < t:
        cut = torch.nextafter(cut, torch.tensor(math.inf, dtype=values.dtype))
    return cut


# Above this share of pixels over the lowest cut, a compare per cut is cheaper than a scatter.
_SPARSE_SHARE = 1 / 16


def cut_maps(values: Tensor, cuts: tuple[float, ...]) -> Iterator[Tensor]:
    """``above(values, cut)`` for each of ``cuts`` in turn (bool [N, H, W]).

    IR maps are mostly background near 0: when few pixels pass the lowest cut, only those
    are compared at the other cuts and each map is scattered into zeros, a memset instead
    of a compare over every pixel (a threshold sweep of 64 512x512 maps spent a third of
    its time in those compares). The maps are the same either way."""
    lowest = min(cuts)
    low = above(values, lowest)
    if int(count_true(low)) > _SPARSE_SHARE * low.numel():
        for cut in cuts:
            yield low if cut == lowest else above(values, cut)
        return
    where = flat_true(low)
    passing = take(values, where)
    for cut in cuts:
        if cut == lowest:
            yield low
            continue
        out, keep = zeros_like(low), above(passing, cut)
        if out.device.type == "cpu":  # numpy's masked index and scatter: see take
            out.numpy().reshape(-1)[where.numpy()[keep.numpy()]] = True
        else:
            out.view(-1)[where[keep]] = True
        yield out


def take(source: Tensor, index: Tensor) -> Tensor:
    """``source.reshape(-1)[index]``; on the CPU numpy's gather: torch's threaded indexing took
    30 ms for 38k of 16.7M values on the busy 2-core machine (its parallel regions wait for
    a core)."""
    if source.device.type == "cpu" and source.dtype in _NUMPY:
        return torch.from_numpy(source.detach().numpy().reshape(-1)[index.numpy()])
    return source.reshape(-1)[index]


def unique_indices(index: Tensor, size: int) -> Tensor:
    """int64: the distinct values of ``index`` (flat indices below ``size``), ascending. On
    the CPU marked in a numpy bool map of ``size`` and read back (a pass over the map):
    torch's threaded unique took 25 ms for 332k indices on the busy 2-core machine."""
    if index.device.type == "cpu":
        seen = np.zeros(size, dtype=bool)
        seen[index.numpy()] = True
        return torch.from_numpy(np.flatnonzero(seen))
    return index.unique()

