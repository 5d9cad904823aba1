"""Launch helpers shared by every Triton kernel file of the package.

Kernel files import from here and from :mod:`istd_kernels.layout`, never from the op layer.
``INTERPRET`` is read once, at import: under ``TRITON_INTERPRET=1`` the first config of each
list is launched directly, because autotuning inside the interpreter takes minutes per shape.
"""

from __future__ import annotations

import contextlib
import os

import torch

INTERPRET: bool = os.environ.get("TRITON_INTERPRET") == "1"


def np2(v: int) -> int:
    """Smallest power of two >= ``v`` (1 for v <= 1)."""
    return 1 << max(0, int(v) - 1).bit_length()


def launch(raw, tuned, configs, grid_fn, args, consts, fixed: bool = False):
    """Launch ``raw`` with configs[0] or the autotuner ``tuned``; return the config used."""
    if tuned is None or fixed:
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
