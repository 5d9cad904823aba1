"""split_attention on the torch, cpp and triton backends against the float64 reference, forward
and every gradient (temperature included), plus the DLCAttention method it replaces.

Triton runs under TRITON_INTERPRET=1 (conftest.py): fp32, fp16 and fp64 (the interpreter has
no bfloat16 arithmetic); the cpp backend also runs fp64 and bf16. The cuda backend is tested
in test_cuda.py. Shapes stay tiny: the interpreter runs every program in Python.
"""

import pytest
import torch
import torch.nn.functional as F

from istd_kernels.ops import _dispatch
from istd_kernels.ops.split_attention import OP, default_scales, split_attention, split_attention_ref

# (N, D, H, W, groups, r): odd sizes so every pooled size is a ceil; 1x1 is smaller than
# every scale; 41 columns cover the cpp forward's vector blocks. Several backward tiles:
# test_triton_multi_tile_and_deterministic.
CASES = [
    (2, 4, 9, 13, 1, 2),
    (1, 16, 5, 7, 4, 4),
    (1, 4, 1, 1, 4, 4),
    (2, 16, 9, 13, 4, 2),
    (1, 4, 5, 7, 1, 4),
    (1, 16, 19, 41, 4, 4),  # several 8-column blocks per row at every power-of-two scale, then a tail
]
DTYPES = {"torch": [torch.float32, torch.float16], "triton": [torch.float32, torch.float16],
          "cpp": [torch.float32, torch.float64, torch.float16, torch.bfloat16]}
# The backends that run on CPU tensors here (the op also has cuda).
CPU_BACKENDS = ("torch", "triton", "cpp")
PARAMS = [(b, dt, c) for b in DTYPES for dt in DTYPES[b] for c in CASES]
# Relative to the largest magnitude of the expected tensor (float64 reference on the same
# rounded inputs); half types round the inputs' grads and the result once.
TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 6e-3, torch.bfloat16: 5e-2}
NAMES = ("logits", "temperature", "residual", "v")


def case_id(case):
    n, d, h, w, g, r = case
    return f"{n}x{d}x{h}x{w}-g{g}-r{r}"


