"""LCRNet and RRCA-Net: forward and train-step latency / FPS per backend, eager as baseline.

The published settings on a GPU: LCRNet batch 8 at 512x512 (the paper's 20.3 FPS on an RTX
3080 Ti), RRCA-Net batch 8 at 256x256; float32, plus a CUDA-graph replay of the inference
path, and on the GPU also under bf16 and fp16 autocast. On the CPU a smaller setting (batch 1,
128x128) checks the suite; torch.compile runs on the GPU only (compiling a whole model takes minutes on the 2-core CPU).
"""

import pytest
import torch
from bench_utils import measure, skip_unless_device

from istd_kernels import use_backend
from istd_kernels.losses import DpTkLoss, SoftIoULoss
from models import LCRNet, RRCANet

SETTINGS = {("cpu", "LCRNet"): (1, 128), ("cpu", "RRCANet"): (1, 128),
            ("cuda", "LCRNet"): (8, 512), ("cuda", "RRCANet"): (8, 256)}
IMPLS = {"cpu": ["eager", "cpp"], "cuda": ["eager", "compiled", "triton", "cuda", "cuda-graph"]}
# RRCA-Net is standard convolutions, BatchNorm, pooling and attention 1x1s: no layer of it
# has a kernel backend, so it is measured eager, compiled and graph-replayed only.
KERNEL_BACKENDS = ("cpp", "triton", "cuda")
PRECISIONS = {"cpu": ["float32"], "cuda": ["float32", "bf16-autocast", "fp16-autocast"]}
CASES = [(dev, prec, name, mode, impl) for dev in ("cpu", "cuda") for prec in PRECISIONS[dev]
         for name in ("LCRNet", "RRCANet") for mode in ("forward", "train-step") for impl in IMPLS[dev]
         if not (impl == "cuda-graph" and mode != "forward")
         and not (name == "RRCANet" and impl in KERNEL_BACKENDS)]
AUTOCAST = {"float32": None, "bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}


def _id(case):
    return "-".join(case)  # e.g. cpu-float32-LCRNet-forward-eager


def _model(name, device):
    torch.manual_seed(0)
    return (LCRNet() if name == "LCRNet" else RRCANet()).to(device)


def _graphed(model, x):
    """Replay of the captured forward: removes the launch overhead of the many small kernels."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):  # warm up (autotuning, allocator) outside the capture
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_y = model(static_x)

    def run():
        graph.replay()
        return static_y
    return run


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_model(benchmark, case):
    device, precision, name, mode, impl = case
    skip_unless_device(device)
    batch, side = SETTINGS[(device, name)]
    benchmark.group = f"models: {name} {device} {precision} batch {batch} {side}x{side} {mode}"
    amp = AUTOCAST[precision]
    model = _model(name, device)
    x = torch.rand(batch, 1, side, side, device=device)
    target = (torch.rand(batch, 1, side, side, device=device) > 0.99).float()
    loss_fn = SoftIoULoss() if name == "LCRNet" else DpTkLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    backend = {"eager": "torch", "compiled": "torch", "cuda-graph": "auto"}.get(impl, impl)
    net = torch.compile(model) if impl == "compiled" else model

    def step(module):
        def run():
            if mode == "forward":
                model.eval()
                with torch.no_grad():
                    return module(x, return_logits=True)
            model.train()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(x, return_logits=True), target)
            loss.backward()
            opt.step()
            return loss
        return run

    def in_backend(fn, name_):
        def run():
            with use_backend(name_), torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
                return fn()
        return run

    baseline = in_backend(step(model), "torch")
    if impl == "cuda-graph":
        model.eval()
        with use_backend(backend), torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
            fn = _graphed(lambda t: model(t, return_logits=True), x)
    else:
        fn = in_backend(step(net), backend)
        fn()  # compile / autotune outside the timed rounds
    measure(benchmark, fn, device, key=benchmark.group, batch=batch, baseline=None if impl == "eager" else baseline)
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["fps"] = benchmark.extra_info["images_per_s"]
