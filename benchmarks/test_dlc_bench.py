"""DLCAttention and C2FBlock at LCRNet's four levels: reference vs fused vs torch.compile.

Levels (C, side) = (16, 512), (32, 256), (64, 128), (64, 64) at a 512x512 input; batch 8 on
a GPU, batch 1 on the CPU (the CPU is for checking the suite, not for speed claims), and
torch.compile on the CPU only at the deepest level (compiling the others takes minutes).
Each case records the dispatcher-level ops per call (``istd_kernels.tools.launches``: on a
GPU each is at least one kernel launch) and, for DLCAttention, the modeled traffic.
"""

import pytest
import torch
from bench_utils import measure, skip_unless_device

from istd_kernels import use_backend
from istd_kernels.nn import C2FBlock, DLCAttention
from istd_kernels.tools import traffic
from istd_kernels.tools.launches import count_launches

MODULES = {"DLCAttention": DLCAttention, "C2FBlock": C2FBlock}
# "fused" runs the module under the device's fast backends: cpp HLKConv on the CPU (pooling
# and split attention have no cpp kernels and stay in PyTorch), Triton kernels on a GPU.
IMPLS = {"cpu": ["reference", "compiled", "fused-cpp"], "cuda": ["reference", "compiled", "fused-triton", "fused-cuda"]}
BATCH = {"cpu": 1, "cuda": 8}

CASES = [(dev, name, lvl, mode, impl) for dev in ("cpu", "cuda") for name in MODULES
         for lvl in traffic.LCRNET_LEVELS for mode in ("fwd", "fwd+bwd") for impl in IMPLS[dev]
         if not (dev == "cpu" and impl == "compiled" and lvl != traffic.LCRNET_LEVELS[-1])]


def _id(case):
    dev, name, (c, h), mode, impl = case
    return f"{dev}-{name}-C{c}-{h}px-{mode}-{impl}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_dlc(benchmark, case):
    device, name, (c, h), mode, impl = case
    skip_unless_device(device)
    batch = BATCH[device]
    benchmark.group = f"ops: {name} {device} float32 C{c} {h}px batch {batch} {mode}"
    torch.manual_seed(0)
    module = MODULES[name](c).to(device)
    x = torch.randn(batch, c, h, h, device=device, requires_grad=mode != "fwd")
    params = [x, *module.parameters()]
    backend = {"reference": "torch", "compiled": "torch"}.get(impl, impl.split("-")[-1])
    net = torch.compile(module, dynamic=False) if impl == "compiled" else module

    def run():
        with use_backend(backend):
            if mode == "fwd":
                with torch.no_grad():
                    return net(x)
            return torch.autograd.grad(net(x).sum(), params)

    def baseline():
        with use_backend("torch"):
            if mode == "fwd":
                with torch.no_grad():
                    return module(x)
            return torch.autograd.grad(module(x).sum(), params)

    run()  # compile / autotune outside the timed rounds
    measure(benchmark, run, device, key=benchmark.group, batch=batch,
            baseline=None if impl == "reference" else baseline)
    info = benchmark.extra_info
    info["impl"] = impl
    if impl != "compiled":
        info["dispatched_ops"] = sum(count_launches(run).values())
    # The model describes the reference and the all-fused GPU paths; on the CPU only the
    # HLKConvs are fused, so no figure is given there.
    if name == "DLCAttention" and mode == "fwd" and impl in ("reference", "fused-triton", "fused-cuda"):
        info["modeled_bytes"] = traffic.dlc_attention(batch, c, h, h, fused=impl != "reference").total
        info["modeled_GBps"] = round(info["modeled_bytes"] / benchmark.stats.stats.median / 1e9, 1)
