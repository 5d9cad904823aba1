"""multiscale_maxpool on the torch, cpp and triton backends against the gather + F.max_pool2d reference.

Triton runs under TRITON_INTERPRET=1 (conftest.py) on CPU tensors, fp32/fp16/fp64 (the
interpreter has no bfloat16); the cpp backend also runs fp64 and bf16. test_cuda.py runs the
checks below on GPU tensors (cuda and triton backends). Max pooling only selects values, so forward results and
gradients are compared exactly, not within a tolerance.
"""

import pytest
import torch
import torch.nn.functional as F

from istd_kernels.ops.multiscale_maxpool import default_scales, multiscale_maxpool, multiscale_maxpool_ref

BACKENDS = ("torch", "triton", "cpp")
KERNELS = ("triton", "cpp")
DTYPES = (torch.float32, torch.float16)
# (N, groups, radix, c, H, W): odd sizes so every pooled size is ceil'd, a 1x1 map smaller
# than every window, a 17x3 map with one partial window column.
CASES = [
    (2, 1, 2, 1, 9, 13),
    (1, 4, 2, 2, 5, 7),
    (1, 1, 4, 2, 1, 1),
    (1, 4, 4, 1, 17, 3),
    (1, 2, 4, 2, 9, 13),
]

def case_id(case):
    return "n{}g{}r{}c{}_{}x{}".format(*case)

def make_u(case, dtype, seed=0, memory_format=torch.contiguous_format):
    n, g, r, c, h, w = case
    gen = torch.Generator().manual_seed(seed)
    # A permutation: no ties anywhere, so the argmax is unique (needed by gradcheck, and it
    # makes the gradient comparison independent of tie rules; ties are tested separately).
    vals = torch.randperm(n * g * r * c * h * w, generator=gen).to(torch.float64) / 64 - 8
    return vals.reshape(n, g * r * c, h, w).to(dtype).contiguous(memory_format=memory_format)

def grads_like(ys, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.device, y.dtype) for y in ys]

def check_against_ref(u, groups, radix, backend, scales=None):
    """The op on ``u``'s device against the reference on the CPU (where F.max_pool2d gives a
    tie to its first cell), values and grad_u compared exactly; returns the op's (ys, grad_u)."""
    leaf = u.detach().requires_grad_()
    ref_leaf = u.detach().cpu().requires_grad_()
    ys = multiscale_maxpool(leaf, groups, radix, scales, backend=backend)
    rs = multiscale_maxpool_ref(ref_leaf, groups, radix, scales)
    assert len(ys) == radix
    for y, r in zip(ys, rs):
        assert y.shape == r.shape and y.dtype == r.dtype
        assert torch.equal(y.cpu(), r)
    gys = grads_like(rs)
    (g,) = torch.autograd.grad(ys, leaf, [gy.to(u.device) for gy in gys])
    (gr,) = torch.autograd.grad(rs, ref_leaf, gys)
    assert g.dtype == u.dtype and torch.equal(g.cpu(), gr)
    return ys, g

PARAMS = ([(b, d, c) for b in BACKENDS for d in DTYPES for c in CASES]
          + [("cpp", d, c) for d in (torch.float64, torch.bfloat16) for c in CASES])

@pytest.mark.parametrize("backend,dtype,case", PARAMS,
                         ids=[f"{b}-{str(d)[6:]}-{case_id(c)}" for b, d, c in PARAMS])
def test_matches_reference(backend, dtype, case):
    n, g, r, c, h, w = case
    ys, _ = check_against_ref(make_u(case, dtype), g, r, backend)
    for j, (y, s) in enumerate(zip(ys, default_scales(r))):
        assert y.shape == (n, g * c, -(-h // s), -(-w // s)), j

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [(2, 4, 4, 1, 9, 13), (1, 2, 2, 2, 17, 3)], ids=case_id)
def test_equals_written_out_dlc_pooling(backend, case):
    n, g, r, c, h, w = case
    u = torch.randn(n, g * r * c, h, w)
    # What DLCAttention pooled before the op existed, written out.
    per_branch = u.unflatten(1, (g, r, c))
    want = [F.max_pool2d(per_branch[:, :, j - 1].reshape(n, g * c, h, w), 2 ** j, 2 ** j, ceil_mode=True)
            for j in range(1, r + 1)]
    got = multiscale_maxpool(u, g, r, backend=backend)
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(got, want))

