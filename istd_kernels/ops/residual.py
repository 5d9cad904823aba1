"""``x + gamma[c] * y``, a LayerScaled residual: the routed op ``istd.scaled_residual`` (not
public API; :meth:`istd_kernels.nn.dlc.LayerScale.residual` runs it).

Two paths. ``torch``: ``torch.addcmul`` (any layouts, autograd, every transform). ``cpp``
(``csrc/cpu/nhwc_cpu.cpp``): an NCHW ``x`` with an NCHW or channels_last ``y`` (half types run
in float32); a channels_last ``y`` (a C2FBlock's branch ending in a channels_last convolution on the
CPU) is read through L1-sized transposed tiles in the same pass, where ``addcmul`` of the mixed
layouts measured 1.87 ms against 0.30 ms for matching ones and 0.43 ms here (C16 at 256 x 256,
docs/performance.md).

The cpp path is an ``autograd.Function``, not a custom op, and with matching layouts it is
slower than ``addcmul`` (0.41 against 0.30 ms); so ``auto`` takes it only for plain eager calls
(:func:`._transforms.plain_eager`) with a channels_last ``y`` (``ops/_auto_rules.py``);
``python -m istd_kernels.info --explain istd.scaled_residual`` prints why.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..layout import acc_dtype
from . import _dispatch
from ._cpu import AVX2_MISSING, avx2_kernels_run_here
from ._transforms import plain_eager, transforming

OP = "istd.scaled_residual"


def _result_dtype(x: Tensor, y: Tensor, gamma: Tensor) -> torch.dtype:
    """The dtype ``addcmul`` gives ``x, y, gamma`` (bfloat16 activations with a float32 scale,
    as under CPU autocast: float32)."""
    return torch.promote_types(torch.promote_types(x.dtype, y.dtype), gamma.dtype)


def _torch_forward(x: Tensor, y: Tensor, gamma: Tensor, out: Tensor | None = None) -> Tensor:
    g = gamma.view(1, -1, 1, 1)
    return torch.addcmul(x, y, g) if out is None else torch.addcmul(x, y, g, out=out)


class _CppResidual(torch.autograd.Function):
    """The cpp kernel's forward in float32/float64 (half types and mixed dtypes, as under
    autocast, are promoted as ``addcmul`` promotes them, computed in float32 and rounded once);
    the backward is three element-wise expressions."""

    @staticmethod
    def forward(ctx, x, y, gamma, out=None):
        dtype = _result_dtype(x, y, gamma)
        acc = acc_dtype(dtype)
        ctx.save_for_backward(y, gamma)
        ctx.dtypes = (x.dtype, y.dtype, gamma.dtype)
        out = out if acc == dtype else None  # the kernel writes acc; a half-type out cannot take it
        z = _dispatch.extension_kernel("cpp", "scaled_residual")(x.to(acc), y.to(acc), gamma.to(acc).contiguous(), out)
        return z.to(dtype)

    @staticmethod
    def backward(ctx, grad):
        y, gamma = ctx.saved_tensors
        x_dtype, y_dtype, g_dtype = ctx.dtypes
        gy = (grad * gamma.view(1, -1, 1, 1)).to(y_dtype) if ctx.needs_input_grad[1] else None
        gg = (grad * y).sum((0, 2, 3)).to(g_dtype) if ctx.needs_input_grad[2] else None
        return grad.to(x_dtype), gy, gg, None


def _cpp_supports(transformed: bool = False, kernel_layout: bool = True, **_) -> tuple[bool, str]:
    if transformed:
        return False, "the cpp residual is an autograd.Function without a vmap rule (torch.func transforms)"
    if not kernel_layout:
        return False, ("the cpp residual takes floating-point [N, C, H, W] CPU tensors, x contiguous (NCHW), y "
                       "contiguous or channels_last, gamma [C]")
    if not avx2_kernels_run_here():
        return False, f"the cpp residual is {AVX2_MISSING}"
    return True, ""


_dispatch.register(OP, "torch", _torch_forward)
_dispatch.register(OP, "cpp", _CppResidual.apply, supports=_cpp_supports)


def _kernel_takes(x: Tensor, y: Tensor, gamma: Tensor) -> bool:
    """Whether the cpp kernel takes the call (see ``_cpp_supports``)."""
    return (x.dim() == 4 and x.is_contiguous() and y.shape == x.shape and tuple(gamma.shape) == (x.shape[1],)
            and all(t.is_floating_point() for t in (x, y, gamma))
            and (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last))
            and x.device.type == y.device.type == gamma.device.type == "cpu")


def _reusable(x: Tensor, y: Tensor, gamma: Tensor, into: str | None) -> Tensor | None:
    """The operand ``into`` names, where the result may be written into it: autograd does not
    record the call, and it has ``x``'s shape and strides (so the result keeps ``x``'s layout)
    and the result's dtype (so reusing it never changes what the call returns)."""
    if into not in ("x", "y"):
        if into is not None:
            raise ValueError(f"into must be None, 'x' or 'y'; got {into!r}")
        return None
    target = x if into == "x" else y
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, y)):
        return None
    fits = target.shape == x.shape and target.stride() == x.stride() and target.dtype == _result_dtype(x, y, gamma)
    return target if fits else None


def scaled_residual(x: Tensor, y: Tensor, gamma: Tensor, backend: str | None = None, into: str | None = None) -> Tensor:
    """``x + gamma.view(1, C, 1, 1) * y``.

    Shapes: ``x`` and ``y`` ``[N, C, H, W]``, ``gamma`` ``[C]``; a tensor of ``x``'s shape
    (NCHW when ``x`` is). ``into="x"`` or ``"y"``: the caller hands that operand over (it is a
    fresh intermediate nothing else reads); when autograd does not record the call and the
    operand has ``x``'s layout, the result is written into it and returned instead of a new
    tensor (one allocation fewer, whose fresh pages cost faults on the CPU; docs/performance.md).
    A ``gamma`` of another shape raises ValueError; arguments ``torch.addcmul`` cannot take raise
    its error. The routing is the module docstring's; ``backend`` as everywhere
    (:mod:`istd_kernels.backend`).
    """
    if not all(isinstance(t, Tensor) for t in (x, y, gamma)) or x.dim() < 2:
        return _torch_forward(x, y, gamma)  # addcmul / view names what is wrong
    if tuple(gamma.shape) != (x.shape[1],):
        raise ValueError(f"gamma must have shape ({x.shape[1]},) (one scale per channel of x); got "
                         f"{tuple(gamma.shape)}")
    out = _reusable(x, y, gamma, into)
    record = _dispatch.choose_path(OP, x.device, x.dtype, backend, transformed=transforming(),
                                   kernel_layout=_kernel_takes(x, y, gamma),
                                   channels_last_y=not y.is_contiguous(), plain=plain_eager([x, y, gamma]))
    return record.forward(x, y, gamma, out)
