"""gpu_check without a GPU: the plan, step recording (failures, timeouts), the report, exit
codes, the CPU smoke, --build-only/--prebuilt with the compiler mocked, sanitize_calls, and
--machine (its plan, install step, stop, output layout and a sanitizer that refuses the device)."""

import json
import os
import sys
import tarfile
import time
import types

import pytest
import torch

from istd_kernels.tools.gpu_check import build, cli, correctness, env, plan, report, runner, sanitize_calls, timing
from istd_kernels.tools.gpu_check.perf_kernels import synthetic_pairs
from istd_kernels.tools.gpu_check.worker import StepContext, StepDeadline

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


@pytest.fixture
def one_thread():
    """Tiny models on a loaded 2-core machine: OpenMP workers spinning against other jobs made
    these calls 20x slower with two threads than with one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- plan --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "quick"])
def test_plan_fits_its_budget_and_runs_in_order(mode):
    steps = plan.steps(plan.PROFILES[mode])
    assert [s.name for s in steps] == ["env", "tests_ops", "tests_other", "sanitizer", "perf_lcrnet",
                                       "perf_lcrnet_compiled", "perf_kernels", "perf_metrics", "perf_rrcanet", "report"]
    assert sum(s.budget_s for s in steps) <= plan.BUDGET_S[mode]
    assert all(s.isolated for s in steps if s.name.startswith("perf"))
    assert {s.name for s in steps if s.correctness} == {"tests_ops", "tests_other", "sanitizer"}


def test_plan_quick_is_fp32_with_fewer_repeats_and_setup_steps_come_first():
    full, quick = plan.PROFILES["full"], plan.PROFILES["quick"]
    assert quick.precisions == ("float32",) and quick.repeats < full.repeats
    assert "bf16-autocast" in full.precisions
    assert plan.steps(full, "build")[0].name == "build"
    assert plan.steps(full, "prebuilt")[0].name == "prebuilt"
    text = plan.describe(full, plan.steps(full, "build"))
    assert "480 s (budget 480 s)" in text and "outside the budget" in text


def test_machine_plan_installs_first_and_fits_its_540_s():
    profile = plan.PROFILES["machine"]
    steps = plan.steps(profile, "build")  # machine mode has its own install step
    assert [s.name for s in steps] == ["install", "env", "tests_ops", "tests_other", "sanitizer", "perf_lcrnet",
                                       "perf_lcrnet_compiled", "perf_kernels", "perf_metrics", "perf_rrcanet", "report"]
    assert steps[0].correctness and not steps[0].isolated  # a failed install fails the run
    isolated = sum(s.isolated for s in steps)
    assert sum(s.budget_s for s in steps) + plan.MACHINE_OVERHEAD_S <= plan.BUDGET_S["machine"]
    # What may run past the stop: the report, one grace, and the interpreter's start.
    assert plan.MACHINE_STOP_S + profile.budgets["report"] + runner.GRACE_S < plan.BUDGET_S["machine"]
    assert plan.MACHINE_OVERHEAD_S >= isolated * runner.GRACE_S
    assert profile.sanitizer_tools == ("memcheck",) and len(plan.MACHINE_FILES) <= 8


def test_smoke_plan_is_steps_3_and_4_in_process():
    steps = plan.steps(plan.PROFILES["smoke"])
    assert [s.name for s in steps] == ["perf_lcrnet", "perf_kernels", "perf_metrics", "perf_rrcanet", "report"]
    assert not any(s.isolated for s in steps)


@no_gpu
def test_dry_run_prints_plan_and_says_there_is_no_gpu(capsys):
    assert cli.main(["--dry-run"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    for step in plan.steps(plan.PROFILES["full"]):
        assert step.title in out
    assert out.strip().splitlines()[-1].startswith("no CUDA GPU on this machine")


@no_gpu
def test_machine_dry_run_prints_a_plan_of_at_most_540_s_with_the_build(capsys):
    assert cli.main(["--machine", "--dry-run"]) == cli.EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    head = lines[0].split(": ")[1]  # "11 steps, 537 s including the build (budget 540 s)"
    assert int(head.split(", ")[1].split(" s ")[0]) <= 540 and "including the build" in head
    assert lines[1].lstrip().startswith("0. pip install -e .") and lines[-1].startswith("no CUDA GPU")


@no_gpu
@pytest.mark.parametrize("machine", [[], ["--machine"]], ids=["full", "machine"])
def test_run_without_gpu_says_so_in_one_line_and_exits_2(capsys, tmp_path, machine):
    assert cli.main([*machine, "--out", str(tmp_path / "out")]) == cli.EXIT_NO_GPU
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "not run on a GPU" in out[0]
    assert not (tmp_path / "out").exists()  # nothing was installed, built or written


def test_machine_mode_takes_no_quick_prebuilt_or_build_only(capsys):
    for extra in (["--quick"], ["--prebuilt", "x"], ["--build-only"]):
        assert cli.main(["--machine", "--out", "x", *extra]) == cli.EXIT_SETUP
    assert "--machine" in capsys.readouterr().err


# --- runner: every step is recorded, the next one runs ------------------------------------

FAKE_STEPS = '''
import time

def good(ctx):
    ctx.record({"kind": "note", "value": 1})

def boom(ctx):
    ctx.record({"kind": "note", "value": "before"})
    raise RuntimeError("kernel exploded")

def slow(ctx):
    ctx.record({"kind": "note", "value": "partial"})
    time.sleep(60)

class StepDeadline(RuntimeError):  # the worker knows it by name (importing istd_kernels here is slow)
    pass

def cut(ctx):
    raise StepDeadline("2 case(s) not run")

def check_pass(ctx):
    ctx.record({"kind": "check", "name": "fake check", "passed": True, "detail": ""})

def check_fail(ctx):
    ctx.record({"kind": "check", "name": "fake check", "passed": False, "detail": "wrong"})
'''


@pytest.fixture
def fake_steps(tmp_path, monkeypatch):
    (tmp_path / "fake_gpu_steps.py").write_text(FAKE_STEPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    sys.modules.pop("fake_gpu_steps", None)
    return lambda name, fn, budget=20.0, isolated=False, correctness=False: plan.Step(
        name, name, f"fake_gpu_steps:{fn}", budget, isolated, correctness)


def _work(entry: dict) -> list[dict]:
    """A step's records without the startup record of its own interpreter."""
    return [r for r in entry["records"] if r["kind"] != "startup"]


