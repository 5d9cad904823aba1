"""Recognisers for :func:`istd_kernels.nn.accelerate`: which plain-PyTorch modules a layer of
this package computes exactly.

Each ``*_refusal`` function returns None when the module may be swapped, else the reason it
must be left alone (a sentence for the report). They only read the module.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..layout import FLOAT_DTYPES
from ..ops import hlk_conv
from ..ops.depthwise import MAX_DILATION, MAX_KERNEL
from ..ops.hlk_conv import K_SIZES

HLK_CHILDREN = ("conv0", "conv_spatial", "conv1")
# The probe runs a float64 copy of the candidate, so the published forward and the fused
# op's reference agree to rounding (~1e-15); anything above this is a different computation.
PROBE_SHAPE = (2, 11, 13)  # (N, H, W); odd, unequal sides catch transposed or shifted taps
PROBE_RTOL = 1e-9


class _Mismatch(Exception):
    """A structural difference from the pattern; the message is the report's reason."""


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # type: ignore[return-value]


def is_depthwise(module: nn.Module) -> bool:
    """A ``nn.Conv2d`` (or subclass) with ``groups == in_channels == out_channels``."""
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels


def is_depthwise_family(module: nn.Module) -> bool:
    """Depthwise or depthwise with a channel multiplier (``groups == in_channels``, ``out = m * in``)."""
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels and (
        module.groups > 1 or module.out_channels == 1)


