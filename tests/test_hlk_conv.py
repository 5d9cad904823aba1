"""hlk_conv on every CPU backend against the unfused nn.Conv2d module, forward and all grads.

Triton runs under TRITON_INTERPRET=1 (conftest.py), fp32 and fp16 (the interpreter has no
bfloat16 arithmetic).
"""

import pytest
import torch
from hlk_cases import CASES, UnfusedHLKConv, assert_close, case_id, expected, make_params

from istd_kernels.ops import hlk_conv, hlk_conv_ref
from istd_kernels.ops.hlk_conv import K_SIZES, decompose

DTYPES = {
    "torch": [torch.float32],
    "cpp": [torch.float64, torch.float32, torch.float16, torch.bfloat16],
    "triton": [torch.float32, torch.float16],
}
LARGEST = CASES[-1]  # k_size 23 at C=16: ~20 s per dtype in the interpreter, so fp32 only there
PARAMS = [(b, dt, case) for b in DTYPES for dt in DTYPES[b] for case in CASES
          if not (b == "triton" and case is LARGEST and dt != torch.float32)]
NAMES = ("grad_x", "grad_w0", "grad_b0", "grad_w1", "grad_b1", "grad_w_pw", "grad_b_pw")


def run(backend, case, dtype, memory_format=torch.contiguous_format, bias=True, seed=0, device="cpu"):
    """Output and gradients of ``backend`` on ``device``, and the float64 unfused module's on the CPU."""
    params, dil, groups = make_params(case, dtype, seed, bias)
    params = [p if p is None else p.to(device) for p in params]
    params[0] = params[0].contiguous(memory_format=memory_format)
    leaves = [p.requires_grad_() if p is not None else None for p in params]
    y = hlk_conv(*leaves, dil, groups, backend=backend)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(dtype)
    live = [p for p in leaves if p is not None]
    got = iter(torch.autograd.grad(y, live, gy.to(device)))
    grads = [next(got).cpu() if p is not None else None for p in leaves]
    ref_y, ref_grads = expected([p if p is None else p.detach().cpu() for p in params], dil, groups, gy)
    return y.cpu(), grads, ref_y, ref_grads


def check_matches_unfused_module(backend, dtype, case, memory_format=torch.contiguous_format, device="cpu"):
    """Output and every gradient of ``backend`` against the float64 unfused module; test_cuda.py
    runs this same check on the GPU backends."""
    y, grads, ref_y, ref_grads = run(backend, case, dtype, memory_format, device=device)
    assert y.dtype == dtype
    assert_close(y, ref_y, dtype, "y")
    for name, g, r in zip(NAMES, grads, ref_grads):
        assert g.dtype == dtype, name
        assert_close(g, r, dtype, name)


@pytest.mark.parametrize("backend,dtype,case", PARAMS, ids=[f"{b}-{str(d)[6:]}-{case_id(c)}" for b, d, c in PARAMS])
def test_matches_unfused_module(backend, dtype, case):
    check_matches_unfused_module(backend, dtype, case)


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_channels_last_no_bias(backend):
    case = (2, 5, 9, 11, 7, 3, 1)
    y, grads, ref_y, ref_grads = run(backend, case, torch.float32, torch.channels_last, bias=False)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert_close(y, ref_y, torch.float32, "y")
    for name, g, r in zip(NAMES, grads, ref_grads):
        if g is not None:
            assert g.shape == r.shape, name
            assert_close(g, r, torch.float32, name)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_strided_view_and_expanded_grad(backend):
    case = (1, 4, 10, 12, 7, 4, 1)
    params, dil, groups = make_params(case, torch.float32)
    x = params[0].new_empty(1, 4, 12, 14)[:, :, 1:11, 1:13].copy_(params[0]).transpose(2, 3)
    assert not x.is_contiguous()
    params[0] = x
    leaves = [p.requires_grad_() for p in params]
    y = hlk_conv(*leaves, dil, groups, backend=backend)
    y.sum().backward()  # grad_y arrives as an expanded (stride 0) tensor
    ref_y, ref_grads = expected(params, dil, groups, torch.ones(y.shape))
    assert_close(y, ref_y, torch.float32, "y")
    for name, p, r in zip(NAMES, leaves, ref_grads):
        assert_close(p.grad, r, torch.float32, name)


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_empty_batch(backend):
    params, dil, groups = make_params((0, 3, 8, 8, 7, 3, 1), torch.float32)
    leaves = [p.requires_grad_() for p in params]
    y = hlk_conv(*leaves, dil, groups, backend=backend)
    assert y.shape == (0, 3, 8, 8)
    y.sum().backward()
    assert leaves[0].grad.shape == (0, 3, 8, 8)
    for p in leaves[1:]:
        assert torch.equal(p.grad, torch.zeros_like(p)), "parameter grads of an empty batch are zero"


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_partial_grads(backend):
    # Only the pointwise weight and w1 need grads: the other slots must stay None.
    params, dil, groups = make_params((1, 3, 9, 8, 7, 3, 1), torch.float32)
    params[3].requires_grad_()
    params[5].requires_grad_()
    y = hlk_conv(*params, dil, groups, backend=backend)
    g_w1, g_wpw = torch.autograd.grad(y, (params[3], params[5]), torch.ones_like(y))
    _, ref = expected(params, dil, groups, torch.ones(y.shape))
    assert_close(g_w1, ref[3], torch.float32, "grad_w1")
    assert_close(g_wpw, ref[5], torch.float32, "grad_w_pw")


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_weight_grads_are_deterministic(backend):
    params, dil, groups = make_params((2, 16, 21, 19, 7, 16, 1), torch.float32)
    leaves = [p.requires_grad_() for p in params]
    runs = []
    for _ in range(2):
        y = hlk_conv(*leaves, dil, groups, backend=backend)
        runs.append(torch.autograd.grad(y, leaves[1:], torch.ones_like(y)))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_reference_matches_unfused_module():
    for case in CASES:
        params, dil, groups = make_params(case, torch.float64)
        ref_y, _ = expected(params, dil, groups, torch.zeros(case[0], case[5], case[2], case[3]))
        assert_close(hlk_conv_ref(*params, dil, groups), ref_y, torch.float64, case_id(case))


