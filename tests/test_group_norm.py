"""istd.group_norm_silu (ops/group_norm.py): the cpp kernel against F.group_norm (+ SiLU),
forward and backward, and auto's routing rule on the CPU."""

import pytest
import torch
import torch.nn.functional as F

from istd_kernels import use_backend
from istd_kernels.ops import _dispatch
from istd_kernels.ops.group_norm import CPP_MIN_ELEMENTS, OP, group_norm_silu
from models import LCRNet

# Absolute slack over ATen's own error, per dtype (the kernel rounds once from float32/float64).
SLACK = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def _ref64(x, groups, w, b, eps, silu):
    y = F.group_norm(x.double(), groups, None if w is None else w.double(), None if b is None else b.double(), eps)
    return F.silu(y) if silu else y


def _assert_as_accurate_as_aten(got, x, groups, w, b, eps, silu):
    """The kernel's error against a float64 reference is at most twice ATen's in x's dtype, plus slack."""
    ref = _ref64(x, groups, w, b, eps, silu)
    aten = group_norm_silu(x, groups, w, b, eps, silu, backend="torch")
    aten_err = (aten.double() - ref).abs().max().item() if ref.numel() else 0.0
    err = (got.double() - ref).abs().max().item() if ref.numel() else 0.0
    assert err <= 2 * aten_err + SLACK[x.dtype], (err, aten_err)


def _inputs(shape, dtype, affine=True, scale=3.0, shift=5.0):
    torch.manual_seed(0)
    x = (torch.randn(shape, dtype=torch.float64) * scale + shift).to(dtype)
    c = shape[1]
    w = torch.randn(c, dtype=torch.float64).to(dtype) if affine else None
    b = torch.randn(c, dtype=torch.float64).to(dtype) if affine else None
    return x, w, b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,groups", [((2, 6, 5, 7), 3), ((1, 16, 33, 40), 1), ((3, 8, 1, 1), 8),
                                          ((0, 4, 3, 3), 2), ((2, 4, 9), 2), ((1, 4, 300, 301), 1)])
@pytest.mark.parametrize("silu", [False, True])
def test_cpp_forward_matches_reference(dtype, shape, groups, silu):
    x, w, b = _inputs(shape, dtype)
    with torch.no_grad():
        got = group_norm_silu(x, groups, w, b, 1e-5, silu, backend="cpp")
        _assert_as_accurate_as_aten(got, x, groups, w, b, 1e-5, silu)
    assert got.dtype == dtype and got.shape == x.shape


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_cpp_backward_matches_torch(silu, affine):
    x, w, b = _inputs((2, 8, 6, 5), torch.float32, affine)
    params = [x.requires_grad_()] + ([w.requires_grad_(), b.requires_grad_()] if affine else [])
    grad = torch.randn_like(x)
    got = group_norm_silu(x, 4, w, b, 1e-5, silu, backend="cpp")
    want = group_norm_silu(x, 4, w, b, 1e-5, silu, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(got, params, grad), torch.autograd.grad(want, params, grad),
                               rtol=1e-4, atol=1e-5)


def test_cpp_gradcheck_float64():
    x, w, b = _inputs((2, 4, 3, 3), torch.float64)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: group_norm_silu(x, 2, w, b, 1e-5, True, backend="cpp"), args)


def test_large_mean_keeps_precision():
    # One-pass moments around a shift: a mean far from the spread must not cost the variance.
    x, w, b = _inputs((1, 4, 64, 64), torch.float32, scale=1e-2, shift=1e3)
    with torch.no_grad():
        got = group_norm_silu(x, 1, w, b, 1e-5, False, backend="cpp")
        _assert_as_accurate_as_aten(got, x, 1, w, b, 1e-5, False)
    assert got.std() > 0.1  # not collapsed to the bias


def test_non_finite_inputs_propagate():
    x, w, b = _inputs((1, 4, 8, 8), torch.float32)
    x[0, 1, 2, 3] = float("nan")
    with torch.no_grad():
        got = group_norm_silu(x, 2, w, b, 1e-5, True, backend="cpp")
    assert got[0, :2].isnan().all() and got[0, 2:].isfinite().all()


def test_bad_arguments_raise_torchs_errors():
    x = torch.randn(1, 6, 4, 4)
    with pytest.raises(RuntimeError, match="divisible|groups"):
        group_norm_silu(x, 4, None, None, 1e-5, False, backend="cpp")
    with pytest.raises(RuntimeError):
        group_norm_silu(x, 3, torch.ones(5), None, 1e-5, False, backend="cpp")


