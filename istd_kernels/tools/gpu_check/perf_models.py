"""Step 3a/3d: LCRNet and RRCA-Net latency and images/s per implementation, eager as baseline.

Implementations: ``eager`` (every op's plain-PyTorch backend), ``compiled`` (``torch.compile``
of eager), ``cuda`` / ``triton`` / ``cpp`` (the kernel backends), ``cuda-graph`` (a captured
forward with the fastest backend, replayed). Precisions: ``float32`` and ``bf16-autocast``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from istd_kernels import use_backend
from istd_kernels.losses import SoftIoULoss
from models import LCRNet, RRCANet

from .timing import Case, run_cases, time_call
from .worker import StepContext

AUTOCAST = {"float32": None, "bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}
#: The backend each implementation runs its ops with; compiled and graphed runs build on these.
BACKEND = {"eager": "torch", "compiled": "torch", "cuda-graph": "auto"}
#: LCRNet's published speed (docs/networks.md §3.3: RTX 3080 Ti, batch 8, 512x512), for comparison in the report.
PAPER_FPS = 20.3


@contextlib.contextmanager
def _running(impl: str, device: str, precision: str) -> Iterator[None]:
    amp = AUTOCAST[precision]
    # A graph replays the casts it captured; autocast's weight-cast cache would hand the
    # capture tensors that live outside the graph's memory pool.
    with use_backend(BACKEND.get(impl, impl)), torch.autocast(device, dtype=amp or torch.float32,
                                                               enabled=amp is not None,
                                                               cache_enabled=impl != "cuda-graph"):
        yield


def _graphed(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A CUDA graph of ``forward(x)``: replaying it removes the launch cost of many small kernels."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # autotuning and allocator warm-up happen outside the capture
            forward(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = forward(x)

    def replay():
        graph.replay()
        return y
    return replay


def _forward(model: torch.nn.Module, impl: str, x: torch.Tensor, precision: str) -> Callable[[], object]:
    device = x.device.type
    model.eval()
    net = torch.compile(model) if impl == "compiled" else model

    def forward(inp):
        with torch.no_grad(), _running(impl, device, precision):
            return net(inp, return_logits=True)
    if impl == "cuda-graph":
        return _graphed(forward, x)
    return lambda: forward(x)


def _train_step(model: torch.nn.Module, impl: str, x: torch.Tensor, precision: str, loss_fn) -> Callable[[], object]:
    device = x.device.type
    target = (torch.rand_like(x) > 0.99).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    net = torch.compile(model) if impl == "compiled" else model
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        with _running(impl, device, precision):
            loss = loss_fn(net(x, return_logits=True), target)
        loss.backward()
        opt.step()
        return loss
    return step


def _measure(ctx: StepContext, make: Callable[[], Callable[[], object]], batch: int) -> Callable[[], dict]:
    cfg = ctx.config

    def measure() -> dict:
        device = cfg["device"]
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        fn = make()
        out = time_call(fn, device, cfg["repeats"], cfg["warmup"], ctx.deadline)
        out["images_per_s"] = batch / (out["median_ms"] / 1e3)
        if device == "cuda":
            out["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out
    return measure


def _model_cases(ctx: StepContext, name: str, factory, size, modes) -> Iterator[Case]:
    cfg = ctx.config
    device = cfg["device"]
    batch, side = size
    for precision in cfg["precisions"]:
        for mode, impls, build in modes:
            group = f"{name} {mode} {precision} batch {batch} {side}x{side}"
            for impl in impls:
                meta = {"case": f"{name.lower()}-{mode}-{precision}", "group": group, "impl": impl,
                        "baseline": "eager", "batch": batch, "device": device}

                def make(impl=impl, build=build, precision=precision):
                    torch.manual_seed(0)
                    x = torch.rand(batch, 1, side, side, device=device)
                    return build(factory().to(device), impl, x, precision)
                yield meta, _measure(ctx, make, batch)


def _lcrnet(ctx: StepContext, keep: Callable[[str], bool]) -> None:
    cfg = ctx.config
    train = lambda m, impl, x, p: _train_step(m, impl, x, p, SoftIoULoss())  # noqa: E731
    channels, depths = cfg["lcrnet_widths"]
    factory = lambda: LCRNet(channels=tuple(channels), depths=tuple(depths))  # noqa: E731
    modes = [("forward", [i for i in cfg["forward_impls"] if keep(i)], _forward),
             ("train-step", [i for i in cfg["train_impls"] if keep(i)], train)]
    run_cases(ctx, _model_cases(ctx, "LCRNet", factory, cfg["lcrnet"], modes))


def lcrnet(ctx: StepContext) -> None:
    """LCRNet forward (every implementation but ``compiled``) then the train step, per precision."""
    _lcrnet(ctx, lambda impl: impl != "compiled")


def lcrnet_compiled(ctx: StepContext) -> None:
    """LCRNet with ``torch.compile`` (forward, and the train step where the profile has it): its
    own step, so that a compile longer than its budget costs no other measurement."""
    _lcrnet(ctx, lambda impl: impl == "compiled")


def rrcanet(ctx: StepContext) -> None:
    """RRCA-Net forward: eager, graphed and compiled (it has no kernel-backed layers)."""
    cfg = ctx.config
    run_cases(ctx, _model_cases(ctx, "RRCANet", RRCANet, cfg["rrcanet"], [("forward", cfg["rrcanet_impls"], _forward)]))
