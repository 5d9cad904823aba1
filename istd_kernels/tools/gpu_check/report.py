"""Step 4: the summary (correctness, targets), ``report.md`` and ``speedups.png`` from report.json."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from .worker import StepContext

#: The issue's targets: LCRNet forward >= 3x eager and >= 1.5x torch.compile, fused HLKConv
#: >= 70 % of peak bandwidth, labelling + Pd/Fa of 8 x 512x512 < 0.5 ms.
LCRNET_VS_EAGER, LCRNET_VS_COMPILED, HLK_PEAK_FRACTION, PDFA_MS = 3.0, 1.5, 0.70, 0.5
_NOT_FUSED = ("eager", "compiled", "unfused", "F.conv2d", "skimage per-image loop")


def timings(report: dict) -> list[dict]:
    """Every timing record of every step, measured or not (``error`` set when not). A case left
    ``pending`` (its step was killed while measuring it) is one with an error saying so."""
    out = []
    for step in report.get("steps", []):
        records = step.get("records", [])
        done = {(r.get("case"), r.get("impl")) for r in records if r.get("kind") == "timing"}
        for r in records:
            if r.get("kind") == "timing":
                out.append(r)
            elif r.get("kind") == "pending" and (r.get("case"), r.get("impl")) not in done:
                out.append(dict(r, kind="timing", error=f"not measured: its step was stopped at its "
                                                        f"{step.get('budget_s', 0):.0f} s budget while measuring it"))
    return out


def _measured(report: dict, case: str) -> dict[str, dict]:
    return {r["impl"]: r for r in timings(report) if r.get("case") == case and "error" not in r}


def _target(name: str, measured: float | None, required: str, met: bool | None, unit: str, why: str = "") -> dict:
    return {"target": name, "measured": measured, "unit": unit, "required": required, "met": met,
            "detail": why if measured is None else ""}


def _lcrnet_targets(report: dict) -> Iterable[dict]:
    rows = _measured(report, "lcrnet-forward-float32")
    cut = {r["impl"]: r["error"] for r in timings(report) if r.get("case") == "lcrnet-forward-float32" and "error" in r}
    fused = [r for impl, r in rows.items() if impl not in _NOT_FUSED]
    best = min(fused, key=lambda r: r["median_ms"]) if fused else None
    for base, need, name in (("eager", LCRNET_VS_EAGER, "LCRNet forward fp32 vs eager PyTorch"),
                             ("compiled", LCRNET_VS_COMPILED, "LCRNet forward fp32 vs torch.compile")):
        if best is None or base not in rows:
            why = cut.get(base) if best is not None and base in cut else \
                f"not measured ({base} or a kernel backend missing)"
            yield _target(name, None, f">= {need}x", None, "x", why)
            continue
        ratio = rows[base]["median_ms"] / best["median_ms"]
        yield _target(f"{name} (best: {best['impl']})", ratio, f">= {need}x", ratio >= need, "x")


def _hlk_targets(report: dict) -> Iterable[dict]:
    levels: dict[tuple, list[dict]] = {}
    for r in timings(report):
        if r.get("case", "").startswith("hlk-forward-float32") and r.get("fused") and "error" not in r:
            levels.setdefault(tuple(r["level"]), []).append(r)
    if not levels:
        yield _target("fused HLKConv fp32 forward, fraction of peak bandwidth", None, f">= {HLK_PEAK_FRACTION:.0%}",
                      None, "", "not measured")
    for (c, side), rows in sorted(levels.items(), key=lambda kv: -kv[0][1]):
        name = f"fused HLKConv fp32 forward C{c} {side}px, fraction of peak bandwidth"
        best = max(rows, key=lambda r: r.get("fraction_of_peak", -1.0))
        if "fraction_of_peak" not in best:
            yield _target(name, None, f">= {HLK_PEAK_FRACTION:.0%}", None, "",
                          "not measured (no GPU, or its peak bandwidth is unknown)")
            continue
        frac = best["fraction_of_peak"]
        note = " (working set fits in L2)" if best.get("l2_resident") else ""
        yield _target(f"{name} (best: {best['impl']}){note}", frac, f">= {HLK_PEAK_FRACTION:.0%}",
                      frac >= HLK_PEAK_FRACTION, "fraction")


def _pdfa_targets(report: dict) -> Iterable[dict]:
    rows = [r for impl, r in _measured(report, "pdfa").items() if impl.startswith("PdFa")]
    name = "labelling + Pd/Fa of the batch"
    if not rows:
        yield _target(name, None, f"< {PDFA_MS} ms", None, "ms", "not measured")
        return
    r = rows[0]
    yield _target(f"{name} ({r['batch']} images, {r['impl']})", r["median_ms"], f"< {PDFA_MS} ms",
                  r["median_ms"] < PDFA_MS, "ms")


def correctness(report: dict) -> dict:
    """``{"passed", "checks"}``: passed when at least one check ran, none failed, and every
    correctness step finished. A check that could not run here (``passed`` None) is listed."""
    checks = []
    for step in report.get("steps", []):
        if not step.get("correctness"):
            continue
        checks += [r for r in step.get("records", []) if r.get("kind") == "check"]
        if step["status"] != "ok":
            checks.append({"name": f"step {step['name']}", "passed": False,
                           "detail": f"{step['status']}: {step['detail'][-300:]}"})
    passed = any(c["passed"] is True for c in checks) and all(c["passed"] is not False for c in checks)
    return {"passed": passed, "checks": checks}


def summarize(report: dict) -> dict:
    """The correctness summary and the targets, to be merged into the report. Targets are
    judged on a GPU only: the CPU smoke's sizes are not the targets' settings."""
    targets = [*_lcrnet_targets(report), *_hlk_targets(report), *_pdfa_targets(report)]
    if report["config"]["device"] != "cuda":
        targets = [dict(t, met=None, detail="CPU smoke: not the target's setting") for t in targets]
    return {"correctness": correctness(report), "targets": targets}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "fraction":
        return f"{100 * value:.0f} %"
    return f"{value:.2f}{unit if unit != 'ms' else ' ms'}"


def _cell(text: str, limit: int = 200) -> str:
    """One line of ``text`` that cannot break a Markdown table."""
    line = next((ln for ln in str(text).splitlines() if ln.strip()), "")
    return line.replace("|", "\\|")[:limit]


def _met(t: dict) -> str:
    if t["met"] is None:
        return "not measured" if t["measured"] is None else "not judged"
    return "met" if t["met"] else "**not met**"


def _header(report: dict) -> list[str]:
    env = next((r for s in report["steps"] for r in s.get("records", []) if r.get("kind") == "env"), {})
    gpu = env.get("gpu") or {}
    lines = [f"# gpu_check: {gpu.get('name', report['config']['device'])} ({report['mode']} mode)", "",
             f"Started {report['started']}, finished {report.get('finished', '?')}."]
    if env:
        lines.append(f"torch {env['torch']} (CUDA {env['torch_cuda']}), Triton {env['triton']}, "
                     f"Python {env['python']}, istd-kernels {env['istd_kernels']}.")
    if gpu:
        lines.append(f"GPU: {gpu['name']}, sm_{gpu['capability'].replace('.', '')}, {gpu['memory_gib']} GiB, driver "
                     f"{gpu['driver']}; peak bandwidth {_fmt((gpu['peak_bw_bytes_per_s'] or 0) / 1e9)} GB/s "
                     f"({gpu['peak_bw_source']}).")
    if report["config"]["device"] != "cuda":
        lines += ["", "**CPU smoke run at tiny sizes: it proves the report pipeline and says nothing about GPU speed. "
                      "Not run on a GPU.**"]
    return lines


def _tables(report: dict, summary: dict) -> list[str]:
    lines = ["", "## Steps", "", "| step | status | seconds (budget) | detail |", "|---|---|---:|---|"]
    for s in report["steps"]:
        detail = _cell(s["detail"].strip().splitlines()[-1] if s["detail"].strip() else "", 160) + _startup(s)
        lines.append(f"| {s['title']} | {s['status']} | {s['elapsed_s']:.0f} ({s['budget_s']:.0f}) | {detail} |")
    checks = summary["correctness"]["checks"]
    verdict = ("every check passed" if summary["correctness"]["passed"] else "**NOT all passed**") if checks \
        else "no check ran in this mode"
    lines += ["", "## Correctness: " + verdict, "", "| check | result | detail |", "|---|---|---|"]
    for c in checks:
        result = {True: "passed", False: "**failed**", None: "not run"}[c["passed"]]
        lines.append(f"| {_cell(c['name'])} | {result} | {_cell(c['detail'])} |")
    if not checks:
        lines.append("| (none) | not run | no correctness step in this mode |")
    lines += _failures(checks)
    lines += ["", "## Targets", "", "| target | measured | required | |", "|---|---:|---|---|"]
    for t in summary["targets"]:
        shown = _fmt(t["measured"], t["unit"]) or t["detail"]
        lines.append(f"| {_cell(t['target'])} | {_cell(shown)} | {t['required']} | {_met(t)} |")
    return lines


def _startup(step: dict) -> str:
    """How long the step's own interpreter took before its work (worker.py's startup record)."""
    r = next((r for r in step.get("records", []) if r.get("kind") == "startup"), None)
    if r is None:
        return ""
    return (f" (start {r['total_s']:.1f} s: interpreter {r['interpreter_s']:.1f}, imports {r['import_s']:.1f}, "
            f"CUDA {r['cuda_init_s']:.1f})")


def _failures(checks: list[dict], shown: int = 20) -> list[str]:
    """The first ``shown`` failed tests with the reasons their shards streamed."""
    failed = [f for c in checks for f in c.get("failed", []) if isinstance(f, dict)]
    total = sum(c.get("counts", {}).get(k, 0) for c in checks for k in ("FAILED", "ERROR"))
    if not failed:
        return []
    lines = ["", f"### Failed tests: {total}, the first {min(shown, len(failed))} with their reasons", "",
             "| test | phase | reason |", "|---|---|---|"]
    return lines + [f"| {_cell(f['id'])} | {f['when']} | {_cell(f['reason'], 300)} |" for f in failed[:shown]]


def speedups(report: dict) -> list[dict]:
    """Each measured timing with its speedup over its group's baseline (None without one)."""
    out = []
    by_group: dict[str, dict[str, dict]] = {}
    for r in timings(report):
        by_group.setdefault(r["group"], {})[r["impl"]] = r
    for group, rows in by_group.items():
        for impl, r in rows.items():
            base = rows.get(r.get("baseline", ""), {})
            comp = rows.get("compiled", {})
            ok = "error" not in r
            out.append(dict(r, vs_baseline=base["median_ms"] / r["median_ms"] if ok and "median_ms" in base else None,
                            vs_compiled=comp["median_ms"] / r["median_ms"] if ok and "median_ms" in comp else None))
    return out