def _path(x, **kw):
    return _dispatch.choose_path(OP, x.device, x.dtype, None, **kw).path


def test_auto_rule_on_cpu():
    big = torch.randn(1, 16, 128, 128)
    assert big.numel() >= CPP_MIN_ELEMENTS
    assert _path(big, plain=True, elements=big.numel(), transformed=False) == "cpp"
    assert _path(big, plain=False, elements=big.numel(), transformed=False) == "torch"
    assert _path(big, plain=True, elements=CPP_MIN_ELEMENTS - 1, transformed=False) == "torch"
    text = _dispatch.explain(OP, plain=False, elements=big.numel(), transformed=False)
    assert "auto prefers torch" in text


def test_transforms_refuse_the_cpp_path():
    x = torch.randn(2, 1, 4, 3, 3)
    with pytest.raises(ValueError, match="torch.func"):
        torch.func.vmap(lambda t: group_norm_silu(t, 2, None, None, 1e-5, True, backend="cpp"))(x)


def test_lcrnet_default_forward_matches_eager():
    torch.manual_seed(3)
    model = LCRNet().eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        got = model(x, return_logits=True)
        with use_backend("torch"):
            want = model(x, return_logits=True)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


CL = torch.channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape,groups", [((2, 16, 9, 13), 1), ((1, 12, 5, 17), 3), ((2, 3, 4, 4), 3),
                                          ((1, 24, 33, 2), 4), ((0, 8, 3, 3), 2)])
@pytest.mark.parametrize("x_cl", [False, True])
def test_cpp_channels_last_layouts(dtype, shape, groups, x_cl):
    # NCHW -> NHWC (the hint), NHWC -> NHWC (x channels_last, with several groups the strided
    # statistics): the same values as the NCHW kernel, in the promised layout.
    x, w, b = _inputs(shape, dtype)
    xin = x.contiguous(memory_format=CL) if x_cl else x
    with torch.no_grad():
        got = group_norm_silu(xin, groups, w, b, 1e-5, True, backend="cpp", channels_last=True)
        plain = group_norm_silu(x, groups, w, b, 1e-5, True, backend="cpp")
        _assert_as_accurate_as_aten(got, x, groups, w, b, 1e-5, True)
    assert got.is_contiguous(memory_format=CL) and got.dtype == dtype
    torch.testing.assert_close(got, plain, rtol=0, atol=SLACK[dtype] if dtype != torch.float32 else 1e-6)


def test_channels_last_hint_is_the_cpp_paths_only():
    x, w, b = _inputs((1, 8, 6, 6), torch.float32)
    with torch.no_grad():
        assert group_norm_silu(x, 1, w, b, 1e-5, True, backend="torch", channels_last=True).is_contiguous()
        assert group_norm_silu(x, 1, w, b, 1e-5, True, backend="cpp").is_contiguous()
        y3 = group_norm_silu(x[:, :, 0], 1, w, b, 1e-5, True, backend="cpp", channels_last=True)
    assert y3.is_contiguous()  # 3-D: no channels_last layout; the hint is ignored


@pytest.mark.parametrize("silu", [False, True])
def test_cpp_backward_of_a_channels_last_input(silu):
    x, w, b = _inputs((2, 8, 5, 7), torch.float32)
    x = x.contiguous(memory_format=CL).requires_grad_()
    params = [x, w.requires_grad_(), b.requires_grad_()]
    grad = torch.randn(2, 8, 5, 7)
    got = group_norm_silu(x, 2, w, b, 1e-5, silu, backend="cpp", channels_last=True)
    want = group_norm_silu(x, 2, w, b, 1e-5, silu, backend="torch")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(got, params, grad), torch.autograd.grad(want, params, grad),
                               rtol=1e-4, atol=1e-5)


def test_cpu_without_avx2_refuses_the_cpp_path(monkeypatch):
    from istd_kernels.ops import _cpu

    monkeypatch.setattr(_cpu, "_ANSWER", [False])
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(ValueError, match="AVX2"):
        group_norm_silu(x, 1, None, None, 1e-5, True, backend="cpp")
    assert "AVX2" in _dispatch.explain(OP, plain=True, elements=CPP_MIN_ELEMENTS, transformed=False)
