"""The size rule for the weight-gradient workspaces of the Triton backward kernels.

A weight gradient is a sum over every (image, tile) item of a batch. The kernels write
partial sums to a workspace of ``rows`` rows, each row the length of all the weight
gradients; the program of row ``r`` handles the consecutive items
``[r * span, (r + 1) * span)`` in order, accumulating into its row, and a fixed-order sum
over the rows finishes the gradient. No atomics and a split that depends only on the
shape: results are bitwise reproducible.

The rows are capped so that the workspace of one call stays within ``budget(x_nbytes)``:
a quarter of the input's bytes or ``FLOOR_BYTES``, whichever is larger. Only when a single
row (the size of all weight gradients in the accumulation dtype) is larger than that does
one row exceed it.
"""

from __future__ import annotations

import triton
import triton.language as tl

#: Smallest workspace budget, for small inputs whose quarter would serialise the reduction.
FLOOR_BYTES = 16 << 20

#: Most rows of one workspace: beyond a few thousand programs per channel group a GPU is
#: full anyway, and every extra row is more to reduce at the end.
MAX_ROWS = 2048


def budget(x_nbytes: int) -> int:
    """Largest workspace of one call, in bytes, for an input of ``x_nbytes`` bytes."""
    return max(int(x_nbytes) // 4, FLOOR_BYTES)


def rows(items: int, row_bytes: int, x_nbytes: int) -> int:
    """Workspace rows for ``items`` (image, tile) items and rows of ``row_bytes`` bytes.

    At least 1 and at most ``items``; the kernels may use fewer (:func:`used_rows`).
    """
    return max(1, min(int(items), MAX_ROWS, budget(x_nbytes) // max(1, int(row_bytes))))


def used_rows(items: int, n_rows: int) -> int:
    """Rows the kernels actually fill: runs of ``ceil(items / n_rows)`` items each."""
    span = triton.cdiv(items, n_rows)
    return triton.cdiv(items, span)


@triton.jit
def item_run(row, items, ROWS):
    """First and one-past-last item of workspace row ``row`` (mirrors :func:`used_rows`)."""
    span = tl.cdiv(items, ROWS)
    first = row * span
    return first, tl.minimum(first + span, items)


@triton.jit
def used_rows_jit(items, ROWS):
    """:func:`used_rows` inside a kernel."""
    return tl.cdiv(items, tl.cdiv(items, ROWS))


@triton.jit
def accumulate(ptr, v, mask):
    """Add ``v`` to the workspace entries at ``ptr`` (the program's own row, zero-filled);
    ``mask`` None for a scalar.

    One writer per entry, items in a fixed order; a kernel must put a barrier between the
    stores of one item and the loads of the next, which other threads of the program may do.
    """
    if mask is None:
        tl.store(ptr, tl.load(ptr) + v)
    else:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + v, mask=mask)
