"""Adan: adaptive Nesterov momentum (Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm
for Faster Optimizing Deep Models", 2022), the optimizer of LCRNet's recipe (docs/networks.md §3.3).

Update for a parameter ``theta`` with gradient ``g_k`` at step ``k`` (``g_0 := g_1``, so the
first difference is zero), betas in the convention of the authors' PyTorch code, where each
beta is the weight of the *old* value (the paper writes ``1 - beta``)::

    m_k = b1 m_{k-1} + (1 - b1) g_k                          # gradient momentum
    v_k = b2 v_{k-1} + (1 - b2) (g_k - g_{k-1})              # gradient-difference momentum
    n_k = b3 n_{k-1} + (1 - b3) (g_k + b2 (g_k - g_{k-1}))^2
    u_k = (m_k / c1 + b2 v_k / c2) / (sqrt(n_k / c3) + eps),  c_i = 1 - b_i^k
    theta_k = (theta_{k-1} - lr u_k) / (1 + lr wd)           # proximal weight decay (default)
    theta_k = theta_{k-1} (1 - lr wd) - lr u_k               # no_prox=True (decoupled, AdamW-like)

The bias corrections ``c_i`` are those of the reference implementation (the paper's
Algorithm 1 omits them); with them the first step is ``g / (|g| + eps)`` in size, as for Adam.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim import Optimizer


class Adan(Optimizer):
    """Adan optimizer (see the module docstring for the exact update).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (LCRNet: 1e-3).
        betas: ``(b1, b2, b3)``, weights of the old moments (LCRNet: ``(0.98, 0.92, 0.99)``).
        eps: added to ``sqrt(n / c3)`` (LCRNet: 1e-8).
        weight_decay: decay rate (LCRNet: 1e-4).
        no_prox: decoupled ``theta * (1 - lr * wd)`` decay instead of the proximal
            ``/ (1 + lr * wd)`` form.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
                 eps: float = 1e-8, weight_decay: float = 0.0, no_prox: bool = False) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0; got {lr}")
        if len(betas) != 3 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be three numbers in [0, 1); got {betas}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0; got {eps}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, no_prox=no_prox)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One Adan step over every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("Adan does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_diff"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    # g_0 := g_1: the first step sees no gradient difference
                    state["prev_grad"] = g.detach().clone()
                state["step"] += 1
                k = float(state["step"])
                m, v, n, prev = state["exp_avg"], state["exp_avg_diff"], state["exp_avg_sq"], state["prev_grad"]
                diff = g - prev
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).add_(diff, alpha=1 - b2)
                nesterov = g + b2 * diff
                n.mul_(b3).addcmul_(nesterov, nesterov, value=1 - b3)
                c1, c2, c3 = 1 - b1 ** k, 1 - b2 ** k, 1 - b3 ** k
                denom = (n / c3).sqrt_().add_(eps)
                update = (m / c1).add_(v, alpha=b2 / c2).div_(denom)
                if group["no_prox"]:
                    p.mul_(1 - lr * wd).add_(update, alpha=-lr)
                else:
                    p.add_(update, alpha=-lr).div_(1 + lr * wd)
                prev.copy_(g)
        return loss


__all__ = ["Adan"]
