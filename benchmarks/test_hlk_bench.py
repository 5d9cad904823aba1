"""Fused HLKConv at LCRNet's shapes against the unfused nn.Conv2d module and its torch.compile.

Batch 8, k_size 7, (C, H) = (16, 512), (32, 256), (64, 128), (64, 64): the four levels of
LCRNet at a 512x512 input. Each case records the modeled memory traffic
(:mod:`istd_kernels.tools.traffic`) and the bandwidth it implies at the measured time; on a
GPU also the fraction of the device's peak bandwidth.
"""

import pytest
import torch
from bench_utils import measure, skip_unless_device
from torch import nn

from istd_kernels.nn import HLKConv
from istd_kernels.ops.hlk_conv import decompose
from istd_kernels.tools import traffic
from istd_kernels.tools.timing import peak_bandwidth

K_SIZE = 7
IMPLS = {"cpu": ["unfused", "compiled", "cpp"], "cuda": ["unfused", "compiled", "cuda", "triton"]}
DTYPES = {"cpu": [torch.float32], "cuda": [torch.float32, torch.float16]}

CASES = [(dev, dt, lvl, mode, impl) for dev in ("cpu", "cuda") for dt in DTYPES[dev]
         for lvl in traffic.LCRNET_LEVELS for mode in ("fwd", "fwd+bwd") for impl in IMPLS[dev]]


class Unfused(nn.Module):
    """The published HLKConv: three nn.Conv2d and a concat."""

    def __init__(self, dim):
        super().__init__()
        k1, k2, dil = decompose(K_SIZE)
        self.conv0 = nn.Conv2d(dim, dim, k1, padding=k1 // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, k2, padding=dil * (k2 // 2), dilation=dil, groups=dim)
        self.conv1 = nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x):
        a = self.conv0(x)
        return self.conv1(torch.cat([a, self.conv_spatial(a)], 1))


def _peak(device):
    if device != "cuda":
        return None
    return peak_bandwidth(torch.cuda.current_device())[0]


def _id(case):
    dev, dt, (c, h), mode, impl = case
    return f"{dev}-{str(dt)[6:]}-C{c}-{h}px-{mode}-{impl}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_hlk_conv(benchmark, case):
    device, dtype, (c, h), mode, impl = case
    skip_unless_device(device)
    benchmark.group = f"ops: hlk_conv k{K_SIZE} {device} {str(dtype)[6:]} C{c} {h}px {mode}"
    torch.manual_seed(0)
    ref = Unfused(c).to(device, dtype)
    x = torch.randn(8, c, h, h, device=device, dtype=dtype, requires_grad=mode != "fwd")
    gy = torch.randn(8, c, h, h, device=device, dtype=dtype)

    def call(module):
        params = [x, *module.parameters()]

        def run():
            if mode == "fwd":
                with torch.no_grad():
                    return module(x)
            return torch.autograd.grad(module(x), params, gy)
        return run

    baseline = call(ref)
    if impl == "unfused":
        fn = baseline
    elif impl == "compiled":
        fn = call(torch.compile(ref, dynamic=False))
        fn()  # compile outside the timed rounds
    else:
        layer = HLKConv(c, K_SIZE, backend=impl).to(device, dtype)
        layer.load_state_dict(ref.state_dict())
        fn = call(layer)
    measure(benchmark, fn, device, key=benchmark.group, batch=8, baseline=None if impl == "unfused" else baseline)
    fused = impl in ("cpp", "cuda", "triton")
    dbytes = torch.finfo(dtype).bits // 8
    directions = ["forward"] if mode == "fwd" else ["forward", "backward"]
    modeled = sum(traffic.hlk_conv(8, c, h, h, K_SIZE, dtype_bytes=dbytes, fused=fused, direction=d).total
                  for d in directions)
    info = benchmark.extra_info
    info["impl"] = impl
    info["modeled_bytes"] = modeled
    info["modeled_GBps"] = round(modeled / benchmark.stats.stats.median / 1e9, 1)
    peak = _peak(device)
    if peak:
        info["fraction_of_peak_bw"] = round(modeled / benchmark.stats.stats.median / peak, 3)