@pytest.mark.parametrize("isolated", [False, True], ids=["in_process", "own_interpreter"])
def test_failed_step_is_recorded_and_the_next_one_runs(tmp_path, fake_steps, isolated):
    r = runner.Runner(str(tmp_path / "out"), "test", {"device": "cpu"})
    first = r.run(fake_steps("a", "boom", isolated=isolated))
    second = r.run(fake_steps("b", "good", isolated=isolated))
    assert first["status"] == "failed" and "kernel exploded" in first["detail"]
    assert _work(first) == [{"kind": "note", "value": "before"}]  # what it recorded before failing is kept
    assert second["status"] == "ok" and _work(second) == [{"kind": "note", "value": 1}]
    if isolated:  # its own interpreter says how long it took to start
        (start,) = [r for r in first["records"] if r["kind"] == "startup"]
        assert start["total_s"] >= start["import_s"] >= 0 and start["cuda_init_s"] == 0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["failed", "ok"]


def test_step_past_its_budget_is_killed_recorded_and_the_next_one_runs(tmp_path, fake_steps, monkeypatch):
    monkeypatch.setattr(runner, "GRACE_S", 0.5)
    r = runner.Runner(str(tmp_path), "test", {"device": "cpu"})
    start = time.time()
    slow = r.run(fake_steps("slow", "slow", budget=3.0, isolated=True))
    assert time.time() - start < 30
    assert slow["status"] == "timeout" and "budget" in slow["detail"]
    assert _work(slow) == [{"kind": "note", "value": "partial"}]
    assert r.run(fake_steps("next", "good", isolated=True))["status"] == "ok"


@pytest.mark.parametrize("isolated", [False, True], ids=["in_process", "own_interpreter"])
def test_step_that_cuts_its_cases_at_the_deadline_is_a_timeout(tmp_path, fake_steps, isolated):
    entry = runner.Runner(str(tmp_path), "test", {"device": "cpu"}).run(fake_steps("x", "cut", isolated=isolated))
    assert entry["status"] == "timeout" and entry["detail"] == "2 case(s) not run"


def test_stop_cuts_the_running_step_and_skips_the_next_but_not_the_report(tmp_path, fake_steps, monkeypatch):
    monkeypatch.setattr(runner, "GRACE_S", 0.5)
    r = runner.Runner(str(tmp_path), "test", {"device": "cpu"}, stop_at=time.time() + 3)
    start = time.time()
    assert r.run(fake_steps("slow", "slow", budget=60.0, isolated=True))["status"] == "timeout"
    assert time.time() - start < 30  # cut at the stop, not at its own 60 s
    skipped = r.run(fake_steps("next", "good"))
    assert skipped["status"] == "timeout" and skipped["detail"].startswith("not run") and skipped["records"] == []
    assert r.run(fake_steps("report", "good"))["status"] == "ok"


