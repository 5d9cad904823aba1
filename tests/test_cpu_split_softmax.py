"""The cpp split_attention's vectorised softmax (csrc/cpu/vec_math.h, softmax_columns): rows whose
width is not a multiple of the blocks (8 wide with AVX2, else 4), every branch count, and logits far apart enough to
saturate the softmax (weights of exactly 0 and 1, exp arguments past exp256's clamp), forward
and backward (whose band of weights is padded to the blocks too)."""

import pytest
import torch

from istd_kernels.extensions import cpu_extension
from istd_kernels.ops import split_attention, split_attention_ref

pytestmark = pytest.mark.skipif(not cpu_extension().available, reason="C++ extension not built")


@pytest.mark.parametrize("scales", [(2,), (2, 4), (3, 2, 5), (2, 4, 8, 16)])
@pytest.mark.parametrize("spread", [1.0, 200.0])
@pytest.mark.parametrize("w", [7, 19])  # less than one 8-wide block; two blocks and a padded one
def test_cpp_matches_reference(scales, spread, w):
    torch.manual_seed(len(scales))
    groups, d, h = 2, 4, 5
    r = len(scales)
    branches = [torch.randn(1, d, -(-h // s), -(-w // s)) for s in scales]
    logits = torch.randn(1, groups * r, h, w) * spread
    temperature, residual, v = torch.tensor(0.5), torch.randn(1, d, h, w), torch.randn(1, d, h, w)
    leaves = [*branches, logits, temperature, residual, v]
    for t in leaves:
        t.requires_grad_(True)
    args = (branches, logits, temperature, residual, v, groups, scales)
    got, want = split_attention(*args, backend="cpp"), split_attention_ref(*args)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    gz = torch.randn_like(got)
    for g_got, g_want in zip(torch.autograd.grad(got, leaves, gz), torch.autograd.grad(want, leaves, gz)):
        torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-4)
