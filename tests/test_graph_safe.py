"""The Triton paths are CUDA-graph safe: no host data, no host<->device copy, no sync per call.

A CUDA graph replays device work only, so a forward or backward that builds a tensor from
Python data (``torch.tensor(rows).to(device)``, the old multiscale_maxpool level table),
reads a device value on the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``) or
synchronises cannot be captured. Without a GPU such a copy is invisible (``.to("cpu")`` of a
CPU tensor does nothing), so :class:`HostTrafficGuard` flags the step before it: turning
host data into a tensor (``aten.lift_fresh``, which ``torch.tensor``/``torch.as_tensor``
call), the scalar reads, and, on a GPU, any copy whose source and destination devices
differ. It sees inside our custom ops by redispatching them under itself. The Triton
interpreter's own launch emulation (host copies of every argument) is not ours and runs
with the guard suspended; on a GPU that launch is a plain kernel launch.

Each op runs once first (warm-up: autotuning and first-call caches are allowed to touch the
host), then forward and backward again under the guard.
"""

import pytest
import torch
from hlk_cases import make_params
from torch.utils._python_dispatch import TorchDispatchMode

from istd_kernels.ops.depthwise import depthwise_conv2d
from istd_kernels.ops.hlk_conv import hlk_conv
from istd_kernels.ops.multiscale_maxpool import multiscale_maxpool
from istd_kernels.ops.split_attention import split_attention

aten = torch.ops.aten
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Host data becoming a tensor, and device values read on the host.
_HOST_OPS = {aten.lift_fresh, aten.lift_fresh_copy, aten.item, aten._local_scalar_dense, aten.is_nonzero,
             aten.equal}
_COPY_OPS = {aten._to_copy, aten.copy_, aten.copy}
# Not dispatched to aten at all, so patched while the guard is active.
_HOST_METHODS = ("tolist", "numpy", "cpu")


def _devices(args, kwargs):
    found = [a.device for a in args if isinstance(a, torch.Tensor)]
    if kwargs.get("device") is not None:
        found.append(torch.device(kwargs["device"]))
    return {d.type for d in found}


class HostTrafficGuard(TorchDispatchMode):
    """Record every host-data tensor, host read, cross-device copy or sync while active."""

    def __init__(self):
        super().__init__()
        self.violations = []
        self.suspended = 0

    def flag(self, what):
        if not self.suspended:
            self.violations.append(what)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in _HOST_OPS:
            self.flag(str(func))
        elif func.overloadpacket in _COPY_OPS and len(_devices(args, kwargs)) > 1:
            self.flag(f"{func} across devices {sorted(_devices(args, kwargs))}")
        if func.namespace == "aten":
            return func(*args, **kwargs)
        # Our custom ops: run their implementation with this mode still active.
        key = torch._C.DispatchKey.CUDA if DEVICE == "cuda" else torch._C.DispatchKey.CPU
        with self:
            return func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)


@pytest.fixture
def guard(monkeypatch):
    mode = HostTrafficGuard()

    def forbid(name, original):
        def patched(*args, **kwargs):
            mode.flag(name)
            return original(*args, **kwargs)
        return patched

    for name in _HOST_METHODS:
        monkeypatch.setattr(torch.Tensor, name, forbid(f"Tensor.{name}", getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.cuda, "synchronize", forbid("torch.cuda.synchronize", torch.cuda.synchronize))
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # no interpreter in this Triton: nothing to suspend
        return mode
    run = InterpretedFunction.run

    def interpreted_run(self, *args, **kwargs):
        mode.suspended += 1
        try:
            return run(self, *args, **kwargs)
        finally:
            mode.suspended -= 1

    monkeypatch.setattr(InterpretedFunction, "run", interpreted_run)
    return mode


def _rand(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(torch.float32).to(DEVICE)


def _depthwise():
    leaves = [_rand(1, 2, 5, 6), _rand(2, 1, 3, 3, seed=1), _rand(2, seed=2)]
    return leaves, lambda x, w, b: depthwise_conv2d(x, w, b, 1, 1, 1, backend="triton")


def _hlk():
    params, dil, groups = make_params((1, 2, 5, 6, 7, 2, 1), torch.float32)
    leaves = [p.to(DEVICE) for p in params]
    return leaves, lambda *p: hlk_conv(*p, dil, groups, backend="triton")


def _maxpool():
    # radix 6: two launches (four levels per launch), scales with uint8 offsets.
    def run(u):
        return sum(y.square().sum() for y in multiscale_maxpool(u, 1, 6, [2, 3, 1, 2, 5, 4], backend="triton"))
    return [_rand(1, 6, 5, 6)], run


def _split_attention():
    branches = [_rand(1, 4, 3, 3), _rand(1, 4, 2, 2, seed=1)]
    rest = [_rand(1, 2, 5, 6, seed=2), _rand(1, seed=3).abs() + 0.5, _rand(1, 4, 5, 6, seed=4),
            _rand(1, 4, 5, 6, seed=5)]

    def run(b0, b1, logits, temperature, residual, v):
        return split_attention([b0, b1], logits, temperature, residual, v, 1, backend="triton")
    return branches + rest, run


CASES = {"depthwise_conv2d": _depthwise, "hlk_conv": _hlk, "multiscale_maxpool": _maxpool,
         "split_attention": _split_attention}


def _forward_backward(fn, leaves):
    leaves = [t.detach().requires_grad_() for t in leaves]
    y = fn(*leaves)
    grads = torch.autograd.grad(y, leaves, torch.ones_like(y))
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("op", list(CASES))
def test_triton_forward_backward_touch_no_host(op, guard):
    leaves, fn = CASES[op]()
    _forward_backward(fn, leaves)  # warm-up
    with guard:
        _forward_backward(fn, leaves)
    assert guard.violations == [], f"{op} (triton) is not CUDA-graph safe: {guard.violations}"


def test_guard_sees_a_host_table_inside_a_custom_op(guard):
    # The pattern the old multiscale_maxpool had, inside a custom op: the guard must flag it.
    @torch.library.custom_op("istd_test::host_table", mutates_args=())
    def host_table(x: torch.Tensor) -> torch.Tensor:
        table = torch.tensor([1, 2, 3], dtype=x.dtype).to(x.device, non_blocking=True)
        return x + table.sum()

    x = _rand(3)
    with guard:
        host_table(x)
        (x.sum() > 0).item()
        x.tolist()
    assert guard.violations[0] == "aten.lift_fresh.default"
    assert "aten.item.default" in guard.violations or "aten._local_scalar_dense.default" in guard.violations
    assert guard.violations[-1] == "Tensor.tolist"
