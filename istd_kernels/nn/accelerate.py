"""``accelerate(model)``: swap the plain-PyTorch layers of someone else's model for this
package's layers where they compute exactly the same thing; ``restore(model)`` undoes it.

Patterns (see :data:`PATTERNS`):

* ``"hlk"``: a module built like LCRNet's published HLKConv (children ``conv0``,
  ``conv_spatial``, ``conv1`` with the published shapes) whose forward and gradients match
  ``conv1(cat([a, conv_spatial(a)]))``, ``a = conv0(x)``, on a probe input becomes the fused
  :class:`~istd_kernels.nn.HLKConv`, keeping the same child modules (so the same
  parameters and state_dict keys).
* ``"depthwise"``: a ``nn.Conv2d`` with ``groups == in_channels == out_channels`` becomes a
  :class:`~istd_kernels.nn.DepthwiseConv2d` by changing the module's class in place: same
  object, parameters, buffers, hooks and state_dict keys.
* ``"dw_pw"``: a depthwise conv followed directly by a dense 1x1 conv in an ``nn.Sequential``
  is detected and reported, not fused: there is no fused depthwise->pointwise op, and the
  1x1 is already a GEMM in PyTorch (its weight gradient needs the depthwise output anyway).

Anything that does not match exactly is left alone and the report says why.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from ..backend import _check_name
from ..ops.hlk_conv import decompose
from .depthwise import DepthwiseConv2d
from .hlk import HLKConv
from .patterns import (
    HLK_CHILDREN,
    _Mismatch,
    depthwise_refusal,
    hlk_structure,
    is_depthwise,
    is_depthwise_family,
    is_pointwise,
    probe_refusal,
)

PATTERNS = ("hlk", "depthwise", "dw_pw")
REPORT_ATTR = "_istd_accelerate_report"
# Set on a Conv2d whose class accelerate() changed, and (holding the original module) on a
# fused HLKConv, so that restore() undoes only what accelerate() did.
_SWAPPED_ATTR = "_istd_swapped_conv"
_ORIGINAL_ATTR = "_istd_original_module"


@dataclass(frozen=True)
class Decision:
    """One module the pass looked at: ``action`` is ``"replaced"``, ``"kept"`` (left alone,
    ``reason`` says why), ``"already"`` (accelerated by an earlier call) or ``"detected"``."""

    path: str
    pattern: str
    action: str
    reason: str = ""


@dataclass
class AccelerateReport:
    """What :func:`accelerate` replaced and what it left alone, in module-tree order."""

    decisions: list[Decision] = field(default_factory=list)

    def add(self, path: str, pattern: str, action: str, reason: str = "") -> None:
        self.decisions.append(Decision(path or "<root>", pattern, action, reason))

    def by_action(self, action: str) -> list[Decision]:
        """The decisions with ``action`` (e.g. ``"replaced"`` or ``"kept"``)."""
        return [d for d in self.decisions if d.action == action]

    def __str__(self) -> str:
        lines = [f"{d.action:9} {d.pattern:9} {d.path}" + (f": {d.reason}" if d.reason else "")
                 for d in self.decisions]
        return "\n".join(lines) or "nothing to accelerate"


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return model


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return value


def _check_patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    if patterns == "all":
        return PATTERNS
    if isinstance(patterns, str):
        chosen: tuple = (patterns,)
    elif isinstance(patterns, (list, tuple, set, frozenset)):
        chosen = tuple(patterns)
    else:
        raise TypeError(f"patterns must be 'all' or a collection of {PATTERNS}; got {patterns!r}")
    if not chosen or any(p not in PATTERNS for p in chosen):
        raise ValueError(f"patterns must be 'all' or a non-empty collection of {PATTERNS}; got {patterns!r}")
    return chosen


def _parent_edges(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """``id(child) -> [(parent, name), ...]``: every place a module sits, shared ones included."""
    edges: dict[int, list[tuple[nn.Module, str]]] = {}
    for parent in model.modules():
        for name, child in parent._modules.items():
            if child is not None:
                edges.setdefault(id(child), []).append((parent, name))
    return edges


def _replace(model: nn.Module, old: nn.Module, new: nn.Module, edges) -> nn.Module:
    """Put ``new`` wherever ``old`` sits; returns the (possibly new) root."""
    for parent, name in edges.get(id(old), []):
        parent._modules[name] = new
    return new if old is model else model


def _fused_hlk(module: nn.Module, k_size: int, backend: str | None) -> HLKConv:
    """An HLKConv that owns ``module``'s own child convs (same parameters, same key order)."""
    conv1 = module._modules["conv1"]
    fused = HLKConv(conv1.in_channels // 2, k_size, out_dim=conv1.out_channels, backend=backend, device="meta")
    fused._modules.clear()
    fused._modules.update(module._modules)
    fused.training = module.training  # its own flag only: train() would recurse into the children
    object.__setattr__(fused, _ORIGINAL_ATTR, module)  # not registered: no state_dict entry
    return fused


def _fuse_hlk(model: nn.Module, backend: str | None, report: AccelerateReport) -> nn.Module:
    edges = _parent_edges(model)
    for path, module in list(model.named_modules()):
        if isinstance(module, HLKConv):
            if _ORIGINAL_ATTR in module.__dict__:
                report.add(path, "hlk", "already")
            continue
        if isinstance(module, nn.Conv2d) or not set(HLK_CHILDREN) <= set(module._modules):
            continue
        try:
            k_size = hlk_structure(module)
        except _Mismatch as err:
            report.add(path, "hlk", "kept", str(err))
            continue
        reason = probe_refusal(module, decompose(k_size)[2])
        if reason:
            report.add(path, "hlk", "kept", reason)
            continue
        model = _replace(model, module, _fused_hlk(module, k_size, backend), edges)
        report.add(path, "hlk", "replaced", f"k_size={k_size} -> istd_kernels.nn.HLKConv")
    return model


def _owned_by_hlk(model: nn.Module) -> set:
    """ids of the child convs of HLKConv layers: the fused op reads their weights, never calls them."""
    return {id(c) for m in model.modules() if isinstance(m, HLKConv) for c in m.modules() if c is not m}


def _swap_depthwise(model: nn.Module, backend: str | None, report: AccelerateReport) -> None:
    owned = _owned_by_hlk(model)
    for path, module in model.named_modules():
        if id(module) in owned or not is_depthwise_family(module):
            continue
        if isinstance(module, DepthwiseConv2d):
            if _SWAPPED_ATTR in module.__dict__:
                report.add(path, "depthwise", "already")
            continue
        reason = depthwise_refusal(module)
        if reason:
            report.add(path, "depthwise", "kept", reason)
            continue
        # Changing the class keeps the object: parameters, buffers, hooks and every
        # reference the caller holds (an optimizer, a shared module) stay valid.
        module.__class__ = DepthwiseConv2d
        module.backend = backend
        module.__dict__[_SWAPPED_ATTR] = True
        report.add(path, "depthwise", "replaced", "-> istd_kernels.nn.DepthwiseConv2d")


def _detect_dw_pw(model: nn.Module, report: AccelerateReport) -> None:
    for path, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        items = list(module._modules.items())
        for (name_a, a), (name_b, b) in zip(items, items[1:]):
            if is_depthwise(a) and is_pointwise(b):
                where = f"{path}.{name_a}->{name_b}" if path else f"{name_a}->{name_b}"
                report.add(where, "dw_pw", "detected",
                           "not fused: no fused depthwise->pointwise op; the depthwise conv is swapped on its "
                           "own and the 1x1 stays a PyTorch GEMM")


def accelerate(model: nn.Module, backend: str | None = None, inplace: bool = False,
               patterns: str | Iterable[str] = "all") -> nn.Module:
    """Swap the layers of ``model`` that this package computes exactly for its fast layers.

    Args:
        model: any ``nn.Module`` (parameters in float16/bfloat16/float32/float64, any device).
        backend: backend of the swapped layers, ``"torch"``, ``"cpp"``, ``"cuda"``,
            ``"triton"``, ``"auto"`` or None (follow :func:`istd_kernels.use_backend`).
        inplace: change ``model`` itself (True) or a deep copy of it (False).
        patterns: ``"all"`` or a collection of ``"hlk"``, ``"depthwise"``, ``"dw_pw"``.

    Returns:
        The accelerated model (a new root module only if ``model`` itself is an HLKConv-like
        module). Parameters, buffers and state_dict keys are unchanged, so checkpoints load
        both ways; calling it again changes nothing. What was replaced, left alone (and why)
        or detected is in :func:`accelerate_report` of the result.
    """
    _check_model(model)
    if backend is not None:
        _check_name(backend, "backend")
    chosen = _check_patterns(patterns)
    if not _check_flag(inplace, "inplace"):
        model = copy.deepcopy(model)
    report = AccelerateReport()
    if "hlk" in chosen:
        model = _fuse_hlk(model, backend, report)
    if "depthwise" in chosen:
        _swap_depthwise(model, backend, report)
    if "dw_pw" in chosen:
        _detect_dw_pw(model, report)
    model.__dict__[REPORT_ATTR] = report
    return model


def accelerate_report(model: nn.Module) -> AccelerateReport:
    """The report of the last :func:`accelerate` call that returned ``model``."""
    report = _check_model(model).__dict__.get(REPORT_ATTR)
    if report is None:
        raise ValueError("model was not returned by istd_kernels.nn.accelerate (it has no report)")
    return report


def restore(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The plain-PyTorch model back: undoes every swap :func:`accelerate` made (layers of
    this package that the model was built with stay). Same parameters and state_dict keys.

    Args:
        model: a module returned by :func:`accelerate` (any other module comes back unchanged).
        inplace: change ``model`` itself (True) or a deep copy of it (False).
    """
    _check_model(model)
    if not _check_flag(inplace, "inplace"):
        model = copy.deepcopy(model)
    for module in model.modules():
        if module.__dict__.pop(_SWAPPED_ATTR, False):
            module.__class__ = nn.Conv2d
            del module.backend
    edges = _parent_edges(model)
    for module in list(model.modules()):
        original = module.__dict__.pop(_ORIGINAL_ATTR, None)
        if original is not None:
            original._modules.clear()
            original._modules.update(module._modules)
            original.training = module.training
            model = _replace(model, module, original, edges)
    model.__dict__.pop(REPORT_ATTR, None)
    return model
