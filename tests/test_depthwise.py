"""depthwise_conv2d on every CPU backend against F.conv2d, forward and backward.

Triton runs under TRITON_INTERPRET=1 here (see conftest.py); the interpreter cannot do
bfloat16 arithmetic, so bf16 is checked on cpp and torch only.
"""

import pytest
import torch
import torch.nn.functional as F
from depthwise_cases import CASES, assert_close, case_id, expected_and_grads, make_inputs

from istd_kernels import backend as backend_mod
from istd_kernels.ops import depthwise_conv2d, depthwise_conv2d_ref

CPU_BACKENDS = ["torch", "cpp", "triton"]
DTYPES = {
    "torch": [torch.float32, torch.float16, torch.bfloat16],
    "cpp": [torch.float64, torch.float32, torch.float16, torch.bfloat16],
    "triton": [torch.float64, torch.float32, torch.float16],
}
LARGEST = CASES[8]  # 31x31: ~15 s per dtype in the Triton interpreter, so fp32 only there
PARAMS = [(b, dt, case) for b in CPU_BACKENDS for dt in DTYPES[b] for case in CASES
          if not (b == "triton" and case is LARGEST and dt != torch.float32)]


def run(backend, case, dtype, memory_format=torch.contiguous_format, seed=0, device="cpu"):
    shape, kernel, stride, padding, dilation = case
    x, w, b = make_inputs(shape, kernel, dtype, device, seed)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    y = depthwise_conv2d(x, w, b, stride, padding, dilation, backend=backend)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1)).to(device, dtype)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    ref_y, ref_grads = expected_and_grads(x, w, b, gy, stride, padding, dilation)
    return y, grads, ref_y, ref_grads


def check_matches_conv2d(backend, dtype, case, memory_format=torch.contiguous_format, device="cpu"):
    """Output and every gradient of ``backend`` against F.conv2d in float64; test_cuda.py runs
    this same check on the GPU backends."""
    y, grads, ref_y, ref_grads = run(backend, case, dtype, memory_format, device=device)
    assert y.dtype == dtype
    assert_close(y, ref_y, dtype, "y")
    for name, g, r in zip(("grad_x", "grad_weight", "grad_bias"), grads, ref_grads):
        assert g.dtype == dtype, name
        assert_close(g, r, dtype, name)


