"""Ahead-of-time compile gate for the Triton kernels.

Compiles every spec from the ``aot_specs()`` of each module in ``MODULES``
(``istd_kernels.triton.<name>``) for each requested CUDA arch without a GPU, runs the ptxas bundled with Triton on
the PTX to read register and spill counts, and takes shared memory from the
compiled kernel's metadata.

The compiles run in worker subprocesses started with TRITON_INTERPRET removed
from their environment: a module imported in interpreter mode holds
InterpretedFunction objects that cannot be compiled, and the caller's process
may well be in that mode (the CPU tests are).  Workers stream one JSON line per
row, so a worker that dies still leaves the rows it finished, and the rest are
reported as errors rather than raised.

``python -m istd_kernels.tools.triton_gate`` runs it alone (no nvcc part), with the
Triton version in its summary line; run it once per Python environment whose Triton
should be covered (CI: the main venv's newest Triton and the CUDA venv's pinned one).
``--markdown FILE`` writes the per-kernel table for the docs.  The exit status is non-zero
when any row has an error or a spill.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

from .gate_report import REGS_RE, SPILL_RE, make_row

MODULES = ("depthwise", "hlk_conv", "multiscale_maxpool", "split_attention")
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_WORKER_TIMEOUT_S = 1800


def _source(module: str) -> str:
    return f"istd_kernels/triton/{module}.py"


def _row(kernel, config, arch, registers=None, smem=None, stores=None, loads=None, error=None, module=MODULES[0]):
    return make_row("triton", _source(module), kernel, config, arch, registers, smem, stores, loads, error)


# ---------------------------------------------------------------------------
# Worker side (runs in a subprocess without TRITON_INTERPRET)
# ---------------------------------------------------------------------------


def _ptxas_path(arch: int) -> str:
    # Triton ships two ptxas builds and picks one per arch (the newer one for
    # sm_90+, whose PTX .version the older one rejects); use the same one.
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        return get_ptxas(arch).path
    except Exception:  # noqa: BLE001 - fall back to the bundled files
        import triton
        bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
        newer = os.path.join(bindir, "ptxas-blackwell")
        if arch >= 90 and os.path.exists(newer):
            return newer
        return os.path.join(bindir, "ptxas")


def _as_jit(fn):
    # Accept an autotuner or heuristics wrapper around the kernel.  An
    # InterpretedFunction means the module was imported in interpreter mode;
    # its @triton.jit helpers are interpreted too, so re-wrapping the kernel
    # alone would not compile: report that instead of guessing.
    from triton.runtime.jit import JITFunction
    seen = fn
    while not isinstance(seen, JITFunction):
        if type(seen).__name__ == "InterpretedFunction":
            raise TypeError(f"{fn.__name__} was created under TRITON_INTERPRET=1; "
                            "compile it in a process without it (check() does)")
        inner = getattr(seen, "fn", None)
        if inner is None or inner is seen:
            raise TypeError(f"cannot compile {fn!r}: not a triton.jit function")
        seen = inner
    return seen




def _ptxas_stats(ptx: str, ptxas: str, workdir: str):
    m = re.search(r"^\s*\.target\s+(sm_\w+)", ptx, re.M)
    if m is None:
        raise RuntimeError("no .target line in PTX")
    gpu = m.group(1)
    src = os.path.join(workdir, "k.ptx")
    with open(src, "w") as f:
        f.write(ptx)
    # --regAllocOptLevel=2 is what Triton passes when it builds the cubin, so
    # the counts here are those of the kernel that would actually load.
    cmd = [ptxas, "-v", "--regAllocOptLevel=2", "--gpu-name", gpu, src, "-o", os.path.join(workdir, "k.cubin")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed ({proc.returncode}): {out.strip()[-2000:]}")
    regs = [int(x) for x in REGS_RE.findall(out)]
    spills = [(int(a), int(b)) for a, b in SPILL_RE.findall(out)]
    if not regs or not spills:
        raise RuntimeError(f"could not parse ptxas output: {out.strip()[-2000:]}")
    # One entry kernel per module; max() keeps it right if helpers show up.
    return max(regs), max(s for s, _ in spills), max(l for _, l in spills)


def _cpu_seconds() -> float:
    import resource
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _compile_one(spec: dict, arch: int, workdir: str, module: str = MODULES[0]) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    name = spec["name"]
    row_arch = f"sm_{arch}"
    cpu0 = _cpu_seconds()
    try:
        src = ASTSource(fn=_as_jit(spec["fn"]), signature=spec["signature"], constexprs=spec["constexprs"])
        options = dict(num_warps=spec["num_warps"], num_stages=spec["num_stages"])
        if spec.get("maxnreg"):
            options["maxnreg"] = spec["maxnreg"]
        kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
        regs, stores, loads = _ptxas_stats(kernel.asm["ptx"], _ptxas_path(arch), workdir)
        row = _row(name, spec["config"], row_arch, regs, int(kernel.metadata.shared), stores, loads, module=module)
        # CPU seconds (this worker and its ptxas), not wall time: the latter measures the load.
        row["cpu_s"] = round(_cpu_seconds() - cpu0, 2)
        return row
    except Exception as e:  # noqa: BLE001 - every failure must become a row
        msg = f"{type(e).__name__}: {e}"
        return _row(name, spec["config"], row_arch, error=msg[-4000:], module=module)


def _worker_main(part: int, nparts: int, archs: list[int], modules: list[str]) -> None:
    import warnings
    # Triton 3.9 warns once per process that the FP-fusion default will
    # change; the default (fusion on) is what we ship, so the note is noise.
    warnings.filterwarnings("ignore", message=".*TRITON_DEFAULT_FP_FUSION.*")
    import importlib

    specs = []
    for module in modules:
        specs += [(module, s) for s in importlib.import_module(f"istd_kernels.triton.{module}").aot_specs()]
    print(json.dumps({"count": len(specs),
                      "labels": [[s["name"], s["config"], module] for module, s in specs]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="triton_gate_") as workdir:
        for idx, (module, spec) in enumerate(specs):
            if idx % nparts != part:
                continue
            for arch in archs:
                row = _compile_one(spec, arch, workdir, module)
                print(json.dumps({"index": idx, "arch": arch, "row": row}), flush=True)


# ---------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------


def _worker_env() -> dict:
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + path if path else "")
    return env


def triton_version() -> str:
    """Version of the Triton this interpreter (and so the workers) would compile with."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("triton")
    except PackageNotFoundError:
        return "not installed"


