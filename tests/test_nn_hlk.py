"""nn.HLKConv loads the published module's weights and matches it for every k_size."""

import pytest
import torch
from hlk_cases import UnfusedHLKConv

from istd_kernels import use_backend
from istd_kernels.nn import HLKConv
from istd_kernels.ops.hlk_conv import K_SIZES


@pytest.mark.parametrize("k_size", sorted(K_SIZES))
@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_loads_published_weights_and_matches(k_size, backend):
    torch.manual_seed(k_size)
    published = UnfusedHLKConv(6, k_size)
    layer = HLKConv(6, k_size)
    assert list(layer.state_dict()) == list(published.state_dict())
    layer.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 6, 19, 23, requires_grad=True)
    with use_backend(backend):
        y = layer(x)
    want = published(x)
    assert torch.allclose(y, want, atol=1e-5)
    gy = torch.randn_like(y)
    params = [x, *layer.parameters()]
    got = torch.autograd.grad(y, params, gy)
    ref = torch.autograd.grad(want, [x, *published.parameters()], gy)
    for g, r in zip(got, ref):
        assert torch.allclose(g, r, rtol=1e-4, atol=1e-4)


def test_triton_k7_matches():
    torch.manual_seed(1)
    published = UnfusedHLKConv(4, 7)
    layer = HLKConv(4, 7, backend="triton")
    layer.load_state_dict(published.state_dict())
    x = torch.randn(1, 4, 11, 9)
    assert torch.allclose(layer(x), published(x), atol=1e-5)


def test_grouped_and_out_dim():
    torch.manual_seed(2)
    published = UnfusedHLKConv(8, 7, out_dim=12, groups=4)
    layer = HLKConv(8, 7, out_dim=12, groups=4)
    layer.load_state_dict(published.state_dict())
    assert layer.conv1.weight.shape == (12, 4, 1, 1)
    x = torch.randn(2, 8, 10, 10)
    assert torch.allclose(layer(x), published(x), atol=1e-5)
    assert "k_size=7, dilation=2, groups=4" in repr(layer)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dim=4, k_size=9), "k_size must be one of"),
    (dict(dim=4, k_size=3), "k_size must be one of"),
    (dict(dim=0), "dim must be a positive int"),
    (dict(dim=4, out_dim=0), "out_dim must be a positive int"),
    (dict(dim=4, groups=3), "groups must be a positive int dividing"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HLKConv(**kwargs)


def test_wrong_channel_count_names_the_argument():
    with pytest.raises(ValueError, match=r"x must have 4 channels for HLKConv\(dim=4\)"):
        HLKConv(4)(torch.randn(1, 3, 8, 8))
