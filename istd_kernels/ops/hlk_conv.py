"""HLKConv: depthwise conv -> dilated depthwise conv -> split 1x1, as one op.

``hlk_conv(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)`` computes (SPEC §2)::

    a = F.conv2d(x, w0, b0, padding=k1 // 2, groups=C)
    d = F.conv2d(a, w1, b1, padding=dilation * (k2 // 2), dilation=dilation, groups=C)
    y = F.conv2d(cat([a, d]), w_pw, b_pw)                       # groups == 1

With ``groups=G`` the op is G independent HLKConvs on consecutive channel chunks: chunk g
of ``y`` is the 1x1 of ``cat([a_g, d_g])``. The concat is never built by the fast paths: the
pointwise weight is split into the half that multiplies ``a`` and the half that multiplies
``d``.

This file holds the public function, the plain-PyTorch reference :func:`hlk_conv_ref`, the
``istd::hlk_conv`` / ``istd::hlk_conv_backward`` custom ops (fake and autograd), and the
backward that the cpp and cuda backends compose from their depthwise kernels. The autograd
rule saves only ``x`` and the weights; every backend recomputes ``a`` and ``d`` in the
backward, so training keeps one activation per HLKConv instead of four.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import backend as _backend
from ..extensions import cpu_extension, cuda_extension
from . import depthwise as _dw
from ..layout import output_memory_format
from ._checks import autocast_cast, check_same, check_tensor, unaliased

OP = "istd.hlk_conv"
BACKENDS = ("torch", "cpp", "cuda", "triton")
MAX_KERNEL = _dw.MAX_KERNEL
MAX_DILATION = _dw.MAX_DILATION

#: ``k_size -> (k1, k2, dilation)`` of the published HLKConv.py (SPEC §2).
K_SIZES = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}


def decompose(k_size: int) -> Tuple[int, int, int]:
    """``(k1, k2, dilation)`` for a receptive field ``k_size`` from the published table."""
    if isinstance(k_size, bool) or not isinstance(k_size, int) or k_size not in K_SIZES:
        raise ValueError(f"k_size must be one of {sorted(K_SIZES)} (the published HLKConv table); got {k_size!r}")
    return K_SIZES[k_size]


def _check_int(value: object, name: str, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}; got {value}")
    return value


def _check_dw_weight(w: Tensor, name: str, channels: int, x: Tensor) -> int:
    check_tensor(w, name, 4, shape_doc="[C, 1, k, k]")
    check_same(w, name, x, "x")
    k = w.shape[2]
    if w.shape[0] != channels or w.shape[1] != 1 or w.shape[3] != k:
        raise ValueError(f"{name} must have shape ({channels}, 1, k, k) with a square kernel for x with "
                         f"C={channels}; got {tuple(w.shape)}")
    if k % 2 == 0 or not 1 <= k <= MAX_KERNEL:
        raise ValueError(f"{name}'s kernel size must be odd and between 1 and {MAX_KERNEL} ('same' padding); got {k}")
    return k


def _check_bias(b: Optional[Tensor], name: str, size: int, x: Tensor) -> None:
    if b is None:
        return
    check_tensor(b, name, 1, shape_doc=f"[{size}]")
    check_same(b, name, x, "x")
    if b.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},); got {tuple(b.shape)}")


def _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups) -> Tuple[int, int, int]:
    """Validate the arguments; return (k1, k2, Cout)."""
    check_tensor(x, "x", 4, shape_doc="[N, C, H, W]")
    channels = x.shape[1]
    if channels == 0:
        raise ValueError(f"x must have at least one channel; got shape {tuple(x.shape)}")
    groups = _check_int(groups, "groups", 1)
    if channels % groups:
        raise ValueError(f"groups={groups} must divide x's channel count C={channels}")
    _check_int(dilation, "dilation", 1, MAX_DILATION)
    k1 = _check_dw_weight(w0, "w0", channels, x)
    k2 = _check_dw_weight(w1, "w1", channels, x)
    _check_bias(b0, "b0", channels, x)
    _check_bias(b1, "b1", channels, x)
    check_tensor(w_pw, "w_pw", 4, shape_doc="[Cout, 2*C/groups, 1, 1]")
    check_same(w_pw, "w_pw", x, "x")
    cout = w_pw.shape[0]
    want_in = 2 * channels // groups
    if cout == 0 or cout % groups or w_pw.shape[1:] != (want_in, 1, 1):
        raise ValueError(f"w_pw must have shape (Cout, 2*C/groups, 1, 1) = (Cout, {want_in}, 1, 1) with Cout a "
                         f"positive multiple of groups={groups}; got {tuple(w_pw.shape)}")
    _check_bias(b_pw, "b_pw", cout, x)
    return k1, k2, cout


def _interleave(a: Tensor, d: Tensor, groups: int) -> Tensor:
    """``[a_1, d_1, a_2, d_2, ...]`` over the channel chunks: the input of the grouped 1x1."""
    n, c, h, w = a.shape
    return torch.stack([a.reshape(n, groups, c // groups, h, w), d.reshape(n, groups, c // groups, h, w)],
                       dim=2).reshape(n, 2 * c, h, w)


def hlk_conv_ref(x: Tensor, w0: Tensor, b0: Optional[Tensor], w1: Tensor, b1: Optional[Tensor], w_pw: Tensor,
                 b_pw: Optional[Tensor], dilation: int, groups: int = 1) -> Tensor:
    """Reference HLKConv in plain PyTorch, independent of ``F.conv2d``; differentiable by autograd.

    The depthwise steps are :func:`~istd_kernels.ops.depthwise_conv2d_ref` tap sums and the
    split 1x1 is an einsum over the two weight halves. Half-precision inputs accumulate in
    float32 (``a`` and ``d`` are not rounded to the input dtype), like the kernels.

    Args and result as :func:`hlk_conv` (no ``backend``).
    """
    k1, k2, cout = _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32

    def up(t):
        return None if t is None else t.to(acc)

    a = _dw.depthwise_conv2d_ref(x.to(acc), w0.to(acc), up(b0), 1, k1 // 2, 1)
    d = _dw.depthwise_conv2d_ref(a, w1.to(acc), up(b1), 1, dilation * (k2 // 2), dilation)
    n, c, h, w = x.shape
    cg, og = c // groups, cout // groups
    wp = w_pw.to(acc).reshape(groups, og, 2 * cg)
    y = (torch.einsum("goc,ngchw->ngohw", wp[:, :, :cg], a.reshape(n, groups, cg, h, w))
         + torch.einsum("goc,ngchw->ngohw", wp[:, :, cg:], d.reshape(n, groups, cg, h, w))).reshape(n, cout, h, w)
    if b_pw is not None:
        y = y + b_pw.to(acc).view(1, -1, 1, 1)
    return y.to(x.dtype)


def _torch_forward(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups) -> Tensor:
    """The unfused eager chain: what a plain nn.Conv2d HLKConv runs."""
    c = x.shape[1]
    k1, k2 = w0.shape[2], w1.shape[2]
    a = F.conv2d(x, w0, b0, 1, k1 // 2, 1, c)
    d = F.conv2d(a, w1, b1, 1, dilation * (k2 // 2), dilation, c)
    cat = torch.cat([a, d], 1) if groups == 1 else _interleave(a, d, groups)
    return F.conv2d(cat, w_pw, b_pw, groups=groups).contiguous(memory_format=output_memory_format(x))


# ---------------------------------------------------------------------------------------
# Kernel dispatch.


def _triton_fused(w0: Tensor, w1: Tensor, dilation: int) -> bool:
    """Whether the fused Triton kernels take this geometry (else the composed path runs).

    Their tuned tiles leave a useful inner region only for a backward halo
    ``k1//2 + dilation*(k2//2)`` up to ``MAX_TUNED_HALO`` (6): k_size 7 and 11. Larger
    halos would need a tile that spills registers, so they go through the Triton
    depthwise kernels and two small matmuls instead.
    """
    from ..triton import hlk_conv as tk

    return w0.shape[2] // 2 + dilation * (w1.shape[2] // 2) <= tk.MAX_TUNED_HALO


def _forward(backend: str, x, w0, b0, w1, b1, w_pw, b_pw, dilation: int, groups: int) -> Tensor:
    if backend == "triton":
        from ..triton import hlk_conv as tk

        if not _triton_fused(w0, w1, dilation):
            return _composed_forward(backend, x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
        return tk.hlk_fwd(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    args = (x, w0.contiguous(), b0, w1.contiguous(), b1, w_pw.contiguous(), b_pw, dilation, groups)
    if backend == "cpp":
        return cpu_extension().module.hlk_fwd(*args)
    return _dw._cuda_call(cuda_extension().module.hlk_fwd, *args)


def _composed_forward(backend: str, x, w0, b0, w1, b1, w_pw, b_pw, dilation: int, groups: int) -> Tensor:
    """Forward from the depthwise kernels of ``backend`` plus a split einsum (no concat)."""
    n, c, h, w = x.shape
    cout = w_pw.shape[0]
    k1, k2 = w0.shape[2], w1.shape[2]
    p1, p2 = k1 // 2, dilation * (k2 // 2)
    acc = _acc_dtype(x.dtype)
    cg, og = c // groups, cout // groups
    wp = w_pw.reshape(groups, og, 2 * cg).to(acc)
    a = _dw._fwd(backend, x, w0, b0, (1, 1), (p1, p1), (1, 1))
    d = _dw._fwd(backend, a, w1, b1, (1, 1), (p2, p2), (dilation, dilation))
    y = (torch.einsum("goc,ngcp->ngop", wp[:, :, :cg], a.to(acc).reshape(n, groups, cg, h * w))
         + torch.einsum("goc,ngcp->ngop", wp[:, :, cg:], d.to(acc).reshape(n, groups, cg, h * w)))
    y = y.reshape(n, cout, h, w)
    if b_pw is not None:
        y = y + b_pw.to(acc).view(1, -1, 1, 1)
    return y.to(x.dtype).contiguous(memory_format=output_memory_format(x))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _composed_backward(backend: str, grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, need):
    """Backward from the depthwise kernels of ``backend`` plus two small matmuls.

    Recomputes ``a`` and ``d`` (nothing but ``x`` was saved), then runs the chain rule
    step by step; the concat is never built here either.
    """
    n, c, h, w = x.shape
    cout = w_pw.shape[0]
    k1, k2 = w0.shape[2], w1.shape[2]
    p1, p2 = k1 // 2, dilation * (k2 // 2)
    one = (1, 1)
    acc = _acc_dtype(x.dtype)
    cg, og = c // groups, cout // groups
    wp = w_pw.reshape(groups, og, 2 * cg).to(acc)
    wa, wd = wp[:, :, :cg], wp[:, :, cg:]

    a = _dw._fwd(backend, x, w0, b0, one, (p1, p1), one)
    d = _dw._fwd(backend, a, w1, b1, one, (p2, p2), (dilation, dilation))
    gy = grad_y.to(acc).reshape(n, groups, og, h * w)
    a_acc = a.to(acc).reshape(n, groups, cg, h * w)
    d_acc = d.to(acc).reshape(n, groups, cg, h * w)

    out: List[Optional[Tensor]] = [None] * 7
    if need[5]:
        g_wa = torch.einsum("ngop,ngcp->goc", gy, a_acc)
        g_wd = torch.einsum("ngop,ngcp->goc", gy, d_acc)
        out[5] = torch.cat([g_wa, g_wd], dim=2).reshape(w_pw.shape).to(w_pw.dtype)
    if need[6]:
        out[6] = gy.sum(dim=(0, 3)).reshape(cout).to(w_pw.dtype)
    if not any(need[:5]):
        return out
    g_d = torch.einsum("goc,ngop->ngcp", wd, gy).reshape(n, c, h, w).to(x.dtype)
    if need[3] or need[4]:
        gw1, gb1 = _dw._bwd_weight(backend, g_d, a, (k2, k2), one, (p2, p2), (dilation, dilation), bool(need[4]))
        out[3] = gw1 if need[3] else None
        out[4] = gb1 if need[4] else None
    if not any(need[:3]):
        return out
    g_a = torch.einsum("goc,ngop->ngcp", wa, gy).reshape(n, c, h, w)
    g_a = (g_a + _dw._bwd_input(backend, g_d, w1, (h, w), one, (p2, p2), (dilation, dilation)).to(acc)).to(x.dtype)
    if need[0]:
        out[0] = _dw._bwd_input(backend, g_a, w0, (h, w), one, (p1, p1), one)
    if need[1] or need[2]:
        gw0, gb0 = _dw._bwd_weight(backend, g_a, x, (k1, k1), one, (p1, p1), one, bool(need[2]))
        out[1] = gw0 if need[1] else None
        out[2] = gb0 if need[2] else None
    return out


def _backward_kernels(backend: str, grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, need):
    if backend == "triton" and _triton_fused(w0, w1, dilation):
        from ..triton import hlk_conv as tk

        return list(tk.hlk_bwd(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, tuple(need)))
    return _composed_backward(backend, grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, need)


@torch.library.custom_op("istd::hlk_conv", mutates_args=())
def _hlk_op(x: Tensor, w0: Tensor, b0: Optional[Tensor], w1: Tensor, b1: Optional[Tensor], w_pw: Tensor,
            b_pw: Optional[Tensor], dilation: int, groups: int, backend: str) -> Tensor:
    return _forward(backend, x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)


def _empty_out(like: Tensor, shape) -> Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=output_memory_format(like))


@_hlk_op.register_fake
def _(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, backend):
    return _empty_out(x, (x.shape[0], w_pw.shape[0], x.shape[2], x.shape[3]))


_GRAD_NAMES = ("x", "w0", "b0", "w1", "b1", "w_pw", "b_pw")


@torch.library.custom_op("istd::hlk_conv_backward", mutates_args=())
def _hlk_backward_op(grad_y: Tensor, x: Tensor, w0: Tensor, b0: Optional[Tensor], w1: Tensor,
                     b1: Optional[Tensor], w_pw: Tensor, dilation: int, groups: int, backend: str,
                     output_mask: List[bool]) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of (x, w0, b0, w1, b1, w_pw, b_pw); one not asked for in ``output_mask`` is empty."""
    grads = _backward_kernels(backend, grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, list(output_mask))
    # Outputs of a custom op may not alias one another or an input: a fresh empty tensor per
    # unused slot, and a copy of any gradient sharing a buffer (kernels may reduce several
    # parameter gradients into one; those are small).
    grads = [g if (m and g is not None) else grad_y.new_empty(0) for g, m in zip(grads, output_mask)]
    return tuple(unaliased(grads, (grad_y, x, w0, b0, w1, b1, w_pw)))


