"""DepthwiseConv2d is a drop-in for nn.Conv2d(groups=C)."""

import pytest
import torch
from torch import nn

from istd_kernels import use_backend
from istd_kernels.nn import DepthwiseConv2d


@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=2, dilation=2),
                                    dict(kernel_size=(5, 3), padding="same", bias=False),
                                    dict(kernel_size=3, stride=2, padding=1)])
def test_drop_in_for_conv2d(backend, kwargs):
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 4, groups=4, **kwargs)
    layer = DepthwiseConv2d(4, **kwargs)
    assert set(layer.state_dict()) == set(ref.state_dict())
    layer.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 4, 11, 9, requires_grad=True)
    with use_backend(backend):
        y = layer(x)
    assert torch.allclose(y, ref(x), atol=1e-5)
    y.square().sum().backward()
    gx = x.grad.clone()
    x.grad = None
    ref(x).square().sum().backward()
    assert torch.allclose(gx, x.grad, atol=1e-4)
    assert torch.allclose(layer.weight.grad, ref.weight.grad, atol=1e-4)


def test_other_padding_modes_are_refused():
    layer = DepthwiseConv2d(2, 3, padding=1)
    layer.padding_mode = "reflect"
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        layer(torch.randn(1, 2, 5, 5))
