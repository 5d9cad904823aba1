"""Builds the host emulation of the CUDA kernels (csrc/testing, docs/emulation.md).

Each ``csrc/cuda/*.cu`` file is rewritten mechanically and compiled as C++ by the host
compiler against the fake CUDA headers of ``csrc/testing/include``:

* ``k<<<grid, block, smem, stream>>>(args)`` becomes ``istd_emu::launch("k", k, grid,
  block, smem, stream)(args)``;
* ``__shared__ T name[...];`` becomes a reference into the running block's shared arena
  and ``extern __shared__ T name[];`` a pointer to its dynamic part;
* each ``__global__`` body starts with ``ISTD_EMU_KERNEL_ENTRY(name, launch bound)``.

Rewrites keep every line where it was (``#line`` points back at the .cu file), so the
emulator's messages name the original source. Two libraries are built, cached under
``build/emulation/<hash of sources and flags>``: ``plain`` and ``race`` (kernel code
compiled with ``-fsanitize=thread``, whose hooks the emulation implements itself to check
shared memory). They are loaded with ctypes.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
TESTING_DIR = ROOT / "csrc" / "testing"
BUILD_DIR = ROOT / "build" / "emulation"
CXX_FLAGS = ["-std=c++17", "-O1", "-fPIC", "-g0", "-w"]
RACE_FLAGS = ["-fsanitize=thread"]
RUNTIME_SOURCES = ["emu/scheduler.cpp", "emu/shared_arena.cpp", "emu/tsan_hooks.cpp", "emu_api.cpp"]

_GLOBAL_RE = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\((?P<bounds>[^)]*)\)\s*)?(?P<name>\w+)\s*\(")
_LAUNCH_RE = re.compile(r"(?P<callee>[A-Za-z_]\w*(?:<[^;<>()]*>)?)\s*<<<(?P<cfg>.*?)>>>\s*\(")
_EXTERN_SHARED_RE = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?(?P<type>[\w:]+(?:\s+[\w:]+)*?)\s+(?P<name>\w+)\s*\[\s*\]\s*;")
_SHARED_RE = re.compile(
    r"__shared__\s+(?:__align__\(\d+\)\s+)?(?P<type>[\w:<>]+)\s+(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]+\])*)\s*;")


def compiler() -> str | None:
    """The host C++ compiler the emulation needs (g++ 12+: _Float16 and no_sanitize)."""
    return shutil.which(os.environ.get("CXX", "g++"))


def global_kernels(source: str) -> list[str]:
    """Names of the __global__ functions defined in CUDA source text."""
    return [m.group("name") for m in _GLOBAL_RE.finditer(source)]


def _insert_entries(src: str) -> str:
    out, pos = [], 0
    for m in _GLOBAL_RE.finditer(src):
        brace = src.index("{", m.end())
        bound = (m.group("bounds") or "0").split(",")[0].strip()
        out.append(src[pos:brace + 1])
        out.append(f" ISTD_EMU_KERNEL_ENTRY({m.group('name')}, {bound});")
        pos = brace + 1
    out.append(src[pos:])
    return "".join(out)


def _rewrite_launches(src: str, kernels: list[str]) -> str:
    def repl(m: re.Match) -> str:
        callee = m.group("callee")
        base = callee.split("<", 1)[0]
        if base not in kernels:  # a variable holding the kernel: `auto kernel = name<...>;`
            alias = re.search(rf"auto\s+{base}\s*=\s*(\w+)", src[:m.start()])
            base = alias.group(1) if alias else base
        return f'::istd_emu::launch("{base}", {callee}, {m.group("cfg")})('
    return _LAUNCH_RE.sub(repl, src)


def _rewrite_shared(src: str, counter: list[int]) -> str:
    src = _EXTERN_SHARED_RE.sub(
        lambda m: f"{m.group('type')}* const {m.group('name')} = "
                  f"static_cast<{m.group('type')}*>(::istd_emu::dynamic_shared());", src)

    def static(m: re.Match) -> str:
        counter[0] += 1
        t, name, dims = m.group("type"), m.group("name"), m.group("dims")
        decl = f"{t} (&{name}){dims}" if dims else f"{t}& {name}"
        return f'{decl} = ::istd_emu::static_shared_ref<{t}{dims}>({counter[0]}, "{name}");'
    return _SHARED_RE.sub(static, src)


def rewrite(path: Path, counter: list[int]) -> str:
    """Host C++ for one .cu file (see the module docstring)."""
    src = path.read_text()
    kernels = global_kernels(src)
    body = _rewrite_shared(_rewrite_launches(_insert_entries(src), kernels), counter)
    rel = path.relative_to(ROOT)
    return f'#include <cuda_runtime.h>\n#line 1 "{rel}"\n{body}'


def _units() -> list[tuple[str, Path, list[str]]]:
    """(object name, .cu source, extra flags) of every kernel translation unit."""
    units = [(p.stem, p, []) for p in sorted(CUDA_DIR.glob("*.cu"))]
    # The pre-sm_80 fallbacks of component_stats (no redux.sync) as a second instance.
    units.append(("component_stats_sm70", CUDA_DIR / "component_stats.cu",
                  ["-D__CUDA_ARCH__=700", "-Distd_component_stats_cuda=istd_component_stats_cuda_sm70"]))
    units.append(("fixtures", TESTING_DIR / "fixtures.cu", []))
    return units


def _source_hash(cxx: str) -> str:
    h = hashlib.sha256((cxx + " ".join(CXX_FLAGS + RACE_FLAGS)).encode())
    files = sorted(CUDA_DIR.glob("*.cu")) + sorted((ROOT / "csrc" / "include").rglob("*")) + sorted(
        TESTING_DIR.rglob("*")) + [Path(__file__)]
    for f in files:
        if f.is_file():
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _compile(cxx: str, src: Path, obj: Path, flags: list[str]) -> None:
    includes = ["-I", str(TESTING_DIR / "include"), "-I", str(TESTING_DIR), "-I", str(ROOT / "csrc" / "include")]
    cmd = [cxx, *CXX_FLAGS, *flags, *includes, "-c", str(src), "-o", str(obj)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"emulation build failed: {' '.join(cmd)}\n{res.stderr[-6000:]}")


def _build(cxx: str, out: Path, jobs: int) -> dict[str, Path]:
    gen = out / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    counter = [0]
    tasks = []
    for name, src, flags in _units():
        cpp = gen / f"{name}.cpp"
        cpp.write_text(rewrite(src, counter))
        tasks.append((cpp, out / f"{name}.plain.o", flags))
        tasks.append((cpp, out / f"{name}.race.o", flags + RACE_FLAGS))
    for rt in RUNTIME_SOURCES:
        tasks.append((TESTING_DIR / rt, out / (rt.replace("/", "_") + ".o"), []))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda t: _compile(cxx, *t), tasks))
    runtime = [str(out / (rt.replace("/", "_") + ".o")) for rt in RUNTIME_SOURCES]
    libs = {}
    for variant in ("plain", "race"):
        objs = [str(out / f"{name}.{variant}.o") for name, _, _ in _units()]
        lib = out / f"libistd_emu_{variant}.so"
        cmd = [cxx, "-shared", "-Wl,-z,defs", "-o", str(lib), *objs, *runtime]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"emulation link failed: {' '.join(cmd)}\n{res.stderr[-6000:]}")
        libs[variant] = lib
    return libs


def build(jobs: int | None = None) -> dict[str, Path]:
    """Builds (or finds in the cache) both libraries; returns {'plain': path, 'race': path}."""
    cxx = compiler()
    if cxx is None:
        raise FileNotFoundError("no host C++ compiler (g++) for the CUDA emulation")
    out = BUILD_DIR / _source_hash(cxx)
    libs = {v: out / f"libistd_emu_{v}.so" for v in ("plain", "race")}
    if all(p.exists() for p in libs.values()):
        return libs
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # One build at a time: pytest-xdist workers that need the libraries together wait for the
    # first one's build instead of each compiling its own copy on the same cores.
    with open(BUILD_DIR / f"{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(p.exists() for p in libs.values()):
            return libs
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        built = _build(cxx, tmp, jobs or min(2, os.cpu_count() or 1))
        out.mkdir(parents=True, exist_ok=True)
        for variant, path in built.items():
            os.replace(path, libs[variant])  # atomic: a concurrent session sees all or nothing
        shutil.rmtree(tmp, ignore_errors=True)
    return libs


def load(variant: str) -> ctypes.CDLL:
    """The emulation library ('plain' or 'race'), built on first use."""
    return ctypes.CDLL(str(build()[variant]))