@_hlk_backward_op.register_fake
def _(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, backend, output_mask):
    c, cout = x.shape[1], w_pw.shape[0]
    shapes = (None, w0.shape, (c,), w1.shape, (c,), w_pw.shape, (cout,))
    out = []
    for i, (m, shape) in enumerate(zip(output_mask, shapes)):
        if not m:
            out.append(grad_y.new_empty(0))
        elif i == 0:
            out.append(_empty_out(x, x.shape))
        else:
            out.append(w0.new_empty(shape))
    return tuple(out)


def _setup_context(ctx, inputs, output):
    x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, backend = inputs
    # Only the input and the (small) weights: a and d are recomputed in the backward.
    ctx.save_for_backward(x, w0, b0, w1, b1, w_pw)
    ctx.conf = (dilation, groups, backend)
    ctx.has_bias = (b0 is not None, b1 is not None, b_pw is not None)


def _backward(ctx, grad_y):
    x, w0, b0, w1, b1, w_pw = ctx.saved_tensors
    need = ctx.needs_input_grad
    has = ctx.has_bias
    mask = [bool(need[0]), bool(need[1]), bool(has[0] and need[2]), bool(need[3]), bool(has[1] and need[4]),
            bool(need[5]), bool(has[2] and need[6])]
    dilation, groups, backend = ctx.conf
    grads = _hlk_backward_op(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, backend, mask)
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None, None, None)


