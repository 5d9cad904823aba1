"""Runs the plan's steps one after another, each within its budget, and keeps ``report.json``
current: a step that raises or runs out of time is recorded and the next one starts.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable

from .paths import child_env
from .plan import Step
from .worker import EXIT_DEADLINE, LAUNCHED_ENV, StepContext, call, is_deadline

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
#: Seconds granted past a step's budget for its interpreter to start and stop.
GRACE_S = 5.0
_TAIL = 2000  # characters of a failed step's output kept in the report


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_records(path: str) -> list[dict]:
    """The records of a step's JSON-lines file (a line cut off by a kill is dropped)."""
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


class Runner:
    """Runs steps and writes ``<out>/report.json`` after every one.

    ``report`` holds ``mode``, ``started``, ``config`` and ``steps`` (one entry per step:
    name, title, budget_s, status, elapsed_s, detail, records). The steps' records and logs go
    to ``steps_dir`` (default ``<out>/steps``); with ``archive``, that folder is also packed
    into ``<out>/<archive>`` (as ``steps/``) after every step. With ``stop_at`` (a
    ``time.time()`` value), no step but the report runs past it, and one that would start
    after it is recorded as not run.
    """

    def __init__(self, out: str, mode: str, config: dict, steps_dir: str | None = None, archive: str | None = None,
                 stop_at: float | None = None):
        self.out = out
        self.steps_dir = os.path.abspath(steps_dir or os.path.join(out, "steps"))
        os.makedirs(out, exist_ok=True)
        os.makedirs(self.steps_dir, exist_ok=True)
        self.archive = archive and os.path.join(out, archive)
        self.stop_at = stop_at
        self.config = dict(config, out=os.path.abspath(out), steps=self.steps_dir)
        self.report = {"schema": 1, "mode": mode, "started": now(), "config": self.config, "steps": []}
        self.save()

    def save(self) -> None:
        path = os.path.join(self.out, "report.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.report, f, indent=1)
        os.replace(path + ".tmp", path)  # a reader never sees half a file
        if self.archive:
            with tarfile.open(self.archive + ".tmp", "w:gz") as tar:
                tar.add(self.steps_dir, arcname="steps")
            os.replace(self.archive + ".tmp", self.archive)

    def run(self, step: Step, in_process: Callable[[Step, str, float], tuple[str, str]] | None = None) -> dict:
        """Run ``step`` and record it; returns its entry."""
        results = os.path.join(self.steps_dir, f"{step.name}.jsonl")
        if os.path.exists(results):
            os.remove(results)
        start = time.time()
        deadline = start + step.budget_s
        if self.stop_at is not None and step.name != "report":
            deadline = min(deadline, self.stop_at)
        if deadline <= start:
            status, detail = "timeout", "not run: the run's time was used up before it"
        elif step.isolated:
            status, detail = self._subprocess(step, results, deadline)
        else:
            status, detail = (in_process or self._in_process)(step, results, deadline)
        entry = {"name": step.name, "title": step.title, "budget_s": step.budget_s, "status": status,
                 "elapsed_s": round(time.time() - start, 2), "detail": detail,
                 "correctness": step.correctness, "records": read_records(results)}
        self.report["steps"].append(entry)
        self.save()
        return entry

    def _in_process(self, step: Step, results: str, deadline: float):
        try:
            call(step.target, StepContext(results, self.config, deadline))
        except Exception as err:  # noqa: BLE001 - any failure of a step is recorded, and the run goes on
            if is_deadline(err):
                return "timeout", str(err)
            return "failed", traceback.format_exc()[-_TAIL:]
        return "ok", ""

    def _subprocess(self, step: Step, results: str, deadline: float):
        config_path = os.path.join(self.steps_dir, f"{step.name}.config.json")
        with open(config_path, "w") as f:
            json.dump(self.config, f)
        cmd = [sys.executable, _WORKER, step.target, results, config_path, repr(deadline)]
        log_path = os.path.join(self.steps_dir, f"{step.name}.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    env=child_env(**{LAUNCHED_ENV: repr(time.time())}), start_new_session=True)
            try:
                rc = proc.wait(timeout=max(1.0, deadline - time.time()) + GRACE_S)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                return "timeout", f"killed at its deadline (budget {step.budget_s:.0f} s, +{GRACE_S:.0f} s grace); " \
                                  f"log: {log_path}"
        if rc == 0:
            return "ok", ""
        with open(log_path) as f:
            text = f.read()
        if rc == EXIT_DEADLINE:
            return "timeout", text.strip().splitlines()[-1] if text.strip() else "the step's time budget ran out"
        return "failed", f"exit status {rc}: " + text[-_TAIL:]


def kill_group(proc: subprocess.Popen) -> None:
    """Kill the step's process group (the step and any compiler or test process it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
