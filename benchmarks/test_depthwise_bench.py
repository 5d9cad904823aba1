"""Depthwise convolution at LCRNet's shapes: each backend against eager F.conv2d.

Batch 8 with (C, H) = (16, 512), (32, 256), (64, 128), (64, 64): the four levels of LCRNet at
a 512x512 input; kernels 3x3, 3x3 dilation 2 (the HLKConv-7 pair) and 7x7.
"""

import pytest
import torch
import torch.nn.functional as F
from bench_utils import measure, skip_unless_device

from istd_kernels.ops import depthwise_conv2d

LEVELS = [(16, 512), (32, 256), (64, 128), (64, 64)]
KERNELS = {"3x3": (3, 1), "3x3d2": (3, 2), "7x7": (7, 1)}
IMPLS = {"cpu": ["F.conv2d", "cpp"], "cuda": ["F.conv2d", "cuda", "triton"]}
DTYPES = {"cpu": [torch.float32], "cuda": [torch.float32, torch.float16, torch.bfloat16]}

# Each baseline (F.conv2d) comes right before the backends of its case.
CASES = [(dev, dt, lvl, k, mode, impl)
         for dev in ("cpu", "cuda") for dt in DTYPES[dev] for lvl in LEVELS for k in KERNELS
         for mode in ("fwd", "fwd+bwd") for impl in IMPLS[dev]]


def _id(case):
    dev, dt, (c, h), k, mode, impl = case
    return f"{dev}-{str(dt)[6:]}-C{c}-{h}px-{k}-{mode}-{impl}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_depthwise(benchmark, case):
    device, dtype, (c, h), kname, mode, impl = case
    skip_unless_device(device)
    k, d = KERNELS[kname]
    pad = d * (k // 2)
    benchmark.group = f"ops: depthwise {device} {str(dtype)[6:]} C{c} {h}px {kname} {mode}"
    x = torch.randn(8, c, h, h, device=device, dtype=dtype, requires_grad=mode != "fwd")
    w = torch.randn(c, 1, k, k, device=device, dtype=dtype, requires_grad=mode != "fwd")
    b = torch.randn(c, device=device, dtype=dtype, requires_grad=mode != "fwd")
    gy = torch.randn(8, c, h, h, device=device, dtype=dtype)

    def call(conv):
        def run():
            if mode == "fwd":
                with torch.no_grad():
                    return conv()
            return torch.autograd.grad(conv(), (x, w, b), gy)
        return run

    baseline = call(lambda: F.conv2d(x, w, b, 1, pad, d, groups=c))
    fn = baseline if impl == "F.conv2d" else call(lambda: depthwise_conv2d(x, w, b, 1, pad, d, backend=impl))
    measure(benchmark, fn, device, key=benchmark.group, batch=8, baseline=None if impl == "F.conv2d" else baseline)
    benchmark.extra_info["impl"] = impl