_hlk_op.register_autograd(_backward, setup_context=_setup_context)


def hlk_conv(x: Tensor, w0: Tensor, b0: Optional[Tensor], w1: Tensor, b1: Optional[Tensor], w_pw: Tensor,
             b_pw: Optional[Tensor], dilation: int, groups: int = 1, backend: Optional[str] = None) -> Tensor:
    """Fused HLKConv: depthwise ``k1``, dilated depthwise ``k2``, split 1x1, in one op.

    Equivalent to ``F.conv2d(cat([a, d], 1), w_pw, b_pw)`` with
    ``a = F.conv2d(x, w0, b0, padding=k1//2, groups=C)`` and
    ``d = F.conv2d(a, w1, b1, padding=dilation*(k2//2), dilation=dilation, groups=C)``; with
    ``groups=G``, G independent HLKConvs on consecutive channel chunks (chunk g of the 1x1
    reads ``cat([a_g, d_g])``).

    Args:
        x: ``[N, C, H, W]``, float16/bfloat16/float32/float64, any memory layout. ``N`` may be 0.
        w0: ``[C, 1, k1, k1]``, k1 odd, 1..31. b0: ``[C]`` or None.
        w1: ``[C, 1, k2, k2]``, k2 odd, 1..31. b1: ``[C]`` or None.
        w_pw: ``[Cout, 2*C/groups, 1, 1]``: per group, the first C/groups input channels
            multiply ``a``, the rest ``d``. b_pw: ``[Cout]`` or None.
        dilation: int, 1..8, of the second depthwise conv.
        groups: int dividing C and Cout.
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"triton"``, ``"auto"`` or None (see
            :mod:`istd_kernels.backend`).

    Returns:
        ``[N, Cout, H, W]`` in ``x.dtype`` (float32 accumulation for half types, ``a`` and
        ``d`` kept in float32 on the kernel backends), channels_last if ``x`` is. Training
        saves only ``x`` and the weights for the backward.
    """
    x, w0, b0, w1, b1, w_pw, b_pw = autocast_cast(x, x, w0, b0, w1, b1, w_pw, b_pw)
    _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    name = _backend.select(OP, BACKENDS, x.device, x.dtype, backend)
    if name == "torch":
        return _torch_forward(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    return _hlk_op(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, name)
