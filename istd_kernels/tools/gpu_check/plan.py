"""What a run does: the steps with their time budgets, and the problem sizes of each mode."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..traffic import LCRNET_LEVELS

#: Total device-time budgets (seconds) of the GPU modes; the issue's promise. ``machine``'s
#: includes its install (the build of ``_cuda``): one command of the lent GPU machine may run
#: 10 minutes, and the whole run has to fit in 9 (docs/gpu.md).
BUDGET_S = {"full": 480, "quick": 240, "machine": 540}
#: Extra time allowed for compiling ``_cuda`` on the GPU machine when it is missing and no
#: ``--prebuilt`` directory is given (outside the budgets above; the plan says so).
BUILD_BUDGET_S = 420
#: The machine mode's install step, inside its budget: ``pip install -e .`` of the checkout,
#: which compiles ``_C``, and ``_cuda`` for the one GPU architecture there with all its cores.
#: It took 121 s on the lent H200's 16 cores (2026-12-04, docs/gpu.md); 150 leaves a quarter more.
MACHINE_BUILD_S = 150
#: Seconds of a machine run that no step's budget holds: this interpreter's start, the grace
#: each own-interpreter step gets past its budget (runner.GRACE_S: 6 steps) and packing the logs.
MACHINE_OVERHEAD_S = 40
#: When a machine run stops starting steps, in seconds after it began: what may still follow
#: is the report step (5 s), the grace of an own-interpreter step and packing the logs.
MACHINE_STOP_S = BUDGET_S["machine"] - 20
#: What a machine run leaves in ``--out``: the lent machine brings back 8 files at most, so
#: the steps' records and logs travel packed in one archive (its ``steps/`` folder).
MACHINE_FILES = ("report.json", "report.md", "speedups.png", "steps.tar.gz")
#: Steps that prepare the extensions, outside the budgets above.
SETUP_STEPS = ("build", "prebuilt")


@dataclass(frozen=True)
class Step:
    """One time-boxed step: ``target`` is ``"module:function"``, called with a StepContext."""

    name: str
    title: str
    target: str
    budget_s: float
    isolated: bool  # own interpreter: killable at its budget, survives a CUDA fault elsewhere
    correctness: bool = False  # its checks decide the exit status


@dataclass(frozen=True)
class Profile:
    """Problem sizes and repeats of one mode (``full``, ``quick`` or ``smoke``)."""

    name: str
    device: str
    lcrnet: tuple[int, int]  # (batch, side)
    lcrnet_widths: tuple[tuple[int, ...], tuple[int, ...]]  # LCRNet (channels, depths)
    rrcanet: tuple[int, int]
    levels: tuple[tuple[int, int], ...]  # HLKConv/depthwise (channels, side)
    level_batch: int
    pdfa: tuple[int, int]  # labelling + Pd/Fa: (images, side)
    metrics: tuple[int, int]  # ISTDMetrics: (images, side)
    precisions: tuple[str, ...]
    forward_impls: tuple[str, ...]  # LCRNet forward, in the order they are measured
    train_impls: tuple[str, ...]
    rrcanet_impls: tuple[str, ...]
    kernel_impls: tuple[str, ...]  # fused backends at the levels
    sanitizer_tools: tuple[str, ...]  # compute-sanitizer's tools, in the order they run
    repeats: int
    warmup: int
    budgets: dict[str, float] = field(default_factory=dict)

    def config(self) -> dict:
        return asdict(self)


_GPU_COMMON = dict(device="cuda", lcrnet=(8, 512), lcrnet_widths=((16, 32, 64, 64), (3, 3, 3, 3)),
                   rrcanet=(8, 256), levels=LCRNET_LEVELS, level_batch=8, pdfa=(8, 512), metrics=(64, 512),
                   # What the targets need first: eager, the fused backends, the graph; "compiled" has its own
                   # step (perf_lcrnet_compiled), where a compile past its budget is recorded as not measured.
                   kernel_impls=("cuda", "triton"), forward_impls=("eager", "cuda", "cuda-graph", "triton", "compiled"))
_QUICK = dict(precisions=("float32",), train_impls=("eager", "cuda", "triton"), rrcanet_impls=("eager", "cuda-graph"),
              sanitizer_tools=("memcheck",), repeats=7, warmup=2, **_GPU_COMMON)

PROFILES = {
    "full": Profile("full", precisions=("float32", "bf16-autocast"),
                    train_impls=("eager", "cuda", "triton", "compiled"),
                    rrcanet_impls=("eager", "cuda-graph", "compiled"),
                    sanitizer_tools=("memcheck", "racecheck", "synccheck"), repeats=20, warmup=3,
                    budgets=dict(env=15, tests_ops=100, tests_other=35, sanitizer=75, perf_lcrnet=110,
                                 perf_lcrnet_compiled=40, perf_kernels=45, perf_metrics=25, perf_rrcanet=30, report=5),
                    **_GPU_COMMON),
    "quick": Profile("quick", budgets=dict(env=15, tests_ops=60, tests_other=20, sanitizer=35, perf_lcrnet=40,
                                           perf_lcrnet_compiled=20, perf_kernels=20, perf_metrics=15, perf_rrcanet=10,
                                           report=5), **_QUICK),
    # The lent GPU machine (docs/gpu.md): quick's cases after the install, more time for the tests.
    # tests_ops/tests_other: correctness.estimate_s of their tests on 16 cores (77 s and 38 s), plus a margin.
    "machine": Profile("machine", budgets=dict(install=MACHINE_BUILD_S, env=15, tests_ops=90, tests_other=45,
                                               sanitizer=40, perf_lcrnet=65, perf_lcrnet_compiled=40, perf_kernels=20,
                                               perf_metrics=15, perf_rrcanet=12, report=5), **_QUICK),
    # Tiny CPU sizes that prove the pipeline (timing, records, tables, chart), not any speed.
    "smoke": Profile("smoke", device="cpu", lcrnet=(1, 32), lcrnet_widths=((16, 32), (1, 1)), rrcanet=(1, 32),
                     levels=tuple((c, side // 16) for c, side in LCRNET_LEVELS), level_batch=1,
                     pdfa=(2, 64), metrics=(4, 64), precisions=("float32",), forward_impls=("eager", "cpp"),
                     train_impls=("eager", "cpp"), rrcanet_impls=("eager",), kernel_impls=("cpp",),
                     sanitizer_tools=(), repeats=2, warmup=1,
                     budgets=dict(perf_lcrnet=20, perf_kernels=10, perf_metrics=10, perf_rrcanet=10, report=10)),
}

_PKG = "istd_kernels.tools.gpu_check"
_STEPS = [
    # name, title, target, isolated, correctness
    ("install", "0. pip install -e . (_C; _cuda for this GPU only, all cores)", f"{_PKG}.build:run_install",
     False, True),
    ("env", "1. environment", f"{_PKG}.env:run", True, False),
    ("tests_ops", "2a. cuda tests: every op and backend against its reference", f"{_PKG}.correctness:run_op_tests",
     False, True),
    ("tests_other", "2b. the other cuda tests", f"{_PKG}.correctness:run_other_tests", False, True),
    ("sanitizer", "2c. compute-sanitizer (memcheck; racecheck, synccheck if full)",
     f"{_PKG}.correctness:run_sanitizer", False, True),
    ("perf_lcrnet", "3a. LCRNet forward and train step", f"{_PKG}.perf_models:lcrnet", True, False),
    ("perf_lcrnet_compiled", "3a'. LCRNet torch.compile forward, its own budget", f"{_PKG}.perf_models:lcrnet_compiled",
     True, False),
    ("perf_kernels", "3b. fused HLKConv and depthwise at LCRNet's levels", f"{_PKG}.perf_kernels:levels", True, False),
    ("perf_metrics", "3c. labelling + Pd/Fa, ISTDMetrics", f"{_PKG}.perf_kernels:metrics", True, False),
    ("perf_rrcanet", "3d. RRCA-Net forward", f"{_PKG}.perf_models:rrcanet", True, False),
    ("report", "4. report.json, report.md, speedups.png", f"{_PKG}.report:run", False, False),
]


def steps(profile: Profile, setup: str | None = None) -> list[Step]:
    """The steps of ``profile`` in run order. ``setup``: ``"prebuilt"`` installs ``--prebuilt``
    first, ``"build"`` compiles ``_cuda`` first (it is missing), None neither; the machine
    profile always starts with its own install step instead.

    The CPU smoke runs its steps in this interpreter: starting one per step costs about 10 s
    each on a 2-core machine, which would use up the smoke's minute.
    """
    out = []
    if "install" in profile.budgets:  # the machine profile: its install step builds everything
        setup = None
    if setup == "build":
        out.append(Step("build", "0. build _cuda for this GPU (it is missing)", f"{_PKG}.build:run_build",
                        BUILD_BUDGET_S, False))
    elif setup == "prebuilt":
        out.append(Step("prebuilt", "0. install the --prebuilt extensions", f"{_PKG}.build:run_prebuilt", 60, False))
    for name, title, target, isolated, correctness in _STEPS:
        if name in profile.budgets:
            out.append(Step(name, title, target, profile.budgets[name], isolated and profile.device == "cuda",
                            correctness))
    return out


def describe(profile: Profile, plan: list[Step]) -> str:
    """The plan as text: one line per step with its budget, then the sizes."""
    total = sum(s.budget_s for s in plan if s.name not in SETUP_STEPS)
    machine = profile.name == "machine"
    if machine:
        total += MACHINE_OVERHEAD_S
    lines = [f"gpu_check plan, mode {profile.name} on {profile.device}: {len(plan)} steps, {total:.0f} s"
             + (" including the build" if machine else "")
             + (f" (budget {BUDGET_S[profile.name]} s)" if profile.name in BUDGET_S else "")]
    for s in plan:
        how = "own interpreter" if s.isolated else "in process"
        extra = " (outside the budget)" if s.name in SETUP_STEPS else ""
        lines.append(f"  {s.title:<62} {s.budget_s:>5.0f} s  {how}{extra}")
    if machine:
        lines.append(f"  {'start, grace past each budget, packing the logs':<62} {MACHINE_OVERHEAD_S:>5.0f} s")
    if any(s.name.startswith("tests") for s in plan):
        lines.append("  tests: one pytest process per core; each Triton kernel on its first config "
                     "(ISTD_TRITON_AUTOTUNE=0) but in the autotuner's own tests")
    if machine:
        lines.append(f"  no step starts after {MACHINE_STOP_S} s, the run ends by {BUDGET_S['machine']} s; "
                     f"--out gets {', '.join(MACHINE_FILES)}")
    lines.append(f"  sizes: LCRNet{'' if profile.device == 'cuda' else ' ' + str(profile.lcrnet_widths)} batch "
                 f"{profile.lcrnet[0]} {profile.lcrnet[1]}px, RRCA-Net batch {profile.rrcanet[0]} "
                 f"{profile.rrcanet[1]}px, levels {list(profile.levels)} batch {profile.level_batch}, labelling+Pd/Fa "
                 f"{profile.pdfa[0]}x{profile.pdfa[1]}px, ISTDMetrics {profile.metrics[0]}x{profile.metrics[1]}px")
    lines.append(f"  precisions {', '.join(profile.precisions)}; {profile.repeats} timed samples after "
                 f"{profile.warmup} warm-up calls")
    return "\n".join(lines)
