"""NaN and Inf reach exactly the outputs and gradients they reach in the exact convolution.

Zero padding is not a value the convolution multiplies: a padding tap contributes nothing,
so a non-finite weight must not turn the border outputs it never touches into NaN
(``0 * nan``), and a non-finite grad_y must not reach the weight taps whose inputs are
padding. The reference below skips padding taps with ``torch.where`` and is differentiated
by autograd in float64; ``F.conv2d`` is not used, because which of its CPU paths skips
padding depends on dtype and dilation (float64 and dilated float32 weight gradients
multiply it). Masks of NaN, +Inf and -Inf must match element for element.
"""

import pytest
import torch
import torch.nn.functional as F

from istd_kernels.ops import depthwise_conv2d, hlk_conv
from istd_kernels.ops.hlk_conv import decompose

NAN, INF = float("nan"), float("inf")
BACKENDS = ["torch", "cpp", "triton"]


def skip_padding_dwconv(x, w, b, stride, padding, dilation):
    """Depthwise conv that adds only taps reading the image (float64, differentiable)."""
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    pad = (padding,) * 4
    xp = F.pad(x, pad)
    inside = F.pad(torch.ones(1, 1, h, wd, dtype=torch.bool), pad)
    y = x.new_zeros(n, c, ho, wo)
    for i in range(kh):
        for j in range(kw):
            sl = (slice(None), slice(None), slice(i * dilation, i * dilation + stride * (ho - 1) + 1, stride),
                  slice(j * dilation, j * dilation + stride * (wo - 1) + 1, stride))
            y = y + torch.where(inside[sl], xp[sl] * w[:, 0, i, j].view(1, -1, 1, 1), 0.0)
    return y if b is None else y + b.view(1, -1, 1, 1)


def skip_padding_hlk(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups):
    a = skip_padding_dwconv(x, w0, b0, 1, w0.shape[2] // 2, 1)
    d = skip_padding_dwconv(a, w1, b1, 1, dilation * (w1.shape[2] // 2), dilation)
    n, c, h, w = x.shape
    cg, cout = c // groups, w_pw.shape[0]
    wp = w_pw.reshape(groups, cout // groups, 2 * cg)
    y = (torch.einsum("goc,ngchw->ngohw", wp[:, :, :cg], a.reshape(n, groups, cg, h, w))
         + torch.einsum("goc,ngchw->ngohw", wp[:, :, cg:], d.reshape(n, groups, cg, h, w)))
    return y.reshape(n, cout, h, w) + b_pw.view(1, -1, 1, 1)


def _poison(tensors, site, index, value):
    t = tensors[site]
    flat = t.view(-1)
    flat[index % flat.numel()] = value


def _masks(t):
    return torch.isnan(t), torch.isposinf(t), torch.isneginf(t)


def assert_same_pattern(got, want, what):
    for kind, g, w in zip(("nan", "+inf", "-inf"), _masks(got), _masks(want)):
        assert torch.equal(g, w), (f"{what}: {kind} at {int(g.sum())} elements, reference {int(w.sum())}; "
                                   f"first differences at {(g != w).nonzero()[:4].tolist()}")


def _run(fn, ref_fn, params, poison, dtype, names):
    """Poison one element, run op and reference forward and backward, compare patterns."""
    site, index, value = poison
    params = [p.clone() for p in params]
    if site != "gy":
        _poison(dict(zip(names, params)), site, index, value)
    leaves = [p.to(dtype).requires_grad_() for p in params]
    ref_leaves = [p.detach().double().requires_grad_() for p in leaves]
    y, ref_y = fn(*leaves), ref_fn(*ref_leaves)
    gy = torch.randn(ref_y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    if site == "gy":
        gy.view(-1)[index % gy.numel()] = value
    got = torch.autograd.grad(y, leaves, gy.to(dtype))
    want = torch.autograd.grad(ref_y, ref_leaves, gy)
    assert_same_pattern(y, ref_y, "y")
    for name, g, w in zip(names, got, want):
        assert_same_pattern(g, w, f"grad_{name}")


# Element 0 is a corner (of the image, or the first tap of the kernel); the others land inside.
DW_POISON = [("w", 0, NAN), ("w", 4, NAN), ("w", 0, INF), ("x", 0, NAN), ("x", 40, -INF), ("b", 1, NAN),
             ("gy", 0, NAN), ("gy", 0, INF), ("gy", 29, NAN)]
# (N, C, H, W), k, stride, padding, dilation
DW_CASES = [((1, 2, 6, 6), 3, 1, 1, 1), ((1, 2, 9, 8), 3, 2, 1, 2), ((1, 2, 7, 9), 5, 1, 4, 2)]


def _dw_id(case):
    shape, k, s, p, d = case
    return f"{'x'.join(map(str, shape))}-k{k}-s{s}-p{p}-d{d}"


# (case, poison site) where F.conv2d itself (PyTorch 2.13 CPU, float32) lets a non-finite
# grad_y reach weight taps through padding.
TORCH_MULTIPLIES_PADDING = {("1x2x9x8-k3-s2-p1-d2", ("gy", 0)), ("1x2x7x9-k5-s1-p4-d2", ("gy", 0)),
                            ("1x2x7x9-k5-s1-p4-d2", ("gy", 29))}


@pytest.mark.parametrize("case", DW_CASES, ids=_dw_id)
@pytest.mark.parametrize("poison", DW_POISON, ids=lambda p: f"{p[0]}{p[1]}={p[2]}")
@pytest.mark.parametrize("backend,dtype", [(b, torch.float32) for b in BACKENDS] + [("triton", torch.float64)])
def test_depthwise(backend, dtype, case, poison, request):
    shape, k, s, p, d = case
    if backend == "torch" and (_dw_id(case), poison[:2]) in TORCH_MULTIPLIES_PADDING:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "the torch backend is F.conv2d, whose CPU weight gradient of a dilated depthwise conv "
            "multiplies padding by grad_y (PyTorch's kernel)")))
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen, dtype=torch.float64),
              torch.randn(shape[1], 1, k, k, generator=gen, dtype=torch.float64),
              torch.randn(shape[1], generator=gen, dtype=torch.float64)]
    _run(lambda x, w, b: depthwise_conv2d(x, w, b, s, p, d, backend=backend),
         lambda x, w, b: skip_padding_dwconv(x, w, b, s, p, d), params, poison, dtype, ("x", "w", "b"))