def test_machine_run_leaves_only_its_files_in_out(tmp_path, fake_steps):
    steps = [fake_steps("a", "good", isolated=True), fake_steps("b", "boom"),
             plan.Step("report", "report", "istd_kernels.tools.gpu_check.report:run", 30, False)]
    out = tmp_path / "out"
    saved = cli.run(plan.PROFILES["smoke"], steps, str(out), machine=True)
    assert sorted(os.listdir(out)) == sorted(plan.MACHINE_FILES)
    with tarfile.open(out / plan.MACHINE_FILES[-1]) as tar:
        assert {"steps/a.jsonl", "steps/a.log", "steps/b.jsonl", "steps/report.jsonl"} <= set(tar.getnames())
    assert not os.path.exists(saved["config"]["steps"])  # the scratch folder is gone
    assert [s["status"] for s in saved["steps"]] == ["ok", "failed", "ok"]


# --- exit status ---------------------------------------------------------------------------

@pytest.mark.parametrize("check, expected", [("check_pass", cli.EXIT_OK), ("check_fail", cli.EXIT_FAILED),
                                             ("boom", cli.EXIT_FAILED), ("good", cli.EXIT_FAILED)])
def test_exit_status_is_whether_every_correctness_check_passed(tmp_path, fake_steps, monkeypatch, capsys, check,
                                                               expected):
    # "good" records no check at all: nothing was checked, which is not a pass.
    steps = [fake_steps("tests", check, correctness=True), fake_steps("perf", "boom"),
             plan.Step("report", "report", "istd_kernels.tools.gpu_check.report:run", 30, False)]
    monkeypatch.setattr(cli.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cli, "_setup", lambda prebuilt: None)
    monkeypatch.setattr(cli.plan_mod, "steps", lambda profile, setup=None: steps)
    assert cli.main(["--quick", "--out", str(tmp_path)]) == expected
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [s["name"] for s in saved["steps"]] == ["tests", "perf", "report"]  # a failed perf step did not stop it
    assert saved["correctness"]["passed"] is (expected == cli.EXIT_OK)
    assert (tmp_path / "report.md").exists()


# --- report --------------------------------------------------------------------------------

def _timing(case, group, impl, ms, baseline="eager", **extra):
    return dict(kind="timing", case=case, group=group, impl=impl, baseline=baseline, median_ms=ms, q1_ms=ms,
                q3_ms=ms, min_ms=ms, samples=5, calls_per_sample=1, images_per_s=8e3 / ms, batch=8, **extra)


def _gpu_report(checks):
    g = "LCRNet forward float32 batch 8 512x512"
    perf = [_timing("lcrnet-forward-float32", g, "eager", 400.0),
            _timing("lcrnet-forward-float32", g, "compiled", 200.0),
            _timing("lcrnet-forward-float32", g, "cuda", 100.0),
            dict(kind="timing", case="lcrnet-forward-float32", group=g, impl="triton",
                 error="RuntimeError: x | y\nmore"),
            _timing("hlk-forward-float32-C16-512", "HLK C16", "unfused", 2.0, "unfused", fused=False, level=[16, 512]),
            _timing("hlk-forward-float32-C16-512", "HLK C16", "cuda", 1.0, "unfused", fused=True, level=[16, 512],
                    gbps=3500.0, fraction_of_peak=0.73),
            _timing("hlk-forward-float32-C64-64", "HLK C64", "cuda", 0.1, "unfused", fused=True, level=[64, 64],
                    gbps=2000.0, fraction_of_peak=0.42, l2_resident=True),
            _timing("pdfa", "labelling + Pd/Fa 8x512x512", "PdFa (cuda)", 0.7, "skimage per-image loop")]
    steps = [dict(name="tests_ops", title="2a", budget_s=100, status="ok", elapsed_s=50, detail="", correctness=True,
                  records=checks),
             dict(name="perf", title="3a", budget_s=100, status="ok", elapsed_s=50, detail="", correctness=False,
                  records=perf)]
    return {"mode": "full", "started": "t0", "config": {"device": "cuda"}, "steps": steps}


def test_targets_are_judged_from_the_measured_figures():
    summary = report.summarize(_gpu_report([{"kind": "check", "name": "c", "passed": True, "detail": ""}]))
    t = {x["target"].split(" (")[0]: x for x in summary["targets"]}
    assert t["LCRNet forward fp32 vs eager PyTorch"]["measured"] == pytest.approx(4.0)
    assert t["LCRNet forward fp32 vs eager PyTorch"]["met"] is True
    assert t["LCRNet forward fp32 vs torch.compile"]["measured"] == pytest.approx(2.0)
    assert t["fused HLKConv fp32 forward C16 512px, fraction of peak bandwidth"]["met"] is True
    assert t["fused HLKConv fp32 forward C64 64px, fraction of peak bandwidth"]["met"] is False
    assert t["labelling + Pd/Fa of the batch"]["met"] is False  # 0.7 ms against < 0.5 ms
    assert summary["correctness"]["passed"] is True


