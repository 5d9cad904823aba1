"""LCRNet: published parameter counts, any input size, logits/probabilities, bad input."""

import pytest
import torch

from models import LCRNet
from models.lcrnet import count_flops, parameter_breakdown


def _params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_paper():
    assert abs(_params(LCRNet()) / 1.65e6 - 1) < 0.03
    assert abs(_params(LCRNet(depths=(1, 1, 1, 1))) / 854.67e3 - 1) < 0.05
    parts = parameter_breakdown(LCRNet())
    assert parts["total"] == _params(LCRNet())
    assert sum(v for k, v in parts.items() if k != "total") == parts["total"]


@pytest.mark.parametrize("hw", [(37, 45), (1, 1), (16, 16)])
def test_any_size_round_trips(hw):
    torch.manual_seed(0)
    model = LCRNet(depths=(1, 1, 1, 1))
    x = torch.rand(2, 1, *hw)
    logits = model(x, return_logits=True)
    assert logits.shape == (2, 1, *hw)
    assert torch.allclose(model(x), torch.sigmoid(logits))


def test_backward_reaches_every_parameter():
    torch.manual_seed(1)
    model = LCRNet(depths=(1, 1, 1, 1))
    model(torch.rand(1, 1, 20, 18), return_logits=True).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_flop_counter_counts_a_single_conv():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    assert count_flops(conv, 8, 8, in_chans=2) == 8 * 8 * 3 * 2 * 9


@pytest.mark.parametrize("x", [torch.rand(1, 3, 16, 16), torch.rand(1, 16, 16)])
def test_bad_input(x):
    with pytest.raises(ValueError, match=r"x must have shape \[N, 1, H, W\]"):
        LCRNet(depths=(1, 1, 1, 1))(x)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_backends_give_the_same_model(backend):
    from istd_kernels import use_backend

    torch.manual_seed(2)
    model = LCRNet(channels=(16, 16), depths=(1, 1))
    # 8x8: one kernel tile per level, which keeps the Triton interpreter's share of CI small.
    x = torch.rand(1, 1, 8, 8)
    out = {}
    for name in ("torch", backend):
        model.zero_grad()
        with use_backend(name):
            y = model(x, return_logits=True)
            y.square().sum().backward()
        out[name] = (y.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.allclose(out[backend][0], out["torch"][0], atol=1e-5)
    for g, r in zip(out[backend][1], out["torch"][1]):
        assert torch.allclose(g, r, rtol=1e-3, atol=1e-5)


def test_torch_compile():
    torch.manual_seed(3)
    model = LCRNet(channels=(16, 16), depths=(1, 1))
    x = torch.rand(1, 1, 12, 10)
    compiled = torch.compile(model)
    assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_autocast_bf16_on_cpu():
    # Under autocast the activations arrive in bf16 while the parameters stay fp32: the
    # fused ops must take both, as PyTorch's own layers do.
    from istd_kernels import use_backend

    torch.manual_seed(4)
    model = LCRNet(channels=(16, 16), depths=(1, 1))
    x = torch.rand(1, 1, 20, 20)
    out = {}
    for name in ("torch", "cpp"):
        model.zero_grad()
        with use_backend(name), torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x, return_logits=True)
        assert y.dtype == torch.bfloat16
        y.float().square().sum().backward()
        out[name] = (y.float(), model.init_conv.weight.grad.clone())
    assert torch.allclose(out["cpp"][0], out["torch"][0], atol=5e-2)
    assert torch.allclose(out["cpp"][1], out["torch"][1], rtol=0.1, atol=5e-2)
