"""Count the device-kernel-launching operator calls of a function (no GPU or profiler needed).

Every aten operator that computes (not a view, reshape or metadata query) launches at least
one kernel on a GPU, and each of our custom ops launches a known small number (one Triton
kernel for the forward of hlk_conv, multiscale_maxpool and split_attention). Counting the
calls that reach the dispatcher therefore counts launches per call on any device; the count
does not depend on the input size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from torch.utils._python_dispatch import TorchDispatchMode

# Operators that only describe memory (no kernel runs on a GPU).
_NO_KERNEL = {
    "view", "_unsafe_view", "reshape", "unflatten", "flatten", "expand", "permute", "transpose", "t", "slice",
    "select", "squeeze", "unsqueeze", "as_strided", "alias", "detach", "split", "split_with_sizes", "unbind",
    "narrow", "empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "sym_size", "sym_stride",
    "sym_numel", "sym_storage_offset", "is_contiguous", "_to_copy_noop", "lift_fresh", "_reshape_alias",
}


class _Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        namespace = func.namespace
        if namespace != "aten" or name not in _NO_KERNEL:
            self.calls[f"{namespace}::{name}"] += 1
        return func(*args, **(kwargs or {}))


def count_launches(fn: Callable[[], object]) -> Counter:
    """Run ``fn()`` once and return ``{"namespace::op": calls}`` of the kernel-launching ops.

    Custom ops (namespace ``istd``) count once each; their backward ops appear when ``fn``
    runs a backward.
    """
    mode = _Counter()
    with mode:
        fn()
    return mode.calls