def test_markdown_marks_targets_and_keeps_tables_intact():
    checks = [{"kind": "check", "name": "sanitizer", "passed": None, "detail": "not installed"}]
    text = report.markdown(_gpu_report(checks))
    assert "## Targets" in text and "| met |" in text and "**not met**" in text
    assert "| sanitizer | not run | not installed |" in text
    assert "Correctness: **NOT all passed**" in text  # a check that could not run is no pass
    assert "RuntimeError: x \\| y |" in text and "more" not in text  # an error stays one table cell
    assert "4.00x" in text and "2.00x" in text  # cuda against eager and against compiled
    assert "42 % (L2)" in text
    for line in text.splitlines():
        if line.startswith("|"):
            assert line.endswith("|")


def test_report_lists_the_first_20_failed_tests_with_their_reasons():
    failed = [{"id": f"tests/test_cuda.py::test_x[{k}]", "when": "call", "reason": f"AssertionError: {k} | b"}
              for k in range(30)]
    check = {"kind": "check", "name": "pytest", "passed": False, "detail": "", "counts": {"FAILED": 89},
             "failed": failed}
    text = report.markdown(_gpu_report([check]))
    assert "### Failed tests: 89, the first 20 with their reasons" in text
    assert "| tests/test_cuda.py::test_x[19] | call | AssertionError: 19 \\| b |" in text
    assert "test_x[20]" not in text


def test_failed_correctness_step_fails_the_run_even_without_records():
    rep = _gpu_report([{"kind": "check", "name": "c", "passed": True, "detail": ""}])
    rep["steps"].append(dict(name="sanitizer", title="2c", budget_s=10, status="timeout", elapsed_s=10,
                             detail="killed", correctness=True, records=[]))
    assert report.correctness(rep)["passed"] is False


def test_smoke_targets_are_not_judged():
    rep = _gpu_report([])
    rep["config"]["device"] = "cpu"
    assert all(t["met"] is None for t in report.summarize(rep)["targets"])


