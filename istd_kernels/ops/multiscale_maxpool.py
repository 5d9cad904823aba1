"""multiscale_maxpool: DLC's per-branch max pooling of ``u``, every level from one read.

``multiscale_maxpool(u, groups, radix, scales)`` computes, for ``j = 0 .. radix-1``::

    chunk_j = u.unflatten(1, (groups, radix, c))[:, :, j].reshape(N, groups*c, H, W)
    level_j = F.max_pool2d(chunk_j, kernel_size=s_j, stride=s_j, ceil_mode=True)

which is :meth:`istd_kernels.nn.dlc.DLCAttention._pool_levels` for ``s_j = 2**(j+1)``
(the default). The fused path never builds ``chunk_j``: each u channel is read once, in
place, and pooled at its own branch's scale.

This file holds the public function, the plain-PyTorch reference
:func:`multiscale_maxpool_ref`, and the ``istd::multiscale_maxpool`` /
``istd::multiscale_maxpool_backward`` custom ops (fake and autograd).

Backward design: the forward stores, per pooled value, the offset ``dy*s + dx`` of its
argmax inside the window (uint8 while ``s <= 16``, else int32), and the backward scatters
by those offsets; ``u`` is not saved. Reasons: the offsets are ``1/s^2`` as many elements as
u at 1 byte each, so at most 1/16 of u's bytes in fp32 (1/8 in fp16) for ``s >= 2``, far less
than keeping u alive when no other consumer holds it; the backward then reads only the small level
gradients and offsets and writes grad_u once, instead of re-reading all of u; and the
tie/NaN choice is made once, in the forward, so the backward cannot disagree with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import index_dtype, output_memory_format
from ..limits import MMP_MAX_SCALE
from . import _dispatch, _transforms
from ._checks import check_int, check_tensor, is_int
from ._cpu import AVX2_MISSING, avx2_kernels_run_here

OP = "istd.multiscale_maxpool"
#: Window offsets are stored as int32 at worst: s*s must stay far below 2**31.
MAX_SCALE = MMP_MAX_SCALE


def default_scales(radix: int) -> tuple[int, ...]:
    """``(2, 4, ..., 2**radix)``: branch ``j`` (1-based) pooled by ``2**j``, as in DLC."""
    return tuple(2 ** j for j in range(1, radix + 1))


def _check(u: Tensor, groups: int, radix: int, scales: Sequence[int] | None) -> tuple[int, ...]:
    """Validate the arguments; return the scales as a tuple of ints."""
    check_tensor(u, "u", 4, shape_doc="[N, D, H, W]")
    groups = check_int(groups, "groups", 1)
    radix = check_int(radix, "radix", 1)
    d = u.shape[1]
    if u.shape[2] == 0 or u.shape[3] == 0:
        raise ValueError(f"u must have at least one row and column (N may be 0); got shape {tuple(u.shape)}")
    if d == 0 or d % (groups * radix):
        raise ValueError(f"u's channel count D={d} must be a positive multiple of groups*radix = "
                         f"{groups}*{radix} = {groups * radix}")
    if scales is None:
        return default_scales(radix)
    if isinstance(scales, (str, bytes, Tensor)) or not isinstance(scales, Sequence):
        raise TypeError(f"scales must be a sequence of {radix} ints (one per branch) or None; got {scales!r}")
    if len(scales) != radix:
        raise ValueError(f"scales must have radix={radix} entries (one per branch); got {len(scales)}: {scales!r}")
    for s in scales:
        if not is_int(s):
            raise TypeError(f"scales must hold ints; got {s!r} in {scales!r}")
    return tuple(check_int(s, "each entry of scales", 1, MAX_SCALE) for s in scales)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _chunk(u: Tensor, groups: int, radix: int, j: int) -> Tensor:
    n, d, h, w = u.shape
    c = d // (groups * radix)
    return u.unflatten(1, (groups, radix, c))[:, :, j].reshape(n, groups * c, h, w)


def multiscale_maxpool_ref(u: Tensor, groups: int, radix: int, scales: Sequence[int] | None = None) -> list[Tensor]:
    """Reference in plain PyTorch: gather each branch, ``F.max_pool2d(s, s, ceil_mode=True)``.

    Differentiable by autograd (gradients go to ``F.max_pool2d``'s argmax). Args and
    result as :func:`multiscale_maxpool` (no ``backend``).
    """
    scales = _check(u, groups, radix, scales)
    return [F.max_pool2d(_chunk(u, groups, radix, j), kernel_size=s, stride=s, ceil_mode=True)
            for j, s in enumerate(scales)]


# ---------------------------------------------------------------------------------------
# The op's torch implementation (for opcheck and as the kernels' executable spec): the same
# (levels, offsets) contract as the Triton kernels, from F.max_pool2d's flat indices.


def _torch_fwd(u: Tensor, groups: int, radix: int, scales: Sequence[int]) -> list[Tensor]:
    n, _, h, w = u.shape
    fmt = output_memory_format(u)
    idt = index_dtype(scales)
    ys, idx = [], []
    for j, s in enumerate(scales):
        y, flat = F.max_pool2d(_chunk(u, groups, radix, j), s, s, ceil_mode=True, return_indices=True)
        iy, ix = flat // w, flat % w
        ys.append(y.contiguous(memory_format=fmt))
        idx.append(((iy % s) * s + ix % s).to(idt).contiguous(memory_format=fmt))
    return ys + idx


def _torch_bwd(grads: Sequence[Tensor], indices: Sequence[Tensor], d: int, h: int, w: int, groups: int,
               radix: int, scales: Sequence[int], fmt: torch.memory_format) -> Tensor:
    n = grads[0].shape[0]
    c = d // (groups * radix)
    gu = grads[0].new_empty((n, groups, radix, c, h, w))
    ar_h = torch.arange(h, device=grads[0].device)
    ar_w = torch.arange(w, device=grads[0].device)
    for j, (s, g, a) in enumerate(zip(scales, grads, indices)):
        wy, wx = ar_h // s, ar_w // s
        own = ((ar_h % s) * s)[:, None] + (ar_w % s)[None, :]
        g_full = g[:, :, wy][:, :, :, wx]
        a_full = a[:, :, wy][:, :, :, wx].long()
        gu[:, :, j] = torch.where(a_full == own, g_full, torch.zeros_like(g_full)).reshape(n, groups, c, h, w)
    return gu.reshape(n, d, h, w).contiguous(memory_format=fmt)


# ---------------------------------------------------------------------------------------
# The implementation records. forward(u, groups, radix, scales) -> levels + offsets;
# backward(grads, indices, d, h, w, groups, radix, scales, fmt) -> grad_u.


def _register_extension(backend: str) -> None:
    fwd, bwd = (_dispatch.extension_kernel(backend, f"mmp_{k}") for k in ("fwd", "bwd"))

    def forward(u, groups, radix, scales):
        return fwd(u, groups, radix, list(scales))

    def backward(grads, indices, d, h, w, groups, radix, scales, fmt):
        return bwd(list(grads), list(indices), d, h, w, groups, radix, list(scales), fmt == torch.channels_last)

    def supports(**_) -> tuple[bool, str]:
        if backend == "cpp" and not avx2_kernels_run_here():
            return False, f"the cpp multiscale_maxpool is {AVX2_MISSING}"
        return True, ""

    _dispatch.register(OP, backend, forward, backward, supports)


_dispatch.register(OP, "torch", _torch_fwd, _torch_bwd)
_register_extension("cpp")
_register_extension("cuda")
_dispatch.register(OP, "triton", _dispatch.lazy("multiscale_maxpool", "mmp_fwd"),
                   _dispatch.lazy("multiscale_maxpool", "mmp_bwd"))


def _mmp_run(u: Tensor, groups: int, radix: int, scales: list[int], backend: str) -> list[Tensor]:
    """``radix`` pooled levels, then their ``radix`` window-offset tensors (for the backward)."""
    return _dispatch.impl(OP, backend).forward(u, groups, radix, scales)


_mmp_op = torch.library.custom_op("istd::multiscale_maxpool", _mmp_run, mutates_args=())


@_mmp_op.register_fake
def _(u, groups, radix, scales, backend):
    n, d, h, w = u.shape
    gc = d // radix
    fmt = output_memory_format(u)
    shapes = [(n, gc, _cdiv(h, s), _cdiv(w, s)) for s in scales]
    idt = index_dtype(scales)
    return ([torch.empty(sh, dtype=u.dtype, device=u.device, memory_format=fmt) for sh in shapes]
            + [torch.empty(sh, dtype=idt, device=u.device, memory_format=fmt) for sh in shapes])


def _mmp_backward_run(grads: list[Tensor], indices: list[Tensor], d: int, h: int, w: int, groups: int, radix: int,
                      scales: list[int], channels_last: bool, backend: str) -> Tensor:
    """grad_u ``[N, d, h, w]`` from the level gradients and the stored window offsets."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return _dispatch.impl(OP, backend).backward(grads, indices, d, h, w, groups, radix, scales, fmt)


_mmp_backward_op = torch.library.custom_op("istd::multiscale_maxpool_backward", _mmp_backward_run, mutates_args=())


@_mmp_backward_op.register_fake
def _(grads, indices, d, h, w, groups, radix, scales, channels_last, backend):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = grads[0]
    return torch.empty((g.shape[0], d, h, w), dtype=g.dtype, device=g.device, memory_format=fmt)


def _setup_context(ctx, inputs, output):
    u, groups, radix, scales, backend = inputs
    # Only the compact offsets: u itself is not kept alive for the backward.
    ctx.save_for_backward(*output[radix:])
    ctx.conf = (tuple(u.shape), groups, radix, list(scales), output_memory_format(u) == torch.channels_last,
                backend)
    ctx.level_meta = [(y.shape, y.dtype, y.device) for y in output[:radix]]


def _backward(ctx, grads):
    (n, d, h, w), groups, radix, scales, channels_last, backend = ctx.conf
    indices = list(ctx.saved_tensors)
    # A level that did not reach the loss may arrive as None.
    gl = [g if g is not None else torch.zeros(shape, dtype=dt, device=dev)
          for g, (shape, dt, dev) in zip(list(grads)[:radix], ctx.level_meta)]
    gu = _mmp_backward(gl, indices, d, h, w, groups, radix, scales, channels_last, backend)
    return gu, None, None, None, None


_mmp_op.register_autograd(_backward, setup_context=_setup_context)
_mmp_backward = _transforms.backward_op(_mmp_backward_op, OP, _mmp_backward_run)
_mmp = _transforms.differentiable_op(_mmp_op, _setup_context, _backward, _mmp_run)


def multiscale_maxpool(u: Tensor, groups: int, radix: int, scales: Sequence[int] | None = None,
                       backend: str | None = None) -> list[Tensor]:
    """Max-pool every DLC branch of ``u`` at its own scale, all levels from one read of ``u``.

    Args:
        u: ``[N, D, H, W]``, float16/bfloat16/float32/float64, any memory layout (the cpp,
            cuda and Triton kernels read it in place through its strides).
            ``D = groups * radix * c`` and ``u`` is group-major: channel ``(k*radix + j)*c + i``
            is channel ``i`` of branch ``j`` of group ``k``.
        groups: int >= 1. radix: int >= 1.
        scales: ``radix`` ints >= 1, one per branch; default ``(2, 4, ..., 2**radix)``.
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"triton"``, ``"auto"`` or None (see
            :mod:`istd_kernels.backend`).

    Returns:
        ``radix`` tensors; entry ``j`` is ``[N, groups*c, ceil(H/s_j), ceil(W/s_j)]`` in
        ``u.dtype``, radix-major inside (channel ``k*c + i`` is channel ``i`` of branch ``j``
        of group ``k``): the max over each ``s_j x s_j`` window, windows clipped at the
        bottom/right edge (``F.max_pool2d(kernel=s, stride=s, ceil_mode=True)``). The cpp, cuda
        and Triton backends return channels_last levels for a channels_last ``u``. Backward: each
        gradient goes to its window's argmax (first of equal maxima in row-major order; a
        NaN wins and propagates, the last NaN of the window), as ``F.max_pool2d`` on CPU.
    """
    scales = _check(u, groups, radix, scales)
    name = _dispatch.choose(OP, u.device, u.dtype, backend)
    if name == "torch":
        return multiscale_maxpool_ref(u, groups, radix, scales)
    return list(_mmp(u, groups, radix, list(scales), name)[:radix])
