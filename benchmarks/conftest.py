"""Benchmark run settings: JSON written by default, and one short speedup table at the end.

pytest-benchmark's own tables (one per group, up to ~240 columns wide) are replaced by a
compact table of every case's median and its speedup over the baseline measured in the same
run (``extra_info["speedup"]``, see bench_utils.measure); ``--istd-full-tables`` brings
pytest-benchmark's tables back. Unless ``--benchmark-json`` is given, the run's JSON goes to
``benchmarks/results/last-run.json``, so ``python -m istd_kernels.tools.report
benchmarks/results/last-run.json`` works after a plain ``pytest benchmarks --benchmark-only``.
"""

import os
from pathlib import Path

DEFAULT_JSON = Path(__file__).parent / "results" / "last-run.json"


def pytest_addoption(parser):
    parser.addoption("--istd-full-tables", action="store_true",
                     help="print pytest-benchmark's full per-group tables instead of the short summary")


def pytest_configure(config):
    if config.getoption("benchmark_json", None) is None and hasattr(config.option, "benchmark_json"):
        DEFAULT_JSON.parent.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = DEFAULT_JSON
    if not config.getoption("istd_full_tables"):
        config.option.benchmark_quiet = True


def _summary_rows(benchmarks):
    rows = []
    for bench in benchmarks:
        if bench is None or not getattr(bench, "stats", None):
            continue
        info = bench.extra_info or {}
        speedup = info.get("speedup")
        rows.append((bench.group or "", info.get("impl", bench.name), bench.stats.median * 1e3,
                     f"{speedup:.2f}x" if speedup is not None else "-"))
    return rows


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    rows = _summary_rows(getattr(session, "benchmarks", []) or [])
    if not rows or config.getoption("istd_full_tables"):
        return
    width = min(60, max(len(r[0]) for r in rows))
    impl_w = min(28, max(len(str(r[1])) for r in rows))
    tr = terminalreporter
    tr.section("speedup over each case's baseline (same run)")
    tr.write_line(f"{'case':<{width}}  {'impl':<{impl_w}}  {'median ms':>10}  {'speedup':>8}")
    for group, impl, median_ms, speedup in rows:
        tr.write_line(f"{group[:width]:<{width}}  {str(impl)[:impl_w]:<{impl_w}}  {median_ms:>10.2f}  {speedup:>8}")
    json_path = config.getoption("benchmark_json", None)
    if json_path:
        rel = os.path.relpath(json_path)
        tr.write_line(f"JSON: {rel}  (tables: python -m istd_kernels.tools.report {rel})")
