"""Launch helpers shared by every Triton kernel file of the package.

Kernel files import from here and from :mod:`istd_kernels.layout`, never from the op layer.
``INTERPRET`` is read once, at import: under ``TRITON_INTERPRET=1`` the first config of each
list is launched directly, because autotuning inside the interpreter takes minutes per shape.
``ISTD_TRITON_AUTOTUNE=0`` (also read once, at import) does the same on a GPU: the GPU check
runs the bulk of its tests so, because the autotuner compiles and times every candidate config
of every new shape, and only its designated tests with the autotuner on (docs/gpu.md).

Also here: :func:`plane_tile` (the flat-grid tile geometry several kernels share) and
:func:`aot_spec` / :data:`AOT_DTYPES`, the one builder of the specs each kernel file's
``aot_specs()`` hands to :mod:`istd_kernels.tools.triton_gate`.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ..layout import acc_dtype

INTERPRET: bool = os.environ.get("TRITON_INTERPRET") == "1"


def _major_minor(version: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        raise ValueError(f"triton.__version__ must start with MAJOR.MINOR; got {version!r}")
    return int(m.group(1)), int(m.group(2))


#: True under Triton before 3.7 (3.6.0 is the one torch 2.11 pins, and the lent GPU machine's).
#: The same tile needs more registers there than under 3.7.1 / 3.9 (the compile gate's counts,
#: docs/gpu.md), so the kernel files whose configs spill under 3.6 pick their config lists and
#: register caps by this flag, the one version check.
TRITON_BEFORE_3_7: bool = _major_minor(triton.__version__) < (3, 7)


def _autotune_from_env() -> bool:
    value = os.environ.get("ISTD_TRITON_AUTOTUNE", "1")
    if value not in ("0", "1"):
        raise ValueError(f"ISTD_TRITON_AUTOTUNE must be 0 (first config of each list) or 1 (autotune); got {value!r}")
    return value == "1"


#: False under ``ISTD_TRITON_AUTOTUNE=0``: :func:`launch` then uses the first config, as in the interpreter.
AUTOTUNE: bool = _autotune_from_env()

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def acc(dtype: torch.dtype) -> tuple:
    """``(triton dtype, torch dtype)`` of the accumulator for inputs of ``dtype``
    (:func:`istd_kernels.layout.acc_dtype`)."""
    torch_acc = acc_dtype(dtype)
    return _TL_DTYPES[torch_acc], torch_acc


def np2(v: int) -> int:
    """Smallest power of two >= ``v`` (1 for v <= 1)."""
    return 1 << max(0, int(v) - 1).bit_length()


def pad(items, n: int, filler) -> list:
    """``items`` as a list of length ``n``, filled up with ``filler`` (placeholder kernel arguments)."""
    items = list(items)
    if len(items) > n:
        raise ValueError(f"at most {n} items fit this kernel's argument slots; got {len(items)}")
    return items + [filler] * (n - len(items))


def launch(raw, tuned, configs, grid_fn, args, consts, fixed: bool = False):
    """Launch ``raw`` with configs[0] (``tuned`` None, ``fixed``, or ``ISTD_TRITON_AUTOTUNE=0``) or the
    autotuner ``tuned``; return the config used."""
    if tuned is None or fixed or not AUTOTUNE:
        cfg = configs[0]
        raw[grid_fn(cfg.kwargs)](*args, **consts, **cfg.all_kwargs())
        return cfg
    tuned[grid_fn](*args, **consts)
    return tuned.best_config


def device_ctx(t: torch.Tensor):
    """Make ``t``'s GPU current for a launch (Triton launches on the current device)."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


def aot_signature(fn, names_ptr, names_int, names_const):
    """Argument -> type map of ``fn`` for ``triton.compile``, in the kernel's argument order.

    ``names_ptr`` is a list of (name, "*fp32"-style type); ints are declared i32, which is what
    the JIT picks for every size and stride below 2**31 (offsets are widened inside anyway).
    """
    sig = dict(names_ptr)
    sig.update({name: "i32" for name in names_int})
    sig.update({name: "constexpr" for name in names_const})
    missing = set(fn.arg_names) ^ set(sig)
    if missing:
        raise AssertionError(f"AOT signature of {fn.__name__} mismatches its arguments: {sorted(missing)}")
    # Parameters are bound positionally, so keep the kernel's argument order.
    return {name: sig[name] for name in fn.arg_names}


@triton.jit
def plane_tile(pid, H, W, BH: tl.constexpr, BW: tl.constexpr):
    """Flat program id -> (plane, tile row, tile column) over BH x BW tiles of H x W planes.

    One flat grid axis because axes 1/2 are capped at 65535 on CUDA; the tiles of one plane
    are adjacent, so neighbouring programs share halo rows in L2.
    """
    tiles_w = tl.cdiv(W, BW)
    tiles = tl.cdiv(H, BH) * tiles_w
    plane = pid // tiles
    t = pid - plane * tiles
    th = t // tiles_w
    return plane, th, t - th * tiles_w


class AotDtype(NamedTuple):
    """One dtype the compile gate builds: signature name, accumulator, workspace pointer type,
    and the torch dtype of such inputs (for the launchers' per-dtype config choices)."""

    name: str
    acc: object
    acc_ptr: str
    dtype: torch.dtype


def _aot_dtype(name: str, dtype: torch.dtype) -> AotDtype:
    tl_acc = acc(dtype)[0]
    return AotDtype(name, tl_acc, f"*{tl_acc.name}", dtype)


# Every float dtype the ops accept, with its accumulator (:func:`acc`); fp64 is the gradcheck
# dtype (Triton 3.7.1 once failed to compile an fp64 tl.dot, hence in the gate).
AOT_DTYPES = tuple(_aot_dtype(name, dtype) for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16),
                                                                ("bf16", torch.bfloat16), ("fp64", torch.float64)))


def aot_spec(name: str, fn, ptrs, ints, consts: dict, cfg, label: str) -> dict:
    """One compile-gate spec: ``fn`` with these argument types, constexprs and launch config.

    ``ptrs``/``ints`` as :func:`aot_signature`; ``cfg`` a ``triton.Config`` (its kwargs must
    already be in ``consts``); ``label`` says what the spec stands for (warps are appended).
    Keys: ``name``, ``fn``, ``signature``, ``constexprs``, ``num_warps``, ``num_stages``,
    ``maxnreg``, ``config``.
    """
    return dict(name=name, fn=fn, signature=aot_signature(fn, ptrs, ints, list(consts)), constexprs=consts,
                num_warps=cfg.num_warps, num_stages=cfg.num_stages, maxnreg=cfg.maxnreg,
                config=f"{label} w{cfg.num_warps}")
