"""istd.scaled_residual (ops/residual.py): x + gamma[c] * y, the cpp kernel (NCHW or
channels_last y) against torch.addcmul, forward and backward, and auto's routing rule."""

import pytest
import torch

from istd_kernels.ops import _cpu, _dispatch
from istd_kernels.ops.residual import OP, scaled_residual

CL = torch.channels_last


def _inputs(shape, dtype=torch.float32, y_cl=True):
    torch.manual_seed(0)
    x, y = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    return x, y.contiguous(memory_format=CL) if y_cl else y, torch.randn(shape[1], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 16, 37, 29), (2, 3, 5, 7), (1, 8, 1, 9), (3, 64, 8, 8), (0, 4, 3, 3),
                                   (1, 5, 300, 3)])
@pytest.mark.parametrize("y_cl", [False, True])
def test_cpp_matches_addcmul(dtype, shape, y_cl):
    x, y, g = _inputs(shape, dtype, y_cl)
    with torch.no_grad():
        got = scaled_residual(x, y, g, backend="cpp")
    want = torch.addcmul(x, y, g.view(1, -1, 1, 1))
    assert got.is_contiguous() and got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("dtypes", [(torch.bfloat16,) * 3, (torch.float16,) * 3,
                                    (torch.bfloat16, torch.bfloat16, torch.float32)], ids=str)
def test_cpp_half_and_mixed_dtypes_like_addcmul(dtypes):
    # Under CPU autocast the activations are bf16 and the LayerScale fp32; the result dtype and
    # values follow addcmul's promotion (the kernel computes in float32 and rounds once).
    x, y, g = _inputs((1, 8, 6, 9))
    x, y, g = (t.to(dt) for t, dt in zip((x, y, g), dtypes))
    for t in (x, y, g):
        t.requires_grad_()
    got = scaled_residual(x, y, g, backend="cpp")
    want = torch.addcmul(x, y, g.view(1, -1, 1, 1))
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)
    grad = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (x, y, g), grad), torch.autograd.grad(want, (x, y, g), grad)):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_cpp_backward_and_gradcheck():
    x, y, g = _inputs((2, 8, 6, 5), torch.float64)
    args = (x.requires_grad_(), y.requires_grad_(), g.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, y, g: scaled_residual(x, y, g, backend="cpp"), args)
    grad = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    got = torch.autograd.grad(scaled_residual(*args, backend="cpp"), args, grad)
    want = torch.autograd.grad(scaled_residual(*args, backend="torch"), args, grad)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("case", ["x channels_last", "y strided"])
def test_cpp_refuses_what_it_cannot_take(case):
    x, y, g = _inputs((1, 4, 5, 5))
    if case == "x channels_last":
        x = x.contiguous(memory_format=CL)
    else:
        y = torch.randn(1, 4, 5, 10)[..., ::2]
    with pytest.raises(ValueError, match="cpp residual takes"):
        scaled_residual(x, y, g, backend="cpp")
    # auto runs every call the kernel cannot take on torch
    torch.testing.assert_close(scaled_residual(x, y, g), torch.addcmul(x, y, g.view(1, -1, 1, 1)))


def test_gamma_of_another_shape_raises():
    x, y, _ = _inputs((1, 4, 5, 5))
    for g in (torch.randn(1, 4), torch.randn(3)):
        with pytest.raises(ValueError, match=r"gamma must have shape \(4,\)"):
            scaled_residual(x, y, g)


def test_auto_rule_on_cpu():
    def path(**kw):
        return _dispatch.choose_path(OP, torch.device("cpu"), torch.float32, None, transformed=False,
                                     kernel_layout=True, **kw).path

    assert path(plain=True, channels_last_y=True) == "cpp"
    assert path(plain=True, channels_last_y=False) == "torch"
    assert path(plain=False, channels_last_y=True) == "torch"
    assert "auto prefers torch" in _dispatch.explain(OP, plain=False, channels_last_y=True, kernel_layout=True)


def test_default_eager_call_runs_the_kernel(monkeypatch):
    calls = []
    record = _dispatch.implementations(OP)["cpp"]
    monkeypatch.setitem(_dispatch._REGISTRY[OP], "cpp",
                        record._replace(forward=lambda *a: calls.append(1) or record.forward(*a)))
    x, y, g = _inputs((1, 8, 4, 4))
    with torch.no_grad():
        scaled_residual(x, y, g)
    assert calls == [1]


def test_transforms_and_missing_avx2_refuse_the_cpp_path(monkeypatch):
    x, y, g = _inputs((2, 4, 3, 3), y_cl=False)
    with pytest.raises(ValueError, match="torch.func"):
        torch.func.vmap(lambda t: scaled_residual(t, t, g, backend="cpp"))(x.unsqueeze(0).expand(2, *x.shape))
    monkeypatch.setattr(_cpu, "_ANSWER", [False])
    with pytest.raises(ValueError, match="AVX2"):
        scaled_residual(x, y, g, backend="cpp")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("into,y_cl", [("x", False), ("x", True), ("y", False)])
def test_into_writes_the_result_into_the_operand(backend, into, y_cl):
    x, y, g = _inputs((1, 8, 6, 7), y_cl=y_cl)
    want = torch.addcmul(x, y, g.view(1, -1, 1, 1))
    target = x if into == "x" else y
    with torch.no_grad():
        got = scaled_residual(x, y, g, backend=backend, into=into)
    assert got.data_ptr() == target.data_ptr() and got.is_contiguous()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_into_is_ignored_where_it_cannot_hold(backend):
    # A channels_last y cannot hold the NCHW result, and under autograd nothing is overwritten.
    x, y, g = _inputs((1, 8, 6, 7), y_cl=True)
    y0 = y.clone()
    with torch.no_grad():
        got = scaled_residual(x, y, g, backend=backend, into="y")
    assert got.data_ptr() not in (x.data_ptr(), y.data_ptr()) and torch.equal(y, y0)
    x.requires_grad_()
    x0 = x.detach().clone()
    got = scaled_residual(x, y, g, backend=backend, into="x")
    assert got.data_ptr() != x.data_ptr() and torch.equal(x.detach(), x0)
    with pytest.raises(ValueError, match="into must be"):
        scaled_residual(x, y, g, into="z")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_into_never_changes_the_result_dtype(backend):
    # bf16 activations with a float32 scale (CPU autocast) give a float32 result: a bf16
    # operand cannot hold it, so it is not reused.
    x, y, g = _inputs((1, 8, 6, 7), y_cl=False)
    x, y = x.bfloat16(), y.bfloat16()
    y0 = y.clone()
    with torch.no_grad():
        got = scaled_residual(x, y, g, backend=backend, into="y")
    assert got.dtype == torch.float32 and torch.equal(y, y0)


def test_c2f_block_never_overwrites_its_input():
    from istd_kernels.nn.dlc import C2FBlock

    block = C2FBlock(16).eval()
    x = torch.randn(1, 16, 12, 10)
    x0 = x.clone()
    with torch.no_grad():
        block(x)
    assert torch.equal(x, x0)
