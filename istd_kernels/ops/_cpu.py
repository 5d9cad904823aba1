"""The CPU features the cpp extension's vector kernels need: one check, cached."""

from __future__ import annotations

from ..backend import _constant_for_compile
from . import _dispatch

#: The reason a cpp path gives where :func:`avx2_kernels_run_here` is false.
AVX2_MISSING = "compiled for AVX2 + FMA, which this CPU lacks"

_ANSWER: list[bool] = []


# A constant for torch.compile, which would otherwise trace the extension's loading (a plain
# function: torch.compile does not take the mark on a functools.cache wrapper).
@_constant_for_compile
def avx2_kernels_run_here() -> bool:
    """Whether this CPU runs the cpp kernels compiled for AVX2 + FMA on x86-64 (group norm,
    residual, split attention and multi-scale max-pool; ``csrc/cpu/avx2_target.h``); true on
    other architectures."""
    if not _ANSWER:
        _ANSWER.append(bool(_dispatch.extension_kernel("cpp", "avx2_kernels_run_here")()))
    return _ANSWER[0]
