"""A pytest plugin that writes each test's outcome to a JSON-lines file as it happens.

Loaded by the GPU check's test shards with ``-p istd_kernels.tools.gpu_check.pytest_stream``;
``ISTD_GPU_CHECK_STREAM`` names the file (without it the plugin does nothing). A shard killed
at its step's budget never prints pytest's summary, so the failure reasons would be lost: here
every line is written and flushed as soon as the test's phase ends.

One line per test call, and one per setup or teardown that did not pass (an error, or a
skip): ``{"id", "when", "outcome", "duration", "reason"}``, ``reason`` only for a failure or
an error (the exception's message, one line) and for a skip.
"""

from __future__ import annotations

import json
import os

ENV = "ISTD_GPU_CHECK_STREAM"
_REASON_CHARS = 300


def reason(report) -> str:
    """One line saying why ``report`` (a pytest TestReport) failed or was skipped."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: why")
        return str(longrepr[-1])[:_REASON_CHARS]
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines)[:_REASON_CHARS]


class _Stream:
    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1)  # line-buffered: each line reaches the file at once

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call" and report.outcome == "passed":
            return
        line = {"id": report.nodeid, "when": report.when, "outcome": report.outcome,
                "duration": round(report.duration, 3)}
        if report.outcome != "passed":
            line["reason"] = reason(report)
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()

    def pytest_unconfigure(self) -> None:
        self.file.close()


def pytest_configure(config) -> None:
    path = os.environ.get(ENV)
    if path:
        config.pluginmanager.register(_Stream(path), "istd_gpu_check_stream")
