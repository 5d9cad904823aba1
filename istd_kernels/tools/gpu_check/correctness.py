"""Step 2: the ``cuda``-marked tests (sharded over the machine's cores) and compute-sanitizer.

Each check is recorded as ``{"kind": "check", "name", "passed", "detail", ...}``; ``passed``
is None for a check that could not run on this machine (it is listed as not run, never as
passed): compute-sanitizer missing, or refusing the device ("unavailable here").
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from .paths import SOURCE_ROOT, child_env
from .worker import StepContext

_RESULT = re.compile(r"^(\S+::\S+)\s+(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.M)
# A test file that cannot be imported (pytest -q's summary line) and why (its "E" line).
_UNCOLLECTED, _WHY = re.compile(r"^ERROR (\S+)", re.M), re.compile(r"^E\s+(\w*Error: .*)$", re.M)
#: At most this many pytest processes share the GPU (Triton's compiles are CPU-bound).
MAX_SHARDS = 8
_SANITIZER_EXIT = 86  # compute-sanitizer's exit status when it found an error
#: compute-sanitizer's answer on a GPU or driver it cannot instrument (seen on one runtime of
#: the lent H200 machine): the check cannot run there, which is not a failure of the kernels.
_REFUSED = re.compile(r"Device not supported|^=+ Error: .*not supported", re.I | re.M)
UNAVAILABLE = "unavailable here"


def _env() -> dict:
    env = child_env()
    env.pop("TRITON_INTERPRET", None)  # the GPU run compiles the Triton kernels
    return env


def _pytest(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cuda", *args]


def _collect(args: list[str], timeout: float, cwd: str) -> tuple[list[str], list[str]]:
    """The ids of ``args``' cuda tests, and ``"file: why"`` for each test file that could not be
    imported (a module the machine lacks, such as hypothesis): the other files' tests still run."""
    out = subprocess.run(_pytest(["--collect-only", "-q", "--continue-on-collection-errors", *args]), cwd=cwd,
                         env=_env(), capture_output=True, text=True, timeout=timeout)
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if not ids:
        raise RuntimeError(f"collecting {' '.join(args)} found no test (exit {out.returncode}): {out.stdout[-1500:]}")
    why = itertools.chain(_WHY.findall(out.stdout), itertools.repeat("see the collection output"))
    return ids, [f"{path}: {reason}" for path, reason in zip(_UNCOLLECTED.findall(out.stdout), why)]


def count(outputs: list[str]) -> dict[str, object]:
    """Outcome counts and failed test ids from ``pytest -v`` outputs."""
    counts: dict[str, object] = {}
    failed = []
    for text in outputs:
        for test, outcome in _RESULT.findall(text):
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("FAILED", "ERROR"):
                failed.append(test)
    counts["failed_ids"] = failed
    return counts


