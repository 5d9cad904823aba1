"""The blocks' fusions (docs/performance.md, issue 30): C2FBlock's LayerScaled residuals as one
``addcmul`` each, and norm + SiLU with an in-place SiLU when autograd is not recording."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from istd_kernels import use_backend
from istd_kernels.nn import C2FBlock
from istd_kernels.nn.dlc import LayerScale, PreActBlock, norm_silu
from models import LCRNet


class _Record(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((func, [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


def _unfused(block, x):
    # The published formula, with LayerScale as a separate multiply.
    x = x + block.scale1(block.attn(block.norm(x)))
    return x + block.scale2(block.ffn(x))


def test_residual_is_x_plus_gamma_y():
    torch.manual_seed(0)
    ls = LayerScale(8, 0.3)
    with torch.no_grad():
        ls.gamma.uniform_(-2, 2)
    x, y = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(ls.residual(x, y), x + ls(y), rtol=1e-6, atol=1e-6)


def test_block_scales_without_a_separate_multiply():
    torch.manual_seed(1)
    block = C2FBlock(16).eval()
    with use_backend("torch"), torch.no_grad(), _Record() as rec:
        block(torch.randn(1, 16, 9, 11))
    ops = [f for f, _ in rec.calls]
    # Both residuals are addcmuls; without autograd they write into a fresh operand (out=).
    assert ops.count(torch.ops.aten.addcmul.default) + ops.count(torch.ops.aten.addcmul.out) == 2
    gamma_muls = [s for f, s in rec.calls if f == torch.ops.aten.mul.Tensor and (1, 16, 1, 1) in s]
    assert not gamma_muls, "LayerScale must not run as its own multiply inside the block"


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_block_matches_unfused_formula(backend):
    torch.manual_seed(2)
    block = C2FBlock(16)
    with torch.no_grad():  # LayerScales far from their 1e-2 start, so the residual matters
        block.scale1.gamma.uniform_(-1, 1)
        block.scale2.gamma.uniform_(-1, 1)
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    with use_backend(backend):
        got = block(x)
        g_got = torch.autograd.grad(got.square().sum(), [x, *block.parameters()])
        want = _unfused(block, x)
        g_want = torch.autograd.grad(want.square().sum(), [x, *block.parameters()])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_norm_silu_in_place_only_without_autograd():
    torch.manual_seed(3)
    norm = torch.nn.GroupNorm(1, 8)
    x = torch.randn(2, 8, 5, 7)
    x0 = x.clone()
    want = torch.nn.functional.silu(norm(x))
    with torch.no_grad(), _Record() as rec:
        got = norm_silu(norm, x)
    assert [f for f, _ in rec.calls][-1] == torch.ops.aten.silu_.default
    assert torch.equal(got, want.detach()) and torch.equal(x, x0), "the input must not change"
    with _Record() as rec:
        got = norm_silu(norm, x.requires_grad_())
    assert [f for f, _ in rec.calls][-1] == torch.ops.aten.silu.default
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_lcrnet_no_grad_matches_autograd_forward(backend):
    # The no-grad forward (in-place SiLUs) against the recording one (out of place), and the
    # pre-activation block against its unfused formula.
    torch.manual_seed(4)
    model = LCRNet(channels=(16, 32), depths=(1, 1)).eval()
    x = torch.rand(1, 1, 20, 24)
    with use_backend(backend):
        with torch.no_grad(), _Record() as rec:
            got = model(x, return_logits=True)
        want = model(x, return_logits=True)
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)
    # 12 pre-activation units (6 blocks), 2 upsamplings, 2 skip fusions and the head.
    assert [f for f, _ in rec.calls].count(torch.ops.aten.silu_.default) == 17
    block = PreActBlock(16)
    y = torch.randn(1, 16, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(y), block.conv(torch.nn.functional.silu(block.norm(y))), rtol=0, atol=0)
