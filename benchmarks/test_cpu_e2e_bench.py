"""CPU end to end: LCRNet and RRCA-Net on four paths, and LCRNet's layers, default vs eager.

Paths: ``eager`` (``use_backend("torch")``: plain PyTorch), ``default`` (no backend named:
``auto``: the cpp kernels, HLKConv by its composed cpp path), ``compiled-eager``
(``torch.compile`` of the eager model) and ``compiled-default`` (``torch.compile`` of the
default model; its kernels are custom ops). Every case times its paths *interleaved* in one
process (round-robin, one call of each path per round) and keeps medians, because on a shared
machine load changes from second to second; the speedups are ratios of those medians. The
pytest-benchmark figure of a case is its default path; the interleaved medians and speedups
are in ``extra_info``, and the module prints one table with a summary row at the end.

By default: batch 1 at 256x256, forward and train step (forward, loss, backward, AdamW
step), and every LCRNet layer type at LCRNet's four levels for a 256x256 input. Batch 8 and
512x512 cases take well over ten minutes on a 2-core CPU (compiling and running the train
step dominates); set ``ISTD_E2E_FULL=1`` to add them. ``ISTD_E2E_COMPILE=0`` leaves out the
two compiled paths: compiling LCRNet did not finish within ten minutes on the loaded 2-core
machine. ``ISTD_E2E_ROUNDS`` sets the rounds per case (default 7).
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import time

import pytest
import torch

from istd_kernels import use_backend
from istd_kernels.losses import DpTkLoss, SoftIoULoss
from istd_kernels.nn.dlc import C2FBlock, DLCAttention
from istd_kernels.nn.hlk import HLKConv
from models import LCRNet, RRCANet

FULL = os.environ.get("ISTD_E2E_FULL") == "1"
SETTINGS = [(1, 256)] + ([(1, 512), (8, 256), (8, 512)] if FULL else [])
MODEL_CASES = [(name, batch, side, mode) for name in ("LCRNet", "RRCANet") for batch, side in SETTINGS
               for mode in ("forward", "train-step")]
COMPILE = os.environ.get("ISTD_E2E_COMPILE", "1") == "1"
PATHS = ("eager", "default") + (("compiled-eager", "compiled-default") if COMPILE else ())
#: LCRNet's levels for a 256x256 input: (channels, side).
LEVELS = ((16, 256), (32, 128), (64, 64), (64, 32))
LAYERS = ("HLKConv", "DLCAttention", "C2FBlock")
LAYER_CASES = [(layer, c, side, mode) for layer in LAYERS for c, side in LEVELS for mode in ("fwd", "fwd+bwd")]
ROUNDS = int(os.environ.get("ISTD_E2E_ROUNDS", "7"))

_rows: list[tuple[str, dict[str, float]]] = []


def _backend_of(path: str) -> str | None:
    return "torch" if path.endswith("eager") else None


def _call_in(path: str, fn):
    """``fn`` run under the path's backend: ``use_backend("torch")`` for eager paths, none otherwise."""
    backend = _backend_of(path)

    def run():
        if backend is None:
            return fn()
        with use_backend(backend):
            return fn()
    return run


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _interleaved(fns: dict, rounds: int = ROUNDS) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of each callable, timed round-robin after one warm-up call each, and the
    median minor page faults of its calls (fresh pages the allocator mapped: glibc returns freed
    heap memory to the system, and refaulting it cost LCRNet's eager paths up to ~100 ms of
    system time per forward; docs/performance.md)."""
    for fn in fns.values():
        fn()
    times, faults = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            before, start = _minor_faults(), time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
            faults[k].append(_minor_faults() - before)
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: statistics.median(v) for k, v in faults.items()})


def _record(benchmark, label: str, measured: tuple[dict[str, float], dict[str, float]], timed) -> None:
    """pytest-benchmark times ``timed`` (the default path); the interleaved medians go to extra_info."""
    medians, faults = measured
    benchmark.pedantic(timed, rounds=1, iterations=1)
    info = benchmark.extra_info
    info["load_average"] = os.getloadavg()[0]
    base = medians["eager"]
    for k, v in medians.items():
        info[f"{k}_median_ms"] = round(v * 1e3, 2)
        info[f"{k}_vs_eager"] = round(base / v, 3)
        info[f"{k}_minor_faults"] = faults[k]
    info["speedup"] = info["default_vs_eager"]
    _rows.append((label, medians))
    # One line per case as it ends (seen with -s), so a stopped run still reports.
    print(f"\n{label}: " + ", ".join(f"{k} {v * 1e3:.1f} ms ({faults[k]:.0f} faults)" for k, v in medians.items()),
          flush=True)


def _model_step(name: str, model, x, mode: str):
    if mode == "forward":
        model.eval()

        def run():
            with torch.no_grad():
                return model(x, return_logits=True)
        return run
    target = (torch.rand(x.shape) > 0.99).float()
    loss_fn = SoftIoULoss() if name == "LCRNet" else DpTkLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x, return_logits=True), target)
        loss.backward()
        opt.step()
    return run


@pytest.mark.parametrize("case", MODEL_CASES, ids=["-".join(map(str, c)) for c in MODEL_CASES])
def test_cpu_model(benchmark, case):
    name, batch, side, mode = case
    benchmark.group = f"cpu e2e: {name} batch {batch} {side}x{side} {mode}"
    torch.manual_seed(0)
    base = LCRNet() if name == "LCRNet" else RRCANet()
    x = torch.rand(batch, 1, side, side)
    fns = {}
    for path in PATHS:
        model = copy.deepcopy(base)
        net = torch.compile(model) if path.startswith("compiled") else model
        step = _model_step(name, net, x, mode)
        fns[path] = _call_in(path, step)
    _record(benchmark, benchmark.group.removeprefix("cpu e2e: "), _interleaved(fns), fns["default"])


def _layer(layer: str, c: int):
    if layer == "HLKConv":  # the largest HLKConv of a DLCAttention: the full-resolution score conv
        return HLKConv(c, 7, out_dim=16, groups=4)
    return DLCAttention(c) if layer == "DLCAttention" else C2FBlock(c)


@pytest.mark.parametrize("case", LAYER_CASES, ids=["-".join(map(str, c)) for c in LAYER_CASES])
def test_cpu_layer(benchmark, case):
    layer, c, side, mode = case
    benchmark.group = f"cpu layer: {layer} C{c} {side}px {mode}"
    torch.manual_seed(0)
    module = _layer(layer, c)
    x = torch.randn(1, c, side, side, requires_grad=mode == "fwd+bwd")

    def fwd():
        with torch.no_grad():
            return module(x)

    def fwd_bwd():
        module(x).sum().backward()

    step = fwd if mode == "fwd" else fwd_bwd
    fns = {path: _call_in(path, step) for path in ("eager", "default")}
    _record(benchmark, benchmark.group.removeprefix("cpu layer: "), _interleaved(fns), fns["default"])


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """After the module: one table of every case (interleaved medians) and a summary row."""
    yield
    if not _rows:
        return
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    load = os.getloadavg()
    tr.section(f"cpu e2e (interleaved medians, ms; load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    tr.write_line("| case | " + " | ".join(PATHS) + " | default vs eager | default vs compiled-eager |")
    tr.write_line("|---|" + "---:|" * (len(PATHS) + 2))
    ratios = []
    for label, med in _rows:
        cells = [f"{med[p] * 1e3:.1f}" if p in med else "-" for p in PATHS]  # layer cases time two paths
        vs_eager = med["eager"] / med["default"]
        ratios.append(vs_eager)
        vs_comp = f"{med['compiled-eager'] / med['default']:.2f}x" if "compiled-eager" in med else "-"
        tr.write_line(f"| {label} | " + " | ".join(cells) + f" | {vs_eager:.2f}x | {vs_comp} |")
    geo = statistics.geometric_mean(ratios)
    tr.write_line(f"| summary: {len(ratios)} cases, geometric mean; slowest {min(ratios):.2f}x | "
                  + " | ".join("" for _ in PATHS) + f" | {geo:.2f}x | |")
