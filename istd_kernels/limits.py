"""The ops' limits, from their one source: ``csrc/include/istd/limits.h``.

Read from the compiled CPU extension (``istd_kernels._C.limits()``, the values the kernels
were built with) when it loads, else parsed from the header in the source tree. Like
:mod:`istd_kernels.layout` this is a ground-floor module: ops and kernels both import it.
"""

from __future__ import annotations

import os
import re

from .extensions import cpu_extension

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "include", "istd",
                      "limits.h")
_CONSTANT = re.compile(r"constexpr\s+int64_t\s+k(\w+)\s*=\s*(\d+)\s*;")


def _snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", camel).upper()


def parse_header(path: str = HEADER) -> dict[str, int]:
    """``{NAME: value}`` of the ``constexpr int64_t kName = value;`` lines of ``path``."""
    with open(path) as f:
        return {_snake(name): int(value) for name, value in _CONSTANT.findall(f.read())}


def _load() -> tuple[dict[str, int], str]:
    ext = cpu_extension()
    if ext.available and hasattr(ext.module, "limits"):
        exported = {_snake(k[1:]): int(v) for k, v in ext.module.limits().items()}
        # An extension built before a limit was added lacks it; the header (when the source
        # tree is there) supplies the rest until the next build.
        missing = parse_header() if os.path.exists(HEADER) else {}
        return {**missing, **exported}, "istd_kernels._C"
    try:
        return parse_header(), HEADER
    except OSError as err:
        raise ImportError(f"istd_kernels needs its limits from istd_kernels._C ({ext.reason}) or from {HEADER} "
                          f"({err}); reinstall the package") from None


VALUES, SOURCE = _load()

DW_MAX_KERNEL: int = VALUES["DW_MAX_KERNEL"]
DW_MAX_DILATION: int = VALUES["DW_MAX_DILATION"]
MAX_HYPER_PARAM: int = VALUES["MAX_HYPER_PARAM"]
SA_MAX_BRANCHES: int = VALUES["SA_MAX_BRANCHES"]
SA_MAX_SCALE: int = VALUES["SA_MAX_SCALE"]
SA_CUDA_MAX_LCM: int = VALUES["SA_CUDA_MAX_LCM"]
MMP_MAX_SCALE: int = VALUES["MMP_MAX_SCALE"]
MMP_UINT8_MAX_SCALE: int = VALUES["MMP_UINT8_MAX_SCALE"]
MAX_IMAGE_PIXELS: int = VALUES["MAX_IMAGE_PIXELS"]
