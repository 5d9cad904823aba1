"""nvcc's own list of the kernels in ``csrc/cuda`` (docs/emulation.md), to compare with
the kernels run under the host emulation.

Each ``.cu`` file is compiled to PTX for sm_86 with the flags torch's CUDA extension build
adds, and the ``.entry`` directives (one per instantiated ``__global__`` function; ptxas
turns each into one entry of the cubin, adding and dropping none) are demangled. PTX, not a
cubin: the list is the same and ptxas would triple the compile time. The PTX is cached
under ``build/emulation/nvcc-<hash of sources, flags and nvcc>``.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import emulation_build

from istd_kernels.tools import nvcc_gate

ARCH = "sm_86"
_ENTRY_RE = re.compile(r"^\s*(?:\.visible\s+|\.weak\s+)?\.entry\s+([\w$]+)\s*\(", re.MULTILINE)


def nvcc() -> str | None:
    """The nvcc the project's compile gate uses, or None."""
    return nvcc_gate._find_nvcc()


def _flags() -> list[str]:
    include = str(emulation_build.ROOT / "csrc" / "include")
    return ["-std=c++17", f"-arch={ARCH}", "-ptx", "-I", include, *nvcc_gate._TORCH_NVCC_FLAGS]


def _cache_dir(tool: str) -> Path:
    h = hashlib.sha256(" ".join([os.path.realpath(tool), *_flags()]).encode())
    for f in sorted(emulation_build.CUDA_DIR.glob("*.cu")) + sorted(
            (emulation_build.ROOT / "csrc" / "include").rglob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return emulation_build.BUILD_DIR / f"nvcc-{ARCH}-{h.hexdigest()[:16]}"


def _ptx(tool: str, src: Path, out: Path) -> str:
    ptx = out / f"{src.stem}.ptx"
    if not ptx.exists():
        tmp = ptx.with_suffix(f".tmp{os.getpid()}")
        res = subprocess.run([tool, *_flags(), str(src), "-o", str(tmp)], capture_output=True, text=True,
                             timeout=1800, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed on {src.name}:\n{res.stderr[-4000:]}")
        os.replace(tmp, ptx)  # atomic: a concurrent session sees all or nothing
    return ptx.read_text()


def entries(tool: str, jobs: int | None = None) -> dict[str, list[str]]:
    """{.cu file name: demangled entry functions nvcc emits for it}, compiled once, cached."""
    out = _cache_dir(tool)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(emulation_build.CUDA_DIR.glob("*.cu"))
    with ThreadPoolExecutor(max_workers=jobs or min(2, os.cpu_count() or 1)) as pool:
        texts = list(pool.map(lambda s: _ptx(tool, s, out), sources))
    mangled = {s.name: _ENTRY_RE.findall(t) for s, t in zip(sources, texts)}
    names = nvcc_gate._demangle([m for ms in mangled.values() for m in ms])
    return {f: sorted(names[m] for m in ms) for f, ms in mangled.items()}


def base_name(demangled: str) -> str:
    """``void (anonymous namespace)::k<float, 3>(float const*)`` -> ``k``."""
    return nvcc_gate.short_name(demangled).split("<", 1)[0]
