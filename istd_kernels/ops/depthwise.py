"""Depthwise and dilated-depthwise 2-D convolution.

``depthwise_conv2d(x, weight, bias, stride, padding, dilation)`` is equivalent to
``F.conv2d(x, weight, bias, stride, padding, dilation, groups=C)`` with ``weight`` of
shape ``(C, 1, kh, kw)``. This file holds the public function, its plain-PyTorch
reference :func:`depthwise_conv2d_ref`, and the ``istd::depthwise_conv2d`` custom op
(forward, fake, autograd) that dispatches to the cpp, cuda and triton kernels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import acc_dtype, empty_output
from ..limits import DW_MAX_DILATION, DW_MAX_KERNEL, MAX_HYPER_PARAM
from . import _dispatch, _transforms
from ._checks import as_pair, autocast_cast, check_same, check_tensor

OP = "istd.depthwise_conv2d"
MAX_KERNEL = DW_MAX_KERNEL
MAX_DILATION = DW_MAX_DILATION

IntPair = int | Sequence[int]
Pair = tuple[int, int]


def output_size(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """Output (H, W) of the convolution, as F.conv2d computes it."""
    return tuple(  # type: ignore[return-value]
        (hw[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)
    )


def _int32_pair(pair: Pair, name: str) -> Pair:
    # The kernels' geometry holds stride and padding as 32-bit ints.
    if max(pair) > MAX_HYPER_PARAM:
        raise ValueError(f"{name} must be <= {MAX_HYPER_PARAM} (it must fit in 32 bits); got {pair}")
    return pair


def _check(x, weight, bias, stride, padding, dilation) -> tuple[Pair, Pair, Pair]:
    check_tensor(x, "x", 4, shape_doc="[N, C, H, W]")
    check_tensor(weight, "weight", 4, shape_doc="[C, 1, kh, kw]")
    check_same(weight, "weight", x, "x")
    channels = x.shape[1]
    if channels == 0:
        raise ValueError(f"x must have at least one channel; got shape {tuple(x.shape)}")
    kh, kw = weight.shape[2], weight.shape[3]
    if weight.shape[0] != channels or weight.shape[1] != 1:
        raise ValueError(
            f"weight must have shape (C, 1, kh, kw) = ({channels}, 1, kh, kw) for x with C={channels} "
            f"channels; got {tuple(weight.shape)}"
        )
    if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL):
        raise ValueError(f"weight's kernel size (kh, kw) must be between 1 and {MAX_KERNEL}; got ({kh}, {kw})")
    if bias is not None:
        check_tensor(bias, "bias", 1, shape_doc=f"[C] = [{channels}]")
        check_same(bias, "bias", x, "x")
        if bias.shape[0] != channels:
            raise ValueError(f"bias must have shape ({channels},) for x with C={channels}; got {tuple(bias.shape)}")
    stride = _int32_pair(as_pair(stride, "stride", 1), "stride")
    dilation = as_pair(dilation, "dilation", 1, MAX_DILATION)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1; got stride={stride}")
            total = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
            if total[0] % 2 or total[1] % 2:
                raise ValueError(
                    "padding='same' needs an even dilation*(kernel-1) on both axes (symmetric padding); "
                    f"got kernel ({kh}, {kw}) with dilation {dilation}"
                )
            padding = (total[0] // 2, total[1] // 2)
        else:
            raise ValueError(f"padding must be an int, a pair of ints, 'same' or 'valid'; got {padding!r}")
    padding = _int32_pair(as_pair(padding, "padding", 0), "padding")
    out = output_size((x.shape[2], x.shape[3]), (kh, kw), stride, padding, dilation)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"x's spatial size {tuple(x.shape[2:])} is smaller than the dilated kernel "
            f"({dilation[0] * (kh - 1) + 1}, {dilation[1] * (kw - 1) + 1}) with padding {padding}"
        )
    return stride, padding, dilation


def depthwise_conv2d_ref(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
                         padding: IntPair = 0, dilation: IntPair = 1) -> Tensor:
    """Reference depthwise convolution: a sum over taps of shifted, strided input slices.

    Deliberately independent of ``F.conv2d`` (the tests compare the two) and differentiable
    by autograd. Half-precision inputs are accumulated in float32, like the kernels.

    Args and result as :func:`depthwise_conv2d` (no ``backend``).
    """
    stride, padding, dilation = _check(x, weight, bias, stride, padding, dilation)
    kh, kw = weight.shape[2], weight.shape[3]
    ho, wo = output_size((x.shape[2], x.shape[3]), (kh, kw), stride, padding, dilation)
    acc = acc_dtype(x.dtype)
    xp = F.pad(x.to(acc), (padding[1], padding[1], padding[0], padding[0]))
    w = weight.to(acc)
    y = xp.new_zeros((x.shape[0], x.shape[1], ho, wo))
    for i in range(kh):
        r0 = i * dilation[0]
        rows = slice(r0, r0 + stride[0] * (ho - 1) + 1, stride[0])
        for j in range(kw):
            c0 = j * dilation[1]
            cols = slice(c0, c0 + stride[1] * (wo - 1) + 1, stride[1])
            y = y + xp[:, :, rows, cols] * w[:, 0, i, j].view(1, -1, 1, 1)
    if bias is not None:
        y = y + bias.to(acc).view(1, -1, 1, 1)
    return y.to(x.dtype)


# ---------------------------------------------------------------------------------------
# The implementation records. Every kernel backend has fwd, bwd_input and bwd_weight with the
# same arguments; tensors may have any strides (channels_last, views, expanded grads). The
# record's backward runs the ones a gradient mask asks for; HLKConv's composed paths call
# these records too.


class DwGrads(NamedTuple):
    """Gradients of (x, weight, bias); None where the mask did not ask for one."""

    x: Tensor | None
    weight: Tensor | None
    bias: Tensor | None


def _backward_from(bwd_input: Callable, bwd_weight: Callable) -> Callable:
    def backward(grad_y, x, weight, stride, padding, dilation, mask) -> DwGrads:
        gx = gw = gb = None
        if mask[0]:
            gx = bwd_input(grad_y, weight, (x.shape[2], x.shape[3]), stride, padding, dilation)
        if mask[1] or mask[2]:
            gw, gb = bwd_weight(grad_y, x, (weight.shape[2], weight.shape[3]), stride, padding, dilation,
                                bool(mask[2]))
        return DwGrads(gx, gw if mask[1] else None, gb if mask[2] else None)

    return backward


def _register_extension(backend: str) -> None:
    fwd, bwd_in, bwd_w = (_dispatch.extension_kernel(backend, f"depthwise_{k}")
                          for k in ("fwd", "bwd_input", "bwd_weight"))

    # The bindings take (stride, padding, dilation) as one list: their DwParams. They also
    # make the weights contiguous (and read x and grad_y through their strides).
    def forward(x, weight, bias, stride, padding, dilation):
        return fwd(x, weight, bias, [*stride, *padding, *dilation])

    def bwd_input(grad_y, weight, input_hw, stride, padding, dilation):
        return bwd_in(grad_y, weight, *input_hw, [*stride, *padding, *dilation])

    def bwd_weight(grad_y, x, kernel, stride, padding, dilation, need_bias):
        return bwd_w(grad_y, x, *kernel, [*stride, *padding, *dilation], need_bias)

    _dispatch.register(OP, backend, forward, _backward_from(bwd_input, bwd_weight))


def _torch_forward(x, weight, bias, stride, padding, dilation) -> Tensor:
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        # PyTorch's CPU convolution may accumulate half types in half precision (oneDNN
        # chooses by CPU); every backend here accumulates in float32, so this one does too.
        b32 = None if bias is None else bias.float()
        return F.conv2d(x.float(), weight.float(), b32, stride, padding, dilation, groups=x.shape[1]).to(x.dtype)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups=x.shape[1])


_dispatch.register(OP, "torch", _torch_forward)  # differentiated by autograd
_register_extension("cpp")
_register_extension("cuda")
_dispatch.register(OP, "triton", _dispatch.lazy("depthwise", "depthwise_fwd"),
                   _backward_from(_dispatch.lazy("depthwise", "depthwise_bwd_input"),
                                  _dispatch.lazy("depthwise", "depthwise_bwd_weight")))


def _depthwise_run(x: Tensor, weight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                   dilation: list[int], backend: str) -> Tensor:
    return _dispatch.impl(OP, backend).forward(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation))


_depthwise_op = torch.library.custom_op("istd::depthwise_conv2d", _depthwise_run, mutates_args=())


@_depthwise_op.register_fake
def _(x, weight, bias, stride, padding, dilation, backend):
    ho, wo = output_size((x.shape[2], x.shape[3]), (weight.shape[2], weight.shape[3]), stride, padding, dilation)
    return empty_output(x, (x.shape[0], x.shape[1], ho, wo))


def _depthwise_backward_run(grad_y: Tensor, x: Tensor, weight: Tensor, stride: list[int], padding: list[int],
                            dilation: list[int], backend: str, output_mask: list[bool]
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (x, weight, bias); a gradient not asked for in ``output_mask`` is an empty tensor."""
    grads = _dispatch.impl(OP, backend).backward(grad_y, x, weight, tuple(stride), tuple(padding), tuple(dilation),
                                                 output_mask)
    # Outputs of a custom op may not alias one another: one fresh empty tensor per unused slot.
    return tuple(g if g is not None else grad_y.new_empty(0) for g in grads)


