"""auto's measured preferences (istd_kernels/ops/_auto_rules.py, held by ops/_dispatch.py): which
path auto prefers where another measured slower, separate from what each record's supports() can
run. On the CPU: HLKConv runs the composed cpp path (cpp depthwise kernels, batched matmuls)."""

import pytest
import torch

from istd_kernels import use_backend
from istd_kernels.extensions import cpu_extension
from istd_kernels.info import _parse, explain_call
from istd_kernels.nn.hlk import HLKConv
from istd_kernels.ops import _dispatch

OP = "istd.hlk_conv"
CPU = torch.device("cpu")
GEOMETRY = dict(k1=5, k2=7, dilation=3)
needs_cpp = pytest.mark.skipif(not cpu_extension().available, reason="C++ extension not built")


def test_cpp_records_support_every_call():
    # The choice between them is a preference of auto, not a limit of either record.
    for path in ("cpp", "cpp-composed"):
        assert _dispatch.implementations(OP)[path].supports(**GEOMETRY) == (True, ""), path


def test_cpu_preference_is_the_composed_path():
    [cpu_rule] = [p for p in _dispatch.preferences(OP) if p.device == "cpu"]
    assert (cpu_rule.to, cpu_rule.over) == ("cpp-composed", ("cpp",))
    assert cpu_rule.when(**GEOMETRY) and "docs/performance.md" in cpu_rule.why


def test_prefer_refuses_an_order_auto_cannot_follow():
    before = len(_dispatch.preferences(OP))
    with pytest.raises(ValueError, match="over must be paths auto tries before 'torch' on cpu"):
        _dispatch.prefer(OP, "cpu", "torch", over=("cuda",), why="x")
    with pytest.raises(ValueError, match="before 'cpp'"):
        _dispatch.prefer(OP, "cpu", "cpp", over=("cpp-composed",), why="x")
    with pytest.raises(ValueError, match="before 'cpp-composed'"):
        _dispatch.prefer(OP, "cpu", "cpp-composed", over=("nope",), why="x")
    assert len(_dispatch.preferences(OP)) == before  # nothing recorded by the refused calls


def _path(backend, **call):
    return _dispatch.choose_path(OP, CPU, torch.float32, backend, **GEOMETRY, **call).path


@needs_cpp
def test_auto_takes_the_composed_path_and_explicit_cpp_the_fused():
    assert _path(None) == _path("auto") == "cpp-composed"
    assert _path("cpp") == "cpp"  # named: no preference applies
    with use_backend("cpp"):  # a context names the backend too
        assert _path(None) == "cpp"
    assert _dispatch.choose(OP, CPU, torch.float32, None, **GEOMETRY) == "cpp"
    # impl() takes the chosen path's name back (the custom op carries it).
    assert _dispatch.impl(OP, "cpp-composed").path == "cpp-composed"
    assert _dispatch.impl(OP, "cpp").path == "cpp"


@needs_cpp
def test_a_conditional_preference_reads_the_call(monkeypatch):
    # A preference may hold for some calls only: the others keep the path it would skip.
    rule = _dispatch.Preference("cpu", "torch", ("cpp", "cpp-composed"), "measured", lambda k2=3, **_: k2 > 5)
    monkeypatch.setitem(_dispatch._PREFERENCES, OP, [rule])
    assert _path(None) == "torch"  # k2 = 7
    assert _dispatch.choose_path(OP, CPU, torch.float32, None, k1=3, k2=3, dilation=2).path == "cpp"
    line = next(x for x in _dispatch.explain(OP, CPU, torch.float32, **GEOMETRY).splitlines() if x.split()[0] == "cpp")
    assert "skipped: auto prefers torch here: measured" in line


@needs_cpp
def test_layer_runs_the_preferred_path_and_matches_the_fused_one(monkeypatch):
    torch.manual_seed(0)
    m = HLKConv(8, 7, out_dim=8, groups=2)
    x = torch.randn(2, 8, 20, 20, requires_grad=True)
    ran = []
    for path in ("cpp", "cpp-composed"):
        record = _dispatch.implementations(OP)[path]
        monkeypatch.setitem(_dispatch._REGISTRY[OP], path, record._replace(
            forward=lambda *a, _f=record.forward, _p=path: ran.append(_p) or _f(*a)))
    y = m(x)
    y.square().sum().backward()
    gx = x.grad
    x.grad = None
    m.backend = "cpp"
    torch.testing.assert_close(m(x), y, rtol=1e-4, atol=1e-5)
    m(x).square().sum().backward()
    torch.testing.assert_close(x.grad, gx, rtol=1e-4, atol=1e-4)
    assert ran == ["cpp-composed", "cpp", "cpp"]


@needs_cpp
def test_explain_names_the_preference():
    out = explain_call(_parse(["--explain", "hlk_conv"]))
    assert out.splitlines()[0].endswith("runs cpp-composed")
    cpp_line = next(line for line in out.splitlines() if line.split()[0] == "cpp")
    assert "skipped: auto prefers cpp-composed here" in cpp_line and "docs/performance.md" in cpp_line
    explicit = explain_call(_parse(["--explain", "hlk_conv", "--backend", "cpp"]))
    assert explicit.splitlines()[0].endswith("runs cpp") and "auto prefers" not in explicit