@pytest.mark.parametrize("backend,dtype,case", PARAMS, ids=[f"{b}-{str(d)[6:]}-{case_id(c)}" for b, d, c in PARAMS])
def test_matches_conv2d(backend, dtype, case):
    check_matches_conv2d(backend, dtype, case)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_channels_last(backend):
    case = ((2, 5, 9, 11), (3, 3), 1, 2, 2)
    y, grads, ref_y, ref_grads = run(backend, case, torch.float32, torch.channels_last)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, ref_y, torch.float32, "y")
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, torch.float32, "grad")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_strided_views_and_expanded_grad(backend):
    base, w, b = make_inputs((2, 3, 14, 12), (3, 5), torch.float32)
    x = base.transpose(2, 3)[:, :, 1:, ::1]  # non-contiguous, odd strides
    assert not x.is_contiguous()
    x.requires_grad_()
    w.requires_grad_()
    b.requires_grad_()
    y = depthwise_conv2d(x, w, b, 1, (1, 2), 1, backend=backend)
    y.sum().backward()  # grad_y arrives as an expanded (stride 0) tensor
    ref_y, ref_grads = expected_and_grads(x, w, b, torch.ones(y.shape), 1, (1, 2), 1)
    assert_close(y, ref_y, torch.float32, "y")
    for g, r in zip((x.grad, w.grad, b.grad), ref_grads):
        assert_close(g, r, torch.float32, "grad")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_batch(backend):
    x = torch.randn(0, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y = depthwise_conv2d(x, w, b, padding=1, backend=backend)
    assert y.shape == (0, 3, 8, 8)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_bias_and_partial_grads(backend):
    x, w, _ = make_inputs((1, 3, 9, 10), (3, 3), torch.float32)
    w.requires_grad_()
    y = depthwise_conv2d(x, w, None, 1, 1, 2, backend=backend)  # x needs no grad
    (gw,) = torch.autograd.grad(y, (w,), torch.ones_like(y))
    ref = F.conv2d(x, w, None, 1, 1, 2, groups=3)
    (ref_gw,) = torch.autograd.grad(ref, (w,), torch.ones_like(ref))
    assert_close(y, ref, torch.float32, "y")
    assert_close(gw, ref_gw, torch.float32, "grad_weight")


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_weight_grad_is_deterministic(backend):
    # Two tile rows and two images: partial sums from several programs, at the interpreter's
    # cost of 4 planes (12 planes took 53 s of CI).
    x, w, b = make_inputs((2, 2, 21, 19), (7, 7), torch.float32)
    w.requires_grad_()
    b.requires_grad_()
    runs = []
    for _ in range(2):
        y = depthwise_conv2d(x, w, b, 1, 3, 1, backend=backend)
        runs.append(torch.autograd.grad(y, (w, b), torch.ones_like(y)))
    assert all(torch.equal(a, c) for a, c in zip(*runs))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding(padding):
    x, w, b = make_inputs((1, 2, 9, 8), (3, 3), torch.float32)
    got = depthwise_conv2d(x, w, b, 1, padding, 2, backend="cpp")
    assert torch.allclose(got, F.conv2d(x, w, b, 1, padding, 2, groups=2), atol=1e-5)


def test_reference_matches_conv2d():
    for case in CASES:
        shape, kernel, stride, padding, dilation = case
        x, w, b = make_inputs(shape, kernel, torch.float64)
        got = depthwise_conv2d_ref(x, w, b, stride, padding, dilation)
        want = F.conv2d(x, w, b, stride, padding, dilation, groups=shape[1])
        assert_close(got, want, torch.float64, case_id(case))


@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[7]], ids=case_id)
def test_reference_gradcheck(case):
    shape, kernel, stride, padding, dilation = case
    x, w, b = (t.requires_grad_() for t in make_inputs(shape, kernel, torch.float64))
    assert torch.autograd.gradcheck(
        lambda *a: depthwise_conv2d_ref(*a, stride, padding, dilation), (x, w, b))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_kernel_gradcheck(backend):
    # Small: gradcheck runs the op once per input element, slow in the Triton interpreter.
    shape, kernel, stride, padding, dilation = (1, 2, 6, 5), (3, 2), 2, (1, 2), (1, 2)
    x, w, b = (t.requires_grad_() for t in make_inputs(shape, kernel, torch.float64))
    assert torch.autograd.gradcheck(
        lambda *a: depthwise_conv2d(*a, stride, padding, dilation, backend=backend), (x, w, b))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(backend):
    x, w, b = (t.requires_grad_() for t in make_inputs((2, 3, 7, 9), (3, 3), torch.float32))
    torch.library.opcheck(torch.ops.istd.depthwise_conv2d.default, (x, w, b, [1, 2], [1, 1], [2, 1], backend))
    torch.library.opcheck(torch.ops.istd.depthwise_conv2d.default, (x, w, None, [2, 2], [0, 1], [1, 1], backend))
    gy = torch.randn(2, 3, 7, 9)
    torch.library.opcheck(torch.ops.istd.depthwise_conv2d_backward.default,
                          (gy, x.detach(), w.detach(), [1, 1], [1, 1], [1, 1], backend, [True, True, True]))


def test_torch_compile_fullgraph():
    x, w, b = make_inputs((2, 4, 12, 11), (3, 3), torch.float32)
    w.requires_grad_()

    def block(x, w, b):
        return torch.relu(depthwise_conv2d(x, w, b, 1, 2, 2, backend="cpp")) * 2

    compiled = torch.compile(block, fullgraph=True)
    got = compiled(x, w, b)
    want = block(x, w, b)
    assert torch.allclose(got, want, atol=1e-6)
    (g_got,) = torch.autograd.grad(got.sum(), (w,))
    (g_want,) = torch.autograd.grad(want.sum(), (w,))
    assert torch.allclose(g_got, g_want, atol=1e-5)


def test_auto_uses_cpp_on_cpu():
    assert backend_mod.select("op", ("torch", "cpp"), torch.device("cpu"), torch.float32) == "cpp"
    assert backend_mod.select("op", ("torch", "triton"), torch.device("cpu"), torch.float32) == "torch"
