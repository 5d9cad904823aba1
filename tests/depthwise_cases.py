"""Shapes and tolerances shared by the depthwise tests (CPU and GPU)."""

import torch

# (N, C, H, W), (kh, kw), stride, padding, dilation
CASES = [
    ((2, 3, 11, 13), (3, 3), 1, 1, 1),
    ((1, 4, 9, 7), (3, 3), 1, 2, 2),            # LCRNet's dilated 3x3, d=2
    ((2, 2, 12, 10), (7, 7), 1, 3, 1),
    ((1, 3, 10, 11), (5, 3), 2, (2, 1), (1, 2)),  # stride 2, asymmetric padding/dilation
    ((2, 1, 8, 9), (1, 1), 1, 0, 1),
    ((1, 2, 7, 8), (2, 4), 2, 0, 1),            # even kernel, no padding
    ((1, 2, 13, 12), (3, 3), 1, 0, 4),          # dilation 4, border-only output
    ((1, 1, 19, 6), (3, 2), 1, (8, 0), (8, 1)),  # dilation 8
    ((1, 2, 6, 5), (31, 31), 1, 15, 1),         # largest kernel, mostly padding
    ((1, 2, 9, 9), (3, 3), 3, 1, 1),            # stride 3
]


def case_id(case):
    shape, k, s, p, d = case
    return f"{'x'.join(map(str, shape))}-k{k[0]}x{k[1]}-s{s}-p{p}-d{d}".replace(" ", "")


# Tolerance relative to the largest magnitude of the expected tensor. Half types carry one
# rounding of an fp32 sum (about 5e-4 for fp16, 4e-3 for bf16).
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def assert_close(actual, expected, dtype, what):
    assert actual.dtype == expected.dtype or actual.dtype == dtype, f"{what}: dtype {actual.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    scale = max(1.0, e.abs().max().item()) if e.numel() else 1.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max abs error {err:.3g} > {TOL[dtype] * scale:.3g} ({dtype})"


def make_inputs(shape, kernel, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn((shape[1], 1, *kernel), generator=g, dtype=torch.float64) / kernel[0]
    b = torch.randn(shape[1], generator=g, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (x, w, b)]


def expected_and_grads(x, w, b, gy, stride, padding, dilation):
    """F.conv2d in float64 from the same (rounded) inputs: the value every backend must reach."""
    xs, ws, bs = (t.detach().double().requires_grad_() for t in (x, w, b))
    y = torch.nn.functional.conv2d(xs, ws, bs, stride, padding, dilation, groups=x.shape[1])
    grads = torch.autograd.grad(y, (xs, ws, bs), gy.double())
    return y, grads
