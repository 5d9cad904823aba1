"""GPU tests: the cuda and triton backends on CUDA tensors (skipped without a GPU)."""

import pytest
import torch
from depthwise_cases import CASES, case_id, make_inputs
from test_depthwise import check_matches_conv2d

from istd_kernels.ops import depthwise_conv2d

pytestmark = pytest.mark.cuda
GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("case", CASES + [((8, 16, 128, 128), (3, 3), 1, 2, 2), ((2, 64, 67, 65), (7, 7), 2, 3, 1)],
                         ids=case_id)
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_gpu_matches_conv2d(backend, dtype, case, memory_format):
    check_matches_conv2d(backend, dtype, case, memory_format, device="cuda")


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

import hlk_cases  # noqa: E402
from test_hlk_conv import check_matches_unfused_module  # noqa: E402

from istd_kernels.ops import hlk_conv  # noqa: E402

HLK_GPU_CASES = hlk_cases.CASES + [(8, 16, 128, 128, 7, 16, 1), (2, 64, 67, 65, 7, 64, 1), (2, 32, 40, 36, 23, 32, 4)]


@pytest.mark.parametrize("case", HLK_GPU_CASES, ids=hlk_cases.case_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_gpu_hlk_matches_unfused(backend, dtype, case, memory_format):
    check_matches_unfused_module(backend, dtype, case, memory_format, device="cuda")


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_hlk_weight_grads_deterministic(backend):
    params, dil, groups = hlk_cases.make_params((8, 32, 96, 96, 7, 32, 1), torch.float32)
    leaves = [p.cuda().requires_grad_() for p in params]
    runs = []
    for _ in range(3):
        y = hlk_conv(*leaves, dil, groups, backend=backend)
        runs.append(torch.autograd.grad(y, leaves[1:], torch.ones_like(y)))
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(*runs))


# ---------------------------------------------------------------------------------------
# multiscale_maxpool and split_attention: the cuda and triton backends against the CPU
# references (same rounded inputs).

import test_multiscale_maxpool as mmp_cases  # noqa: E402
import test_split_attention as sa_cases  # noqa: E402

from istd_kernels.ops.split_attention import split_attention  # noqa: E402

# (N, groups, radix, c, H, W)
MMP_GPU_CASES = [(2, 4, 4, 2, 67, 65), (1, 2, 2, 8, 128, 96), (1, 1, 4, 2, 1, 1), (3, 1, 3, 5, 17, 40)]


def _mmp_u(case, dtype, memory_format):
    n, g, r, c, h, w = case
    gen = torch.Generator().manual_seed(11)
    u = torch.randn(n, g * r * c, h, w, generator=gen, dtype=torch.float64).to(dtype)
    return u.contiguous(memory_format=memory_format)


@pytest.mark.parametrize("case", MMP_GPU_CASES, ids=lambda c: "n{}g{}r{}c{}_{}x{}".format(*c))
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("scales", [None, (3, 17)], ids=["default", "s3_17"])
def test_gpu_multiscale_maxpool_matches_reference(backend, dtype, case, memory_format, scales):
    n, g, r, c, h, w = case
    if scales is not None:
        if r != 2:
            pytest.skip("custom scales are tested with radix 2")
    ys, _ = mmp_cases.check_against_ref(_mmp_u(case, dtype, memory_format).cuda(), g, r, backend, scales)
    if backend == "cuda" and memory_format == torch.channels_last and h > 1 and w > 1:
        assert all(y.is_contiguous(memory_format=torch.channels_last) for y in ys)


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("dtype", mmp_cases.DTYPES, ids=str)
def test_gpu_multiscale_maxpool_ties(backend, dtype):
    mmp_cases.check_ties(backend, dtype, "cuda")


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_multiscale_maxpool_nan_and_inf(backend):
    mmp_cases.check_nan_and_inf(backend, "cuda")


# (N, D, H, W, groups, r)
SA_GPU_CASES = sa_cases.CASES + [(2, 32, 67, 65, 4, 4), (1, 16, 33, 40, 2, 2), (4, 8, 128, 96, 1, 3)]


