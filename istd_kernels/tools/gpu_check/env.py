"""Step 1: the machine (GPU, memory, driver, versions, extensions) and its peak bandwidth."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess

import torch

from ..timing import peak_bandwidth
from .worker import StepContext


def device_slug(name: str) -> str:
    """A directory name for a device: ``NVIDIA H200`` -> ``nvidia-h200``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-device"


def _driver() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "unknown (nvidia-smi not found)"
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "unknown (nvidia-smi timed out)"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def describe() -> dict:
    """Versions and, when there is one, the first GPU."""
    from istd_kernels.backend import backends
    from istd_kernels.extensions import build_info, cpu_extension, cuda_extension
    from istd_kernels.info import _nvcc, _version  # the versions `python -m istd_kernels.info` shows

    info = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "triton": _version("triton"), "istd_kernels": _version("istd-kernels"), "nvcc": _nvcc(),
            "build_info": build_info(),
            "extensions": {e.name: e.reason for e in (cpu_extension(), cuda_extension())},
            "backends": {k: {"available": ok, "reason": why} for k, (ok, why) in backends().items()},
            "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        peak, source = peak_bandwidth(0)
        info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "memory_gib": round(props.total_memory / 2**30, 1), "sms": props.multi_processor_count,
                       "l2_bytes": getattr(props, "L2_cache_size", None), "driver": _driver(),
                       "peak_bw_bytes_per_s": peak, "peak_bw_source": source, "count": torch.cuda.device_count()}
    else:
        info["gpu"] = None
    return info


def run(ctx: StepContext) -> None:
    ctx.record({"kind": "env", **describe()})
