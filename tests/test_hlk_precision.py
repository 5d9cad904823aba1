"""HLKConv's precision contract (docs/ops.md, "Precision contract"), in float16 and bfloat16.

Each path's forward and backward are compared with a float64 model of that path that rounds
at the same points: the kernel paths (cpp, cuda, Triton fused and composed, ``hlk_conv_ref``)
round only their results to the input dtype, so their model is the float64 HLKConv and its
float64 gradient, rounded once; the ``torch`` path (the unfused ``F.conv2d`` chain) also
rounds ``a`` and ``d``, so its model rounds them too (straight through, as autograd sees it).
The Triton interpreter has no bfloat16 arithmetic: Triton in bfloat16 runs on a GPU only.
"""

import pytest
import torch
from hlk_cases import make_params

from istd_kernels.ops import hlk_conv, hlk_conv_ref
from istd_kernels.ops.depthwise import depthwise_conv2d_ref

HALF = [torch.float16, torch.bfloat16]
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (N, C, H, W, k_size, Cout, groups): k_size 7 runs Triton's fused kernels, 23 its composed path.
FUSED, COMPOSED = (2, 4, 7, 6, 7, 4, 2), (1, 2, 6, 5, 23, 3, 1)
#: The documented bounds (docs/ops.md): |got - model| <= RTOL * |model| + ATOL * max|model|.
#: Kernel paths round once: half a unit in the last place (the dtype's unit roundoff u),
#: plus float32 accumulation error, far below u. The torch path's autograd also rounds each
#: intermediate gradient, so a few u of the largest magnitude.
UNIT_ROUNDOFF = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}
KERNEL_TOL = (1.01, 0.01)   # (RTOL, ATOL) in units of u
TORCH_TOL = (1.01, 4.0)
NAMES = ("y", "grad_x", "grad_w0", "grad_b0", "grad_w1", "grad_b1", "grad_w_pw", "grad_b_pw")


def _round(t, dtype):
    """``t`` rounded to ``dtype`` in the forward, the identity in the backward."""
    return t + (t.to(dtype).double() - t).detach()


def _torch_path_model(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, dtype):
    """The F.conv2d chain in float64, rounding a and d to ``dtype`` as the chain stores them."""
    k1, k2 = w0.shape[2], w1.shape[2]
    a = _round(depthwise_conv2d_ref(x, w0, b0, 1, k1 // 2, 1), dtype)
    d = _round(depthwise_conv2d_ref(a, w1, b1, 1, dilation * (k2 // 2), dilation), dtype)
    n, c, h, w = a.shape
    cat = torch.stack([a.view(n, groups, c // groups, h, w), d.view(n, groups, c // groups, h, w)], 2)
    return torch.nn.functional.conv2d(cat.view(n, 2 * c, h, w), w_pw, b_pw, groups=groups)


def _outputs(fn, params, gy):
    leaves = [p.detach().requires_grad_() for p in params]
    y = fn(*leaves)
    return [y, *torch.autograd.grad(y, leaves, gy.to(y.dtype))]


def _check(path, case, dtype, device):
    params, dil, groups = make_params(case, dtype, seed=3)
    params = [p.to(device) for p in params]
    gy = torch.randn((case[0], case[5], case[2], case[3]), generator=torch.Generator().manual_seed(4),
                     dtype=torch.float64).to(dtype).to(device)
    if path == "ref":
        got = _outputs(lambda *p: hlk_conv_ref(*p, dil, groups), params, gy)
    else:
        got = _outputs(lambda *p: hlk_conv(*p, dil, groups, backend=path), params, gy)
    exact = [p.double() for p in params]
    if path == "torch":
        model = _outputs(lambda *p: _torch_path_model(*p, dil, groups, dtype), exact, gy.double())
        rtol, atol = TORCH_TOL
    else:
        model = _outputs(lambda *p: hlk_conv_ref(*p, dil, groups), exact, gy.double())
        rtol, atol = KERNEL_TOL
    u = UNIT_ROUNDOFF[dtype]
    for name, g, m in zip(NAMES, got, model):
        assert g.dtype == dtype, name
        g, m = g.double().cpu(), m.cpu()
        bound = rtol * u * m.abs() + atol * u * m.abs().max()
        excess = ((g - m).abs() - bound).max().item()
        assert excess <= 0, f"{path} {dtype} {name}: exceeds the documented bound by {excess:.3g}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", [FUSED, COMPOSED], ids=["k7", "k23"])
@pytest.mark.parametrize("path", ["torch", "ref", "cpp"])
def test_cpu_paths(path, case, dtype):
    _check(path, case, dtype, "cpu")


@pytest.mark.parametrize("case", [FUSED, COMPOSED], ids=["fused", "composed"])
@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.cuda)], ids=str)
def test_triton_paths(case, dtype):
    pytest.importorskip("triton")
    _check("triton", case, dtype, TRITON_DEVICE)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", [FUSED, COMPOSED], ids=["k7", "k23"])
def test_cuda_path(case, dtype):
    _check("cuda", case, dtype, "cuda")