def assert_close(actual, expected, dtype, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max abs error {err:.3g} > {TOL[dtype] * scale:.3g} ({dtype})"


def make_inputs(case, dtype, seed=0, scales=None):
    """(branches, logits, temperature, residual, v): float64 draws rounded to ``dtype``."""
    n, d, h, w, g, r = case
    scales = scales or default_scales(r)
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    branches = [rn(n, d, -(-h // s), -(-w // s)) for s in scales]
    logits = rn(n, g * r, h, w, scale=2.0)
    temperature = (0.5 + torch.rand((), generator=gen, dtype=torch.float64)).to(dtype)
    return branches, logits, temperature, rn(n, d, h, w), rn(n, d, h, w)


def leaves_of(inputs):
    branches, *rest = inputs
    return [b.clone().requires_grad_() for b in branches], [t.clone().requires_grad_() for t in rest]


def run(fn, inputs, gz):
    """Output and the grads of every input (branches first) of ``fn(branches, *rest)``."""
    branches, rest = leaves_of(inputs)
    z = fn(branches, *rest)
    grads = torch.autograd.grad(z, branches + rest, gz)
    return z, list(grads)


def expected(inputs, groups, gz, scales=None):
    branches, *rest = inputs
    b64 = [b.double() for b in branches]
    r64 = [t.double() for t in rest]
    return run(lambda b, *a: split_attention_ref(b, *a, groups, scales), (b64, *r64), gz.double())


@pytest.mark.parametrize("backend,dtype,case", PARAMS, ids=[f"{b}-{str(d)[6:]}-{case_id(c)}" for b, d, c in PARAMS])
def test_matches_reference(backend, dtype, case):
    groups, r = case[4], case[5]
    inputs = make_inputs(case, dtype)
    gz = torch.randn(case[:4], generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)
    z, grads = run(lambda b, *a: split_attention(b, *a, groups, backend=backend), inputs, gz)
    ref_z, ref_grads = expected(inputs, groups, gz)
    assert z.dtype == dtype and z.is_contiguous()
    assert_close(z, ref_z, dtype, "z")
    names = [f"branches[{j}]" for j in range(r)] + list(NAMES)
    for name, g, e in zip(names, grads, ref_grads):
        assert g.dtype == dtype, name
        assert_close(g, e, dtype, name)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_dlc_attention(backend):
    from istd_kernels.nn.dlc import DLCAttention

    torch.manual_seed(0)
    module = DLCAttention(16, groups=4, radix=2)
    with torch.no_grad():
        module.log_temperature.fill_(-0.3)
    branches, logits, _, residual, v = make_inputs((2, 16, 9, 13, 4, 2), torch.float32, seed=3)

    def grads_of(fn):
        b, (lg, res, vv) = leaves_of((branches, logits, residual, v))
        z = fn(b, lg, module.temperature, res, vv)
        gz = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
        g = torch.autograd.grad(z, b + [lg, module.log_temperature, res, vv], gz)
        return z, g

    def plain(branches, logits, temperature, residual, v):
        # What DLCAttention combined before the op existed, written out.
        h, w = residual.shape[-2:]
        weights = torch.softmax(logits.unflatten(1, (4, 2)) / temperature, dim=2)
        acc = residual.unflatten(1, (4, 4))
        for j, b in enumerate(branches, start=1):
            up = F.interpolate(b, scale_factor=float(2 ** j), mode="nearest")[:, :, :h, :w]
            acc = acc + weights[:, :, j - 1:j] * up.unflatten(1, (4, 4))
        return F.silu(acc.flatten(1, 2)) * F.silu(v)

    want, want_g = grads_of(plain)
    got, got_g = grads_of(lambda *a: split_attention(*a, groups=4, backend=backend))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_g, want_g):  # log_temperature's grad flows through tau = exp(log_tau)
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_channels_last_and_strided(backend):
    case = (2, 8, 9, 13, 2, 2)
    branches, logits, temp, residual, v = make_inputs(case, torch.float32)
    residual = residual.contiguous(memory_format=torch.channels_last)
    v = v.new_empty(2, 8, 13, 9).transpose(2, 3).copy_(v)  # a transposed view
    branches = [b.contiguous(memory_format=torch.channels_last) for b in branches]
    inputs = (branches, logits, temp, residual, v)
    bl, rest = leaves_of(inputs)
    z = split_attention(bl, *rest, 2, backend=backend)
    assert z.is_contiguous(memory_format=torch.channels_last)
    z.sum().backward()  # an expanded (stride 0) grad
    ref_z, ref_grads = expected(inputs, 2, torch.ones(z.shape))
    assert_close(z, ref_z, torch.float32, "z")
    for j, (leaf, e) in enumerate(zip(bl + rest, ref_grads)):
        assert_close(leaf.grad, e, torch.float32, f"grad {j}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_element_temperature_and_custom_scales(backend):
    # temperature of shape [1] gets a [1] gradient; scales other than the default.
    case = (1, 4, 7, 10, 2, 3)
    scales = (1, 8, 4)
    branches, logits, temp, residual, v = make_inputs(case, torch.float32, scales=scales)
    inputs = (branches, logits, temp.reshape(1), residual, v)
    gz = torch.randn(case[:4], dtype=torch.float32)
    z, grads = run(lambda b, *a: split_attention(b, *a, 2, scales, backend=backend), inputs, gz)
    ref_z, ref_grads = expected(inputs, 2, gz, scales)
    assert grads[4].shape == (1,)
    assert_close(z, ref_z, torch.float32, "z")
    for j, (g, e) in enumerate(zip(grads, ref_grads)):
        assert_close(g, e, torch.float32, f"grad {j}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_partial_grads(backend):
    # Only branches[1] and the temperature need grads: the other slots stay None.
    inputs = make_inputs((1, 4, 5, 7, 2, 2), torch.float32)
    branches, logits, temp, residual, v = inputs
    b1, t = branches[1].clone().requires_grad_(), temp.clone().requires_grad_()
    z = split_attention([branches[0], b1], logits, t, residual, v, 2, backend=backend)
    z.sum().backward()
    assert branches[0].grad is None and logits.grad is None and residual.grad is None
    _, ref = expected(inputs, 2, torch.ones(z.shape))
    assert_close(b1.grad, ref[1], torch.float32, "branches[1]")
    assert_close(t.grad, ref[3], torch.float32, "temperature")


def test_torch_backend_any_integer_scale():
    # Non-power-of-two scales: the reference's index gather is exact for any s.
    case = (1, 2, 7, 8, 1, 2)
    branches, logits, temp, residual, v = make_inputs(case, torch.float64, scales=(3, 5))
    z = split_attention(branches, logits, temp, residual, v, 1, (3, 5), backend="torch")
    w = torch.softmax(logits / temp, dim=1)
    a = residual.clone()
    for j, (b, s) in enumerate(zip(branches, (3, 5))):
        for y in range(7):
            for x in range(8):
                a[:, :, y, x] += w[:, j, y, x, None] * b[:, :, y // s, x // s]
    torch.testing.assert_close(z, torch.nn.functional.silu(a) * torch.nn.functional.silu(v))


def test_reference_gradcheck():
    inputs = make_inputs((1, 2, 3, 5, 2, 2), torch.float64)
    branches, rest = leaves_of(inputs)
    assert torch.autograd.gradcheck(lambda *t: split_attention_ref(list(t[:2]), *t[2:], 2), branches + rest)


@pytest.mark.parametrize("backend", ["triton", "cpp"])
def test_kernel_gradcheck_float64(backend):
    # The kernels accumulate in float64 for float64 inputs, so a full gradcheck applies.
    # Tiny: gradcheck runs the op twice per input element, ~40 elements here.
    inputs = make_inputs((1, 2, 3, 2, 2, 2), torch.float64)
    branches, rest = leaves_of(inputs)
    assert torch.autograd.gradcheck(lambda *t: split_attention(list(t[:2]), *t[2:], 2, backend=backend),
                                    branches + rest)


@pytest.mark.parametrize("backend", ["triton", "cpp"])
def test_kernel_multi_tile_and_deterministic(backend):
    # 17x33 spans 2x2 backward tiles (16x32): footprints of the 1/2 and 1/4 branches end
    # on tile borders, and the 1/16 branch has a row and a column of clipped footprints.
    # For cpp, 17 rows are 2 bands of 16 (the scales' lcm) rows.
    case = (1, 4, 17, 33, 2, 4)
    inputs = make_inputs(case, torch.float32, seed=5)
    gz = torch.randn(case[:4], generator=torch.Generator().manual_seed(2))
    runs = [run(lambda b, *a: split_attention(b, *a, 2, backend=backend), inputs, gz) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1])), "grads differ between runs"
    ref_z, ref_grads = expected(inputs, 2, gz)
    assert_close(runs[0][0], ref_z, torch.float32, "z")
    for j, (g, e) in enumerate(zip(runs[0][1], ref_grads)):
        assert_close(g, e, torch.float32, f"grad {j}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_batch(backend):
    inputs = make_inputs((0, 4, 5, 7, 2, 2), torch.float32)
    branches, rest = leaves_of(inputs)
    z = split_attention(branches, *rest, 2, backend=backend)
    assert z.shape == (0, 4, 5, 7)
    z.sum().backward()
    assert rest[1].grad is not None and rest[1].grad.item() == 0.0
    assert branches[1].grad.shape == (0, 4, 2, 2)


def test_auto_on_cpu_is_cpp_when_built():
    from istd_kernels.extensions import cpu_extension

    want = "cpp" if cpu_extension().available else "torch"
    assert _dispatch.choose(OP, torch.device("cpu"), torch.float32, "auto", scales=(2, 4)) == want


@pytest.mark.parametrize("backend", ["triton", "cpp"])
def test_opcheck(backend):
    branches, logits, temp, residual, v = make_inputs((1, 4, 3, 5, 2, 2), torch.float32)
    b = [t.requires_grad_() for t in branches]
    rest = [t.requires_grad_() for t in (logits, temp, residual, v)]
    torch.library.opcheck(torch.ops.istd.split_attention.default, (b, *rest, 2, [2, 4], backend))
    gz = torch.randn(1, 4, 3, 5)
    detached = [t.detach() for t in branches], *(t.detach() for t in rest)
    torch.library.opcheck(torch.ops.istd.split_attention_backward.default, (gz, *detached, 2, [2, 4], backend))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    branches, logits, temp, residual, v = make_inputs((1, 4, 5, 7, 2, 2), torch.float32)
    log_tau = temp.log().clone().requires_grad_()

    def block(b, lg, lt, res, vv):
        return split_attention(b, lg, lt.exp(), res, vv, 2, backend=backend) + res

    # aot_eager: the custom op is opaque either way, and inductor's C++ build of the
    # surrounding graph would cost most of this file's time budget.
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got = compiled(branches, logits, log_tau, residual, v)
    want = block(branches, logits, log_tau, residual, v)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad(got.square().sum(), (log_tau,))
    (g_want,) = torch.autograd.grad(want.square().sum(), (log_tau,))
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-5)


def test_triton_limits():
    inputs = make_inputs((1, 5, 4, 4, 1, 5), torch.float32, scales=(1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="at most 4 branches"):
        split_attention(*inputs, 1, (1, 1, 1, 1, 1), backend="triton")
    split_attention(*inputs, 1, (1, 1, 1, 1, 1), backend="torch")  # the reference has no limit
    inputs = make_inputs((1, 4, 4, 4, 1, 2), torch.float32, scales=(3, 2))
    with pytest.raises(ValueError, match="powers of two"):
        split_attention(*inputs, 1, (3, 2), backend="triton")


def test_cpp_limits_and_any_integer_scales():
    inputs = make_inputs((1, 5, 4, 4, 1, 5), torch.float32, scales=(1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="at most 4 branches"):
        split_attention(*inputs, 1, (1, 1, 1, 1, 1), backend="cpp")
    # Picked automatically, the reference takes over beyond the kernel's limit.
    split_attention(*inputs, 1, (1, 1, 1, 1, 1), backend="auto")
    # Any integer scales: the backward's row bands follow the scales' lcm (15 here, 2 bands).
    case = (2, 4, 23, 11, 2, 2)
    inputs = make_inputs(case, torch.float64, scales=(3, 5))
    gz = torch.randn(case[:4], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z, grads = run(lambda b, *a: split_attention(b, *a, 2, (3, 5), backend="cpp"), inputs, gz)
    ref_z, ref_grads = expected(inputs, 2, gz, (3, 5))
    assert_close(z, ref_z, torch.float64, "z")
    for j, (g, e) in enumerate(zip(grads, ref_grads)):
        assert_close(g, e, torch.float64, f"grad {j}")


def _good(**over):
    branches, logits, temp, residual, v = make_inputs((1, 4, 5, 7, 2, 2), torch.float32)
    args = dict(branches=branches, logits=logits, temperature=temp, residual=residual, v=v, groups=2)
    args.update(over)
    return args


BAD = [
    (dict(residual=torch.randn(4, 5, 7)), ValueError, "residual must be 4-D"),
    (dict(residual=torch.randn(1, 4, 5, 7).int()), TypeError, "residual must have dtype"),
    (dict(v=torch.randn(1, 4, 5, 6)), ValueError, r"v must have residual's shape \(1, 4, 5, 7\)"),
    (dict(v=torch.randn(1, 4, 5, 7).double()), TypeError, "v must have the dtype of residual"),
    (dict(groups=3), ValueError, "groups must be a positive divisor of residual's channel count D=4"),
    (dict(groups=0), ValueError, "groups must be a positive divisor"),
    (dict(groups=2.0), TypeError, "groups must be an int"),
    (dict(logits=torch.randn(1, 3, 5, 7)), ValueError, r"logits must have shape .* = \(1, 4, 5, 7\)"),
    (dict(logits=torch.randn(1, 4, 5, 7).half()), TypeError, "logits must have the dtype of residual"),
    (dict(temperature=torch.ones(2)), ValueError, "temperature must be a 0-dim"),
    (dict(temperature=torch.ones(1, 1)), ValueError, "temperature must be a 0-dim"),
    (dict(temperature=1.0), TypeError, "temperature must be a torch.Tensor"),
    (dict(branches=[]), ValueError, "branches must hold at least one tensor"),
    (dict(branches=torch.randn(1, 4, 3, 4)), TypeError, "branches must be a list or tuple"),
    (dict(branches=[torch.randn(1, 4, 3, 4), torch.randn(1, 4, 1, 1)]), ValueError,
     r"branches\[1\] must have shape .* = \(1, 4, 2, 2\) for scale 4"),
    (dict(branches=[torch.randn(1, 4, 2, 3), torch.randn(1, 4, 2, 2)]), ValueError,
     r"branches\[0\] must have shape .* = \(1, 4, 3, 4\) for scale 2"),
    (dict(branches=[torch.randn(1, 4, 3, 4).double(), torch.randn(1, 4, 2, 2)]), TypeError,
     r"branches\[0\] must have the dtype of residual"),
    (dict(scales=(2,)), ValueError, "scales must have one entry per branch"),
    (dict(scales=(2, 0)), ValueError, "scales must be >= 1"),
    (dict(scales=(2, 4.0)), TypeError, "scales must be ints"),
]


@pytest.mark.parametrize("over,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input(over, exc, match):
    args = _good(**over)
    for backend in CPU_BACKENDS:
        with pytest.raises(exc, match=match):
            split_attention(**args, backend=backend)
    with pytest.raises(exc, match=match):
        split_attention_ref(**args)


def test_cpu_without_avx2_refuses_the_cpp_path(monkeypatch):
    from istd_kernels.ops import _cpu

    monkeypatch.setattr(_cpu, "_ANSWER", [False])
    branches, logits, temperature, residual, v = make_inputs((1, 16, 5, 7, 4, 4), torch.float32)
    with pytest.raises(ValueError, match="AVX2"):
        split_attention(branches, logits, temperature, residual, v, 4, backend="cpp")
    torch.testing.assert_close(split_attention(branches, logits, temperature, residual, v, 4),
                               split_attention_ref(branches, logits, temperature, residual, v, 4))