HLK_NAMES = ("x", "w0", "b0", "w1", "b1", "w_pw", "b_pw")
HLK_POISON = [("x", 0, NAN), ("x", 50, INF), ("w0", 0, NAN), ("w0", 0, -INF), ("b0", 1, NAN), ("w1", 0, NAN),
              ("w1", 0, INF), ("w1", 4, NAN), ("b1", 2, NAN), ("w_pw", 3, NAN), ("b_pw", 1, NAN),
              ("gy", 0, NAN), ("gy", 0, INF), ("gy", 40, NAN)]
# (N, C, H, W, k_size, Cout, groups): the fused Triton kernels (k_size 7) and the path
# composed from the depthwise kernels (k_size 23).
HLK_CASES = [(1, 4, 9, 8, 7, 4, 2), (1, 2, 8, 7, 23, 2, 1)]
# (k_size, poison site) where the F.conv2d chain itself (PyTorch 2.13 CPU, float32) lets a
# non-finite value through padding.
TORCH_HLK_MULTIPLIES_PADDING = {(23, ("w1", 0)), (23, ("w1", 4)), (23, ("w_pw", 3)), (7, ("gy", 0)),
                                (23, ("gy", 0)), (7, ("gy", 40)), (23, ("gy", 40))}


@pytest.mark.parametrize("case", HLK_CASES, ids=lambda c: "x".join(map(str, c[:4])) + f"-k{c[4]}-co{c[5]}-g{c[6]}")
@pytest.mark.parametrize("poison", HLK_POISON, ids=lambda p: f"{p[0]}{p[1]}={p[2]}")
@pytest.mark.parametrize("backend,dtype", [(b, torch.float32) for b in BACKENDS] + [("triton", torch.float64)])
def test_hlk_conv(backend, dtype, case, poison, request):
    n, c, h, w, k_size, cout, groups = case
    if backend == "torch" and (k_size, poison[:2]) in TORCH_HLK_MULTIPLIES_PADDING:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "the torch backend is the F.conv2d chain, whose CPU dilated depthwise convs multiply "
            "padding (PyTorch's kernels)")))
    k1, k2, dil = decompose(k_size)
    gen = torch.Generator().manual_seed(1)
    shapes = [(n, c, h, w), (c, 1, k1, k1), (c,), (c, 1, k2, k2), (c,), (cout, 2 * c // groups, 1, 1), (cout,)]
    params = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    _run(lambda *a: hlk_conv(*a, dil, groups, backend=backend),
         lambda *a: skip_padding_hlk(*a, dil, groups), params, poison, dtype, HLK_NAMES)


def test_reference_skips_padding():
    # The property the reference stands for: a NaN corner weight of a 3x3 conv with
    # padding 1 on a 6x6 image reaches the 5x5 outputs whose corner tap reads the image.
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
    w[0, 0, 0, 0] = NAN
    y = skip_padding_dwconv(x, w, None, 1, 1, 1)
    assert int(y.isnan().sum()) == 25 and not y[0, 0, 0].isnan().any() and not y[0, 0, :, 0].isnan().any()