@pytest.mark.parametrize("case", SA_GPU_CASES, ids=sa_cases.case_id)
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_split_attention_matches_reference(backend, dtype, case):
    groups, r = case[4], case[5]
    inputs = sa_cases.make_inputs(case, dtype)
    gz = torch.randn(case[:4], generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    branches, *rest = inputs
    gpu_inputs = ([b.cuda() for b in branches], *(t.cuda() for t in rest))
    z, grads = sa_cases.run(lambda b, *a: split_attention(b, *a, groups, backend=backend), gpu_inputs, gz.cuda())
    ref_z, ref_grads = sa_cases.expected(inputs, groups, gz)
    assert z.dtype == dtype
    sa_cases.assert_close(z.cpu(), ref_z, dtype, "z")
    names = [f"branches[{j}]" for j in range(r)] + list(sa_cases.NAMES)
    for name, g, e in zip(names, grads, ref_grads):
        assert g.dtype == dtype, name
        sa_cases.assert_close(g.cpu(), e, dtype, name)


@pytest.mark.parametrize("scales", [(1, 8, 4), (3, 2, 6)], ids=str)
def test_gpu_split_attention_cuda_custom_scales_and_strides(scales):
    # Non-power-of-two scales (lcm 6) and channels_last / transposed inputs read in place.
    case = (2, 8, 29, 31, 2, 3)
    inputs = sa_cases.make_inputs(case, torch.float32, scales=scales)
    branches, logits, temp, residual, v = inputs
    gpu = ([b.cuda().contiguous(memory_format=torch.channels_last) for b in branches], logits.cuda(),
           temp.reshape(1).cuda(), residual.cuda().contiguous(memory_format=torch.channels_last),
           v.cuda().transpose(2, 3).contiguous().transpose(2, 3))
    gz = torch.randn(case[:4], dtype=torch.float32)
    z, grads = sa_cases.run(lambda b, *a: split_attention(b, *a, 2, scales, backend="cuda"), gpu, gz.cuda())
    assert z.is_contiguous(memory_format=torch.channels_last)
    ref_z, ref_grads = sa_cases.expected((branches, logits, temp.reshape(1), residual, v), 2, gz, scales)
    sa_cases.assert_close(z.cpu(), ref_z, torch.float32, "z")
    for j, (g, e) in enumerate(zip(grads, ref_grads)):
        sa_cases.assert_close(g.cpu(), e, torch.float32, f"grad {j}")


def test_gpu_split_attention_cuda_deterministic_and_matches_cpp():
    case = (2, 32, 67, 65, 4, 4)
    inputs = sa_cases.make_inputs(case, torch.float32, seed=5)
    branches, *rest = inputs
    gz = torch.randn(case[:4], generator=torch.Generator().manual_seed(2))
    gpu_inputs = ([b.cuda() for b in branches], *(t.cuda() for t in rest))
    runs = [sa_cases.run(lambda b, *a: split_attention(b, *a, 4, backend="cuda"), gpu_inputs, gz.cuda())
            for _ in range(3)]
    for other in runs[1:]:
        assert torch.equal(runs[0][0], other[0])
        assert all(torch.equal(a, b) for a, b in zip(runs[0][1], other[1])), "grads differ between runs"
    z_cpp, grads_cpp = sa_cases.run(lambda b, *a: split_attention(b, *a, 4, backend="cpp"), inputs, gz)
    torch.testing.assert_close(runs[0][0].cpu(), z_cpp, rtol=1e-5, atol=1e-5)
    for a, b in zip(runs[0][1], grads_cpp):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4)


def test_gpu_split_attention_cuda_refuses_large_lcm():
    inputs = [t.cuda() if isinstance(t, torch.Tensor) else [b.cuda() for b in t]
              for t in sa_cases.make_inputs((1, 4, 8, 8, 1, 2), torch.float32, scales=(5, 7))]
    with pytest.raises(ValueError, match="least common multiple"):
        split_attention(*inputs, 1, (5, 7), backend="cuda")