@pytest.mark.parametrize("case", [(1, 2, 6, 7, 7, 2, 1), (1, 2, 5, 6, 23, 4, 2)], ids=case_id)
def test_reference_gradcheck(case):
    params, dil, groups = make_params(case, torch.float64)
    leaves = [p.requires_grad_() for p in params]
    assert torch.autograd.gradcheck(lambda *a: hlk_conv_ref(*a, dil, groups), leaves)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_kernel_gradcheck(backend):
    # Tiny: gradcheck runs the op twice per input element.
    params, dil, groups = make_params((1, 2, 5, 4, 7, 2, 2), torch.float64)
    if backend == "triton":
        pytest.importorskip("triton")
    leaves = [p.requires_grad_() for p in params]
    # fast_mode checks a random projection of the Jacobian: enough to catch a wrong gradient,
    # at a fraction of the interpreter time of the full check.
    assert torch.autograd.gradcheck(lambda *a: hlk_conv(*a, dil, groups, backend=backend), leaves,
                                    fast_mode=backend == "triton")


def test_triton_float64_runs_its_own_chunks():
    # fp64 runs code of its own in the fused kernels (the forward's pointwise one channel at
    # a time, grad_x in the weight passes' 8-channel chunks without a dot): 10 channels make
    # two backward chunks and a padded forward chunk; k_size 7 keeps the fused path.
    pytest.importorskip("triton")
    from istd_kernels.ops import _dispatch

    case = (1, 10, 7, 6, 7, 5, 1)
    params, dil, _ = make_params(case, torch.float64)
    geometry = dict(k1=params[1].shape[2], k2=params[3].shape[2], dilation=dil)
    assert _dispatch.impl("istd.hlk_conv", "triton", **geometry).path == "triton-fused"
    y, grads, ref_y, ref_grads = run("triton", case, torch.float64)
    assert_close(y, ref_y, torch.float64, "y")
    for name, g, r in zip(NAMES, grads, ref_grads):
        assert_close(g, r, torch.float64, name)


