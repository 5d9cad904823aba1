"""Losses for infrared small target detection (docs/networks.md §5: Soft-IoU, DpT-k).

Every loss takes ``(input, target)``: ``input`` holds logits by default (``from_logits=True``)
or probabilities in [0, 1] (``from_logits=False``); ``target`` is a 0/1 float mask of the same
shape, ``[N, 1, H, W]`` or ``[N, H, W]`` (any shape works, as long as both agree). Each returns a
scalar.

On logits, the log-terms are computed in log-sigmoid form (``binary_cross_entropy_with_logits``),
never as ``log(sigmoid(z))``, so logits of +-100 give finite losses and gradients. On
probabilities, ``log`` is clamped at -100 as in ``torch.nn.functional.binary_cross_entropy``.

All reductions run over the whole batch (every pixel of every image), as the ISTD training
code does; an image with few target pixels therefore weighs less than one with many.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DiceLoss", "DpTkLoss", "PolyLoss", "SoftIoULoss", "TopKLoss"]


def _check(input: object, target: object) -> None:
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise ValueError(f"input and target must be tensors; got {type(input).__name__} and "
                         f"{type(target).__name__}")
    if input.shape != target.shape:
        raise ValueError(f"target must have the shape of input ([N, 1, H, W] or [N, H, W]); got input "
                         f"{tuple(input.shape)} and target {tuple(target.shape)}")
    if input.numel() == 0:
        raise ValueError(f"input must not be empty; got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor; got {input.dtype}")


def _target(target: Tensor, like: Tensor) -> Tensor:
    """``target`` as ``like``'s dtype with values in [0, 1]; a 0/255 mask (as the metrics accept)
    is read as 0/1. Anything else outside [0, 1] is an error: the losses would be meaningless
    (negative Dice, infinite Poly loss). Costs one read of the target (a host sync on a GPU)."""
    if target.dtype == torch.bool:
        return target.to(like.dtype)
    lo, hi = (float(v) for v in torch.aminmax(target.detach().float()))
    if 0.0 <= lo and hi <= 1.0:
        return target.to(like.dtype)
    if lo == 0.0 and hi == 255.0 and bool(((target == 0) | (target == 255)).all()):
        return (target == 255).to(like.dtype)
    raise ValueError(f"target must hold values in [0, 1] (or be a 0/255 mask); got values in [{lo:g}, {hi:g}]")


def _probs(input: Tensor, from_logits: bool) -> Tensor:
    return torch.sigmoid(input) if from_logits else input


def _bce(input: Tensor, target: Tensor, from_logits: bool) -> Tensor:
    """Per-pixel ``-(y log p + (1 - y) log(1 - p))``, unreduced."""
    if from_logits:
        return F.binary_cross_entropy_with_logits(input, target, reduction="none")
    return F.binary_cross_entropy(input, target, reduction="none")


def _check_k(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 100:
        raise ValueError(f"k must be a percentage in (0, 100]; got {k!r}")
    return float(k)


def _top_k_mean(values: Tensor, k: float) -> Tensor:
    # floor like nnU-Net's TopKLoss, but never an empty selection
    n = max(1, int(values.numel() * k / 100))
    return torch.topk(values.reshape(-1), n, sorted=False).values.mean()


def _poly(bce: Tensor, alpha: float) -> Tensor:
    # exp(-bce) is p_t, the probability given to the true class: Poly-1 adds alpha * (1 - p_t)
    return bce + alpha * (1 - torch.exp(-bce))


class SoftIoULoss(nn.Module):
    """Soft IoU: ``1 - (sum(p*y) + s) / (sum(p + y - p*y) + s)`` over the whole batch.

    ``p = sigmoid(input)`` (or ``input`` with ``from_logits=False``), ``s = smooth`` (0: docs/networks.md §5.1's
    formula exactly; BasicIRSTD uses 1). With ``smooth = 0`` and an all-zero ``p`` and ``y`` the
    denominator is clamped to ``eps`` (loss 1, gradient finite) instead of dividing by zero.
    """

    def __init__(self, from_logits: bool = True, smooth: float = 0.0, eps: float = 1e-12):
        super().__init__()
        self.from_logits, self.smooth, self.eps = from_logits, float(smooth), float(eps)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check(input, target)
        p, y = _probs(input, self.from_logits), _target(target, input)
        inter = (p * y).sum()
        union = p.sum() + y.sum() - inter
        return 1 - (inter + self.smooth) / (union + self.smooth).clamp_min(self.eps)


class DiceLoss(nn.Module):
    """Dice: ``1 - (2 * sum(p*y) + s) / (sum(p) + sum(y) + s)``, ``s = smooth = 1``.

    Sums run over the flattened batch (one Dice for the whole batch, docs/networks.md §5.2), not per image.
    """

    def __init__(self, from_logits: bool = True, smooth: float = 1.0):
        super().__init__()
        self.from_logits, self.smooth = from_logits, float(smooth)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check(input, target)
        p, y = _probs(input, self.from_logits), _target(target, input)
        return 1 - (2 * (p * y).sum() + self.smooth) / (p.sum() + y.sum() + self.smooth)


class PolyLoss(nn.Module):
    """Poly-1 BCE: ``mean(bce + alpha * (1 - exp(-bce)))``, ``bce`` the per-pixel BCE.

    ``exp(-bce)`` is ``p_t`` (``p`` where ``y = 1``, ``1 - p`` where ``y = 0``), so this is
    ``BCE + alpha * (1 - p_t)`` (Leng et al., PolyLoss). ``alpha = 3.1`` as in RRCA-Net.
    """

    def __init__(self, alpha: float = 3.1, from_logits: bool = True):
        super().__init__()
        self.alpha, self.from_logits = float(alpha), from_logits

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check(input, target)
        return _poly(_bce(input, _target(target, input), self.from_logits), self.alpha).mean()


class TopKLoss(nn.Module):
    """Top-k BCE: the mean of the largest ``k`` percent of per-pixel BCE values in the batch.

    ``k`` is a percentage in (0, 100]; the number kept is ``max(1, floor(numel * k / 100))``
    over all pixels of all images together. ``k = 100`` is plain mean BCE.
    """

    def __init__(self, k: float = 10, from_logits: bool = True):
        super().__init__()
        self.k, self.from_logits = _check_k(k), from_logits

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check(input, target)
        return _top_k_mean(_bce(input, _target(target, input), self.from_logits), self.k)


class DpTkLoss(nn.Module):
    """RRCA-Net's DpT-k loss (docs/networks.md §5.2): ``Dice(p, y) + TopK_k(bce + alpha * (1 - exp(-bce)))``.

    ``Dice`` is :class:`DiceLoss` (smoothing 1, flattened batch); the second term is the mean of
    the largest ``k`` percent (over the whole batch, ``max(1, floor(numel * k / 100))`` values) of
    the per-pixel Poly-1 BCE. Defaults ``alpha = 3.1``, ``k = 10``.
    """

    def __init__(self, alpha: float = 3.1, k: float = 10, from_logits: bool = True, smooth: float = 1.0):
        super().__init__()
        self.alpha, self.k, self.from_logits = float(alpha), _check_k(k), from_logits
        self.dice = DiceLoss(from_logits=from_logits, smooth=smooth)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        _check(input, target)
        y = _target(target, input)
        poly = _poly(_bce(input, y, self.from_logits), self.alpha)
        return self.dice(input, y) + _top_k_mean(poly, self.k)
