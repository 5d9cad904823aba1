"""Timing steps of the GPU check: :func:`run_cases` records each case's measurement.

The timing of one call is :func:`istd_kernels.tools.timing.time_call` (the project's one
timing helper, shared with the benchmarks), re-exported here for the steps.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable

import torch

from ..timing import time_call
from .worker import StepContext, StepDeadline

__all__ = ["Case", "run_cases", "time_call"]

Case = tuple[dict, Callable[[], dict]]


def run_cases(ctx: StepContext, cases: Iterable[Case]) -> None:
    """Measure each case and record it: ``meta`` merged with what ``measure()`` returns.

    Each case is first recorded as ``pending``: if the step is killed while measuring it (a
    ``torch.compile`` that outlasts the budget), the report says so instead of leaving it out
    (:func:`report.timings`). A case that raises is recorded with its ``error`` and the next one runs; once the step's
    deadline has passed, the remaining cases are recorded as not run and the step ends with
    :class:`StepDeadline`.
    """
    cut = 0
    for meta, measure in cases:
        base = dict(meta, kind="timing")
        if ctx.left() <= 0:
            cut += 1
            ctx.record(dict(base, error="not run: the step's time budget was used up"))
            continue
        ctx.record(dict(meta, kind="pending"))
        try:
            ctx.record(dict(base, **measure()))
        except Exception as err:  # noqa: BLE001 - one failing case must not stop the others
            ctx.record(dict(base, error=f"{type(err).__name__}: {err}"[:500],
                            traceback=traceback.format_exc()[-1500:]))
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if cut:
        raise StepDeadline(f"{cut} case(s) not run: the step's time budget was used up")
