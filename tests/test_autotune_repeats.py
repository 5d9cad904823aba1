"""The autotuner's timing launches must not change what the tuned call returns.

Under the interpreter the kernels launch their first config directly, so the autotuner is
never built; on a GPU it launches every candidate several times on the caller's tensors
before the real call. A kernel that adds into its output (the depthwise weight gradient's
workspace) then returns the sum of all those launches: seen on an H200 on 2026-12-04.
Here the same autotuner is built with a stand-in for Triton's timer that launches each
candidate twice, as the real one does, and the result is compared with the reference.
"""

import pytest
import torch
import triton
from depthwise_cases import TOL, make_inputs

from istd_kernels.ops import depthwise_conv2d_ref
from istd_kernels.triton import depthwise as dw

pytestmark = pytest.mark.skipif(not dw.INTERPRET,
                                reason="the interpreter's check; on a GPU test_cuda.py runs the real autotuner")


def _launch_twice(kernel_call, quantiles=None, **_):
    kernel_call()
    kernel_call()
    return [1.0, 1.0, 1.0] if quantiles else 1.0


def test_weight_gradient_survives_autotuning(monkeypatch):
    # 16 x 40 output: three tile configs survive the pruning, so the timer really runs.
    x, w, b = make_inputs((2, 3, 16, 40), (3, 3), torch.float32)
    tuned = triton.autotune(dw.BWD_WEIGHT_CONFIGS, do_bench=_launch_twice, **dw.BWD_WEIGHT_TUNING)(
        dw._dw_bwd_weight_kernel)
    monkeypatch.setattr(dw, "_bwd_weight_tuned", tuned)
    gy = torch.randn(2, 3, 16, 40, generator=torch.Generator().manual_seed(1))
    gw, gb = dw.depthwise_bwd_weight(gy, x, (3, 3), (1, 1), (1, 1), (1, 1), need_bias=True)
    assert len(tuned.cache) == 1 and len(dw._prune_wgrad(dw.BWD_WEIGHT_CONFIGS, dict(Ho=16, Wo=40, K1=10))) > 1

    ws, bs = w.double().requires_grad_(), b.double().requires_grad_()
    y = depthwise_conv2d_ref(x.double(), ws, bs, 1, 1, 1)
    ref_w, ref_b = torch.autograd.grad(y, (ws, bs), gy.double())
    scale = max(1.0, ref_w.abs().max().item())
    assert (gw.double() - ref_w).abs().max().item() <= TOL[torch.float32] * scale
    assert (gb.double() - ref_b).abs().max().item() <= TOL[torch.float32] * max(1.0, ref_b.abs().max().item())
