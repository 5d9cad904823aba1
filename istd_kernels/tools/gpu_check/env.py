"""Step 1: the machine (GPU, memory, driver, versions, extensions) and its peak bandwidth."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess

import torch

from .worker import StepContext

#: Peak DRAM bandwidth (bytes/s) by a substring of the device name, for when the device does
#: not report its memory clock and bus width. Datasheet figures.
PEAK_BW_TABLE = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("A100-SXM4-80GB", 2.04e12),
                 ("A100-SXM4-40GB", 1.56e12), ("A100-PCIE-40GB", 1.56e12), ("RTX 3080 Ti", 0.912e12),
                 ("RTX 3090", 0.936e12), ("RTX 4090", 1.008e12), ("L40S", 0.864e12))


def peak_bandwidth(device: int = 0) -> tuple[float | None, str]:
    """``(bytes/s, source)``: from the device's memory clock and bus width (double data rate),
    else from :data:`PEAK_BW_TABLE`, else ``(None, why)``."""
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2.0 * clock_khz * 1e3 * bus_bits / 8, f"device: {clock_khz / 1e3:.0f} MHz x {bus_bits} bit x 2"
    for key, bw in PEAK_BW_TABLE:
        if key in props.name:
            return bw, f"table entry {key!r}"
    return None, f"unknown: {props.name} reports no memory clock and is not in the table (fraction of peak not computed)"


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
            "triton": _version("triton"), "istd_kernels": _version("istd-kernels"), "nvcc": _nvcc(), "build_info": build_info(),
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