def test_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    report.chart(_gpu_report([]), str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- steps' pieces -------------------------------------------------------------------------

def test_time_call_stops_at_the_deadline_after_one_sample():
    out = timing.time_call(lambda: sum(range(100)), "cpu", repeats=50, warmup=1, deadline=time.time() - 1)
    assert out["samples"] == 1 and out["median_ms"] > 0 and out["timer"] == "time.perf_counter"
    out = timing.time_call(lambda: sum(range(100)), "cpu", repeats=5, warmup=1, deadline=time.time() + 60)
    assert out["samples"] == 5 and out["q1_ms"] <= out["median_ms"] <= out["q3_ms"]


def test_run_cases_records_a_failing_case_and_goes_on(tmp_path):
    ctx = StepContext(str(tmp_path / "r.jsonl"), {}, time.time() + 60)

    def fail():
        raise ValueError("bad shape")
    timing.run_cases(ctx, [({"impl": "a"}, fail), ({"impl": "b"}, lambda: {"median_ms": 1.0})])
    rows = runner.read_records(str(tmp_path / "r.jsonl"))
    assert [r["kind"] for r in rows] == ["pending", "timing", "pending", "timing"]  # pending: before measuring
    assert rows[1]["impl"] == "a" and rows[1]["error"] == "ValueError: bad shape"
    assert rows[3] == {"impl": "b", "kind": "timing", "median_ms": 1.0}


def test_case_cut_while_measuring_is_reported_as_not_measured():
    # The compiled LCRNet's step was killed during torch.compile: its pending record is all there is.
    rep = _gpu_report([{"kind": "check", "name": "c", "passed": True, "detail": ""}])
    g = "LCRNet forward float32 batch 8 512x512"
    rep["steps"].append(dict(name="perf_lcrnet_compiled", title="3a'", budget_s=40, status="timeout", elapsed_s=45,
                             detail="killed", correctness=False,
                             records=[{"kind": "startup", "total_s": 9.0, "interpreter_s": 0.1, "import_s": 6.0,
                                       "cuda_init_s": 2.9},
                                      {"kind": "pending", "case": "lcrnet-forward-float32", "group": g,
                                       "impl": "compiled", "baseline": "eager"}]))
    rep["steps"][1]["records"] = [r for r in rep["steps"][1]["records"] if r.get("impl") != "compiled"]
    (row,) = [r for r in report.timings(rep) if r["impl"] == "compiled"]
    assert row["error"] == "not measured: its step was stopped at its 40 s budget while measuring it"
    t = {x["target"].split(" (")[0]: x for x in report.summarize(rep)["targets"]}
    assert t["LCRNet forward fp32 vs torch.compile"]["detail"] == row["error"]
    text = report.markdown(rep)
    assert "| compiled | not measured: its step was stopped" in text
    assert "(start 9.0 s: interpreter 0.1, imports 6.0, CUDA 2.9)" in text


def test_run_cases_past_the_deadline_records_not_run(tmp_path):
    ctx = StepContext(str(tmp_path / "r.jsonl"), {}, time.time() - 1)
    with pytest.raises(StepDeadline, match="2 case"):
        timing.run_cases(ctx, [({"impl": "a"}, lambda: {}), ({"impl": "b"}, lambda: {})])
    assert all(r["error"].startswith("not run") for r in runner.read_records(str(tmp_path / "r.jsonl")))


def test_streamed_outcomes_are_counted_with_their_reasons(tmp_path):
    lines = [dict(id="t.py::test_a[triton-x]", when="call", outcome="passed", duration=2.0),
             dict(id="t.py::test_b", when="call", outcome="failed", duration=0.5, reason="AssertionError: 1 != 2"),
             dict(id="t.py::test_c", when="setup", outcome="skipped", duration=0.0, reason="no GPU"),
             dict(id="t.py::test_a[triton-x]", when="teardown", outcome="failed", duration=0.1, reason="leak")]
    (tmp_path / "s0.jsonl").write_text("\n".join(json.dumps(x) for x in lines[:2]) + "\n")
    (tmp_path / "s1.jsonl").write_text("\n".join(json.dumps(x) for x in lines[2:]) + '\n{"id": "cut by a ki')
    got = correctness.read_stream([str(tmp_path / "s0.jsonl"), str(tmp_path / "s1.jsonl"), str(tmp_path / "none")])
    assert got["counts"] == {"PASSED": 1, "FAILED": 1, "SKIPPED": 1, "ERROR": 1} and got["reported"] == 3
    assert got["failed"] == [{"id": "t.py::test_b", "when": "call", "reason": "AssertionError: 1 != 2"},
                             {"id": "t.py::test_a[triton-x]", "when": "teardown", "reason": "leak"}]
    assert got["slowest"][0] == {"id": "t.py::test_a[triton-x]", "seconds": 2.0}
    assert got["seconds_by_kind"] == {"pinned": [1, 2.1], "other": [1, 0.5]}


def test_shards_keep_autotuned_tests_apart_and_balance_the_rest():
    ids = [f"t.py::test_gpu_weight_grad_deterministic[{b}]" for b in ("cuda", "triton")]
    ids += [f"t.py::test_x[triton-{k}]" for k in range(6)] + [f"t.py::test_y[cuda-{k}]" for k in range(12)]
    shards = correctness.plan_shards(ids, 4)
    tuned = [s for autotune, s in shards if autotune]
    assert tuned == [[ids[1]] + [i for i in tuned[0] if "test_y" in i]]  # autotuned: its own process
    assert all(correctness.kind(i) != "pinned" for i in tuned[0])
    assert sorted(i for _, s in shards for i in s) == sorted(ids)
    for _, s in shards:
        assert s == sorted(s, key=ids.index)  # file order within each process
    loads = [sum(map(correctness.cost_s, s)) for _, s in shards]
    assert max(loads) - min(loads) <= correctness.COST_S["autotuned"]
    assert correctness.estimate_s(shards) == correctness.COST_S["start"] + max(loads)
    assert len(correctness.plan_shards(ids, 1)) == 2  # the two groups never share a process


def test_gpu_tests_fit_their_machine_budgets_on_16_cores():
    """By design, not by luck: the estimated longest process of each test step fits its budget,
    and every test named in AUTOTUNED_TESTS exists on the triton backend."""
    budgets = plan.PROFILES["machine"].budgets
    for step, args in (("tests_ops", ["tests/test_cuda.py"]), ("tests_other", ["tests", "--ignore",
                                                                                "tests/test_cuda.py"])):
        ids, uncollected = correctness._collect(args, 120, correctness.SOURCE_ROOT)
        assert not uncollected
        assert correctness.estimate_s(correctness.plan_shards(ids, 16)) <= budgets[step] - 1, step
        if step == "tests_ops":
            tuned = {correctness._name(i) for i in ids if correctness.kind(i) == "autotuned"}
            assert tuned == set(correctness.AUTOTUNED_TESTS)


FAKE_TESTS = """
import time
import pytest

pytestmark = pytest.mark.cuda

def test_ok():
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n == int(SECOND_VALUE)

def test_slow():
    time.sleep(SLEEP)
"""


@pytest.mark.parametrize("second, sleep", [(2, 60), ("n", 0)], ids=["one_fails_one_hangs", "all_pass"])
def test_sharded_pytest_run_is_counted_and_judged(tmp_path, monkeypatch, second, sleep):
    monkeypatch.setattr(correctness.os, "cpu_count", lambda: 1)  # one process: the failure, then the hang
    fake = FAKE_TESTS.replace("SECOND_VALUE", str(second)).replace("SLEEP", str(sleep))
    (tmp_path / "test_fake_cuda.py").write_text(fake)
    (tmp_path / "steps").mkdir()
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"steps": str(tmp_path / "steps")}, time.time() + 40)
    correctness.run_sharded(ctx, "fake", ["test_fake_cuda.py"], cwd=str(tmp_path))
    (rec,) = runner.read_records(str(tmp_path / "r.jsonl"))
    if sleep:  # test_param[1] fails; test_slow, after it in the same process, is killed at the step's deadline
        assert rec["passed"] is False and "time budget ran out" in rec["detail"]
        assert rec["counts"] == {"PASSED": 2, "FAILED": 1} and rec["detail"].startswith("3/4 tests reported")
        (failed,) = rec["failed"]
        assert failed["id"] == "test_fake_cuda.py::test_param[1]" and failed["reason"].startswith("assert 1 == 2")
        assert "test_param[1]: assert 1 == 2" in rec["detail"]
        logs = "".join(open(log).read() for log in rec["logs"] if log.endswith(".log"))
        assert "short test summary" not in logs and "1 failed" not in logs  # no summary: the reason was streamed
    else:
        assert rec["passed"] is True and rec["detail"].startswith("4/4 tests reported")