def _perf(report: dict) -> list[dict]:
    lines = ["", "## Performance", "", "Medians of CUDA-event samples (CPU: perf_counter); IQR = interquartile range; "
             "speedups against the baseline of the same group measured in the same run.", ""]
    group = None
    for r in speedups(report):
        if r["group"] != group:
            group = r["group"]
            lines += ["", f"### {group}", "", "| impl | median ms | IQR ms | samples | images/s | vs baseline | "
                      "vs compiled | GB/s | of peak |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        if "error" in r:
            lines.append(f"| {r['impl']} | {_cell(r['error'], 150)} | | | | | | | |")
            continue
        peak = _fmt(r.get("fraction_of_peak"), "fraction") + (" (L2)" if r.get("l2_resident") else "")
        lines.append(f"| {r['impl']} | {r['median_ms']:.3f} | {r['q3_ms'] - r['q1_ms']:.3f} | {r['samples']} | "
                     f"{r['images_per_s']:.1f} | {_fmt(r['vs_baseline'], 'x')} | {_fmt(r['vs_compiled'], 'x')} | "
                     f"{_fmt(r.get('gbps'))} | {peak} |")
    return lines


def markdown(report: dict) -> str:
    """report.md: header, steps, correctness, targets, then one table per measured group."""
    summary = {k: report[k] for k in ("correctness", "targets")} if "targets" in report else summarize(report)
    return "\n".join(_header(report) + _tables(report, summary) + _perf(report)) + "\n"


def chart(report: dict, path: str) -> None:
    """A horizontal bar chart of every speedup over its group's baseline (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in speedups(report) if r["vs_baseline"] is not None and r["impl"] != r.get("baseline")]
    fig, ax = plt.subplots(figsize=(10, 0.22 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["vs_baseline"] for r in rows],
            color=["tab:green" if r["vs_baseline"] >= 1 else "tab:red" for r in rows])
    ax.set_yticks(range(len(rows)), [f"{r['group']} | {r['impl']}" for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speedup over the group's baseline, same run (log scale)")
    ax.set_title(_header(report)[0].lstrip("# "), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(ctx: StepContext) -> None:
    """Write report.md and speedups.png next to report.json."""
    out = ctx.config["out"]
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(markdown(report))
    ctx.record({"kind": "file", "path": os.path.join(out, "report.md")})
    chart(report, os.path.join(out, "speedups.png"))
    ctx.record({"kind": "file", "path": os.path.join(out, "speedups.png")})
