"""The implementations of each op, one record per (op, backend), and the choice among them.

An op module registers, once per backend, an :class:`Impl`: its ``forward`` and ``backward``
kernels (whatever signature that op's custom op calls them with) and ``supports(**call)``,
which says whether this backend takes a particular call (``call`` holds the op's plain
Python hyper-parameters, e.g. ``scales``) and why not. :func:`choose` hands those checks to
:func:`istd_kernels.backend.select`, so ``auto`` walks the backends in order over the ones
that can run the call, and an explicit request gets the refusing backend's reason.
:func:`explain` tells, for a call, which backend runs and why each other was skipped
(``python -m istd_kernels.info --explain OP``).

Composed paths (HLKConv from depthwise kernels) call another op's record through
:func:`impl`, never that op's private helpers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import NamedTuple

import torch

from .. import backend as _backend
from ..extensions import cpu_extension, cuda_extension


def _always(**call) -> tuple[bool, str]:
    return True, ""


class Impl(NamedTuple):
    """One backend's implementation of one op."""

    backend: str
    forward: Callable
    backward: Callable | None
    supports: Callable[..., tuple[bool, str]] = _always


_REGISTRY: dict[str, dict[str, Impl]] = {}


def register(op: str, backend: str, forward: Callable, backward: Callable | None = None,
             supports: Callable[..., tuple[bool, str]] = _always) -> Impl:
    """Record ``backend``'s implementation of ``op`` (once: a second record is a bug)."""
    if backend not in _backend.NAMES:
        raise ValueError(f"backend must be one of {', '.join(_backend.NAMES)}; got {backend!r}")
    impls = _REGISTRY.setdefault(op, {})
    if backend in impls:
        raise RuntimeError(f"{op} already has a {backend!r} implementation")
    impls[backend] = Impl(backend, forward, backward, supports)
    return impls[backend]


def ops() -> list[str]:
    """The names of the ops that registered implementations."""
    return sorted(_REGISTRY)


def implementations(op: str) -> dict[str, Impl]:
    """``{backend: Impl}`` of ``op``."""
    try:
        return _REGISTRY[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; the ops are {', '.join(ops())}") from None


def impl(op: str, backend: str) -> Impl:
    """The record of ``backend`` for ``op`` (the backend was selected already)."""
    return implementations(op)[backend]


def _supports(op: str, call: dict):
    impls = implementations(op)
    return lambda name: impls[name].supports(**call)


def choose(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None, **call) -> str:
    """The backend that runs this call of ``op`` (see :func:`istd_kernels.backend.select`)."""
    return _backend.select(op, implementations(op), device, dtype, backend, _supports(op, call))


def explain(op: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
            backend: str | None = None, **call) -> str:
    """Which backend runs ``op`` for a call on ``device``/``dtype`` with hyper-parameters
    ``call``, and why each other backend was skipped, as text (one line per backend)."""
    device = torch.device(device)
    chosen, verdicts = _backend.explain(op, implementations(op), device, dtype, backend, _supports(op, call))
    what = ", ".join(f"{k}={v!r}" for k, v in call.items())
    outcome = f"runs {chosen}" if chosen in _backend.NAMES else f"raises {chosen[len('error: '):]}"
    lines = [f"{op} on {device.type} {str(dtype).replace('torch.', '')} tensors{' with ' + what if what else ''}: "
             + outcome]
    for v in verdicts:
        lines.append(f"  {v.backend:<7} {'can run' if v.ok else 'skipped: ' + v.reason}")
    return "\n".join(lines)


def cuda_launch(fn: Callable, *args):
    """``fn(*args, stream)`` with the tensors' device current and its current stream.

    The CUDA launchers take the stream as an integer so that the bindings need no c10/cuda
    headers; the device of the first tensor argument (or of the first tensor of a first
    list argument) is the one they run on.
    """
    first = args[0] if isinstance(args[0], torch.Tensor) else args[0][0]
    with torch.cuda.device(first.device):
        return fn(*args, torch.cuda.current_stream(first.device).cuda_stream)


def extension_kernel(backend: str, name: str) -> Callable:
    """Entry point ``name`` of the cpp (``_C``) or cuda (``_cuda``) extension, loaded at call time.

    Loaded lazily: an op module registers its records whether or not the extension was built.
    """
    if backend == "cpp":
        return lambda *args: getattr(cpu_extension().module, name)(*args)
    return lambda *args: cuda_launch(getattr(cuda_extension().module, name), *args)


def lazy(module: str, name: str) -> Callable:
    """``istd_kernels.triton.<module>.<name>``, imported at call time.

    Importing triton (and compiling nothing yet) costs seconds, and it may be missing.
    """
    def call(*args):
        return getattr(importlib.import_module(f"istd_kernels.triton.{module}"), name)(*args)

    return call
