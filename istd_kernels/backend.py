"""Backend selection: which implementation of an op runs for a given call.

Backends:
  ``torch``   plain PyTorch; runs everywhere, the last resort of ``auto`` (the references
              the tests compare every backend with are the ops' ``*_ref`` functions).

The routing table (which paths each op has and what each supports) is
:mod:`istd_kernels.ops._dispatch`; this module only chooses among a call's backends.
  ``cpp``     the C++ CPU extension (OpenMP); CPU tensors.
  ``cuda``    the C++/CUDA extension; CUDA tensors.
  ``triton``  Triton kernels; CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``.

The backend for a call is, in order: the op's ``backend=`` argument, the innermost
:func:`use_backend` context, the ``ISTD_BACKEND`` environment variable, else ``auto``.
``auto`` picks cuda > triton > torch for CUDA tensors and cpp > torch for CPU tensors,
among the backends the op implements, and never fails where ``torch`` can run. A backend
named explicitly that cannot run raises :class:`BackendUnavailableError` with the reason.
An op that does not implement the backend of a :func:`use_backend` context (or of
``ISTD_BACKEND``) chooses automatically, so a context can cover a whole model; a per-call
``backend=`` the op does not implement is an error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import torch

from .extensions import cpu_extension, cuda_extension

NAMES = ("torch", "cpp", "cuda", "triton")
_CHOICES = NAMES + ("auto",)
_AUTO_ORDER = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpp", "torch")}
_TRITON_MODULE = "istd_kernels.triton"

# A plain module-level stack rather than a ContextVar: torch.compile reads it and guards on
# it (a changed backend recompiles), whereas it cannot trace a ContextVar. The price is that
# use_backend() is process-wide, not per thread.
_stack: list = []


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run this call."""


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or name not in _CHOICES:
        raise ValueError(f"{what} must be one of {', '.join(_CHOICES)}; got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run ops and layers inside the block with backend ``name`` (or ``"auto"``).

    Nested contexts override outer ones; a per-call ``backend=`` overrides both.
    """
    _stack.append(_check_name(name, "backend"))
    try:
        yield
    finally:
        _stack.pop()


def requested(backend: str | None = None) -> str:
    """The backend name in force for a call whose ``backend=`` argument is ``backend``."""
    if backend is not None:
        return _check_name(backend, "backend")
    if _stack:
        return _stack[-1]
    env = os.environ.get("ISTD_BACKEND")
    if env:
        return _check_name(env, "the ISTD_BACKEND environment variable")
    return "auto"


def triton_interpreting() -> bool:
    """Whether Triton kernels run in the interpreter (on CPU tensors).

    Triton decides this when a kernel is defined, so once our kernels are imported their
    mode is fixed; before that it follows ``TRITON_INTERPRET``.
    """
    module = sys.modules.get(_TRITON_MODULE + ".depthwise")
    if module is not None:
        return bool(module.INTERPRET)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_status() -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    if triton_interpreting():
        return True, "interpreter (TRITON_INTERPRET=1): CPU tensors, slow, for testing"
    if torch.cuda.is_available():
        major, _ = torch.cuda.get_device_capability()
        if major < 7:
            return False, f"GPU compute capability {major}.x is below the 7.0 Triton needs"
        return True, "compiled for the GPU"
    return False, ("no CUDA GPU, and TRITON_INTERPRET=1 is not set (set it before importing istd_kernels to run "
                   "Triton kernels on CPU tensors)")


def _status(name: str) -> tuple[bool, str]:
    if name == "torch":
        return True, "plain PyTorch, always available"
    if name == "cpp":
        ext = cpu_extension()
        return ext.available, ("C++ CPU extension istd_kernels._C" if ext.available else ext.reason)
    if name == "cuda":
        ext = cuda_extension()
        if not ext.available:
            return False, ext.reason
        if not torch.cuda.is_available():
            return False, "the CUDA extension is built but torch sees no CUDA GPU"
        return True, "C++/CUDA extension istd_kernels._cuda"
    return _triton_status()


def backends() -> dict[str, tuple[bool, str]]:
    """``{name: (available, reason)}`` for every backend, on this machine, now."""
    return {name: _status(name) for name in NAMES}


def _constant_for_compile(fn: Callable) -> Callable:
    """What ``torch.compiler.assume_constant_result`` does (it sets this one attribute, which
    torch.compile reads when it traces a call), without the import of torch._dynamo that the
    decorator makes: about 1 s, most of ``import istd_kernels`` and of every ``istd`` command.
    tests/test_lazy_imports.py checks that torch's decorator still sets exactly this."""
    fn._dynamo_marked_constant = True
    return fn


# Capabilities do not change while a model runs; torch.compile takes the answer as a constant
# instead of tracing the probes (imports, caches) inside.
@_constant_for_compile
def _fits(name: str, device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """Whether backend ``name`` can run on tensors of this device and dtype."""
    ok, reason = _status(name)
    if not ok:
        return False, reason
    if name == "cpp" and device.type != "cpu":
        return False, f"the cpp backend runs on CPU tensors, got {device.type} tensors"
    if name == "cuda" and device.type != "cuda":
        return False, f"the cuda backend runs on CUDA tensors, got {device.type} tensors"
    if name == "triton":
        interp = triton_interpreting()
        if device.type == "cpu" and not interp:
            return False, "Triton runs on CPU tensors only under TRITON_INTERPRET=1"
        if device.type == "cuda" and interp:
            return False, ("Triton kernels were loaded in interpreter mode (TRITON_INTERPRET=1); unset it to run "
                           "them on the GPU")
        if device.type not in ("cpu", "cuda"):
            return False, f"Triton runs on CUDA tensors, got {device.type} tensors"
        if interp and dtype == torch.bfloat16:
            return False, "the Triton interpreter cannot compute in bfloat16"
    return True, ""


Supports = Callable[[str], tuple[bool, str]]


class Verdict(NamedTuple):
    """Whether one backend can run a call, and why not."""

    backend: str
    ok: bool
    reason: str


def _always(name: str) -> tuple[bool, str]:
    return True, ""


def _verdict(name: str, implemented: tuple[str, ...], device: torch.device, dtype: torch.dtype,
             supports: Supports) -> Verdict:
    if name not in implemented:
        return Verdict(name, False, f"not implemented for this op (it has {', '.join(implemented)})")
    ok, reason = _fits(name, device, dtype)
    if ok:
        ok, reason = supports(name)
    return Verdict(name, ok, reason)


def auto_order(device: torch.device) -> tuple[str, ...]:
    """The backends ``auto`` tries, best first, for tensors on ``device``."""
    return _AUTO_ORDER.get(device.type, ("torch",))


def explain(op: str, implemented: Iterable[str], device: torch.device, dtype: torch.dtype,
            backend: str | None = None, supports: Supports | None = None) -> tuple[str, list[Verdict]]:
    """``(chosen, verdicts)``: the backend :func:`select` picks and every backend's verdict.

    Verdicts follow ``auto``'s order for ``device``, then the remaining backends; an
    explicit request that cannot run makes ``chosen`` the error message.
    """
    implemented = tuple(implemented)
    supports = supports or _always
    order = auto_order(device) + tuple(n for n in NAMES if n not in auto_order(device))
    verdicts = [_verdict(n, implemented, device, dtype, supports) for n in order]
    try:
        chosen = select(op, implemented, device, dtype, backend, supports)
    except (ValueError, RuntimeError) as err:
        chosen = f"error: {err}"
    return chosen, verdicts


def resolve(implemented: Iterable[str], backend: str | None = None) -> str:
    """The backend name a call of an op with backends ``implemented`` asks for (or ``"auto"``)."""
    name = requested(backend)
    if backend is None and name not in tuple(implemented):
        # A use_backend() context or ISTD_BACKEND covers a whole model, whose ops need not
        # all have that backend: those that lack it pick automatically. A per-call
        # backend= is a demand about this op, and refusing it is the honest answer.
        return "auto"
    return name


def select(op: str, implemented: Iterable[str], device: torch.device, dtype: torch.dtype,
           backend: str | None = None, supports: Supports | None = None) -> str:
    """The backend that runs ``op`` on tensors of ``device``/``dtype``.

    ``implemented`` lists the backends the op has; ``supports(name) -> (ok, reason)`` says
    whether backend ``name`` takes this particular call (its shapes and hyper-parameters).
    ``auto`` walks :func:`auto_order` and takes the first backend that is implemented,
    available for the device and dtype, and supports the call; ``torch`` is the last resort.
    A backend named explicitly (or by a context) raises :class:`BackendUnavailableError`
    when it cannot run on this machine, device or dtype, and ``ValueError`` with the
    backend's reason when it does not support the call.
    """
    implemented = tuple(implemented)
    supports = supports or _always
    name = resolve(implemented, backend)
    if name == "auto":
        for candidate in auto_order(device):
            if _verdict(candidate, implemented, device, dtype, supports).ok:
                return candidate
        return "torch"
    if name not in implemented:
        raise BackendUnavailableError(
            f"{op} has no {name!r} backend; it has {', '.join(implemented)} (or use backend='auto')"
        )
    ok, reason = _fits(name, device, dtype)
    if not ok:
        raise BackendUnavailableError(
            f"backend {name!r} cannot run {op} on {device.type} {str(dtype).replace('torch.', '')} tensors: "
            f"{reason}. Use backend='auto' or 'torch', or fix the cause; `python -m istd_kernels.info` lists every "
            "backend's status."
        )
    ok, reason = supports(name)
    if not ok:
        raise ValueError(f"{reason}. Use backend='auto' or backend='torch'")
    return name
