"""``python -m istd_kernels.info``: versions, extensions, backends and GPU of this machine."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

import torch

from .backend import backends
from .extensions import build_info, cpu_extension, cuda_extension


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nvcc() -> str:
    path = shutil.which("nvcc")
    if path is None:
        return "not found"
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return f"{out[-1] if out else '?'} ({path})"


def report() -> str:
    """The report as text."""
    info = build_info()
    lines = ["istd-kernels " + _version("istd-kernels"), ""]
    lines.append("versions")
    for name, value in [("python", platform.python_version()), ("torch", torch.__version__),
                        ("torch CUDA", torch.version.cuda or "none (CPU build)"), ("triton", _version("triton")),
                        ("numpy", _version("numpy")), ("nvcc", _nvcc())]:
        lines.append(f"  {name:<12} {value}")
    lines += ["", "extensions"]
    lines.append(f"  {'built for':<12} torch {info.get('torch_version', '?')}"
                 + (f", CUDA archs {info['cuda_arch_list']}" if info.get("cuda_arch_list") else ""))
    for label, ext in (("_C (cpu)", cpu_extension()), ("_cuda", cuda_extension())):
        lines.append(f"  {label:<12} {'available' if ext.available else 'unavailable'}: {ext.reason}")
    lines += ["", "backends"]
    for name, (ok, reason) in backends().items():
        lines.append(f"  {name:<12} {'available' if ok else 'unavailable'}: {reason}")
    lines += ["", "GPU"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"  cuda:{i}       {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("  none (torch.cuda.is_available() is False)")
    return "\n".join(lines)


def main() -> None:
    print(report())


if __name__ == "__main__":
    main()