@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("scales", [(1, 3), (3, 17), (5, 2)], ids=str)
def test_custom_scales(scales, backend):
    # (3, 17) stores int32 offsets (a 17x17 window has more than 256 cells).
    check_against_ref(make_u((1, 2, 2, 1, 18, 7), torch.float32), 2, 2, backend, scales)

@pytest.mark.parametrize("backend", KERNELS)
def test_channels_last_and_strided_input(backend):
    case = (2, 2, 2, 2, 9, 13)
    u_cl = make_u(case, torch.float32, memory_format=torch.channels_last)
    ys, g = check_against_ref(u_cl, 2, 2, backend)
    assert all(y.is_contiguous(memory_format=torch.channels_last) for y in ys)
    assert g.is_contiguous(memory_format=torch.channels_last)
    base = make_u((2, 2, 2, 2, 15, 11), torch.float32)
    view = base[:, :, 2:15, 1:10].transpose(2, 3)  # [2, 8, 9, 13], non-contiguous
    assert not view.is_contiguous()
    check_against_ref(view, 2, 2, backend)

@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_triton_more_levels_than_one_launch(memory_format):
    # Six levels: the Triton kernels take four per launch, so levels 4-5 go to a second
    # launch whose channels start at level 4 (LVL0).
    from istd_kernels.triton.multiscale_maxpool import LEVELS_PER_LAUNCH
    radix = LEVELS_PER_LAUNCH + 2
    u = make_u((1, 2, radix, 1, 7, 5), torch.float32, memory_format=memory_format)
    check_against_ref(u, 2, radix, "triton", [1, 2, 3, 5, 2, 7])

@pytest.mark.parametrize("backend", KERNELS)
def test_expanded_grad_and_unused_level(backend):
    u = make_u((1, 2, 2, 1, 9, 13), torch.float32).requires_grad_()
    ys = multiscale_maxpool(u, 2, 2, backend=backend)
    ys[1].sum().backward()  # level 0 gets no gradient; level 1's arrives expanded (stride 0)
    ref_u = u.detach().requires_grad_()
    multiscale_maxpool_ref(ref_u, 2, 2)[1].sum().backward()
    assert torch.equal(u.grad, ref_u.grad)

@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    u = torch.randn(0, 4, 5, 7, requires_grad=True)
    ys = multiscale_maxpool(u, 1, 2, backend=backend)
    assert [tuple(y.shape) for y in ys] == [(0, 2, 3, 4), (0, 2, 2, 2)]
    sum(y.sum() for y in ys).backward()
    assert u.grad.shape == u.shape

def _pool_ties_nan(u, groups, radix, backend, device="cpu"):
    """Values and grad_u of the op on ``device`` (returned on the CPU) next to those of
    F.max_pool2d on the gathered chunks on the CPU."""
    leaf = u.clone().to(device).requires_grad_()
    ys = multiscale_maxpool(leaf, groups, radix, backend=backend)
    gys = grads_like(ys)
    (g,) = torch.autograd.grad(ys, leaf, gys)
    ys, g, gys = [y.cpu() for y in ys], g.cpu(), [gy.cpu() for gy in gys]
    ref = u.clone().requires_grad_()
    n, d, h, w = u.shape
    c = d // (groups * radix)
    chunks = ref.unflatten(1, (groups, radix, c))
    rs = [F.max_pool2d(chunks[:, :, j].reshape(n, groups * c, h, w), s, s, ceil_mode=True)
          for j, s in enumerate(default_scales(radix))]
    (gr,) = torch.autograd.grad(rs, ref, gys)
    return ys, g, rs, gr

