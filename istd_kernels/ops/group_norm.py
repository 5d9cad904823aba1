"""GroupNorm, optionally followed by SiLU: the routed op of LCRNet's norms (not public API).

``istd.group_norm_silu`` has two paths. ``torch``: ``F.group_norm`` then ``F.silu`` (in place
on the norm's fresh output when autograd is not recording, out of place otherwise, since an
in-place SiLU makes autograd keep a copy). ``cpp``: one kernel (``csrc/cpu/norm_cpu.cpp``)
whose statistics and normalisation use every thread, with the SiLU fused (8-wide: on x86-64 it
needs AVX2 + FMA); ATen's CPU group norm splits its statistics over images x groups only, so a
one-group norm of one image ran on one thread (docs/performance.md). Its backward is ATen's
``native_group_norm_backward`` on the kernel's statistics (after the SiLU's derivative, from
the recomputed pre-activation); half types run the kernel in float32.

The cpp path is an ``autograd.Function``, not a custom op: ``torch.compile`` breaks its graph
there and ``torch.func`` transforms cannot run it (its ``supports()`` says so). So ``auto``
prefers ``torch`` on the CPU except for plain eager calls (:func:`._transforms.plain_eager`)
of at least :data:`CPP_MIN_ELEMENTS` elements (``ops/_auto_rules.py``);
``python -m istd_kernels.info --explain istd.group_norm_silu`` prints why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import acc_dtype
from . import _dispatch
from ._cpu import AVX2_MISSING, avx2_kernels_run_here
from ._transforms import plain_eager, transforming

OP = "istd.group_norm_silu"
#: The fewest elements ``auto`` runs on the cpp path. Below, ATen's single-threaded norm won:
#: a call's fixed cost (routing, the OpenMP team) outweighed the work (2 threads, medians of
#: 50, norm + SiLU: 64 x 32 x 32 0.04 ms ATen vs 0.06 ms cpp, 128 x 16 x 16 0.02 vs 0.04;
#: 64 x 64 x 64 0.17 vs 0.14; docs/performance.md).
CPP_MIN_ELEMENTS = 1 << 17


def silu_of_fresh(y: Tensor) -> Tensor:
    """``F.silu(y)`` for a ``y`` nothing else holds (a norm's new output): in place when autograd
    is not recording, which measured faster on the CPU (no second plane), out of place
    otherwise (an in-place SiLU would make autograd keep a copy of its input)."""
    return F.silu(y, inplace=not torch.is_grad_enabled())


def _torch_forward(x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float,
                   silu: bool, channels_last: bool = False) -> Tensor:
    # channels_last is a hint the torch path does not take: a separate layout copy measured
    # slower than the NCHW convolution it would speed up (docs/performance.md).
    y = F.group_norm(x, groups, weight, bias, eps)
    return silu_of_fresh(y) if silu else y


def _as(dtype: torch.dtype, t: Tensor | None) -> Tensor | None:
    return None if t is None else t.to(dtype).contiguous()


def _kernel_layout(x: Tensor) -> torch.memory_format:
    """The layout the kernel reads ``x`` in: channels_last for a 4-D tensor dense in that layout
    only (one dense in both, C = 1 or H = W = 1, has the same memory either way), else NCHW."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _CppGroupNorm(torch.autograd.Function):
    """The cpp kernel's forward; ATen's group-norm backward on its statistics."""

    @staticmethod
    def forward(ctx, x, groups, weight, bias, eps, silu, channels_last):
        acc, layout = acc_dtype(x.dtype), _kernel_layout(x)
        xa, wa, ba = x.to(acc).contiguous(memory_format=layout), _as(acc, weight), _as(acc, bias)
        y, mean, rstd = _dispatch.extension_kernel("cpp", "group_norm_fwd")(
            xa, wa, ba, groups, eps, silu, channels_last and x.dim() == 4)
        ctx.save_for_backward(xa, wa, ba, mean, rstd)
        ctx.conf = (groups, silu, x.dtype, weight is not None and weight.dtype, bias is not None and bias.dtype)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        xa, wa, ba, mean, rstd = ctx.saved_tensors
        groups, silu, x_dtype, w_dtype, b_dtype = ctx.conf
        n, c = xa.shape[0], xa.shape[1]
        # ATen's backward reads grad in x's layout (its channels_last kernel for an NHWC x).
        g = grad_y.to(xa.dtype).contiguous(memory_format=_kernel_layout(xa))
        if silu:  # d SiLU(p)/dp = s (1 + p (1 - s)) on the recomputed pre-activation p
            shape = (n, groups, -1)
            p = ((xa.reshape(shape) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1)).reshape(xa.shape)
            affine = (1, c) + (1,) * (xa.dim() - 2)
            p = p * (wa.view(affine) if wa is not None else 1) + (ba.view(affine) if ba is not None else 0)
            s = torch.sigmoid(p)
            g = g * s * (1 + p * (1 - s))
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[2] and wa is not None,
                ctx.needs_input_grad[3] and ba is not None]
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(g, xa, mean, rstd, wa, n, c,
                                                               xa[0, 0].numel() if n and c else 0, groups, mask)
        return (None if gx is None else gx.to(x_dtype), None, None if gw is None else gw.to(w_dtype),
                None if gb is None else gb.to(b_dtype), None, None, None)


def _cpp_supports(transformed: bool = False, **_) -> tuple[bool, str]:
    if transformed:
        return False, "the cpp group norm is an autograd.Function without a vmap rule (torch.func transforms)"
    if not avx2_kernels_run_here():
        return False, f"the cpp group norm is {AVX2_MISSING}"
    return True, ""


_dispatch.register(OP, "torch", _torch_forward)
_dispatch.register(OP, "cpp", _CppGroupNorm.apply, supports=_cpp_supports)


def group_norm_silu(x: Tensor, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float, silu: bool,
                    backend: str | None = None, channels_last: bool = False) -> Tensor:
    """``F.group_norm(x, groups, weight, bias, eps)``, then ``F.silu`` when ``silu``.

    Shapes: ``x`` ``[N, C, *]`` (``groups`` divides C), ``weight`` and ``bias`` ``[C]`` or
    None -> a new tensor of ``x``'s shape and dtype. Its layout: ``x``'s (channels_last stays
    channels_last); ``channels_last=True`` asks for a channels_last result of a 4-D ``x`` where
    the path writes one at no extra pass (the cpp path does; the torch path keeps ``x``'s
    layout), for a consumer that runs faster in it (oneDNN's convolutions). Values never
    depend on the layout. Invalid arguments raise ``F.group_norm``'s error. The routing is
    the module docstring's; ``backend`` as everywhere (:mod:`istd_kernels.backend`).
    """
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[1] % groups or any(
            p is not None and tuple(p.shape) != (x.shape[1],) for p in (weight, bias)):
        return _torch_forward(x, groups, weight, bias, eps, silu)  # F.group_norm names what is wrong
    record = _dispatch.choose_path(OP, x.device, x.dtype, backend, transformed=transforming(), elements=x.numel(),
                                   plain=plain_eager([x, weight, bias]))
    return record.forward(x, groups, weight, bias, eps, silu, channels_last)