# ---------------------------------------------------------------------------------------
# The autotuner itself. The GPU check runs every other test with each Triton kernel on its
# first config (ISTD_TRITON_AUTOTUNE=0, docs/gpu.md); these tests and the two weight-gradient
# determinism tests above run with the autotuner on, and together call every autotuned
# kernel. A key's first call is the one the autotuner times every config on: its timing
# launches must leave no trace in the results (the depthwise weight gradient once added them up).

from istd_kernels.ops import multiscale_maxpool  # noqa: E402
from istd_kernels.triton import _launch  # noqa: E402


def _fp32(t, dtype, device):
    # Inputs drawn in fp32, then cast: the float64 reference sees exactly the fp32 call's values.
    return t.to(torch.float32).to(device, dtype)


def _grad_out(t):
    return _fp32(torch.randn(t.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64), t.dtype,
                 t.device)


def _autotuned_depthwise(backend, dtype, device="cuda"):  # forward, input and weight gradients
    leaves = [_fp32(t, dtype, device).requires_grad_() for t in make_inputs((4, 16, 64, 72), (7, 7), torch.float32,
                                                                            seed=3)]
    y = depthwise_conv2d(*leaves, 1, 3, 1, backend=backend)
    return [y, *torch.autograd.grad(y, leaves, _grad_out(y))]


def _autotuned_hlk(backend, dtype, device="cuda"):  # forward and the grad_x pass
    params, dil, groups = hlk_cases.make_params((2, 16, 64, 72, 7, 16, 1), torch.float32, seed=3)
    leaves = [_fp32(p, dtype, device).requires_grad_() for p in params]
    y = hlk_conv(*leaves, dil, groups, backend=backend)
    return [y, *torch.autograd.grad(y, leaves, _grad_out(y))]


def _autotuned_split_attention(backend, dtype, device="cuda"):  # forward
    case = (2, 32, 64, 72, 4, 2)
    branches, *rest = sa_cases.make_inputs(case, torch.float32, seed=3)
    inputs = ([_fp32(b, dtype, device) for b in branches], *(_fp32(t, dtype, device) for t in rest))
    gz = _grad_out(torch.empty(case[:4], dtype=dtype, device=device))
    z, grads = sa_cases.run(lambda b, *a: split_attention(b, *a, case[4], backend=backend), inputs, gz)
    return [z, *grads]


def _autotuned_multiscale_maxpool(backend, dtype, device="cuda"):  # forward and backward
    u = _mmp_u((2, 2, 2, 8, 64, 72), torch.float32, torch.contiguous_format)
    leaf = _fp32(u, dtype, device).requires_grad_()
    ys = multiscale_maxpool(leaf, 2, 2, backend=backend)
    return [*ys, *torch.autograd.grad(ys, leaf, [_grad_out(y) for y in ys])]


AUTOTUNED_CALLS = {"depthwise": _autotuned_depthwise, "hlk_conv": _autotuned_hlk,
                   "split_attention": _autotuned_split_attention, "multiscale_maxpool": _autotuned_multiscale_maxpool}


def check_autotuned_call(op, device="cuda"):
    """Two Triton calls of ``op`` (the first autotunes) give identical fp32 results, within
    1e-4 (relative to the largest value) of the torch backend in float64."""
    first, again = (AUTOTUNED_CALLS[op]("triton", torch.float32, device) for _ in range(2))
    expected = AUTOTUNED_CALLS[op]("torch", torch.float64, device)
    for k, (a, b, e) in enumerate(zip(first, again, expected, strict=True)):
        assert torch.equal(a, b), f"{op} result {k}: the autotuned first call differs from the second"
        err, scale = (a.double() - e).abs().max().item(), max(1.0, e.abs().max().item())
        assert err <= 1e-4 * scale, f"{op} result {k}: max abs error {err:.3g} against the torch backend"


@pytest.mark.parametrize("op", list(AUTOTUNED_CALLS), ids=lambda op: f"triton-{op}")
def test_gpu_autotuned_kernels_repeat_and_match_torch(op):
    if not _launch.AUTOTUNE:
        pytest.skip("ISTD_TRITON_AUTOTUNE=0 pins every Triton kernel to its first config; this test is the autotuner's")
    check_autotuned_call(op)