def is_pointwise(module: nn.Module) -> bool:
    """A dense 1x1 ``nn.Conv2d`` with stride 1 and no padding."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
            and module.stride == (1, 1) and _pair(module.padding) in ((0, 0), ("valid", "valid"), ("same", "same")))


def depthwise_refusal(conv: nn.Conv2d) -> str | None:
    """Why ``conv`` (depthwise-shaped) cannot become a ``DepthwiseConv2d``; None if it can."""
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is a subclass of nn.Conv2d whose forward may differ"
    if "forward" in conv.__dict__:
        return "its forward is overridden on the instance"
    if conv.out_channels != conv.in_channels:
        return (f"channel multiplier {conv.out_channels // conv.in_channels}: DepthwiseConv2d needs "
                "out_channels == in_channels")
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}: the depthwise kernels pad with zeros only"
    if conv.weight.dtype not in FLOAT_DTYPES:
        return f"weight dtype {conv.weight.dtype}: the depthwise kernels take floating dtypes only"
    if max(conv.kernel_size) > MAX_KERNEL:
        return f"kernel {conv.kernel_size} is larger than the kernels' limit {MAX_KERNEL}"
    if max(conv.dilation) > MAX_DILATION:
        return f"dilation {conv.dilation} is larger than the kernels' limit {MAX_DILATION}"
    if conv.padding == "same" and any(d * (k - 1) % 2 for d, k in zip(conv.dilation, conv.kernel_size)):
        return "padding='same' with an odd dilation*(kernel-1) pads asymmetrically; the kernels pad symmetrically"
    return None


def _has_hooks(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
        "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks"))


def _hlk_depthwise(conv: nn.Module, name: str, dim: int) -> tuple[int, int]:
    """``(k, dilation)`` of a square 'same'-padded depthwise conv with ``dim`` channels."""
    if type(conv) is not nn.Conv2d or not is_depthwise(conv) or conv.in_channels != dim:
        raise _Mismatch(f"{name} is not a plain depthwise nn.Conv2d over {dim} channels")
    (k, kw), (d, dw) = conv.kernel_size, conv.dilation
    if k != kw or d != dw or conv.stride != (1, 1) or conv.padding_mode != "zeros":
        raise _Mismatch(f"{name} is not square, stride 1, zero padded")
    if conv.padding not in ("same", (d * (k // 2),) * 2) or k % 2 == 0:
        raise _Mismatch(f"{name} has padding {conv.padding}, not the 'same' padding {d * (k // 2)}")
    return k, d


def hlk_structure(module: nn.Module) -> int:
    """``k_size`` of a module built like the published HLKConv; raises ``_Mismatch`` otherwise."""
    if tuple(sorted(module._modules)) != tuple(sorted(HLK_CHILDREN)):
        raise _Mismatch(f"children {tuple(module._modules)}, not exactly {HLK_CHILDREN}")
    if module._parameters or module._buffers:
        raise _Mismatch("it has parameters or buffers of its own besides conv0/conv_spatial/conv1")
    if _has_hooks(module) or any(_has_hooks(c) for c in module.children()):
        raise _Mismatch("it or one of its children has hooks, which the fused layer would not call")
    conv0, spatial, conv1 = (module._modules[n] for n in HLK_CHILDREN)
    dim = getattr(conv0, "in_channels", 0)
    k1, d0 = _hlk_depthwise(conv0, "conv0", dim)
    k2, dil = _hlk_depthwise(spatial, "conv_spatial", dim)
    table = {v: k for k, v in K_SIZES.items()}
    if d0 != 1 or (k1, k2, dil) not in table:
        raise _Mismatch(f"(k1, k2, dilation) = ({k1}, {k2}, {dil}) with conv0 dilation {d0} is not in the "
                        f"published table {sorted(K_SIZES.values())}")
    if not (type(conv1) is nn.Conv2d and is_pointwise(conv1) and conv1.in_channels == 2 * dim):
        raise _Mismatch(f"conv1 is not a dense 1x1 nn.Conv2d from 2*{dim} channels")
    if len({p.dtype for p in module.parameters()}) != 1 or conv0.weight.dtype not in FLOAT_DTYPES:
        raise _Mismatch("its parameters do not share one floating dtype")
    return table[(k1, k2, dil)]


def _fused_reference(module: nn.Module, x: Tensor, dilation: int) -> Tensor:
    conv0, spatial, conv1 = (module._modules[n] for n in HLK_CHILDREN)
    return hlk_conv(x, conv0.weight, conv0.bias, spatial.weight, spatial.bias, conv1.weight, conv1.bias,
                    dilation, 1, backend="torch")


def _relative_error(got, want) -> float:
    if not isinstance(got, Tensor) or want is None or got.shape != want.shape:
        return float("inf")
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    return (got - want).abs().max().item() / scale if want.numel() else 0.0


def probe_refusal(module: nn.Module, dilation: int) -> str | None:
    """Run a float64 copy of ``module`` and of the fused computation on a probe input, in
    training and eval mode, and compare outputs and gradients (input and every parameter).
    None if they agree."""
    if any(p.is_meta for p in module.parameters()):
        return "its parameters are on the meta device, so the probe cannot verify its forward"
    twin = copy.deepcopy(module).double().requires_grad_(True)
    params = list(twin.parameters())
    device = params[0].device
    gen = torch.Generator(device=device).manual_seed(0)
    n, h, w = PROBE_SHAPE
    dim = twin.conv0.in_channels
    x = torch.randn(n, dim, h, w, generator=gen, dtype=torch.float64, device=device, requires_grad=True)
    with torch.inference_mode(False), torch.enable_grad():
        for training in (True, False):
            twin.train(training)
            try:
                got = twin(x)
            except Exception as err:  # any failure means "not the published forward"
                return f"its forward raised {type(err).__name__} on a probe input: {err}"
            want = _fused_reference(twin, x, dilation)
            if _relative_error(got, want) > PROBE_RTOL:
                return f"its forward differs from HLKConv's on a probe input (training={training})"
            gy = torch.randn(want.shape, generator=gen, dtype=torch.float64, device=device)
            got_g = torch.autograd.grad(got, [x, *params], gy, allow_unused=True)
            want_g = torch.autograd.grad(want, [x, *params], gy, allow_unused=True)
            if max(_relative_error(g, r) for g, r in zip(got_g, want_g)) > PROBE_RTOL:
                return f"its gradients differ from HLKConv's on a probe input (training={training})"
    return None