def check_ties(backend, dtype, device="cpu"):
    # Constant planes: every window is one big tie; F.max_pool2d (CPU) gives the gradient to
    # the first cell in row-major order. Also plateaus of equal maxima inside a window.
    u = torch.ones(1, 4, 9, 13, dtype=dtype)
    u[:, 2:] = torch.randint(0, 2, (1, 2, 9, 13), generator=torch.Generator().manual_seed(3)).to(dtype)
    ys, g, rs, gr = _pool_ties_nan(u, 1, 2, backend, device)
    assert all(torch.equal(y, r) for y, r in zip(ys, rs))
    assert torch.equal(g, gr)
    assert g[0, 0, 0, 0] != 0 and g[0, 0, 0, 1] == 0  # first of the tie, not the last

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ties_go_where_max_pool2d_sends_them(backend, dtype):
    check_ties(backend, dtype)

def check_nan_and_inf(backend, device="cpu"):
    u = make_u((1, 1, 2, 2, 9, 13), torch.float32)
    nan, inf = float("nan"), float("inf")
    u[0, 0, 0, 1] = nan                     # one NaN in a window: it wins
    u[0, 0, 2, 2] = nan
    u[0, 0, 3, 3] = nan                     # two NaNs in one window: the last gets the grad
    u[0, 1, 4:6, 4:6] = -inf                # a window of -inf: first cell
    u[0, 2, 0:4, 0:4] = nan                 # a whole 4x4 window of NaN
    u[0, 3, 8, 12] = nan                    # NaN in a clipped corner window
    u[0, 3, 0, 0] = inf
    ys, g, rs, gr = _pool_ties_nan(u, 1, 2, backend, device)
    for y, r in zip(ys, rs):
        assert torch.equal(y.isnan(), r.isnan())
        assert torch.equal(y.nan_to_num(), r.nan_to_num())
    assert torch.equal(g, gr)
    assert g[0, 0, 3, 3] != 0 and g[0, 0, 2, 2] == 0

@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_like_max_pool2d(backend):
    check_nan_and_inf(backend)

def test_cpp_row_windows_ties_and_nans_at_every_scale():
    # LCRNet's four scales with many whole windows per row (the cpp path's row-wise loop) and a
    # clipped last one: plateaus, NaNs (two in one window) and -inf planes, values and
    # gradients exactly as F.max_pool2d gives them.
    gen = torch.Generator().manual_seed(5)
    u = torch.randint(0, 3, (2, 8, 37, 70), generator=gen).float()
    u[0, 0, 5, 7] = u[0, 0, 4, 6] = u[1, 5, 33, 69] = float("nan")
    u[0, 2, :16, :16] = -float("inf")
    u[1, 3, 16:32, 16:32] = float("nan")
    ys, g, rs, gr = _pool_ties_nan(u, 2, 4, "cpp")
    for y, r in zip(ys, rs):
        assert torch.equal(y.isnan(), r.isnan()) and torch.equal(y.nan_to_num(), r.nan_to_num())
    assert torch.equal(g, gr)


@pytest.mark.parametrize("backend", KERNELS)
def test_backward_keeps_offsets_not_u(backend):
    # The kernel paths save one uint8 offset per pooled value; u itself is not kept.
    u = make_u((1, 1, 2, 2, 9, 13), torch.float32).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        multiscale_maxpool(u, 1, 2, backend=backend)
    assert saved and all(t.dtype == torch.uint8 for t in saved)
    assert sum(t.numel() for t in saved) * 1 < u.numel() * u.element_size() / 8

@pytest.mark.parametrize("backend", KERNELS)
def test_kernel_gradcheck(backend):
    # fast_mode: one random projection instead of a full Jacobian (the interpreter is slow).
    u = make_u((1, 2, 2, 1, 5, 6), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: tuple(multiscale_maxpool(x, 2, 2, backend=backend)), (u,),
                                    fast_mode=True)

