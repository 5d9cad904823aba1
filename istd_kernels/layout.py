"""Layout, dtype and tile-geometry rules shared by every layer (ops, kernels, bindings' Python side).

This module is the ground floor: it imports only :mod:`istd_kernels.limits` (itself ground
floor), so both the op layer and the kernel layer can use it without an import circle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .limits import MMP_UINT8_MAX_SCALE

#: Largest pooling scale whose window offsets (``< s*s <= 256``) fit the compact uint8 index.
UINT8_MAX_SCALE = MMP_UINT8_MAX_SCALE


def output_memory_format(t: torch.Tensor) -> torch.memory_format:
    """Layout for an op's output given its primary input: channels_last stays channels_last.

    Every backend and the fake (meta) implementation allocate with this one rule, so compiled
    graphs see the strides the kernels produce. (The C++ bindings apply the same test.)
    """
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def empty_output(like: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """An uninitialised output of ``shape`` with ``like``'s dtype and device, laid out by
    :func:`output_memory_format` (what the fake kernels allocate)."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=output_memory_format(like))


#: The floating dtypes every op accepts.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of every kernel and reference: float64 for float64 inputs, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_image(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` (``[G, R, K]``: one matrix per group) repeated for each of ``n`` images as
    ``[n*G, R, K]``, the batch layout of a ``bmm`` over (image, group) (the grouped 1x1 steps
    of HLKConv's composed paths and of :func:`istd_kernels.nn.pointwise.conv1x1`)."""
    return t.expand(n, *t.shape).reshape(n * t.shape[0], *t.shape[1:])


def hlk_halos(k1: int, k2: int, dilation: int) -> tuple[int, int]:
    """``(forward, backward)`` halo of an HLKConv tile: the forward reads ``d``'s taps,
    ``dilation * (k2 // 2)`` around an output pixel; the backward adds ``a``'s ``k1 // 2``.
    (``csrc/include/istd/hlk_core.h`` mirrors this rule in C++.)"""
    forward = dilation * (k2 // 2)
    return forward, k1 // 2 + forward


def index_dtype(scales: Sequence[int]) -> torch.dtype:
    """Dtype of stored max-pool window offsets: uint8 while every window has <= 256 cells, else int32."""
    return torch.uint8 if max(scales) <= UINT8_MAX_SCALE else torch.int32