def run_sharded(ctx: StepContext, name: str, args: list[str], cwd: str = SOURCE_ROOT) -> None:
    """Collect ``args``' cuda tests (test ids are relative to ``cwd``), run them in shards in
    parallel until the step's deadline, and record one check: passed when every test file was
    imported, every collected test reported and none failed."""
    start = time.time()
    ids, uncollected = _collect(args, max(5.0, ctx.left()), cwd)
    shards = max(1, min(MAX_SHARDS, (os.cpu_count() or 2) // 2, len(ids)))
    logs = [ctx.step_file(f"{name}-shard{k}.log") for k in range(shards)]
    procs = []
    for k, log in enumerate(logs):
        with open(log, "w") as f:  # test order is kept in each shard: the most important run first
            procs.append(subprocess.Popen(_pytest(["-v", "-rN", *ids[k::shards]]), cwd=cwd, env=_env(),
                                          stdout=f, stderr=subprocess.STDOUT, start_new_session=True))
    timed_out = False
    for p in procs:
        try:
            p.wait(timeout=max(0.1, ctx.left()))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    outputs = [open(log).read() for log in logs]
    c = count(outputs)
    ran = sum(v for k, v in c.items() if k != "failed_ids")
    passed = not timed_out and not c["failed_ids"] and c.get("PASSED", 0) > 0 and ran == len(ids) and not uncollected
    detail = f"{ran}/{len(ids)} tests reported in {time.time() - start:.0f} s over {shards} process(es)"
    if uncollected:
        detail += f"; {len(uncollected)} test file(s) could not be imported here: {'; '.join(uncollected)}"
    if timed_out:
        detail += "; the step's time budget ran out (the remaining tests did not run)"
    elif ran != len(ids):
        detail += "; some tests did not report (a process crashed: see the shard logs)"
    ctx.record({"kind": "check", "name": f"pytest -m cuda {' '.join(args)}", "passed": passed, "detail": detail,
                "counts": {k: v for k, v in c.items() if k != "failed_ids"}, "failed": c["failed_ids"][:50],
                "uncollected": uncollected, "logs": logs})


def run_op_tests(ctx: StepContext) -> None:
    """Every op on every GPU backend against its reference, forward and backward, per dtype."""
    run_sharded(ctx, "tests_ops", ["tests/test_cuda.py"])


def run_other_tests(ctx: StepContext) -> None:
    run_sharded(ctx, "tests_other", ["tests", "--ignore", "tests/test_cuda.py"])


def find_sanitizer() -> str | None:
    """compute-sanitizer on PATH, under CUDA_HOME, or in /usr/local/cuda*."""
    candidates = [shutil.which("compute-sanitizer")]
    for root in [os.environ.get("CUDA_HOME"), *sorted(glob.glob("/usr/local/cuda*"), reverse=True)]:
        if root:
            candidates += [os.path.join(root, "bin", "compute-sanitizer"),
                           os.path.join(root, "compute-sanitizer", "compute-sanitizer")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def run_sanitizer(ctx: StepContext) -> None:
    """The profile's compute-sanitizer tools (memcheck; racecheck and synccheck in full mode) on
    sanitize_calls. Once the device is refused, the tools after it are recorded as
    unavailable here without being started."""
    tool = find_sanitizer()
    if tool is None:
        ctx.record({"kind": "check", "name": "compute-sanitizer", "passed": None,
                    "detail": "not run: compute-sanitizer is not installed (not on PATH, CUDA_HOME or "
                              "/usr/local/cuda*)"})
        return
    tools = ctx.config["sanitizer_tools"]
    refused = None
    for i, name in enumerate(tools):
        if refused:
            ctx.record({"kind": "check", "name": f"compute-sanitizer --tool {name}", "passed": None,
                        "detail": f"{UNAVAILABLE}: not started, {refused}"})
            continue
        refused = _sanitize(ctx, tool, name, ctx.left() / (len(tools) - i))


def _text(output) -> str:
    """Output captured before a timeout (bytes or str, depending on where it was cut)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _sanitize(ctx: StepContext, tool: str, name: str, budget: float) -> str | None:
    """Run one tool and record its check; returns why the device was refused, else None."""
    from .sanitize_calls import DONE

    env = _env()
    if name == "memcheck":
        # An overrun then leaves its allocation instead of landing inside the caching pool.
        env["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"
    cmd = [tool, "--tool", name, "--error-exitcode", str(_SANITIZER_EXIT), "--print-limit", "20", sys.executable,
           "-m", "istd_kernels.tools.gpu_check.sanitize_calls", "--device", "cuda"]
    log = ctx.step_file(f"sanitizer-{name}.log")
    start = time.time()
    try:
        out = subprocess.run(cmd, cwd=SOURCE_ROOT, env=env, capture_output=True, text=True, timeout=max(1.0, budget))
        text, rc = out.stdout + out.stderr, out.returncode
    except subprocess.TimeoutExpired as err:
        text, rc = _text(err.stdout) + _text(err.stderr), None
    with open(log, "w") as f:
        f.write(text)
    finished = DONE.split("{")[0] in text
    passed = rc == 0 and finished
    refused = _REFUSED.search(text) if not finished else None
    if refused:
        reason = f"compute-sanitizer refused the device ({refused.group(0).strip('= ')})"
        ctx.record({"kind": "check", "name": f"compute-sanitizer --tool {name}", "passed": None,
                    "detail": f"{UNAVAILABLE}: {reason}", "log": log})
        return reason
    if rc is None:
        detail = f"timed out after {budget:.0f} s"
    elif rc == _SANITIZER_EXIT:
        found = [ln for ln in text.splitlines() if "ERROR SUMMARY" in ln or "=========" in ln]
        detail = "errors found: " + " | ".join(found)[:800]
    elif not passed:
        detail = f"exit status {rc}" + ("" if finished else ", the calls did not all run") + f": {text[-600:]}"
    else:
        detail = f"no errors ({time.time() - start:.0f} s)"
    ctx.record({"kind": "check", "name": f"compute-sanitizer --tool {name}", "passed": passed, "detail": detail,
                "log": log})
    return None
