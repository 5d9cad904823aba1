"""HLKConv: depthwise conv -> dilated depthwise conv -> split 1x1, as one op.

``hlk_conv(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)`` computes (docs/networks.md §2)::

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

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import acc_dtype, empty_output, hlk_halos, output_memory_format, per_image
from ..limits import DW_MAX_DILATION, DW_MAX_KERNEL
from . import _dispatch, _transforms
from . import depthwise as _dw
from ._checks import autocast_cast, check_int, check_same, check_tensor, is_int, unaliased

OP = "istd.hlk_conv"
MAX_KERNEL = DW_MAX_KERNEL
MAX_DILATION = DW_MAX_DILATION


class HlkGrads(NamedTuple):
    """One slot per differentiable input of :func:`hlk_conv` (gradients, or the mask of wanted ones)."""

    x: Tensor | None
    w0: Tensor | None
    b0: Tensor | None
    w1: Tensor | None
    b1: Tensor | None
    w_pw: Tensor | None
    b_pw: Tensor | None

#: ``k_size -> (k1, k2, dilation)`` of the published HLKConv.py (docs/networks.md §2).
K_SIZES = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}


def decompose(k_size: int) -> tuple[int, int, int]:
    """``(k1, k2, dilation)`` for a receptive field ``k_size`` from the published table."""
    if not is_int(k_size) or k_size not in K_SIZES:
        raise ValueError(f"k_size must be one of {sorted(K_SIZES)} (the published HLKConv table); got {k_size!r}")
    return K_SIZES[k_size]


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


def _check_bias(b: Tensor | None, name: str, size: int, x: Tensor) -> None:
    if b is None:
        return
    check_tensor(b, name, 1, shape_doc=f"[{size}]")
    check_same(b, name, x, "x")
    if b.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},); got {tuple(b.shape)}")


def _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups) -> tuple[int, int, int]:
    """Validate the arguments; return (k1, k2, Cout)."""
    check_tensor(x, "x", 4, shape_doc="[N, C, H, W]")
    channels = x.shape[1]
    if channels == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have at least one channel, row and column (N may be 0); got shape {tuple(x.shape)}")
    groups = check_int(groups, "groups", 1)
    if channels % groups:
        raise ValueError(f"groups={groups} must divide x's channel count C={channels}")
    check_int(dilation, "dilation", 1, MAX_DILATION)
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


def hlk_conv_ref(x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor, b1: Tensor | None, w_pw: Tensor,
                 b_pw: Tensor | None, dilation: int, groups: int = 1) -> Tensor:
    """Reference HLKConv in plain PyTorch, independent of ``F.conv2d``; differentiable by autograd.

    The depthwise steps are :func:`~istd_kernels.ops.depthwise_conv2d_ref` tap sums and the
    split 1x1 is an einsum over the two weight halves. Half-precision inputs accumulate in
    float32 (``a`` and ``d`` are not rounded to the input dtype), like the kernels.

    Args and result as :func:`hlk_conv` (no ``backend``).
    """
    k1, k2, cout = _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    acc = acc_dtype(x.dtype)

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
# The implementation records. cpp and cuda run a fused forward and compose the backward from
# their depthwise records; cpp-composed composes the forward too (auto's choice on the CPU,
# ops/_auto_rules.py); triton has two paths: triton-fused where its tiles fit the halo, else
# triton-composed (its depthwise records and two small matmuls).


def _triton_tiles_fit(k1: int = 3, k2: int = 3, dilation: int = 2, **_) -> tuple[bool, str]:
    """Whether the fused Triton kernels take this geometry (the ``triton-fused`` path's supports).

    Their tuned tiles leave a useful inner region only for a backward halo
    ``k1//2 + dilation*(k2//2)`` up to ``MAX_TUNED_HALO`` (6): k_size 7 and 11. Larger
    halos would need a tile that spills registers, so they take the ``triton-composed``
    path: the Triton depthwise kernels and two small matmuls. (Defaults: k_size 7.)
    """
    from ..triton.hlk_conv import MAX_TUNED_HALO

    halo = hlk_halos(k1, k2, dilation)[1]
    if halo <= MAX_TUNED_HALO:
        return True, ""
    return False, (f"the fused Triton HLKConv kernels' tuned tiles take a backward halo k1//2 + dilation*(k2//2) "
                   f"<= {MAX_TUNED_HALO}; got {halo} (k1={k1}, k2={k2}, dilation={dilation})")


def _geometry(w0: Tensor, w1: Tensor, dilation: int) -> dict:
    """The hyper-parameters the paths' ``supports`` read: ``k1``, ``k2``, ``dilation``."""
    return dict(k1=w0.shape[2], k2=w1.shape[2], dilation=dilation)


class _Chain(NamedTuple):
    """The two depthwise steps of one call: ``a = dw(x; w0)``, ``d = dw(a; w1, dilation)``."""

    dw: _dispatch.Impl
    conv_a: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    conv_d: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    @staticmethod
    def of(backend: str, w0: Tensor, w1: Tensor, dilation: int) -> _Chain:
        p1, p2 = w0.shape[2] // 2, dilation * (w1.shape[2] // 2)
        one = (1, 1)
        return _Chain(_dispatch.impl(_dw.OP, backend), (one, (p1, p1), one),
                      (one, (p2, p2), (dilation, dilation)))

    def a_and_d(self, x, w0, b0, w1, b1) -> tuple[Tensor, Tensor]:
        a = self.dw.forward(x, w0, b0, *self.conv_a)
        return a, self.dw.forward(a, w1, b1, *self.conv_d)


def _split_pw(w_pw: Tensor, groups: int, acc: torch.dtype) -> tuple[Tensor, Tensor]:
    """The pointwise weight as ``[G, Og, Cg]`` halves multiplying ``a`` and ``d``."""
    cout, c2 = w_pw.shape[0], w_pw.shape[1]
    wp = w_pw.reshape(groups, cout // groups, c2).to(acc)
    return wp[:, :, :c2 // 2], wp[:, :, c2 // 2:]


def _cast(dtype: torch.dtype, *tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """``tensors`` in ``dtype``; None stays None."""
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def _composed_forward(backend: str, x, w0, b0, w1, b1, w_pw, b_pw, dilation: int, groups: int) -> Tensor:
    """Forward from the depthwise record of ``backend`` plus a split einsum (no concat).

    The depthwise steps run on inputs cast to the accumulation dtype, so ``a`` and ``d`` are
    never rounded to ``x.dtype``: the same function as the fused kernels (docs/ops.md,
    "Precision contract").
    """
    n, c, h, w = x.shape
    acc = acc_dtype(x.dtype)
    wa, wd = _split_pw(w_pw, groups, acc)
    a, d = _Chain.of(backend, w0, w1, dilation).a_and_d(*_cast(acc, x, w0, b0, w1, b1))
    # Two batched matmuls over (image, group), the second accumulating into the first's output
    # (with the bias as its start): no concat of a and d, and no pass for the sum or the bias.
    start = per_image(b_pw.to(acc).view(groups, wa.shape[1], 1), n) if b_pw is not None else None
    a, d = (t.reshape(n * groups, c // groups, h * w) for t in (a, d))
    y = torch.bmm(per_image(wa, n), a) if start is None else torch.baddbmm(start, per_image(wa, n), a)
    y = y.baddbmm_(per_image(wd, n), d).reshape(n, w_pw.shape[0], h, w)
    return y.to(x.dtype).contiguous(memory_format=output_memory_format(x))


def _pw_grads(gy: Tensor, a: Tensor, d: Tensor, w_pw: Tensor, mask: HlkGrads) -> tuple[Tensor | None, ...]:
    """Gradients of the 1x1's weight and bias; ``gy``, ``a``, ``d`` are ``[N, G, *, H*W]`` in acc."""
    g_pw = g_bpw = None
    if mask.w_pw:
        g_pw = torch.cat([torch.einsum("ngop,ngcp->goc", gy, a), torch.einsum("ngop,ngcp->goc", gy, d)],
                         dim=2).reshape(w_pw.shape).to(w_pw.dtype)
    if mask.b_pw:
        g_bpw = gy.sum(dim=(0, 3)).reshape(w_pw.shape[0]).to(w_pw.dtype)
    return g_pw, g_bpw


def _composed_backward(backend: str, grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, mask: HlkGrads) -> HlkGrads:
    """Backward from the depthwise record of ``backend`` plus two small matmuls.

    Recomputes ``a`` and ``d`` (nothing but ``x`` was saved), then runs the chain rule
    step by step; the concat is never built here either. Like the forward, every step runs
    in the accumulation dtype and only the gradients are rounded to their inputs' dtypes, so
    this is the gradient of :func:`_composed_forward`, which computes the fused kernels'
    function (docs/ops.md, "Precision contract").
    """
    n, c, h, w = x.shape
    acc = acc_dtype(x.dtype)
    wa, wd = _split_pw(w_pw, groups, acc)
    chain = _Chain.of(backend, w0, w1, dilation)
    xa, w0a, b0a, w1a, b1a = _cast(acc, x, w0, b0, w1, b1)
    a, d = chain.a_and_d(xa, w0a, b0a, w1a, b1a)
    gy = grad_y.to(acc).reshape(n, groups, w_pw.shape[0] // groups, h * w)
    cg = c // groups
    g_pw, g_bpw = _pw_grads(gy, a.reshape(n, groups, cg, h * w), d.reshape(n, groups, cg, h * w), w_pw, mask)
    g1 = g0 = _dw.DwGrads(None, None, None)
    if any(mask[:5]):
        g_d = torch.einsum("goc,ngop->ngcp", wd, gy).reshape(n, c, h, w)
        g1 = chain.dw.backward(g_d, a, w1a, *chain.conv_d, (any(mask[:3]), mask.w1, mask.b1))
    if any(mask[:3]):
        g_a = torch.einsum("goc,ngop->ngcp", wa, gy).reshape(n, c, h, w) + g1.x
        g0 = chain.dw.backward(g_a, xa, w0a, *chain.conv_a, (mask.x, mask.w0, mask.b0))
    rounded = (None if g is None else g.to(p.dtype)
               for g, p in zip((g0.x, g0.weight, g0.bias, g1.weight, g1.bias), (x, w0, b0, w1, b1)))
    return HlkGrads(*rounded, g_pw, g_bpw)


def _triton_fused_backward(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, mask: HlkGrads) -> HlkGrads:
    grads = _dispatch.lazy("hlk_conv", "hlk_bwd")(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, tuple(mask))
    return HlkGrads(*grads)


def _register_extension(backend: str) -> None:
    # The binding makes the weights contiguous itself.
    _dispatch.register(OP, backend, _dispatch.extension_kernel(backend, "hlk_fwd"),
                       partial(_composed_backward, backend))


_dispatch.register(OP, "torch", _torch_forward)  # differentiated by autograd
_register_extension("cpp")
_register_extension("cuda")
# auto prefers it to the fused cpp kernel (ops/_auto_rules.py).
_dispatch.register(OP, "cpp", partial(_composed_forward, "cpp"), partial(_composed_backward, "cpp"),
                   path="cpp-composed")
_dispatch.register(OP, "triton", _dispatch.lazy("hlk_conv", "hlk_fwd"), _triton_fused_backward, _triton_tiles_fit,
                   path="triton-fused")
_dispatch.register(OP, "triton", partial(_composed_forward, "triton"), partial(_composed_backward, "triton"),
                   path="triton-composed")


def _hlk_run(x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor, b1: Tensor | None, w_pw: Tensor,
             b_pw: Tensor | None, dilation: int, groups: int, backend: str) -> Tensor:
    return _dispatch.impl(OP, backend, **_geometry(w0, w1, dilation)).forward(x, w0, b0, w1, b1, w_pw, b_pw,
                                                                              dilation, groups)


_hlk_op = torch.library.custom_op("istd::hlk_conv", _hlk_run, mutates_args=())


@_hlk_op.register_fake
def _(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, backend):
    return empty_output(x, (x.shape[0], w_pw.shape[0], x.shape[2], x.shape[3]))


def _hlk_backward_run(grad_y: Tensor, x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor,
                      b1: Tensor | None, w_pw: Tensor, dilation: int, groups: int, backend: str,
                      output_mask: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of (x, w0, b0, w1, b1, w_pw, b_pw); one not asked for in ``output_mask`` is empty."""
    mask = HlkGrads(*(bool(m) for m in output_mask))
    grads = _dispatch.impl(OP, backend, **_geometry(w0, w1, dilation)).backward(grad_y, x, w0, b0, w1, b1, w_pw,
                                                                                dilation, groups, mask)
    # Outputs of a custom op may not alias one another or an input: a fresh empty tensor per
    # unused slot, and a copy of any gradient sharing a buffer (kernels may reduce several
    # parameter gradients into one; those are small).
    grads = [g if (m and g is not None) else grad_y.new_empty(0) for g, m in zip(grads, output_mask)]
    return tuple(unaliased(grads, (grad_y, x, w0, b0, w1, b1, w_pw)))


_hlk_backward_op = torch.library.custom_op("istd::hlk_conv_backward", _hlk_backward_run, mutates_args=())


@_hlk_backward_op.register_fake
def _(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, backend, output_mask):
    c, cout = x.shape[1], w_pw.shape[0]
    shapes = HlkGrads(x.shape, w0.shape, (c,), w1.shape, (c,), w_pw.shape, (cout,))
    empty = HlkGrads(empty_output(x, x.shape), *(w0.new_empty(shape) for shape in shapes[1:]))
    return tuple(e if m else grad_y.new_empty(0) for e, m in zip(empty, output_mask))


def _setup_context(ctx, inputs, output):
    x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, backend = inputs
    # Only the input and the (small) weights: a and d are recomputed in the backward.
    ctx.save_for_backward(x, w0, b0, w1, b1, w_pw)
    ctx.conf = (dilation, groups, backend)
    ctx.has_bias = {"b0": b0 is not None, "b1": b1 is not None, "b_pw": b_pw is not None}


def _backward(ctx, grad_y):
    x, w0, b0, w1, b1, w_pw = ctx.saved_tensors
    # A missing bias gets no gradient, whatever needs_input_grad says about the None.
    mask = [bool(need) and ctx.has_bias.get(name, True) for name, need in zip(HlkGrads._fields, ctx.needs_input_grad)]
    dilation, groups, backend = ctx.conf
    grads = _hlk_backward(grad_y, x, w0, b0, w1, b1, w_pw, dilation, groups, backend, mask)
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None, None, None)


_hlk_op.register_autograd(_backward, setup_context=_setup_context)
_hlk_backward = _transforms.backward_op(_hlk_backward_op, OP, _hlk_backward_run)
_hlk = _transforms.differentiable_op(_hlk_op, _setup_context, _backward, _hlk_run)


def hlk_conv(x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor, b1: Tensor | None, w_pw: Tensor,
             b_pw: Tensor | None, dilation: int, groups: int = 1, backend: str | None = None) -> Tensor:
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
        ``[N, Cout, H, W]`` in ``x.dtype``, channels_last if ``x`` is. For half types the
        kernel backends keep ``a``, ``d`` and every sum in float32 and round only the result
        (and, in the backward, only each gradient); the ``torch`` backend rounds ``a`` and
        ``d`` as the ``nn.Conv2d`` chain does (docs/ops.md, "Precision contract"). Training
        saves only ``x`` and the weights for the backward.
    """
    x, w0, b0, w1, b1, w_pw, b_pw = autocast_cast(x, x, w0, b0, w1, b1, w_pw, b_pw)
    _check(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    record = _dispatch.choose_path(OP, x.device, x.dtype, backend, **_geometry(w0, w1, dilation))
    if record.backend == "torch":
        return _torch_forward(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups)
    return _hlk(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, record.path)