def test_pin_env_var_makes_launch_use_the_first_config(monkeypatch):
    from istd_kernels.triton import _launch

    for value, expected in (("0", False), ("1", True), (None, True)):
        if value is None:
            monkeypatch.delenv("ISTD_TRITON_AUTOTUNE", raising=False)
        else:
            monkeypatch.setenv("ISTD_TRITON_AUTOTUNE", value)
        assert _launch._autotune_from_env() is expected
    monkeypatch.setenv("ISTD_TRITON_AUTOTUNE", "no")
    with pytest.raises(ValueError, match="ISTD_TRITON_AUTOTUNE must be 0"):
        _launch._autotune_from_env()

    class Tuned:  # an autotuner that must not be asked when the configs are pinned
        best_config = "tuned"

        def __getitem__(self, grid):
            return lambda *a, **k: pytest.fail("the autotuner ran")
    launched = []
    raw = {(2,): lambda *a, **k: launched.append(k)}
    configs = [types.SimpleNamespace(kwargs={"B": 2}, all_kwargs=lambda: {"B": 2}),
               types.SimpleNamespace(kwargs={"B": 4}, all_kwargs=lambda: {"B": 4})]
    monkeypatch.setattr(_launch, "AUTOTUNE", False)
    assert _launch.launch(raw, Tuned(), configs, lambda meta: (meta["B"],), (), {"C": 1}) is configs[0]
    assert launched == [{"C": 1, "B": 2}]
    monkeypatch.setattr(_launch, "AUTOTUNE", True)
    with pytest.raises(pytest.fail.Exception, match="the autotuner ran"):
        _launch.launch(raw, Tuned(), configs, lambda meta: (meta["B"],), (), {"C": 1})


def test_test_file_that_cannot_be_imported_fails_the_check_and_the_others_run(tmp_path):
    # The lent machine has no hypothesis: the files that import it must not stop the others.
    (tmp_path / "test_fake_cuda.py").write_text(FAKE_TESTS.replace("SECOND_VALUE", "n").replace("SLEEP", "0"))
    (tmp_path / "test_needs_more.py").write_text("import no_such_module_here\n\ndef test_x():\n    pass\n")
    (tmp_path / "steps").mkdir()
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"steps": str(tmp_path / "steps")}, time.time() + 40)
    correctness.run_sharded(ctx, "fake", ["."], cwd=str(tmp_path))
    (rec,) = runner.read_records(str(tmp_path / "r.jsonl"))
    assert rec["passed"] is False and rec["counts"] == {"PASSED": 4}
    assert rec["uncollected"] == ["test_needs_more.py: ModuleNotFoundError: No module named 'no_such_module_here'"]
    assert "could not be imported here" in rec["detail"]


def test_missing_compute_sanitizer_is_recorded_as_not_run(tmp_path, monkeypatch):
    monkeypatch.setattr(correctness, "find_sanitizer", lambda: None)
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"sanitizer_tools": ["memcheck"], "steps": str(tmp_path)},
                      time.time() + 10)
    correctness.run_sanitizer(ctx)
    (rec,) = runner.read_records(str(tmp_path / "r.jsonl"))
    assert rec["passed"] is None and rec["detail"].startswith("not run")


# What compute-sanitizer printed on one runtime of the lent H200 machine; each start is counted.
REFUSING_SANITIZER = """#!/bin/sh
echo started >> "$(dirname "$0")/starts"
echo "========= Error: Device not supported"
exit 1
"""


