"""The eager shortcut of the custom ops (ops/_transforms.plain_eager): a call that autograd does
not record runs the op's function directly; every traced, transformed, recorded or profiled
call, and every call autograd records, keeps the custom op."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from istd_kernels.nn import HLKConv
from istd_kernels.ops._transforms import plain_eager


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _args(requires_grad=False, device="cpu"):
    x = torch.randn(1, 4, 6, 6, device=device, requires_grad=requires_grad)
    return [x, [torch.randn(2, device=device)], 3, "cpp"]


def test_no_grad_call_is_plain():
    with torch.no_grad():
        assert plain_eager(_args(requires_grad=True))
    assert plain_eager(_args())  # grad mode on, but nothing requires grad
    assert plain_eager([torch.nn.Parameter(torch.randn(3), requires_grad=False)])


def test_recorded_call_is_not_plain():
    assert not plain_eager(_args(requires_grad=True))
    w = torch.nn.Parameter(torch.randn(3))
    assert not plain_eager([torch.randn(3), [w]])  # a tensor inside a list argument counts


@pytest.mark.parametrize("context", [
    lambda: _Ops(),
    lambda: torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]),
], ids=["dispatch-mode", "profiler"])
def test_modes_and_profiler_keep_the_custom_op(context):
    with context(), torch.no_grad():
        assert not plain_eager(_args())


def test_meta_and_subclass_tensors_are_not_plain():
    assert not plain_eager([torch.empty(2, device="meta")])

    class Sub(torch.Tensor):
        pass

    assert not plain_eager([torch.randn(2).as_subclass(Sub)])


def test_jit_trace_and_func_transforms_are_not_plain():
    seen = []

    def probe(x):
        seen.append(plain_eager([x]))
        return x * 2

    torch.jit.trace(probe, torch.randn(3), check_trace=False)
    torch.func.vmap(probe)(torch.randn(2, 3))
    assert seen == [False, False]


def test_profiler_still_names_the_op_and_results_agree():
    torch.manual_seed(0)
    layer = HLKConv(8, 7, out_dim=8, groups=2)
    x = torch.randn(1, 8, 9, 7)
    with torch.no_grad():
        direct = layer(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            via_op = layer(x)
    assert any(e.key == "istd::hlk_conv" for e in prof.key_averages())
    recorded = layer(x)  # grad mode on, parameters require grad: the custom op with autograd
    assert recorded.grad_fn is not None
    torch.testing.assert_close(direct, via_op, rtol=0, atol=0)
    torch.testing.assert_close(direct, recorded.detach(), rtol=0, atol=0)