def _saved_bytes(fn, x):
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return total[0]


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_saved_activation_memory_at_most_half(backend):
    from istd_kernels.nn import HLKConv

    torch.manual_seed(0)
    unfused = UnfusedHLKConv(16, 7)
    fused = HLKConv(16, 7, backend=backend)
    fused.load_state_dict(unfused.state_dict())
    x = torch.randn(1, 16, 24, 24, requires_grad=True)
    ratio = _saved_bytes(fused, x) / _saved_bytes(unfused, x)
    # Fused keeps x and the weights; unfused keeps x, a and the 2C-channel concat.
    assert ratio <= 0.5, ratio
    assert ratio < 0.3, ratio


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_opcheck(backend):
    params, dil, groups = make_params((2, 4, 7, 9, 7, 6, 2), torch.float32)
    leaves = [p.requires_grad_() for p in params]
    torch.library.opcheck(torch.ops.istd.hlk_conv.default, (*leaves, dil, groups, backend))
    no_bias = [leaves[0], leaves[1], None, leaves[3], None, leaves[5], None]
    torch.library.opcheck(torch.ops.istd.hlk_conv.default, (*no_bias, dil, groups, backend))
    gy = torch.randn(2, 6, 7, 9)
    detached = [p.detach() for p in params]
    torch.library.opcheck(torch.ops.istd.hlk_conv_backward.default,
                          (gy, *detached[:6], dil, groups, backend, [True] * 7))
    torch.library.opcheck(torch.ops.istd.hlk_conv_backward.default,
                          (gy, *detached[:6], dil, groups, backend, [False, True, False, False, True, True, False]))


def test_torch_compile_fullgraph():
    from istd_kernels.nn import HLKConv

    torch.manual_seed(0)
    layer = HLKConv(8, 7, backend="cpp")

    def block(x):
        return torch.nn.functional.silu(layer(x)) + x

    compiled = torch.compile(block, fullgraph=True)
    x = torch.randn(2, 8, 13, 11)
    got, want = compiled(x), block(x)
    assert torch.allclose(got, want, atol=1e-5)
    (g_got,) = torch.autograd.grad(got.square().sum(), (layer.conv0.weight,))
    (g_want,) = torch.autograd.grad(want.square().sum(), (layer.conv0.weight,))
    assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-4)


def test_decompose_table():
    assert decompose(7) == (3, 3, 2) and decompose(53) == (5, 17, 3)
    assert set(K_SIZES) == {7, 11, 23, 35, 41, 53}
    for k, (k1, k2, dil) in K_SIZES.items():
        assert k1 + (k2 - 1) * dil == k, "receptive field K = k1 + (k2 - 1) * dil"
    for bad in (5, 9, 7.0, True, "7"):
        with pytest.raises(ValueError, match="k_size must be one of"):
            decompose(bad)


def _good(**over):
    params, dil, groups = make_params((1, 4, 8, 8, 7, 6, 2), torch.float32)
    args = dict(zip(("x", "w0", "b0", "w1", "b1", "w_pw", "b_pw"), params), dilation=dil, groups=groups)
    args.update(over)
    return args


BAD = [
    (dict(x=torch.randn(4, 8, 8)), ValueError, "x must be 4-D"),
    (dict(x=torch.randn(1, 4, 8, 8).int()), TypeError, "x must have dtype"),
    (dict(x=torch.randn(1, 0, 8, 8)), ValueError, "at least one channel"),
    (dict(w0=torch.randn(3, 1, 3, 3)), ValueError, "w0 must have shape"),
    (dict(w0=torch.randn(4, 1, 4, 4)), ValueError, "w0's kernel size must be odd"),
    (dict(w1=torch.randn(4, 1, 3, 5)), ValueError, "w1 must have shape"),
    (dict(w1=torch.randn(4, 1, 33, 33)), ValueError, "w1's kernel size must be odd"),
    (dict(w0=torch.randn(4, 1, 3, 3).double()), TypeError, "w0 must have the dtype of x"),
    (dict(b0=torch.randn(5)), ValueError, r"b0 must have shape \(4,\)"),
    (dict(b_pw=torch.randn(4)), ValueError, r"b_pw must have shape \(6,\)"),
    (dict(w_pw=torch.randn(6, 8, 1, 1)), ValueError, "w_pw must have shape"),
    (dict(w_pw=torch.randn(5, 4, 1, 1), b_pw=None), ValueError, "w_pw must have shape"),
    (dict(w_pw=torch.randn(6, 4, 3, 3)), ValueError, "w_pw must have shape"),
    (dict(groups=3), ValueError, "groups=3 must divide"),
    (dict(groups=0), ValueError, "groups must be"),
    (dict(groups=2.0), TypeError, "groups must be an int"),
    (dict(dilation=0), ValueError, "dilation must be between 1 and 8"),
    (dict(dilation=(2, 2)), TypeError, "dilation must be an int"),
]


@pytest.mark.parametrize("over,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(over, exc, match):
    args = _good(**over)
    with pytest.raises(exc, match=match):
        hlk_conv(**args, backend="cpp")
    with pytest.raises(exc, match=match):
        hlk_conv_ref(**args)


def test_explicit_unavailable_backend_is_refused():
    from istd_kernels.backend import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="cuda"):
        hlk_conv(**_good(), backend="cuda")
