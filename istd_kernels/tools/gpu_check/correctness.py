"""Step 2: the ``cuda``-marked tests (sharded over the machine's cores) and compute-sanitizer.

Each check is recorded as ``{"kind": "check", "name", "passed", "detail", ...}``; ``passed``
is None for a check that could not run on this machine (it is listed as not run, never as
passed): compute-sanitizer missing, or refusing the device ("unavailable here").
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from . import pytest_stream
from .paths import SOURCE_ROOT, child_env
from .runner import kill_group, read_records
from .worker import StepContext

# A test file that cannot be imported (pytest -q's summary line) and why (its "E" line).
_UNCOLLECTED, _WHY = re.compile(r"^ERROR (\S+)", re.M), re.compile(r"^E\s+(\w*Error: .*)$", re.M)
_SANITIZER_EXIT = 86  # compute-sanitizer's exit status when it found an error
#: compute-sanitizer's answer on a GPU or driver it cannot instrument (seen on one runtime of
#: the lent H200 machine): the check cannot run there, which is not a failure of the kernels.
_REFUSED = re.compile(r"Device not supported|^=+ Error: .*not supported", re.I | re.M)
UNAVAILABLE = "unavailable here"
#: Tests that run with Triton's autotuner on (their own processes); every other test runs with
#: each Triton kernel pinned to its first config (``ISTD_TRITON_AUTOTUNE=0``). Test function
#: names; together they call every autotuned kernel (docs/gpu.md).
AUTOTUNED_TESTS = ("test_gpu_weight_grad_deterministic", "test_gpu_hlk_weight_grads_deterministic",
                   "test_gpu_autotuned_kernels_repeat_and_match_torch")
#: Estimated process-seconds of one test on the lent H200 (16 processes on 16 cores), from its
#: first run (docs/gpu.md): a Triton test with the autotuner compiles and times up to 4 configs
#: of up to 3 kernels (11.5 s), pinned it compiles one config of each; any other test, and the
#: start of one pytest process (import, collection, CUDA).
COST_S = {"autotuned": 12.0, "pinned": 3.0, "other": 1.0, "start": 8.0}
#: Tests that the first run showed to cost more than their kind: still running when their
#: step's budget ran out, at least 20 s in (the LCRNet profile through the CLI; the HLKConv
#: precision test autotuned).
OBSERVED_S = {"test_profile_on_gpu_uses_events_and_reports_memory": 30.0, "test_triton_paths": 8.0}
#: How many failures (with their reasons) a check record keeps.
FAILURES_KEPT = 50


def _env(autotune: bool = True) -> dict:
    env = child_env(ISTD_TRITON_AUTOTUNE="1" if autotune else "0")
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


def kind(test_id: str) -> str:
    """``"autotuned"`` (one of :data:`AUTOTUNED_TESTS` on the triton backend), ``"pinned"``
    (another test that runs Triton kernels) or ``"other"``; the key of its :data:`COST_S`."""
    if "triton" not in test_id:
        return "other"
    return "autotuned" if _name(test_id) in AUTOTUNED_TESTS else "pinned"


def _name(test_id: str) -> str:
    return test_id.split("::")[-1].split("[")[0]


def cost_s(test_id: str) -> float:
    """Estimated seconds of one test: :data:`OBSERVED_S`, else :data:`COST_S` of its kind."""
    return OBSERVED_S.get(_name(test_id), COST_S[kind(test_id)])


def plan_shards(ids: list[str], processes: int) -> list[tuple[bool, list[str]]]:
    """``(autotune, ids)`` per pytest process. The autotuned tests get their own processes (as
    few as hold them at no more than the average load), the other Triton tests the rest; the
    tests without Triton kernels then fill whichever process is least loaded. Each process
    runs its tests in file order: the most important first."""
    order = {i: n for n, i in enumerate(ids)}
    tuned = [i for i in ids if kind(i) == "autotuned"]
    pinned = [i for i in ids if kind(i) == "pinned"]
    processes = max(processes, bool(tuned) + bool(pinned))  # the two groups never share a process
    n_tuned = 0
    if tuned:
        average = sum(map(cost_s, ids)) / processes
        n_tuned = min(len(tuned), math.ceil(sum(map(cost_s, tuned)) / average), processes - bool(pinned))
    shards: list[tuple[bool, list[str]]] = [(k < n_tuned, []) for k in range(processes)]
    loads = [0.0] * processes

    def place(test_id: str, candidates: range) -> None:
        k = min(candidates, key=lambda j: loads[j])
        shards[k][1].append(test_id)
        loads[k] += cost_s(test_id)
    for i in tuned:
        place(i, range(n_tuned))
    for i in pinned:
        place(i, range(n_tuned, processes))
    for i in ids:
        if kind(i) == "other":
            place(i, range(processes))
    return [(autotune, sorted(s, key=order.__getitem__)) for autotune, s in shards if s]


def estimate_s(shards: list[tuple[bool, list[str]]]) -> float:
    """Estimated seconds of the longest process of ``shards`` (:func:`cost_s`, plus its start)."""
    return max((COST_S["start"] + sum(map(cost_s, s)) for _, s in shards), default=0.0)


def read_stream(paths: list[str]) -> dict[str, object]:
    """From the shards' :mod:`pytest_stream` files: ``counts`` of outcomes (``PASSED``,
    ``FAILED``, ``ERROR``: a setup or teardown that failed, ``SKIPPED``), ``reported`` (how many
    tests reported), ``failed`` (each with its reason), the ``slowest`` tests and the
    ``seconds_by_kind`` (test count and seconds per :func:`kind`, to check :data:`COST_S`)."""
    counts: dict[str, int] = {}
    by_kind: dict[str, list] = {}
    failed, durations, reported = [], [], set()
    for line in itertools.chain.from_iterable(read_records(p) for p in paths):
        outcome = {"passed": "PASSED", "skipped": "SKIPPED"}.get(line["outcome"],
                                                                 "FAILED" if line["when"] == "call" else "ERROR")
        counts[outcome] = counts.get(outcome, 0) + 1
        reported.add(line["id"])
        if outcome in ("FAILED", "ERROR"):
            failed.append({"id": line["id"], "when": line["when"], "reason": line.get("reason", "")})
        durations.append((line["duration"], line["id"]))
        n_s = by_kind.setdefault(kind(line["id"]), [0, 0.0])
        n_s[0] += line["when"] == "call"
        n_s[1] = round(n_s[1] + line["duration"], 3)
    slowest = [{"id": i, "seconds": d} for d, i in sorted(durations, reverse=True)[:10]]
    return {"counts": counts, "reported": len(reported), "failed": failed, "slowest": slowest,
            "seconds_by_kind": by_kind}


def _start_shards(ctx: StepContext, name: str, shards, cwd: str) -> tuple[list, list[str], list[str]]:
    threads = str(max(1, (os.cpu_count() or 1) // len(shards)))
    procs, logs, streams = [], [], []
    for k, (autotune, shard_ids) in enumerate(shards):
        logs.append(ctx.step_file(f"{name}-shard{k}.log"))
        streams.append(ctx.step_file(f"{name}-shard{k}.jsonl"))
        env = dict(_env(autotune), OMP_NUM_THREADS=threads, **{pytest_stream.ENV: streams[-1]})
        with open(logs[-1], "w") as f:  # test order is kept in each shard: the most important run first
            cmd = _pytest(["-v", "-rN", "-p", pytest_stream.__name__, *shard_ids])
            procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs, logs, streams


def run_sharded(ctx: StepContext, name: str, args: list[str], cwd: str = SOURCE_ROOT) -> None:
    """Collect ``args``' cuda tests (test ids are relative to ``cwd``), run them in one pytest
    process per core (:func:`plan_shards`) until the step's deadline, and record one check:
    passed when every test file was imported, every collected test reported and none failed.
    Each failure's reason is streamed to a file as it happens (:mod:`pytest_stream`), so a
    process killed at the deadline still leaves it."""
    start = time.time()
    ids, uncollected = _collect(args, max(5.0, ctx.left()), cwd)
    shards = plan_shards(ids, max(1, min(os.cpu_count() or 1, len(ids))))
    procs, logs, streams = _start_shards(ctx, name, shards, cwd)
    timed_out = False
    for p in procs:
        try:
            p.wait(timeout=max(0.1, ctx.left()))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    got = read_stream(streams)
    c, failed = got["counts"], got["failed"]
    ran = got["reported"]
    passed = not timed_out and not failed and c.get("PASSED", 0) > 0 and ran == len(ids) and not uncollected
    n_tuned = sum(len(s) for autotune, s in shards if autotune)
    detail = (f"{ran}/{len(ids)} tests reported in {time.time() - start:.0f} s over {len(shards)} process(es) "
              f"(estimated {estimate_s(shards):.0f} s; {n_tuned} with Triton's autotuner on, the others with each "
              f"Triton kernel's first config)")
    if failed:
        detail += f"; {len(failed)} failed, first: {failed[0]['id']}: {failed[0]['reason']}"
    if uncollected:
        detail += f"; {len(uncollected)} test file(s) could not be imported here: {'; '.join(uncollected)}"
    if timed_out:
        detail += "; the step's time budget ran out (the remaining tests did not run)"
    elif ran != len(ids):
        detail += "; some tests did not report (a process crashed: see the shard logs)"
    ctx.record({"kind": "check", "name": f"pytest -m cuda {' '.join(args)}", "passed": passed, "detail": detail,
                "counts": c, "failed": failed[:FAILURES_KEPT], "slowest": got["slowest"],
                "seconds_by_kind": got["seconds_by_kind"], "uncollected": uncollected,
                "logs": logs + streams})


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


def _sanitize(ctx: StepContext, tool: str, name: str, budget: float) -> str | None:
    """Run one tool and record its check; returns why the device was refused, else None."""
    from .sanitize_calls import DONE

    env = _env(autotune=False)  # autotuning every config under the sanitizer did not finish in 35 s
    if name == "memcheck":
        # An overrun then leaves its allocation instead of landing inside the caching pool.
        env["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"
    cmd = [tool, "--tool", name, "--error-exitcode", str(_SANITIZER_EXIT), "--print-limit", "20", sys.executable,
           "-m", "istd_kernels.tools.gpu_check.sanitize_calls", "--device", "cuda"]
    log = ctx.step_file(f"sanitizer-{name}.log")
    start = time.time()
    with open(log, "w") as f:  # its own session: a timeout stops the program under the tool too
        proc = subprocess.Popen(cmd, cwd=SOURCE_ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, budget))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = None
    with open(log) as f:
        text = f.read()
    finished = DONE.split("{")[0] in text
    passed = rc == 0 and finished
    refused = _REFUSED.search(text) if not finished else None
    if refused:
        reason = f"compute-sanitizer refused the device ({refused.group(0).strip('= ')})"
        ctx.record({"kind": "check", "name": f"compute-sanitizer --tool {name}", "passed": None,
                    "detail": f"{UNAVAILABLE}: {reason}", "log": log})
        return reason
    if rc is None:
        done = [ln[3:] for ln in text.splitlines() if ln.startswith("ok ")]
        detail = f"timed out after {budget:.0f} s, {len(done)} call(s) finished" + (f", the last: {done[-1]}" if done
                                                                                    else "")
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