def test_sanitizer_that_refuses_the_device_is_unavailable_here_and_the_run_goes_on(tmp_path, monkeypatch):
    tool = tmp_path / "compute-sanitizer"
    tool.write_text(REFUSING_SANITIZER)
    tool.chmod(0o755)
    monkeypatch.setattr(correctness, "find_sanitizer", lambda: str(tool))
    tools = ["memcheck", "racecheck", "synccheck"]
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"sanitizer_tools": tools, "steps": str(tmp_path)}, time.time() + 60)
    correctness.run_sanitizer(ctx)
    recs = runner.read_records(str(tmp_path / "r.jsonl"))
    assert [r["name"].split()[-1] for r in recs] == tools
    assert all(r["passed"] is None and r["detail"].startswith(correctness.UNAVAILABLE) for r in recs)
    assert "Device not supported" in recs[0]["detail"]
    assert (tmp_path / "starts").read_text().count("started") == 1  # the others were not started
    summary = report.correctness({"steps": [dict(name="sanitizer", status="ok", correctness=True, records=recs)]})
    assert summary["checks"] and summary["passed"] is False  # nothing passed: unavailable is not a pass


HANGING_SANITIZER = """#!/bin/sh
echo "ok cuda depthwise float32 3x3"
sleep 60 &
echo $! > "$(dirname "$0")/pid"
wait
"""