_depthwise_backward_op = torch.library.custom_op("istd::depthwise_conv2d_backward", _depthwise_backward_run,
                                                 mutates_args=())


@_depthwise_backward_op.register_fake
def _(grad_y, x, weight, stride, padding, dilation, backend, output_mask):
    grad_x = empty_output(grad_y, x.shape) if output_mask[0] else grad_y.new_empty(0)
    grad_w = weight.new_empty(weight.shape) if output_mask[1] else grad_y.new_empty(0)
    grad_b = weight.new_empty(weight.shape[0]) if output_mask[2] else grad_y.new_empty(0)
    return grad_x, grad_w, grad_b


def _setup_context(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, backend = inputs
    ctx.save_for_backward(x, weight)
    ctx.conf = (stride, padding, dilation, backend)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_y):
    x, weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    mask = [bool(need[0]), bool(need[1]), bool(ctx.has_bias and need[2])]
    grad_x, grad_w, grad_b = _depthwise_backward(grad_y, x, weight, *ctx.conf, mask)
    return (grad_x if mask[0] else None, grad_w if mask[1] else None, grad_b if mask[2] else None,
            None, None, None, None)


_depthwise_op.register_autograd(_backward, setup_context=_setup_context)
_depthwise_backward = _transforms.backward_op(_depthwise_backward_op, OP, _depthwise_backward_run)
_depthwise = _transforms.differentiable_op(_depthwise_op, _setup_context, _backward, _depthwise_run)


def depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
                     padding: IntPair | str = 0, dilation: IntPair = 1, backend: str | None = None
                     ) -> Tensor:
    """Depthwise 2-D convolution, equivalent to ``F.conv2d(x, weight, bias, stride, padding, dilation, groups=C)``.

    Args:
        x: ``[N, C, H, W]``, float16/bfloat16/float32/float64, any memory layout
            (NCHW, channels_last, strided views). ``N`` may be 0.
        weight: ``[C, 1, kh, kw]`` with 1 <= kh, kw <= 31, same dtype and device as ``x``.
        bias: ``[C]`` or None.
        stride: int or (sh, sw), >= 1.
        padding: int or (ph, pw) >= 0 (zero padding), ``"valid"``, or ``"same"`` (stride 1,
            even ``dilation*(k-1)``).
        dilation: int or (dh, dw), 1 to 8.
        backend: ``"torch"``, ``"cpp"``, ``"cuda"``, ``"triton"``, ``"auto"`` or None (the
            :func:`istd_kernels.use_backend` context, then ``ISTD_BACKEND``, then auto).

    Returns:
        ``[N, C, Ho, Wo]`` in ``x.dtype`` (float32 accumulation for half types), channels_last
        if ``x`` is. Under autocast the inputs are cast to the autocast dtype first.
    """
    x, weight, bias = autocast_cast(x, x, weight, bias)
    stride, padding, dilation = _check(x, weight, bias, stride, padding, dilation)
    name = _dispatch.choose(OP, x.device, x.dtype, backend)
    if name == "torch":
        return _torch_forward(x, weight, bias, stride, padding, dilation)
    return _depthwise(x, weight, bias, list(stride), list(padding), list(dilation), name)