def check(archs=(86, 90), workers: int = 2, modules=MODULES) -> list[dict]:
    """Compile every AOT spec of ``modules`` for every arch; one row per (spec, arch).

    Never raises for a kernel problem: compile, ptxas and worker failures
    come back as rows with ``error`` set (and None in the numeric fields).
    """
    archs = [int(a) for a in archs]
    workers = max(1, int(workers))
    unknown = sorted(set(modules) - set(MODULES))
    if unknown or not modules:
        raise ValueError(f"modules must be a non-empty subset of {MODULES}; got {list(modules)}")
    code = ("import sys; from istd_kernels.tools.triton_gate import _worker_main; "
            "_worker_main(int(sys.argv[1]), int(sys.argv[2]), [int(a) for a in sys.argv[3].split(',')], "
            "sys.argv[4].split(','))")
    arch_arg = ",".join(str(a) for a in archs)
    rows: dict[tuple[int, int], dict] = {}
    labels = None
    failures = []
    # Output goes to files, not pipes: reading one worker's pipe to the end
    # while the other's fills up would stall the second worker.
    with tempfile.TemporaryDirectory(prefix="triton_gate_out_") as outdir:
        procs = []
        for i in range(workers):
            out_f = open(os.path.join(outdir, f"w{i}.out"), "w+")
            err_f = open(os.path.join(outdir, f"w{i}.err"), "w+")
            proc = subprocess.Popen([sys.executable, "-c", code, str(i), str(workers), arch_arg, ",".join(modules)],
                                    stdout=out_f, stderr=err_f, text=True,
                                    env=_worker_env(), cwd=_REPO_ROOT)
            procs.append((proc, out_f, err_f))
        deadline = time.monotonic() + _WORKER_TIMEOUT_S
        for i, (proc, out_f, err_f) in enumerate(procs):
            timed_out = False
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                timed_out = True
            out_f.seek(0)
            err_f.seek(0)
            out, err = out_f.read(), err_f.read()
            out_f.close()
            err_f.close()
            for line in out.splitlines():
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue  # stray prints from imported code
                if not isinstance(msg, dict):
                    continue
                if "labels" in msg:
                    labels = msg["labels"]
                elif "row" in msg:
                    rows[(msg["index"], msg["arch"])] = msg["row"]
            if timed_out:
                failures.append(f"worker {i} timed out after {_WORKER_TIMEOUT_S}s: {err.strip()[-2000:]}")
            elif proc.returncode != 0:
                failures.append(f"worker {i} exited {proc.returncode}: {err.strip()[-3000:]}")

    result = []
    if labels is None:
        # Not even the spec list came back (import error, say): one row per arch.
        why = "; ".join(failures) or "worker produced no output"
        return [_row("<all>", "", f"sm_{a}", error=why) for a in archs]
    for idx, (name, config, module) in enumerate(labels):
        for arch in archs:
            row = rows.get((idx, arch))
            if row is None:
                why = "; ".join(failures) or "row missing from worker output"
                row = _row(name, config, f"sm_{arch}", error=f"not compiled: {why}", module=module)
            result.append(row)
    return result


if __name__ == "__main__":
    from .compile_check import main

    sys.exit(main(["--skip-cuda"] + sys.argv[1:], prog="python -m istd_kernels.tools.triton_gate"))