def test_sanitizer_past_its_budget_says_how_far_it_got_and_stops_the_program_under_it(tmp_path, monkeypatch):
    # The first H200 run's memcheck timed out inside the Triton calls; its program must not
    # run on into the next steps.
    tool = tmp_path / "compute-sanitizer"
    tool.write_text(HANGING_SANITIZER)
    tool.chmod(0o755)
    monkeypatch.setattr(correctness, "find_sanitizer", lambda: str(tool))
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"sanitizer_tools": ["memcheck"], "steps": str(tmp_path)},
                      time.time() + 3)
    correctness.run_sanitizer(ctx)
    (rec,) = runner.read_records(str(tmp_path / "r.jsonl"))
    assert rec["passed"] is False
    assert rec["detail"].endswith("1 call(s) finished, the last: cuda depthwise float32 3x3")
    pid = int((tmp_path / "pid").read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_sanitizer_runs_the_triton_calls_with_pinned_configs():
    assert correctness._env(autotune=False)["ISTD_TRITON_AUTOTUNE"] == "0"
    assert "TRITON_INTERPRET" not in correctness._env()


def test_gpu_cases_come_first(tmp_path):
    """Past its deadline a step records its cases, in order, as not run: the metrics step's
    device cases come before the CPU baselines, and LCRNet's compile has its own step."""
    config = dict(plan.PROFILES["machine"].config(), device="cpu")

    def cases(fn):
        ctx = StepContext(str(tmp_path / f"{fn.__name__}.jsonl"), config, time.time() - 1)
        with pytest.raises(StepDeadline):
            fn(ctx)
        return [r["impl"] for r in runner.read_records(ctx.results_path)]
    from istd_kernels.tools.gpu_check import perf_kernels, perf_models

    assert cases(perf_kernels.metrics) == ["PdFa (cpu)", "measure_components only (cpu)", "ISTDMetrics (cpu)",
                                           "skimage per-image loop", "skimage per-image loop"]
    assert cases(perf_models.lcrnet) == ["eager", "cuda", "cuda-graph", "triton", "eager", "cuda", "triton"]
    assert cases(perf_models.lcrnet_compiled) == ["compiled"]


def test_sanitize_calls_run_on_the_cpu(capsys, one_thread):
    assert sanitize_calls.main(["--device", "cpu", "--backends", "torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == sanitize_calls.DONE.format(len(out) - 1) and len(out) == 5


def test_synthetic_pairs():
    prob, target = synthetic_pairs(3, 40, "cpu")
    assert prob.shape == target.shape == (3, 1, 40, 40)
    assert prob.dtype == torch.float32 and target.dtype == torch.bool
    assert target.flatten(1).any(1).all()  # every image has a target


def test_peak_bandwidth_from_device_then_table(monkeypatch):
    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", memory_clock_rate=2_619_000, memory_bus_width=5120)
    monkeypatch.setattr(env.torch.cuda, "get_device_properties", lambda i: props)
    assert env.peak_bandwidth()[0] == pytest.approx(3.35e12, rel=0.01)
    props.memory_clock_rate = 0
    assert env.peak_bandwidth()[0] == 3.35e12
    props.name = "NVIDIA H200"
    assert env.peak_bandwidth()[0] == 4.8e12
    props.name = "Mystery GPU"
    assert env.peak_bandwidth()[0] is None
    assert env.device_slug("NVIDIA GeForce RTX 3080 Ti") == "nvidia-geforce-rtx-3080-ti"


@no_gpu
def test_environment_record_without_a_gpu(tmp_path):
    ctx = StepContext(str(tmp_path / "r.jsonl"), {}, time.time() + 60)
    env.run(ctx)
    (rec,) = runner.read_records(str(tmp_path / "r.jsonl"))
    assert rec["kind"] == "env" and rec["gpu"] is None and rec["torch"] == torch.__version__
    assert set(rec["extensions"]) == {"_C", "_cuda"} and "triton" in rec["backends"]


# --- --build-only / --prebuilt -------------------------------------------------------------

def _fake_compile(tree, archs, timeout):
    pkg = os.path.join(tree, "istd_kernels")
    assert os.path.exists(os.path.join(tree, "setup.py")) and os.path.isdir(os.path.join(tree, "csrc"))
    assert not any(n.endswith(".so") for n in os.listdir(pkg))  # built from sources only
    for name in ("_C", "_cuda"):
        with open(os.path.join(pkg, name + build.sysconfig.get_config_var("EXT_SUFFIX")), "wb") as f:
            f.write(b"not an ELF file " + archs.encode())
    with open(os.path.join(pkg, "_build_info.json"), "w") as f:
        json.dump({"cuda_arch_list": archs}, f)


def test_build_only_then_prebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    manifest = build.build_only(str(tmp_path / "pre"), compile=_fake_compile)
    assert manifest["archs"] == "8.6;9.0" and manifest["torch"] == torch.__version__
    assert len(manifest["files"]) == 3 and (tmp_path / "pre" / "manifest.json").exists()
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    assert "installed 3 prebuilt files" in build.install_prebuilt(str(tmp_path / "pre"), str(pkg))
    assert sorted(os.listdir(pkg)) == sorted(manifest["files"])


def test_prebuilt_refuses_another_torch_and_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    pre = tmp_path / "pre"
    manifest = build.build_only(str(pre), compile=_fake_compile)
    with open(pre / next(iter(manifest["files"])), "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="checksum"):
        build.install_prebuilt(str(pre), str(tmp_path))
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    with pytest.raises(ValueError, match="built for torch"):
        build.install_prebuilt(str(pre), str(tmp_path))
    with pytest.raises(ValueError, match="no manifest.json"):
        build.install_prebuilt(str(tmp_path / "nothing"), str(tmp_path))


def test_install_builds_for_this_gpu_only_with_every_core(tmp_path, monkeypatch):
    assert {"--no-deps", "--no-build-isolation", "--no-index", "-e"} <= set(build.INSTALL_CMD)  # no network there
    seen = tmp_path / "env.json"
    keys = ("TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "ISTD_FORCE_CUDA")
    monkeypatch.setattr(build, "INSTALL_CMD", ("-c", f"import json, os; json.dump({{k: os.environ[k] for k in "
                                                     f"{keys}}}, open({str(seen)!r}, 'w'))"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(build, "_cuda_status", lambda: (True, "built"))
    ctx = StepContext(str(tmp_path / "r.jsonl"), {"steps": str(tmp_path)}, time.time() + 60)
    build.run_install(ctx)
    assert json.loads(seen.read_text()) == {"TORCH_CUDA_ARCH_LIST": "9.0", "MAX_JOBS": str(os.cpu_count()),
                                            "ISTD_FORCE_CUDA": "1"}
    assert "sm_90" in runner.read_records(str(tmp_path / "r.jsonl"))[0]["how"]
    monkeypatch.setattr(build, "_cuda_status", lambda: (False, "undefined symbol"))
    with pytest.raises(RuntimeError, match="does not load after the install: undefined symbol"):
        build.run_install(ctx)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting to be reaped
    except FileNotFoundError:
        return False


def test_build_past_its_time_stops_every_process_it_started(tmp_path):
    pid_file = tmp_path / "pid"  # a compiler that the build command started
    with pytest.raises(RuntimeError, match="did not finish in its 2 s"):
        build._build(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], str(tmp_path), "9.0", 2.0,
                     str(tmp_path / "log"))
    pid = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid)


def test_build_only_needs_a_cuda_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(RuntimeError, match="has no CUDA"):
        build.build_only(str(tmp_path), compile=_fake_compile)


def test_cuda_home_behind_an_nvcc_wrapper(tmp_path, monkeypatch):
    wrapper = tmp_path / "nvcc"
    wrapper.write_text("#!/bin/sh\nexec /opt/cuda-13.0/bin/nvcc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert build.cuda_home() == "/opt/cuda-13.0"


# --- the CPU smoke, as CI runs it ----------------------------------------------------------

@no_gpu
def test_cpu_smoke_writes_the_whole_report(tmp_path, capsys, one_thread):
    assert cli.main(["--cpu-smoke", "--out", str(tmp_path)]) == cli.EXIT_OK
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["ok"] * 5
    measured = [r for r in report.timings(saved) if "error" not in r]
    assert {r["case"] for r in measured} >= {"lcrnet-forward-float32", "pdfa", "metrics"}
    assert any(r["case"].startswith("hlk-forward") for r in measured)
    text = (tmp_path / "report.md").read_text()
    assert "Not run on a GPU" in text and "## Targets" in text and "### LCRNet forward float32" in text
    assert "## Correctness: no check ran in this mode" in text
    assert (tmp_path / "speedups.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.startswith("no CUDA GPU on this machine")
