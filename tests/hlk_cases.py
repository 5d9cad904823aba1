"""Shapes, tolerances and the unfused reference module shared by the HLKConv tests."""

import torch
from torch import nn

from istd_kernels.ops.hlk_conv import K_SIZES, decompose

# (N, C, H, W, k_size, Cout, groups)
CASES = [
    (2, 1, 9, 13, 7, 1, 1),
    (1, 3, 11, 7, 11, 3, 1),
    (1, 16, 9, 11, 7, 16, 1),
    (2, 4, 13, 9, 23, 6, 2),     # Cout != C, grouped 1x1, the k1=5/k2=7/dil=3 entry
    (1, 16, 5, 7, 7, 16, 4),     # image smaller than the halo
    (1, 3, 1, 1, 7, 5, 1),       # a single pixel: only the centre taps
    (1, 16, 17, 15, 23, 16, 1),
]


def case_id(case):
    n, c, h, w, k, co, g = case
    return f"{n}x{c}x{h}x{w}-k{k}-co{co}-g{g}"


# Relative to the largest magnitude of the expected tensor. Kernel backends keep a and d in
# float32 for half inputs, so their half results carry one final rounding (the precision
# contract, tests/test_hlk_precision.py); the torch chain also rounds a and d.
TOL = {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 6e-3, torch.bfloat16: 4e-2}


def assert_close(actual, expected, dtype, what):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max abs error {err:.3g} > {TOL[dtype] * scale:.3g} ({dtype})"


class UnfusedHLKConv(nn.Module):
    """HLKConv the way the published module runs it: three nn.Conv2d and a concat."""

    def __init__(self, dim, k_size=7, out_dim=None, groups=1):
        super().__init__()
        k1, k2, dil = decompose(k_size)
        out_dim = out_dim or dim
        self.groups = groups
        self.conv0 = nn.Conv2d(dim, dim, k1, padding=k1 // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, k2, padding=dil * (k2 // 2), dilation=dil, groups=dim)
        self.conv1 = nn.Conv2d(2 * dim, out_dim, 1, groups=groups)

    def forward(self, x):
        a = self.conv0(x)
        d = self.conv_spatial(a)
        if self.groups == 1:
            cat = torch.cat([a, d], 1)
        else:  # per group [a_g, d_g]: G independent HLKConvs
            n, c, h, w = a.shape
            g = self.groups
            cat = torch.cat([a.view(n, g, c // g, h, w), d.view(n, g, c // g, h, w)], 2).view(n, 2 * c, h, w)
        return self.conv1(cat)


def make_params(case, dtype, seed=0, bias=True):
    """x and the six parameters (float64 draws rounded to ``dtype``), as a list."""
    n, c, h, w, k, co, g = case
    k1, k2, dil = decompose(k)
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    params = [r(n, c, h, w), r(c, 1, k1, k1, scale=1 / k1), r(c) if bias else None,
              r(c, 1, k2, k2, scale=1 / k2), r(c) if bias else None, r(co, 2 * c // g, 1, 1, scale=0.3),
              r(co) if bias else None]
    return params, dil, g


def expected(params, dil, groups, gy):
    """Output and grads of the unfused nn.Conv2d chain in float64 from the same rounded inputs."""
    x, w0, b0, w1, b1, wp, bp = params
    k_size = next(k for k, v in K_SIZES.items() if v == (w0.shape[2], w1.shape[2], dil))
    mod = UnfusedHLKConv(x.shape[1], k_size, wp.shape[0], groups).double()
    with torch.no_grad():
        for conv, wt, bs in ((mod.conv0, w0, b0), (mod.conv_spatial, w1, b1), (mod.conv1, wp, bp)):
            conv.weight.copy_(wt.double())
            if bs is None:
                conv.bias.zero_()
            else:
                conv.bias.copy_(bs.double())
    xs = x.detach().double().requires_grad_()
    y = mod(xs)
    grads = torch.autograd.grad(y, [xs, mod.conv0.weight, mod.conv0.bias, mod.conv_spatial.weight,
                                     mod.conv_spatial.bias, mod.conv1.weight, mod.conv1.bias], gy.double())
    return y, grads
