"""The default path's size rule on the CPU: where ``auto`` prefers PyTorch to a cpp kernel.

``auto`` must never pick a path that measures slower than plain PyTorch. On this project's
2-core x86-64 CPU (docs/performance.md, "The default path on the CPU") the cpp
``split_attention`` and ``multiscale_maxpool`` kernels are at least as fast as their PyTorch
compositions at every LCRNet level, but the fused cpp HLKConv forward loses to oneDNN's
convolution chain once a plane is larger than 16x16 (its per-pixel pointwise step cannot
match oneDNN's blocked AVX-512 1x1 and depthwise kernels; at 32x32 it won forward with 2
threads but lost with 1 thread and forward+backward), so ``auto`` sends those calls to
``torch``. The rule applies to ``auto`` only: a backend named explicitly runs whatever the
size (the size is passed to ``supports`` only when ``auto`` chooses).
"""

from __future__ import annotations

from torch import Tensor

from ..backend import requested

#: Largest plane (H * W pixels) on which ``auto`` runs the cpp HLKConv; measured, see above.
HLK_CPP_MAX_PIXELS = 16 * 16


def auto_size(x: Tensor, backend: str | None) -> dict:
    """``{"pixels": H * W}`` of ``x`` ``[N, C, H, W]`` when ``backend`` resolves to ``auto``, else ``{}``."""
    return {"pixels": x.shape[-2] * x.shape[-1]} if requested(backend) == "auto" else {}


def hlk_cpp_takes(pixels: int | None = None, **_) -> tuple[bool, str]:
    """The cpp HLKConv record's ``supports``: every call, except under ``auto`` on planes over the limit."""
    if pixels is None or pixels <= HLK_CPP_MAX_PIXELS:
        return True, ""
    return False, (f"auto prefers torch to the cpp HLKConv on planes over {HLK_CPP_MAX_PIXELS} pixels (16x16), "
                   f"where oneDNN's convolutions measured faster on the CPU (docs/performance.md); got {pixels}")