def test_cpp_deterministic_and_int32_offsets():
    u = make_u((2, 2, 3, 2, 37, 35), torch.float32)
    scales = [2, 17, 5]  # 17 > 16: int32 offsets
    outs = [torch.ops.istd.multiscale_maxpool.default(u, 2, 3, scales, "cpp") for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    assert all(t.dtype == torch.int32 for t in outs[0][3:])
    want = torch.ops.istd.multiscale_maxpool.default(u, 2, 3, scales, "torch")
    assert all(torch.equal(a, b) for a, b in zip(outs[0], want))
    gys = grads_like(outs[0][:3])
    gus = [torch.ops.istd.multiscale_maxpool_backward.default(gys, list(outs[0][3:]), 12, 37, 35, 2, 3, scales,
                                                              False, "cpp") for _ in range(2)]
    assert torch.equal(gus[0], gus[1])
    ref = torch.ops.istd.multiscale_maxpool_backward.default(gys, list(want[3:]), 12, 37, 35, 2, 3, scales, False,
                                                             "torch")
    assert torch.equal(gus[0], ref)

def test_reference_gradcheck():
    u = make_u((1, 1, 2, 2, 5, 6), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: tuple(multiscale_maxpool_ref(x, 1, 2, (2, 3))), (u,))

@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    u = make_u((2, 2, 2, 1, 9, 7), torch.float32).requires_grad_()
    torch.library.opcheck(torch.ops.istd.multiscale_maxpool.default, (u, 2, 2, [2, 4], backend))
    u_cl = make_u((1, 1, 2, 2, 5, 7), torch.float32, memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.istd.multiscale_maxpool.default, (u_cl, 1, 2, [3, 17], backend))
    outs = torch.ops.istd.multiscale_maxpool.default(u.detach(), 2, 2, [2, 4], backend)
    levels, idx = outs[:2], outs[2:]
    torch.library.opcheck(torch.ops.istd.multiscale_maxpool_backward.default,
                          (grads_like(levels), idx, 4, 9, 7, 2, 2, [2, 4], False, backend))

@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def block(u):
        return sum(y.square().sum() for y in multiscale_maxpool(u, 2, 2, backend=backend))

    compiled = torch.compile(block, fullgraph=True)
    u = make_u((1, 2, 2, 1, 9, 13), torch.float32).requires_grad_()
    got, want = compiled(u), block(u)
    assert torch.allclose(got, want)
    (g_got,) = torch.autograd.grad(got, u)
    (g_want,) = torch.autograd.grad(want, u)
    assert torch.allclose(g_got, g_want)

def _args(**over):
    args = dict(u=torch.randn(1, 8, 5, 5), groups=2, radix=2, scales=None)
    args.update(over)
    return args

BAD = [
    (dict(u=torch.randn(8, 5, 5)), ValueError, "u must be 4-D"),
    (dict(u=torch.randn(1, 8, 5, 5).int()), TypeError, "u must have dtype"),
    (dict(u=[1.0]), TypeError, "u must be a torch.Tensor"),
    (dict(u=torch.randn(1, 6, 5, 5)), ValueError, r"D=6 must be a positive multiple of groups\*radix"),
    (dict(u=torch.randn(1, 0, 5, 5)), ValueError, "D=0 must be a positive multiple"),
    (dict(groups=0), ValueError, "groups must be >= 1"),
    (dict(groups=2.0), TypeError, "groups must be an int"),
    (dict(radix=True), TypeError, "radix must be an int"),
    (dict(scales=(2, 4, 8)), ValueError, "scales must have radix=2 entries"),
    (dict(scales=(2, 0)), ValueError, "each entry of scales must be between 1 and"),
    (dict(scales=(2, 4.0)), TypeError, "scales must hold ints"),
    (dict(scales=4), TypeError, "scales must be a sequence of 2 ints"),
]

@pytest.mark.parametrize("over,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(over, exc, match):
    args = _args(**over)
    for backend in BACKENDS:
        with pytest.raises(exc, match=match):
            multiscale_maxpool(**args, backend=backend)
    with pytest.raises(exc, match=match):
        multiscale_maxpool_ref(**args)

def test_unrunnable_backend_is_refused():
    from istd_kernels.backend import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="cuda"):
        multiscale_maxpool(torch.randn(1, 4, 4, 4), 1, 2, backend="cuda")


def test_cpu_without_avx2_refuses_the_cpp_path(monkeypatch):
    from istd_kernels.ops import _cpu

    monkeypatch.setattr(_cpu, "_ANSWER", [False])
    u = make_u((1, 1, 2, 2, 9, 13), torch.float32)
    with pytest.raises(ValueError, match="AVX2"):
        multiscale_maxpool(u, 1, 2, backend="cpp")
    ys = multiscale_maxpool(u, 1, 2)  # auto: the torch path
    assert all(torch.equal(y, r) for y, r in zip(ys, multiscale_maxpool_ref(u, 1, 2)))
