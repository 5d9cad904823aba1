"""Ahead-of-time compile gate for the CUDA sources, no GPU needed.

Compiles every ``csrc/cuda/*.cu`` with ``nvcc -Xptxas -v`` for each requested
architecture and reads, per kernel, the registers, static shared memory and spill
bytes that ptxas reports. Also syntax-checks ``csrc/bindings/cuda.cpp`` with the host
compiler against the installed torch headers, since that file is only compiled where
torch has CUDA.

The .cu files get the half-precision macros that torch's CUDAExtension adds to every
nvcc command, so a kernel that only compiles without them fails here too. Warnings are
not errors; a failed compile becomes a row whose ``error`` holds the compiler's message.

``python -m istd_kernels.tools.compile_check --skip-triton`` (or this module) runs it
alone; the exit status is non-zero when any row has an error or a spill.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .gate_report import REGS_RE, SPILL_RE, make_row

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BINDING = os.path.join("csrc", "bindings", "cuda.cpp")
_TIMEOUT_S = 1800

# What torch.utils.cpp_extension passes to nvcc for every CUDA extension.
_TORCH_NVCC_FLAGS = [
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
]

_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS_RE = re.compile(r"Function properties for (\S+)")
_SMEM_RE = re.compile(r"(\d+) bytes smem")


def _row(kind: str, source: str, kernel: str = "", arch: str = "", registers: int | None = None,
         smem: int | None = None, stores: int | None = None, loads: int | None = None,
         error: str | None = None) -> dict:
    return make_row(kind, source, kernel, "", arch, registers, smem, stores, loads, error)


def _find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            path = os.path.join(home, "bin", "nvcc")
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which("nvcc")


def _tail(text: str, limit: int = 2000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _demangle(names: Sequence[str]) -> dict[str, str]:
    """Mangled -> demangled, through c++filt when there is one (names stay mangled otherwise)."""
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if not tool or not names:
        return {n: n for n in names}
    try:
        out = subprocess.run([tool], input="\n".join(names) + "\n", capture_output=True, text=True, timeout=60)
        lines = out.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {n: n for n in names}
    if out.returncode != 0 or len(lines) != len(names):
        return {n: n for n in names}
    return dict(zip(names, lines))


def short_name(demangled: str) -> str:
    """``void ns::(anonymous namespace)::k<float, 3>(float const*, int)`` -> ``k<float, 3>``."""
    depth = 0
    end = len(demangled)
    for i, ch in enumerate(demangled):  # the parameter list is the first '(' outside <...>
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not demangled.startswith("(anonymous namespace)", i):
            end = i
            break
    name = demangled[:end].strip()
    # Drop the return type and the qualifiers, both found outside template brackets.
    depth, cut = 0, 0
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0 and ch == " " and not name.startswith(" namespace)", i):
            cut = i + 1
        elif depth == 0 and name.startswith("::", i):
            cut = i + 2
            i += 1
        i += 1
    return name[cut:] or demangled


def parse_ptxas(text: str) -> list[dict]:
    """Per-kernel statistics from ``-Xptxas -v`` output: mangled name, arch, registers,
    static shared memory and spill bytes. Non-kernel functions (no entry line) are skipped."""
    kernels: dict[tuple, dict] = {}
    current: tuple | None = None
    for line in text.splitlines():
        m = _ENTRY_RE.search(line)
        if m:
            current = (m.group(1), m.group(2))
            kernels[current] = dict(mangled=m.group(1), arch=m.group(2), registers=0, smem_bytes=0,
                                    spill_stores=0, spill_loads=0)
            continue
        m = _PROPS_RE.search(line)
        if m:
            # Properties of a device function (not an entry) must not land on the last kernel.
            name = m.group(1)
            if current is None or name != current[0]:
                current = None
            continue
        if current is None:
            continue
        entry = kernels[current]
        m = SPILL_RE.search(line)
        if m:
            entry["spill_stores"], entry["spill_loads"] = int(m.group(1)), int(m.group(2))
        m = REGS_RE.search(line)
        if m:
            entry["registers"] = int(m.group(1))
            s = _SMEM_RE.search(line)
            entry["smem_bytes"] = int(s.group(1)) if s else 0
    return list(kernels.values())


def _compile_cu(nvcc: str, source: str, arch: str) -> list[dict]:
    rel = os.path.relpath(source, _REPO_ROOT)
    arch_name = f"sm_{arch}"
    with tempfile.TemporaryDirectory(prefix="istd_nvcc_") as tmp:
        cmd = [nvcc, "-std=c++17", "-O3", "-c", f"-arch={arch_name}", "-Xptxas", "-v",
               "-I", os.path.join(_REPO_ROOT, "csrc", "include"), *_TORCH_NVCC_FLAGS,
               source, "-o", os.path.join(tmp, "out.o")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, cwd=_REPO_ROOT)
        except (OSError, subprocess.SubprocessError) as err:
            return [_row("cuda", rel, arch=arch_name, error=f"nvcc could not run: {err}")]
    output = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0:
        return [_row("cuda", rel, arch=arch_name, error=f"nvcc exit {proc.returncode}: {_tail(output)}")]
    stats = parse_ptxas(output)
    if not stats:
        return [_row("cuda", rel, arch=arch_name, error="nvcc succeeded but ptxas reported no kernels")]
    names = _demangle([s["mangled"] for s in stats])
    return [_row("cuda", rel, kernel=short_name(names[s["mangled"]]), arch=s["arch"], registers=s["registers"],
                 smem=s["smem_bytes"], stores=s["spill_stores"], loads=s["spill_loads"]) for s in stats]


def _check_binding() -> dict:
    source = os.path.join(_REPO_ROOT, _BINDING)
    if not os.path.isfile(source):
        return _row("binding", _BINDING, kernel="cuda.cpp", error="file not found")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        return _row("binding", _BINDING, kernel="cuda.cpp", error="no host C++ compiler (g++/c++) found")
    try:
        from torch.utils.cpp_extension import include_paths
        torch_includes = include_paths()
    except Exception as err:  # noqa: BLE001 - any import problem is the row's error
        return _row("binding", _BINDING, kernel="cuda.cpp", error=f"torch headers unavailable: {err}")
    cuda_include = None
    nvcc = _find_nvcc()
    if nvcc:
        cuda_include = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include")
    cmd = [compiler, "-std=c++17", "-fsyntax-only", "-w", "-I", os.path.join(_REPO_ROOT, "csrc", "include")]
    if cuda_include and os.path.isdir(cuda_include):
        cmd += ["-I", cuda_include]
    cmd += [f"-I{p}" for p in torch_includes]
    cmd += [f"-I{sysconfig.get_paths()['include']}", "-DTORCH_EXTENSION_NAME=_cuda", source]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S, cwd=_REPO_ROOT)
    except (OSError, subprocess.SubprocessError) as err:
        return _row("binding", _BINDING, kernel="cuda.cpp", error=f"compiler could not run: {err}")
    if proc.returncode != 0:
        return _row("binding", _BINDING, kernel="cuda.cpp",
                    error=f"syntax check failed: {_tail(proc.stdout + proc.stderr)}")
    return _row("binding", _BINDING, kernel="cuda.cpp", registers=0, smem=0, stores=0, loads=0)


def check(archs=("86", "90")) -> list[dict]:
    """Compile every csrc/cuda/*.cu for each arch and syntax-check the CUDA binding.

    Returns one row per (kernel, arch), ``dict(kind="cuda", source, kernel, config="", arch,
    registers, smem_bytes, spill_stores, spill_loads, error=None)``; a compile failure or a
    missing nvcc gives a row with ``error`` set. The last row (kind="binding") is the
    syntax check of csrc/bindings/cuda.cpp.
    """
    archs = [str(a).replace("sm_", "").replace(".", "") for a in archs]
    sources = sorted(glob.glob(os.path.join(_REPO_ROOT, "csrc", "cuda", "*.cu")))
    rows: list[dict] = []
    nvcc = _find_nvcc()
    jobs = [(src, arch) for src in sources for arch in archs]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs) + 1, os.cpu_count() or 1, 8))) as pool:
        binding = pool.submit(_check_binding)
        if nvcc is None:
            rows += [_row("cuda", os.path.relpath(src, _REPO_ROOT), arch=f"sm_{arch}",
                          error="nvcc not found (set CUDA_HOME or put nvcc on PATH)") for src, arch in jobs]
        else:
            for result in pool.map(lambda job: _compile_cu(nvcc, *job), jobs):
                rows += result
        rows.append(binding.result())
    return rows


if __name__ == "__main__":
    from .compile_check import main

    sys.exit(main(["--skip-triton"] + sys.argv[1:]))
