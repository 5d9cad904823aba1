"""Bad input raises ValueError/TypeError naming the argument."""

import pytest
import torch

from istd_kernels.nn import DepthwiseConv2d
from istd_kernels.ops import depthwise_conv2d

x = torch.randn(2, 3, 8, 8)
w = torch.randn(3, 1, 3, 3)


@pytest.mark.parametrize("args,kwargs,exc,match", [
    ((x.numpy(), w), {}, TypeError, "x must be a torch.Tensor"),
    ((x[0], w), {}, ValueError, r"x must be 4-D \[N, C, H, W\]"),
    ((x.long(), w), {}, TypeError, "x must have dtype"),
    ((x, w.double()), {}, TypeError, "weight must have the dtype of x"),
    ((x, w[:2]), {}, ValueError, r"weight must have shape \(C, 1, kh, kw\) = \(3, 1"),
    ((x, torch.randn(3, 2, 3, 3)), {}, ValueError, "weight must have shape"),
    ((x, torch.randn(3, 3, 3)), {}, ValueError, "weight must be 4-D"),
    ((x, torch.randn(3, 1, 33, 3)), {"padding": 16}, ValueError, "between 1 and 31"),
    ((x, w, torch.randn(4)), {}, ValueError, r"bias must have shape \(3,\)"),
    ((x, w, torch.randn(3).half()), {}, TypeError, "bias must have the dtype of x"),
    ((x, w), {"padding": -1}, ValueError, "padding must be >= 0"),
    ((x, w), {"padding": (1, 2, 3)}, ValueError, "padding must be an int or a pair"),
    ((x, w), {"padding": "full"}, ValueError, "padding must be an int, a pair of ints, 'same' or 'valid'"),
    ((x, w), {"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
    ((x, w), {"stride": 0}, ValueError, "stride must be >= 1"),
    ((x, w), {"stride": 1.5}, TypeError, "stride must be an int"),
    ((x, w), {"stride": True}, TypeError, "stride must be an int"),
    ((x, w), {"dilation": 9}, ValueError, "dilation must be between 1 and 8"),
    ((x, torch.randn(3, 1, 7, 7)), {"dilation": 2}, ValueError, "smaller than the dilated kernel"),
    ((torch.randn(1, 0, 4, 4), torch.randn(0, 1, 3, 3)), {}, ValueError, "at least one channel"),
])
@pytest.mark.parametrize("backend", ["torch", "cpp", "triton"])
def test_bad_input(backend, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        depthwise_conv2d(*args, backend=backend, **kwargs)


def test_mismatched_devices():
    with pytest.raises(ValueError, match="weight must be on the device of x"):
        depthwise_conv2d(x, w.to("meta"))


def test_layer_bad_channels():
    with pytest.raises(ValueError, match="channels must be a positive int"):
        DepthwiseConv2d(0, 3)
    with pytest.raises(ValueError, match=r"weight must have shape \(C, 1, kh, kw\) = \(2, 1"):
        DepthwiseConv2d(4, 3)(torch.randn(1, 2, 8, 8))
