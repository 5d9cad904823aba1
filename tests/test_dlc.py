"""DLCAttention and C2FBlock (reference modules): shapes, gradients, backends, compile."""

import math

import pytest
import torch
import torch.nn.functional as F

from istd_kernels import use_backend
from istd_kernels.nn import C2FBlock, DLCAttention


def _grads(module, x):
    y = module(x)
    y.square().sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("shape", [(2, 16, 37, 45), (1, 16, 5, 3), (1, 16, 1, 1), (0, 16, 8, 8)])
def test_dlc_attention_shapes_and_grads(shape):
    torch.manual_seed(0)
    attn = DLCAttention(16)
    x = torch.randn(shape)
    y, grads = _grads(attn, x)
    assert y.shape == shape
    for name, g in grads.items():
        assert torch.isfinite(g).all(), name
    if shape[0]:
        assert grads["log_temperature"].abs() > 0, "the temperature must receive a gradient"


def test_dlc_attention_parameter_formula():
    for dim in (16, 32, 64):
        got = sum(p.numel() for p in DLCAttention(dim).parameters())
        assert got == 1.75 * dim * dim + 54 * dim + 17
        got = sum(p.numel() for p in C2FBlock(dim).parameters())
        assert got == 19.75 * dim * dim + 62 * dim + 17


def test_pooling_and_upsampling_are_inverse_windows():
    # The split attention reads low-res pixel (y // s, x // s): the window (y, x) was pooled into.
    torch.manual_seed(1)
    attn = DLCAttention(16, groups=1, radix=2).double()
    u = torch.randn(1, 16, 7, 5, dtype=torch.float64)
    pooled = attn._pool_levels(u)
    assert [tuple(p.shape[-2:]) for p in pooled] == [(4, 3), (2, 2)]
    chunk = u.unflatten(1, (1, 2, 8))[:, 0, 0]  # branch 1 of the only group
    for y in range(7):
        for x in range(5):
            win = chunk[..., (y // 2) * 2:(y // 2) * 2 + 2, (x // 2) * 2:(x // 2) * 2 + 2]
            assert torch.equal(pooled[0][0, :, y // 2, x // 2], win.amax(dim=(-1, -2))[0])


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_blocks_match_torch_backend(backend):
    torch.manual_seed(2)
    block = C2FBlock(16)
    x = torch.randn(1, 16, 9, 11)
    with use_backend("torch"):
        ref_y, ref_g = _grads(block, x)
    block.zero_grad()
    with use_backend(backend):
        y, g = _grads(block, x)
    assert torch.allclose(y, ref_y, atol=1e-5)
    for name in ref_g:
        assert torch.allclose(g[name], ref_g[name], rtol=1e-4, atol=1e-5), name


def test_bad_input():
    with pytest.raises(ValueError, match="divisible by groups \\* radix"):
        DLCAttention(24)
    with pytest.raises(ValueError, match=r"x must have shape \[N, 16, H, W\]"):
        DLCAttention(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 32, H, W\]"):
        C2FBlock(32)(torch.randn(32, 4, 4))


def test_compile_fullgraph():
    torch.manual_seed(3)
    attn = DLCAttention(16, backend="cpp")
    x = torch.randn(1, 16, 12, 10)
    compiled = torch.compile(attn, fullgraph=True)
    assert torch.allclose(compiled(x), attn(x), atol=1e-5)


def test_module_matches_a_written_out_dlc_attention():
    # Every step by hand, per group: explicit window maxima, index upsampling, per-group
    # HLKConvs from nn.Conv2d pieces. Independent of the fused ops the module calls.
    torch.manual_seed(4)
    dim, groups, radix = 32, 4, 4
    c, width = dim // (groups * radix), dim // groups
    m = DLCAttention(dim).double()
    x = torch.randn(2, dim, 13, 22, dtype=torch.float64)
    with torch.no_grad():
        m.log_temperature.fill_(0.3)
        got = m(x)
        v = F.conv2d(x, m.v.weight, m.v.bias)
        u = F.conv2d(x, m.transform.weight, m.transform.bias, groups=groups)
        h, w = x.shape[-2:]

        def hlk(layer, t, k):
            ci, co = layer.conv0.in_channels // groups, layer.conv1.out_channels // groups
            sl, so = slice(k * ci, (k + 1) * ci), slice(k * co, (k + 1) * co)
            a = F.conv2d(t, layer.conv0.weight[sl], layer.conv0.bias[sl], padding=1, groups=ci)
            d = F.conv2d(a, layer.conv_spatial.weight[sl], layer.conv_spatial.bias[sl], padding=2, dilation=2,
                         groups=ci)
            return F.conv2d(torch.cat([a, d], 1), layer.conv1.weight[so], layer.conv1.bias[so])

        out = []
        for k in range(groups):
            uk = u[:, k * width:(k + 1) * width]
            weights = torch.softmax(hlk(m.score, uk, k) / math.exp(0.3), 1)
            acc = uk.clone()
            for j in range(1, radix + 1):
                s = 2 ** j
                branch = uk[:, (j - 1) * c:j * c]
                hp, wp = -(-h // s), -(-w // s)
                pooled = torch.empty(2, c, hp, wp, dtype=torch.float64)
                for py in range(hp):
                    for px in range(wp):
                        pooled[:, :, py, px] = branch[:, :, py * s:(py + 1) * s, px * s:(px + 1) * s].amax((-1, -2))
                b = hlk(m.branches[j - 1], pooled, k)
                acc = acc + weights[:, j - 1:j] * b[:, :, torch.arange(h) // s][:, :, :, torch.arange(w) // s]
            out.append(acc)
        want = F.silu(torch.cat(out, 1)) * F.silu(v)
    assert torch.allclose(got, want, atol=1e-12)
