"""accelerate() on other people's models: each test model before (eager PyTorch, the baseline)
and after ``istd_kernels.nn.accelerate``, forward (eval, no grad) and SGD train step.

The models are those of tests/published_models.py: a stage around LCRNet's published
HLKConv (k_size 7), a VAN-style LKA block, two MobileNetV2 inverted residuals, an
HCF-Net-style multi-dilation block, and an HLKConv look-alike (only its depthwise convs are
swapped). CPU: batch 1, 16 channels, 64x64, float32, the cpp backend. GPU: batch 8, 64
channels, 256x256, float32, the cuda and triton backends.
"""

import os
import sys

import pytest
import torch
from bench_utils import measure, skip_unless_device
from torch import nn

from istd_kernels.nn import accelerate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from published_models import MODELS  # noqa: E402  (the test models live with the tests)

SETTINGS = {"cpu": (1, 16, 64), "cuda": (8, 64, 256)}  # batch, channels, side
IMPLS = {"cpu": ["eager", "cpp"], "cuda": ["eager", "cuda", "triton"]}
# Each baseline (eager) comes right before the accelerated runs of its case.
CASES = [(dev, name, mode, impl) for dev in ("cpu", "cuda") for name in MODELS
         for mode in ("forward", "train-step") for impl in IMPLS[dev]]


def _id(case):
    return "-".join(case)  # e.g. cpu-lka-forward-cpp


def _step(model, x, mode):
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def run():
        if mode == "forward":
            model.eval()
            with torch.no_grad():
                return model(x)
        model.train()
        opt.zero_grad(set_to_none=True)
        y = model(x)
        loss = nn.functional.mse_loss(y, torch.zeros_like(y))
        loss.backward()
        opt.step()
        return loss
    return run


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_accelerate(benchmark, case):
    device, name, mode, impl = case
    skip_unless_device(device)
    batch, dim, side = SETTINGS[device]
    benchmark.group = f"models: accelerate {name} {device} float32 batch {batch} C{dim} {side}x{side} {mode}"
    torch.manual_seed(0)
    model = MODELS[name](dim).to(device)
    x = torch.randn(batch, dim, side, side, device=device)
    baseline = _step(model, x, mode)
    fn = baseline if impl == "eager" else _step(accelerate(model, backend=impl), x, mode)
    fn()  # first call (Triton autotuning, allocator) outside the timed rounds
    measure(benchmark, fn, device, key=benchmark.group, batch=batch, baseline=None if impl == "eager" else baseline)
    benchmark.extra_info["impl"] = impl
