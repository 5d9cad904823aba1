"""GPU tests: the cuda and triton backends on CUDA tensors (skipped without a GPU)."""

import pytest
import torch

from istd_kernels.ops import depthwise_conv2d

from depthwise_cases import CASES, assert_close, case_id, expected_and_grads, make_inputs

pytestmark = pytest.mark.cuda
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("case", CASES + [((8, 16, 128, 128), (3, 3), 1, 2, 2), ((2, 64, 67, 65), (7, 7), 2, 3, 1)],
                         ids=case_id)
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_gpu_matches_conv2d(backend, dtype, case, memory_format):
    shape, kernel, stride, padding, dilation = case
    x, w, b = make_inputs(shape, kernel, dtype, device="cuda")
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    y = depthwise_conv2d(x, w, b, stride, padding, dilation, backend=backend)
    gy = torch.randn(y.shape, device="cuda").to(dtype)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    ref_y, ref_grads = expected_and_grads(x, w, b, gy, stride, padding, dilation)
    assert_close(y, ref_y, dtype, "y")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, dtype, "grad")


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_weight_grad_deterministic(backend):
    x, w, b = make_inputs((8, 32, 96, 96), (7, 7), torch.float32, device="cuda")
    w.requires_grad_()
    runs = []
    for _ in range(3):
        y = depthwise_conv2d(x, w, b, 1, 3, 1, backend=backend)
        runs.append(torch.autograd.grad(y, (w,), torch.ones_like(y))[0])
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def test_auto_prefers_cuda():
    from istd_kernels import backend as backend_mod
    assert backend_mod.select("op", backend_mod.NAMES, torch.device("cuda"), torch.float32) == "cuda"


# --- HLKConv ---------------------------------------------------------------------------

from istd_kernels.ops import hlk_conv  # noqa: E402

import hlk_cases  # noqa: E402

HLK_GPU_CASES = hlk_cases.CASES + [(8, 16, 128, 128, 7, 16, 1), (2, 64, 67, 65, 7, 64, 1), (2, 32, 40, 36, 23, 32, 4)]


@pytest.mark.parametrize("case", HLK_GPU_CASES, ids=hlk_cases.case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_gpu_hlk_matches_unfused(backend, dtype, case, memory_format):
    params, dil, groups = hlk_cases.make_params(case, dtype)
    params = [p.cuda() for p in params]
    params[0] = params[0].contiguous(memory_format=memory_format)
    leaves = [p.requires_grad_() for p in params]
    y = hlk_conv(*leaves, dil, groups, backend=backend)
    gy = torch.randn(y.shape, device="cuda").to(dtype)
    grads = torch.autograd.grad(y, leaves, gy)
    ref_y, ref_grads = hlk_cases.expected([p.detach().cpu() for p in params], dil, groups, gy.cpu())
    hlk_cases.assert_close(y.cpu(), ref_y, dtype, "y")
    for g, r in zip(grads, ref_grads):
        hlk_cases.assert_close(g.cpu(), r, dtype, "grad")


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_hlk_weight_grads_deterministic(backend):
    params, dil, groups = hlk_cases.make_params((8, 32, 96, 96, 7, 32, 1), torch.float32)
    leaves = [p.cuda().requires_grad_() for p in params]
    runs = []
    for _ in range(3):
        y = hlk_conv(*leaves, dil, groups, backend=backend)
        runs.append(torch.autograd.grad(y, leaves[1:], torch.ones_like(y)))
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(*runs))
