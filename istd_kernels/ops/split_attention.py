"""Split attention over low-resolution branches, then the SiLU gate, as one op.

``split_attention(branches, logits, temperature, residual, v, groups, scales)`` computes
exactly :meth:`istd_kernels.nn.dlc.DLCAttention._split_attention` (with ``scales`` defaulting
to ``(2, 4, ..., 2**r)``)::

    w[n, k, j]  = softmax_j(logits[n, k*r + j] / temperature)             # per pixel
    A[n, c]     = residual[n, c] + sum_j w[n, k(c), j] * up_j(branches[j])[n, c]
    Z           = SiLU(A) * SiLU(v)

with ``up_j(b)[y, x] = b[y // s_j, x // s_j]`` (nearest by ``s_j`` then cropped) and
``k(c) = c // (D / groups)``. The fast path never materialises ``up_j``: it reads the
low-resolution branches directly.

This file holds the public function, the plain-PyTorch reference :func:`split_attention_ref`,
and the ``istd::split_attention`` / ``istd::split_attention_backward`` custom ops (fake and
autograd). The autograd rule saves only the inputs; the backward recomputes ``A``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import acc_dtype, empty_output, output_memory_format
from ..limits import SA_CUDA_MAX_LCM, SA_MAX_BRANCHES, SA_MAX_SCALE
from . import _dispatch, _transforms
from ._checks import autocast_cast, check_int, check_same, check_tensor, is_int
from ._cpu import AVX2_MISSING, avx2_kernels_run_here

OP = "istd.split_attention"
#: Branches the cpp and cuda kernels handle (per-branch state lives in fixed-size arrays).
MAX_KERNEL_BRANCHES = SA_MAX_BRANCHES
#: The cuda backward tiles 32x32-ish blocks whose sides are multiples of every scale, so
#: each low-res footprint lies in one block: the scales' lcm must not exceed this.
CUDA_MAX_LCM = SA_CUDA_MAX_LCM


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def default_scales(r: int) -> tuple[int, ...]:
    """``(2, 4, ..., 2**r)``: branch ``j`` (1-based) pooled by ``2**j``, as in DLCAttention."""
    return tuple(2 ** j for j in range(1, r + 1))


def _check_scales(scales, r: int) -> tuple[int, ...]:
    if scales is None:
        return default_scales(r)
    if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
        raise TypeError(f"scales must be None or a sequence of {r} ints (one per branch); got {scales!r}")
    scales = tuple(scales)
    if len(scales) != r:
        raise ValueError(f"scales must have one entry per branch ({r}); got {len(scales)}: {scales!r}")
    for s in scales:
        if not is_int(s):
            raise TypeError(f"scales must be ints; got {scales!r}")
        if not 1 <= s <= SA_MAX_SCALE:
            bound = ">= 1" if s < 1 else f"<= {SA_MAX_SCALE}"
            raise ValueError(f"scales must be {bound}; got {scales!r}")
    return scales


def _check(branches, logits, temperature, residual, v, groups, scales) -> tuple[int, tuple[int, ...]]:
    """Validate the arguments; return ``(r, scales)``."""
    check_tensor(residual, "residual", 4, shape_doc="[N, D, H, W]")
    n, d, h, w = residual.shape
    if d == 0:
        raise ValueError(f"residual must have at least one channel; got shape {tuple(residual.shape)}")
    check_int(groups, "groups")
    if groups < 1 or d % groups:
        raise ValueError(f"groups must be a positive divisor of residual's channel count D={d}; got {groups}")
    if isinstance(branches, Tensor) or not isinstance(branches, Sequence):
        raise TypeError(f"branches must be a list or tuple of tensors; got {type(branches).__name__}")
    r = len(branches)
    if r == 0:
        raise ValueError("branches must hold at least one tensor; got an empty sequence")
    scales = _check_scales(scales, r)
    check_tensor(v, "v", 4, shape_doc="[N, D, H, W]")
    check_same(v, "v", residual, "residual")
    if v.shape != residual.shape:
        raise ValueError(f"v must have residual's shape {tuple(residual.shape)}; got {tuple(v.shape)}")
    check_tensor(logits, "logits", 4, shape_doc="[N, groups*r, H, W]")
    check_same(logits, "logits", residual, "residual")
    want = (n, groups * r, h, w)
    if tuple(logits.shape) != want:
        raise ValueError(f"logits must have shape [N, groups*r, H, W] = {want} (groups={groups}, r={r}); "
                         f"got {tuple(logits.shape)}")
    check_tensor(temperature, "temperature")
    check_same(temperature, "temperature", residual, "residual")
    if temperature.dim() > 1 or temperature.numel() != 1:
        raise ValueError(f"temperature must be a 0-dim (or 1-element) tensor; got shape {tuple(temperature.shape)}")
    for j, (b, s) in enumerate(zip(branches, scales)):
        name = f"branches[{j}]"
        check_tensor(b, name, 4, shape_doc="[N, D, ceil(H/s), ceil(W/s)]")
        check_same(b, name, residual, "residual")
        want = (n, d, _ceil_div(h, s), _ceil_div(w, s))
        if tuple(b.shape) != want:
            raise ValueError(f"{name} must have shape [N, D, ceil(H/{s}), ceil(W/{s})] = {want} for scale {s}; "
                             f"got {tuple(b.shape)}")
    return r, scales


def _upsample(b: Tensor, s: int, h: int, w: int) -> Tensor:
    """``up(b)[y, x] = b[y // s, x // s]`` cropped to ``h x w``: each pixel repeated s x s times.

    Exact for any integer ``s`` (no float scale factor), and plain broadcasting, which
    torch.compile handles well (an index_select gather tripped Inductor's CPU code generator).
    """
    n, d, hb, wb = b.shape
    # A scale beyond the image repeats its one row (column) only as often as the image needs:
    # memory stays bounded by the image, whatever the scale.
    sh, sw = min(s, h), min(s, w)
    return b[:, :, :, None, :, None].expand(n, d, hb, sh, wb, sw).reshape(n, d, hb * sh, wb * sw)[:, :, :h, :w]


def split_attention_ref(branches: Sequence[Tensor], logits: Tensor, temperature: Tensor, residual: Tensor,
                        v: Tensor, groups: int, scales: Sequence[int] | None = None) -> Tensor:
    """Reference split attention in plain PyTorch; differentiable by autograd in every input.

    Half-precision inputs are computed in float32 and rounded once at the end, like the
    kernels. Args and result as :func:`split_attention` (no ``backend``).
    """
    r, scales = _check(branches, logits, temperature, residual, v, groups, scales)
    acc = acc_dtype(residual.dtype)
    n, d, h, w = residual.shape
    weights = torch.softmax(logits.to(acc).unflatten(1, (groups, r)) / temperature.to(acc).reshape(()), dim=2)
    a = residual.to(acc).unflatten(1, (groups, d // groups))
    for j, (b, s) in enumerate(zip(branches, scales)):
        a = a + weights[:, :, j:j + 1] * _upsample(b.to(acc), s, h, w).unflatten(1, (groups, d // groups))
    z = F.silu(a.flatten(1, 2)) * F.silu(v.to(acc))
    return z.to(residual.dtype).contiguous(memory_format=output_memory_format(residual))


# ---------------------------------------------------------------------------------------
# Kernel dispatch.


def _lcm(scales: Sequence[int]) -> int:
    out = 1
    for s in scales:
        out = out * s // math.gcd(out, s)
    return out


def _kernel_supports(backend: str):
    def supports(scales: Sequence[int] = (), **_) -> tuple[bool, str]:
        r = len(scales)
        if r > MAX_KERNEL_BRANCHES:
            return False, (f"the {backend} backend of split_attention supports at most {MAX_KERNEL_BRANCHES} "
                           f"branches (len(branches) <= {MAX_KERNEL_BRANCHES}); got {r}")
        if backend == "cpp" and not avx2_kernels_run_here():
            return False, f"the cpp split_attention is {AVX2_MISSING}"
        if backend == "cuda" and _lcm(scales) > CUDA_MAX_LCM:
            return False, (f"the cuda backend of split_attention needs scales whose least common multiple is "
                           f"<= {CUDA_MAX_LCM} (its backward tiles by it); got scales={tuple(scales)}")
        return True, ""

    return supports


def _triton_supports(scales: Sequence[int] = (), **_) -> tuple[bool, str]:
    from ..triton.split_attention import triton_supports

    return triton_supports(len(scales), scales)


def _register_extension(backend: str) -> None:
    fwd, bwd = (_dispatch.extension_kernel(backend, f"split_attn_{k}") for k in ("fwd", "bwd"))

    def forward(branches, logits, temperature, residual, v, groups, scales) -> Tensor:
        return fwd(list(branches), logits, temperature, residual, v, groups, list(scales))

    def backward(grad_z, branches, logits, temperature, residual, v, groups, scales) -> SaGrads:
        gbs, *rest = bwd(grad_z, list(branches), logits, temperature, residual, v, groups, list(scales))
        return SaGrads(list(gbs), *rest)

    _dispatch.register(OP, backend, forward, backward, _kernel_supports(backend))


class SaGrads(NamedTuple):
    """Gradients of split_attention's tensor inputs."""

    branches: list[Tensor]
    logits: Tensor
    temperature: Tensor
    residual: Tensor
    v: Tensor


def _torch_forward(branches, logits, temperature, residual, v, groups, scales) -> Tensor:
    with torch.no_grad():
        return split_attention_ref(branches, logits, temperature, residual, v, groups, scales)


def _torch_backward(grad_z, branches, logits, temperature, residual, v, groups, scales) -> SaGrads:
    """Autograd through the reference (recomputes A like the kernels do)."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (*branches, logits, temperature, residual, v)]
        r = len(branches)
        z = split_attention_ref(leaves[:r], *leaves[r:], groups, scales)
        grads = torch.autograd.grad(z, leaves, grad_z)
    return SaGrads(list(grads[:r]), *grads[r:])


def _triton_backward(*args) -> SaGrads:
    gbs, *rest = _dispatch.lazy("split_attention", "split_attention_bwd")(*args)
    return SaGrads(list(gbs), *rest)


_dispatch.register(OP, "torch", _torch_forward, _torch_backward)
_register_extension("cpp")
_register_extension("cuda")
_dispatch.register(OP, "triton", _dispatch.lazy("split_attention", "split_attention_fwd"), _triton_backward,
                   _triton_supports)


def _sa_run(branches: list[Tensor], logits: Tensor, temperature: Tensor, residual: Tensor, v: Tensor,
            groups: int, scales: list[int], backend: str) -> Tensor:
    return _dispatch.impl(OP, backend).forward(branches, logits, temperature, residual, v, groups, scales)


_sa_op = torch.library.custom_op("istd::split_attention", _sa_run, mutates_args=())


@_sa_op.register_fake
def _(branches, logits, temperature, residual, v, groups, scales, backend):
    return empty_output(residual, residual.shape)


def _sa_backward_run(grad_z: Tensor, branches: list[Tensor], logits: Tensor, temperature: Tensor,
                     residual: Tensor, v: Tensor, groups: int, scales: list[int], backend: str) -> list[Tensor]:
    """``[grad_branches[0], ..., grad_branches[r-1], grad_logits, grad_temperature, grad_residual, grad_v]``.

    Every gradient is contiguous with its input's shape and dtype (one flat list: a custom
    op cannot return a list nested in a tuple).
    """
    grads = _dispatch.impl(OP, backend).backward(grad_z, branches, logits, temperature, residual, v, groups, scales)
    # Outputs may not alias inputs or each other; the torch path's grads are fresh tensors,
    # contiguous() makes their layout match the fake.
    return [g.contiguous() for g in (*grads.branches, *grads[1:])]


_sa_backward_op = torch.library.custom_op("istd::split_attention_backward", _sa_backward_run, mutates_args=())


@_sa_backward_op.register_fake
def _(grad_z, branches, logits, temperature, residual, v, groups, scales, backend):
    return [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (*branches, logits, temperature, residual, v)]


def _setup_context(ctx, inputs, output):
    branches, logits, temperature, residual, v, groups, scales, backend = inputs
    # Inputs only: A, the weights and the upsampled branches are recomputed in the backward.
    ctx.save_for_backward(*branches, logits, temperature, residual, v)
    ctx.r = len(branches)
    ctx.conf = (groups, scales, backend)


def _backward(ctx, grad_z):
    saved = ctx.saved_tensors
    r = ctx.r
    groups, scales, backend = ctx.conf
    grads = _sa_backward(grad_z, list(saved[:r]), *saved[r:], groups, scales, backend)
    need = ctx.needs_input_grad
    # For the List[Tensor] argument needs_input_grad holds one bool per branch.
    need_b = need[0] if isinstance(need[0], (list, tuple)) else [need[0]] * r
    gbs = [g if m else None for g, m in zip(grads[:r], need_b)]
    rest = [g if m else None for g, m in zip(grads[r:], need[1:5])]
    return (gbs, *rest, None, None, None)


_sa_op.register_autograd(_backward, setup_context=_setup_context)
_sa_backward = _transforms.backward_op(_sa_backward_op, OP, _sa_backward_run)
_sa = _transforms.differentiable_op(_sa_op, _setup_context, _backward, _sa_run)


def split_attention(branches: Sequence[Tensor], logits: Tensor, temperature: Tensor, residual: Tensor, v: Tensor,
                    groups: int, scales: Sequence[int] | None = None, backend: str | None = None) -> Tensor:
    """Fused residual split attention over low-resolution branches, then the SiLU gate.

    ``Z = SiLU(A) * SiLU(v)`` with ``A[c] = residual[c] + sum_j w[k(c), j] * up_j(branches[j])[c]``,
    ``w[k, :] = softmax(logits[k*r:(k+1)*r] / temperature)`` per pixel,
    ``up_j(b)[y, x] = b[y // s_j, x // s_j]`` and ``k(c) = c // (D / groups)``; identical to
    ``DLCAttention._split_attention``.

    Args:
        branches: ``r >= 1`` tensors; ``branches[j]`` is ``[N, D, ceil(H/s_j), ceil(W/s_j)]``,
            group-major (group ``k`` owns channels ``[k*D/groups, (k+1)*D/groups)``).
        logits: ``[N, groups*r, H, W]``; channel ``k*r + j`` is the logit of branch ``j`` in group ``k``.
        temperature: 0-dim or 1-element tensor, positive (not checked: that would need a
            device sync); it gets a gradient.
        residual: ``[N, D, H, W]``, added after the weighted sum. ``v``: ``[N, D, H, W]``.
        groups: int dividing ``D``.
        scales: ``r`` ints >= 1, default ``(2, 4, ..., 2**r)``. The triton backend needs
            ``r <= 4`` and power-of-two scales ``<= 32``, the cuda backend ``r <= 4`` and
            scales whose least common multiple is ``<= 32``, the cpp backend ``r <= 4``
            (ValueError otherwise).
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"triton"``, ``"auto"`` or None (see
            :mod:`istd_kernels.backend`; ``auto`` runs cpp, else torch, on CPU tensors).

    All tensors share one float dtype (float16/bfloat16/float32/float64) and device, any
    layout (the triton backend copies non-contiguous inputs to contiguous NCHW; the cpp and
    cuda kernels read them in place through their strides).

    Returns:
        ``[N, D, H, W]`` in the input dtype (float32 accumulation for half types),
        channels_last if ``residual`` is. Training saves only the inputs.
    """
    branches, logits, temperature, residual, v = autocast_cast(residual, branches, logits, temperature, residual, v)
    _, scales = _check(branches, logits, temperature, residual, v, groups, scales)
    name = _dispatch.choose(OP, residual.device, residual.dtype, backend, scales=scales)
    if name == "torch":
        return split_attention_ref(list(branches), logits, temperature, residual, v, groups, scales)
    return _sa(list(branches), logits, temperature, residual, v, groups, list(scales), name)
