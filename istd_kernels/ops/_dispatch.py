"""The routing table of every op: one record per path that can run, and the choice among them.

This registry is the only place that says which implementations an op has. An op module
registers one :class:`Impl` per path: its backend, its ``forward`` and ``backward`` kernels
(whatever signature that op's custom op calls them with) and ``supports(**call)``, which
says whether the path takes a particular call (``call`` holds the op's plain Python
hyper-parameters, e.g. ``scales``) and why not. A backend usually has one path, named after
it; one with several (HLKConv's ``triton-fused`` and ``triton-composed``) runs the first
that supports the call. :func:`choose` hands those checks to
:func:`istd_kernels.backend.select`, so ``auto`` walks the backends in order over the ones
that can run the call, and an explicit request gets the refusing backend's reason.
:func:`explain` tells, for a call, which path runs and why each other was skipped
(``python -m istd_kernels.info --explain OP``).

``supports`` says what CAN run; what ``auto`` SHOULD run is a separate, measured matter: a
:class:`Preference` (:func:`prefer`) makes ``auto`` skip some paths for another on a
device's tensors where that other measured faster. Preferences bind ``auto`` only; a backend
named explicitly runs whenever its ``supports`` takes the call. The measured preferences
have one home, :mod:`istd_kernels.ops._auto_rules`. :func:`choose_path` gives the record that
runs a call, and :func:`impl` takes that record's path name back (the custom ops carry it).

Composed paths (HLKConv from depthwise kernels) call another op's record through
:func:`impl`, never that op's private helpers; layers and metrics ask :func:`choose`.
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
    """One path of one op: a backend's implementation (``path`` names it in the registry)."""

    backend: str
    forward: Callable
    backward: Callable | None
    supports: Callable[..., tuple[bool, str]] = _always
    path: str = ""


_REGISTRY: dict[str, dict[str, Impl]] = {}


def _every_call(**call) -> bool:
    return True


class Preference(NamedTuple):
    """``auto`` on ``device`` tensors skips the paths ``over`` (so that its walk reaches the
    path ``to``) for the calls ``when(**call)`` accepts; ``why`` cites the measurement."""

    device: str
    to: str
    over: tuple[str, ...]
    why: str
    when: Callable[..., bool] = _every_call


_PREFERENCES: dict[str, list[Preference]] = {}


def register(op: str, backend: str, forward: Callable, backward: Callable | None = None,
             supports: Callable[..., tuple[bool, str]] = _always, path: str | None = None) -> Impl:
    """Record a path of ``op`` on ``backend`` (``path`` defaults to the backend's name; once:
    a second record of a path is a bug). A backend's paths are tried in registration order."""
    if backend not in _backend.NAMES:
        raise ValueError(f"backend must be one of {', '.join(_backend.NAMES)}; got {backend!r}")
    path = path or backend
    impls = _REGISTRY.setdefault(op, {})
    if path in impls:
        raise RuntimeError(f"{op} already has a {path!r} implementation")
    impls[path] = Impl(backend, forward, backward, supports, path)
    return impls[path]


def _walk(op: str, device: str) -> list[str]:
    """The paths of ``op`` in the order ``auto`` tries them on ``device`` tensors."""
    return [r.path for b in _backend.auto_order(torch.device(device)) for r in paths(op, b)]


def prefer(op: str, device: str, to: str, over: tuple[str, ...], why: str,
           when: Callable[..., bool] = _every_call) -> Preference:
    """Record that ``auto`` prefers the path ``to`` to the paths ``over`` (a backend's name
    stands for all its paths) for calls of ``op`` on ``device`` (``"cpu"`` or ``"cuda"``)
    tensors whose hyper-parameters ``when(**call)`` accepts (default: every call).

    Every path in ``over`` must come before ``to`` in ``auto``'s walk for the device (backends
    in :func:`istd_kernels.backend.auto_order`, a backend's paths in registration order), so
    that skipping them leads to ``to``; raises ValueError otherwise, or for an unknown op.
    """
    walk = _walk(op, device)
    over = tuple(p for o in over for p in ([o] if o in implementations(op) else [r.path for r in paths(op, o)] or [o]))
    if to not in walk or any(o not in walk or walk.index(o) >= walk.index(to) for o in over):
        raise ValueError(f"over must be paths auto tries before {to!r} on {device} ({', '.join(walk)}); "
                         f"got {over!r}")
    preference = Preference(device, to, over, why, when)
    _PREFERENCES.setdefault(op, []).append(preference)
    return preference


def preferences(op: str) -> list[Preference]:
    """The auto preferences recorded for ``op``."""
    return list(_PREFERENCES.get(op, ()))


def _auto_skips(op: str, path: str, device: torch.device, call: dict) -> str:
    """Why ``auto`` skips ``path`` for this call (a preference), or ``""``."""
    for p in _PREFERENCES.get(op, ()):
        if p.device == device.type and path in p.over and p.when(**call):
            return f"auto prefers {p.to} here: {p.why}"
    return ""


def _skipper(op: str, device: torch.device, backend: str | None, call: dict) -> Callable[[str], str]:
    """``path -> reason auto skips it`` for a call whose ``backend=`` is ``backend``: the
    preferences when the call resolves to ``auto``, nothing for a named backend."""
    if _backend.resolve(backends(op), backend) != "auto":
        return lambda path: ""
    return lambda path: _auto_skips(op, path, device, call)


