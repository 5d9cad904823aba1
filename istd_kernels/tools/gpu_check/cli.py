"""``python -m istd_kernels.tools.gpu_check``: see the package docstring and docs/gpu.md.

Exit status: 0 every correctness check passed (``--cpu-smoke``: the report pipeline worked;
``--dry-run``: the plan was printed; ``--build-only``: the files were built); 1 a check failed
or did not finish (smoke: a step or a report file failed; ``--machine``: also the install);
2 there is no CUDA GPU here; 3 ``--build-only`` failed, or ``--out`` is missing where it is
required. A ``--prebuilt`` directory that cannot be used fails its step (recorded) and the
``cuda`` checks after it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import torch

from . import plan as plan_mod
from .build import PREBUILT_ARCHS
from .runner import Runner, now

EXIT_OK, EXIT_FAILED, EXIT_NO_GPU, EXIT_SETUP = 0, 1, 2, 3
NO_GPU = "no CUDA GPU on this machine (torch {} sees none): gpu_check needs one; not run on a GPU"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m istd_kernels.tools.gpu_check",
                                description="Validate and benchmark this GPU machine in one command "
                                            "(see docs/gpu.md).")
    p.add_argument("--out", help="results directory (default: benchmarks/results/<device-name>/)")
    p.add_argument("--quick", action="store_true", help="4-minute run: fewer repeats, fp32 only")
    p.add_argument("--machine", action="store_true",
                   help="the lent GPU machine: pip install -e . (builds _cuda for its GPU), then quick's checks, "
                        f"all in {plan_mod.BUDGET_S['machine']} s; --out gets {len(plan_mod.MACHINE_FILES)} files")
    p.add_argument("--dry-run", action="store_true", help="print the plan with each step's time budget and exit")
    p.add_argument("--cpu-smoke", action="store_true", help="steps 3-4 at tiny sizes on the CPU (needs --out)")
    p.add_argument("--build-only", action="store_true",
                   help=f"build the extensions for sm {PREBUILT_ARCHS} into --out, for --prebuilt on a GPU machine")
    p.add_argument("--prebuilt", metavar="DIR", help="install the extensions of a --build-only DIR before the run")
    return p


def _build_only(out: str | None) -> int:
    from .build import build_only

    if not out:
        print("--build-only needs --out DIR", file=sys.stderr)
        return EXIT_SETUP
    try:
        manifest = build_only(out)
    except (RuntimeError, OSError) as err:
        print(f"gpu_check --build-only: {err}", file=sys.stderr)
        return EXIT_SETUP
    print(f"built {', '.join(manifest['files'])} for sm {PREBUILT_ARCHS} (torch {manifest['torch']}, "
          f"{manifest['total_bytes'] / 2**20:.1f} MiB) in {out}; on the GPU machine: "
          f"python -m istd_kernels.tools.gpu_check --prebuilt {out}")
    return EXIT_OK


def _setup(prebuilt: str | None) -> str | None:
    """The setup step the run needs: install ``--prebuilt``, build a missing ``_cuda``, or none."""
    from .paths import SOURCE_ROOT

    if prebuilt:
        return "prebuilt"
    from istd_kernels.extensions import cuda_extension

    if not cuda_extension().available and os.path.exists(os.path.join(SOURCE_ROOT, "setup.py")):
        return "build"
    return None


def _default_out(slug: str) -> str:
    """``benchmarks/results/<slug>`` of the source checkout, else of the current directory."""
    from .paths import SOURCE_ROOT

    root = SOURCE_ROOT if os.path.isdir(os.path.join(SOURCE_ROOT, "benchmarks")) else os.getcwd()
    return os.path.join(root, "benchmarks", "results", slug)


def run(profile: plan_mod.Profile, steps: list[plan_mod.Step], out: str, prebuilt: str | None = None,
        machine: bool = False) -> dict:
    """Run ``steps`` into ``out``; returns the final report (also in ``out/report.json``).

    ``machine``: the layout of ``--machine`` (:data:`plan.MACHINE_FILES`: the steps' folder is
    kept outside ``out`` and packed into it after every step) and its stop
    (:data:`plan.MACHINE_STOP_S` after this call)."""
    config = dict(profile.config(), prebuilt=prebuilt and os.path.abspath(prebuilt))
    if not machine:
        return _run_steps(Runner(out, profile.name, config), steps)
    steps_dir = tempfile.mkdtemp(prefix="istd-gpu-check-")
    try:
        return _run_steps(Runner(out, profile.name, config, steps_dir, plan_mod.MACHINE_FILES[-1],
                                 time.time() + plan_mod.MACHINE_STOP_S), steps)
    finally:
        shutil.rmtree(steps_dir, ignore_errors=True)


def _run_steps(runner: Runner, steps: list[plan_mod.Step]) -> dict:
    from .report import summarize

    for step in steps:
        if step.name == "report":  # report.md shows the summary of the steps before it
            runner.report.update(summarize(runner.report), finished=now())
            runner.save()
        entry = runner.run(step)
        print(f"  {step.title:<62} {entry['status']:<8} {entry['elapsed_s']:6.1f} s", flush=True)
    runner.report.update(summarize(runner.report), finished=now())
    runner.save()
    return runner.report


def _print_summary(report: dict, out: str) -> None:
    for c in report["correctness"]["checks"]:
        print(f"  check  {c['name']}: {({True: 'passed', False: 'FAILED', None: 'not run'})[c['passed']]}")
    for t in report["targets"]:
        state = {True: "met", False: "NOT met", None: f"not judged: {t['detail'] or 'not measured'}"}[t["met"]]
        print(f"  target {t['target']}: {state}")
    archive = plan_mod.MACHINE_FILES[-1]
    logs = f", logs: {archive}" if os.path.exists(os.path.join(out, archive)) else ""
    print(f"report: {os.path.join(out, 'report.md')} (data: report.json, chart: speedups.png{logs})")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.machine and (args.quick or args.prebuilt or args.build_only):
        print("--machine installs and builds on the GPU machine itself: it takes no --quick, --prebuilt "
              "or --build-only", file=sys.stderr)
        return EXIT_SETUP
    if args.build_only:
        return _build_only(args.out)
    gpu = torch.cuda.is_available()
    mode = "smoke" if args.cpu_smoke else "machine" if args.machine else "quick" if args.quick else "full"
    profile = plan_mod.PROFILES[mode]
    if args.dry_run:
        setup = "prebuilt" if args.prebuilt else ("build" if gpu and not args.machine and _setup(None) else None)
        print(plan_mod.describe(profile, plan_mod.steps(profile, setup)))
        if not gpu and not args.cpu_smoke:
            print(NO_GPU.format(torch.__version__) + " (the plan above would stop at once)")
        return EXIT_OK
    if args.cpu_smoke:
        return _smoke(profile, args.out, gpu, args.machine)
    if not gpu:
        print(NO_GPU.format(torch.__version__))
        return EXIT_NO_GPU
    if args.machine and not args.out:
        print("--machine needs --out DIR", file=sys.stderr)
        return EXIT_SETUP
    from .env import device_slug

    out = args.out or _default_out(device_slug(torch.cuda.get_device_name(0)))
    steps = plan_mod.steps(profile, None if args.machine else _setup(args.prebuilt))
    print(plan_mod.describe(profile, steps), flush=True)
    report = run(profile, steps, out, args.prebuilt, args.machine)
    _print_summary(report, out)
    return EXIT_OK if report["correctness"]["passed"] else EXIT_FAILED


def _smoke(profile: plan_mod.Profile, out: str | None, gpu: bool, machine: bool) -> int:
    if not out:
        print("--cpu-smoke needs --out DIR", file=sys.stderr)
        return EXIT_SETUP
    if not gpu:
        print(NO_GPU.format(torch.__version__) + "; running the CPU smoke of steps 3-4 at tiny sizes")
    # It measures no speed: one thread keeps OpenMP workers from spinning against the other
    # jobs of a loaded CI machine (two threads there took 20x longer than one).
    torch.set_num_threads(1)
    report = run(profile, plan_mod.steps(profile), out, machine=machine)
    _print_summary(report, out)
    broken = [s["name"] for s in report["steps"] if s["status"] != "ok"]
    files = plan_mod.MACHINE_FILES if machine else plan_mod.MACHINE_FILES[:3]
    broken += [f for f in files if not os.path.exists(os.path.join(out, f))]
    if broken:
        print(f"CPU smoke: not every step worked: {', '.join(broken)}")
    return EXIT_FAILED if broken else EXIT_OK
