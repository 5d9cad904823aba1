"""conv1x1 (istd_kernels/nn/pointwise.py): DLC-Attention's 1x1 convolutions as batched products
on the CPU, the same function as nn.Conv2d forward and backward, and nn.Conv2d elsewhere."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from istd_kernels import use_backend
from istd_kernels.nn import DLCAttention
from istd_kernels.nn.pointwise import conv1x1


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def _conv(cin, cout, groups, bias, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Conv2d(cin, cout, 1, groups=groups, bias=bias).to(dtype)


@pytest.mark.parametrize("n", [0, 1, 3])
@pytest.mark.parametrize("cin,cout,groups,bias", [(16, 16, 1, True), (16, 16, 4, True), (8, 12, 4, False),
                                                  (6, 3, 3, True)])
def test_matches_conv_forward_and_backward(n, cin, cout, groups, bias):
    conv = _conv(cin, cout, groups, bias)
    x = torch.randn(n, cin, 5, 7, requires_grad=True)
    got, want = conv1x1(conv, x), conv(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    params = [x, *conv.parameters()]
    torch.testing.assert_close(torch.autograd.grad(got, params, g), torch.autograd.grad(want, params, g),
                               rtol=1e-5, atol=1e-5)


def test_gradcheck_float64():
    conv = _conv(8, 8, 4, True, torch.float64)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: conv1x1(conv, x), (x, conv.weight, conv.bias))


@pytest.mark.parametrize("make", [
    lambda x: x.contiguous(memory_format=torch.channels_last),
    lambda x: x.half(),
    lambda x: x[:, :, ::2],
], ids=["channels_last", "float16", "strided"])
def test_other_inputs_run_the_conv(make):
    conv = _conv(8, 8, 4, True)
    x = make(torch.randn(2, 8, 6, 6))
    conv = conv.to(x.dtype)
    with _Ops() as rec:
        got = conv1x1(conv, x)
    assert torch.ops.aten.convolution.default in rec.ops
    torch.testing.assert_close(got, conv(x))


def test_contiguous_float32_runs_a_product_not_a_conv():
    conv = _conv(8, 8, 4, True)
    with _Ops() as rec:
        conv1x1(conv, torch.randn(1, 8, 6, 6))
    assert torch.ops.aten.convolution.default not in rec.ops
    assert torch.ops.aten.baddbmm.default in rec.ops


def test_autocast_runs_the_conv():
    conv = _conv(8, 8, 1, True)
    x = torch.randn(1, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), _Ops() as rec:
        got = conv1x1(conv, x)
    assert torch.ops.aten.convolution.default in rec.ops
    assert got.dtype == torch.bfloat16


def test_wrong_input_gets_the_conv_error():
    conv = _conv(8, 8, 1, True)
    with pytest.raises(RuntimeError, match="channels"):
        conv1x1(conv, torch.randn(1, 5, 4, 4))


def test_rejects_a_conv_that_is_not_1x1():
    with pytest.raises(ValueError, match="1x1"):
        conv1x1(nn.Conv2d(4, 4, 3, padding=1), torch.randn(1, 4, 5, 5))


def test_dlc_attention_projections_are_products_on_cpu():
    torch.manual_seed(1)
    attn = DLCAttention(16).eval()
    with use_backend("torch"), torch.no_grad(), _Ops() as rec:
        attn(torch.randn(1, 16, 8, 8))
    convs = [f for f in rec.ops if f == torch.ops.aten.convolution.default]
    # The HLKConvs' depthwise and 1x1 convolutions (torch backend) only: 5 HLKConvs x 3.
    assert len(convs) == 15