def ops() -> list[str]:
    """The names of the ops that registered implementations."""
    return sorted(_REGISTRY)


def implementations(op: str) -> dict[str, Impl]:
    """``{path: Impl}`` of ``op``, in registration order."""
    try:
        return _REGISTRY[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; the ops are {', '.join(ops())}") from None


def backends(op: str) -> tuple[str, ...]:
    """The backends ``op`` has (each with one or more paths)."""
    return tuple(dict.fromkeys(i.backend for i in implementations(op).values()))


def paths(op: str, backend: str) -> list[Impl]:
    """The records of ``op`` on ``backend``, in the order they are tried."""
    return [i for i in implementations(op).values() if i.backend == backend]


def _path_verdict(record: Impl, call: dict, skip: Callable[[str], str]) -> tuple[bool, str]:
    """Whether ``record`` takes the call: auto's preferences (``skip``) first, then its ``supports``."""
    reason = skip(record.path)
    return (False, reason) if reason else record.supports(**call)


def _first_supporting(op: str, backend: str, call: dict,
                      skip: Callable[[str], str] = lambda path: "") -> tuple[Impl | None, str]:
    reasons = []
    for record in paths(op, backend):
        ok, reason = _path_verdict(record, call, skip)
        if ok:
            return record, ""
        reasons.append(reason)
    return None, "; ".join(reasons)


def impl(op: str, backend: str, **call) -> Impl:
    """The record that runs a call of ``op`` on ``backend`` (selected already by :func:`choose`):
    the path ``backend`` names (a one-path backend's path is named after it; the custom ops
    carry :func:`choose_path`'s path), else the first of the backend's paths whose
    ``supports(**call)`` takes it.

    Raises ValueError with the paths' reasons when none does (a custom op called directly).
    """
    if backend in implementations(op):  # a path's name (a one-path backend's is the backend's)
        return implementations(op)[backend]
    record, reasons = _first_supporting(op, backend, call)
    if record is None:
        raise ValueError(f"no {backend} path of {op} takes this call: {reasons}")
    return record


def _supports(op: str, call: dict, skip: Callable[[str], str]):
    """The ``supports(name)`` :func:`istd_kernels.backend.select` asks: whether a path of the
    backend that ``skip`` (auto's preferences) leaves takes the call."""
    def supports(name: str) -> tuple[bool, str]:
        record, reasons = _first_supporting(op, name, call, skip)
        return record is not None, reasons

    return supports


def _select(op: str, device: torch.device, dtype: torch.dtype, backend: str | None,
            call: dict) -> tuple[str, Callable[[str], str]]:
    """:func:`istd_kernels.backend.select`'s backend for the call, and auto's skips it used."""
    skip = _skipper(op, device, backend, call)
    return _backend.select(op, backends(op), device, dtype, backend, _supports(op, call, skip)), skip


def choose(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None, **call) -> str:
    """The backend that runs this call of ``op`` (see :func:`istd_kernels.backend.select`,
    and :func:`prefer` for what ``auto`` skips); :func:`choose_path` gives its record."""
    return _select(op, device, dtype, backend, call)[0]


def choose_path(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None, **call) -> Impl:
    """The record that runs this call of ``op``: :func:`choose`'s backend, and of its paths
    the first that ``auto``'s preferences (under ``auto``) and its ``supports`` leave.
    Raises as :func:`choose` does."""
    name, skip = _select(op, device, dtype, backend, call)
    record, reasons = _first_supporting(op, name, call, skip)
    if record is None:
        raise ValueError(f"no {name} path of {op} takes this call: {reasons}")
    return record


def explain(op: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
            backend: str | None = None, **call) -> str:
    """Which path runs ``op`` for a call on ``device``/``dtype`` with hyper-parameters
    ``call``, and why each other was skipped, as text (one line per path: a backend with
    several paths gets a line for each)."""
    device = torch.device(device)
    skip = _skipper(op, device, backend, call)
    chosen, verdicts = _backend.explain(op, backends(op), device, dtype, backend, _supports(op, call, skip))
    what = ", ".join(f"{k}={v!r}" for k, v in call.items())
    if chosen not in _backend.NAMES:
        outcome = f"raises {chosen[len('error: '):]}"
    else:
        outcome = f"runs {choose_path(op, device, dtype, backend, **call).path if paths(op, chosen) else chosen}"
    lines = [f"{op} on {device.type} {str(dtype).replace('torch.', '')} tensors{' with ' + what if what else ''}: "
             + outcome]
    width = max(7, *(len(p) for p in implementations(op)))
    for v in verdicts:
        records = paths(op, v.backend)
        if len(records) < 2:  # not implemented, or one path: the backend's verdict is the path's
            lines.append(f"  {v.backend:<{width}} {'can run' if v.ok else 'skipped: ' + v.reason}")
            continue
        for record in records:
            # The backend's own availability first, then auto's preferences, then the path's supports().
            ok, reason = _backend._fits(record.backend, device, dtype)
            if ok:
                ok, reason = _path_verdict(record, call, skip)
            lines.append(f"  {record.path:<{width}} {'can run' if ok else 'skipped: ' + reason}")
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
