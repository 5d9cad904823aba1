"""Run one step: ``python worker.py MODULE:FUNCTION RESULTS.jsonl CONFIG.json DEADLINE``.

Started by file path (not ``-m``) so that the interpreter imports only the step's own module.
Every record the step makes is appended to RESULTS.jsonl and flushed at once, so what a step
measured before it was killed at its budget is kept.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

#: The worker's exit status when the step ran out of time (it recorded what it cut).
EXIT_DEADLINE = 4
#: ``time.time()`` when the runner started this interpreter (for the startup record).
LAUNCHED_ENV = "ISTD_GPU_CHECK_LAUNCHED"


class StepDeadline(RuntimeError):
    """The step's time budget is used up; what follows is recorded as not run."""


def is_deadline(err: BaseException) -> bool:
    """Whether ``err`` is a :class:`StepDeadline`. By name: run as a script, this file is
    ``__main__`` while a step raises the class of ``istd_kernels.tools.gpu_check.worker``."""
    return type(err).__name__ == StepDeadline.__name__


class StepContext:
    """What a step function gets: its configuration, its deadline and ``record()``."""

    def __init__(self, results_path: str, config: dict, deadline: float):
        self.results_path = results_path
        self.config = config
        self.deadline = deadline  # time.time() value

    def record(self, item: dict) -> None:
        """Append one result (a JSON-serialisable dict with a ``kind``) to the step's results."""
        with open(self.results_path, "a") as f:
            f.write(json.dumps(item) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def left(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - time.time()

    def step_file(self, name: str) -> str:
        """The path of a file (a log) named ``name`` in the run's steps folder (``config["steps"]``)."""
        return os.path.join(self.config["steps"], name)

    def check_deadline(self, what: str) -> None:
        if self.left() <= 0:
            raise StepDeadline(f"not run: the step's time budget ran out before {what}")


def call(target: str, ctx: StepContext) -> None:
    """Import ``module:function`` and call it with ``ctx``."""
    module, _, function = target.partition(":")
    getattr(importlib.import_module(module), function)(ctx)


def _startup(ctx: StepContext, target: str) -> None:
    """Import the step's module and start CUDA (on a GPU run), and record how long this
    interpreter took to get there: a step's budget includes its start (the first GPU run's
    metrics step used up its 10 s before its first case)."""
    begin = time.time()
    importlib.import_module(target.partition(":")[0])
    imported = time.time()
    if ctx.config.get("device") == "cuda":
        import torch

        torch.empty(1, device="cuda")
    launched = float(os.environ.get(LAUNCHED_ENV, begin))
    ctx.record({"kind": "startup", "interpreter_s": round(begin - launched, 2), "import_s": round(imported - begin, 2),
                "cuda_init_s": round(time.time() - imported, 2), "total_s": round(time.time() - launched, 2)})


def main(argv) -> int:
    target, results, config_path, deadline = argv
    with open(config_path) as f:
        config = json.load(f)
    try:
        ctx = StepContext(results, config, float(deadline))
        _startup(ctx, target)
        call(target, ctx)
    except Exception as err:  # noqa: BLE001 - the parent records the traceback as the step's failure
        if is_deadline(err):
            print(err)
            return EXIT_DEADLINE
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    # Started by path, Python put this directory first on sys.path; its module names (env,
    # plan, report) must not shadow anything, so the step imports by full name instead.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    raise SystemExit(main(sys.argv[1:]))
