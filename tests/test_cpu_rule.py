"""auto's measured preferences (istd_kernels/ops/_auto_rules.py, held by ops/_dispatch.py): where
auto prefers torch to a kernel, separate from what each record's supports() can run."""

import pytest
import torch

from istd_kernels import use_backend
from istd_kernels.extensions import cpu_extension
from istd_kernels.info import _parse, explain_call
from istd_kernels.nn.hlk import HLKConv
from istd_kernels.ops import _dispatch
from istd_kernels.ops._auto_rules import HLK_CPP_MAX_PIXELS

OP = "istd.hlk_conv"
CPU = torch.device("cpu")
GEOMETRY = dict(k1=5, k2=7, dilation=3)
needs_cpp = pytest.mark.skipif(not cpu_extension().available, reason="C++ extension not built")


def test_cpp_record_supports_every_size():
    # The size rule is a preference of auto, not a limit of the record.
    record = _dispatch.impl(OP, "cpp")
    assert record.supports(**GEOMETRY, pixels=512 * 512) == (True, "")


def test_preference_binds_auto_only_on_cpu_large_planes():
    [cpu_rule] = [p for p in _dispatch.preferences(OP) if p.device == "cpu"]
    assert (cpu_rule.backend, cpu_rule.over) == ("torch", ("cpp",))
    assert cpu_rule.when(**GEOMETRY, pixels=HLK_CPP_MAX_PIXELS + 1)
    assert not cpu_rule.when(**GEOMETRY, pixels=HLK_CPP_MAX_PIXELS)
    assert not cpu_rule.when(**GEOMETRY)  # a call without a plane (a composed caller) is not skipped
    assert "16x16" in cpu_rule.why and "docs/performance.md" in cpu_rule.why


def test_prefer_refuses_an_order_auto_cannot_follow():
    with pytest.raises(ValueError, match="over must be backends auto tries before 'torch'"):
        _dispatch.prefer(OP, "cpu", "torch", over=("cuda",), why="x")
    with pytest.raises(ValueError, match="before 'cpp'"):
        _dispatch.prefer(OP, "cpu", "cpp", over=("torch",), why="x")
    assert len(_dispatch.preferences(OP)) == 2  # nothing recorded by the refused calls


@needs_cpp
def test_auto_routes_large_planes_to_torch_and_explicit_cpp_still_runs():
    assert _dispatch.choose(OP, CPU, torch.float32, None, **GEOMETRY, pixels=64 * 64) == "torch"
    assert _dispatch.choose(OP, CPU, torch.float32, None, **GEOMETRY, pixels=16 * 16) == "cpp"
    assert _dispatch.choose(OP, CPU, torch.float32, "cpp", **GEOMETRY, pixels=64 * 64) == "cpp"
    with use_backend("cpp"):  # a context names the backend too: no preference applies
        assert _dispatch.choose(OP, CPU, torch.float32, None, **GEOMETRY, pixels=64 * 64) == "cpp"
    with use_backend("auto"):
        assert _dispatch.choose(OP, CPU, torch.float32, None, **GEOMETRY, pixels=64 * 64) == "torch"


@needs_cpp
def test_layer_follows_the_preference(monkeypatch):
    torch.manual_seed(0)
    m = HLKConv(8, 7, out_dim=8, groups=2)
    x = torch.randn(1, 8, 20, 20)  # 400 pixels: auto runs torch
    chosen = []
    real = _dispatch.choose
    monkeypatch.setattr(_dispatch, "choose", lambda *a, **k: chosen.append(real(*a, **k)) or chosen[-1])
    ref = m(x)
    m.backend = "cpp"
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)
    assert chosen == ["torch", "cpp"]


@needs_cpp
def test_explain_names_the_preference():
    out = explain_call(_parse(["--explain", "hlk_conv", "--size", "64x64"]))
    assert out.splitlines()[0].endswith("runs torch")
    cpp_line = next(line for line in out.splitlines() if line.split()[0] == "cpp")
    assert "skipped: auto prefers torch here" in cpp_line and "16x16" in cpp_line
    assert explain_call(_parse(["--explain", "hlk_conv", "--size", "16x16"])).splitlines()[0].endswith("runs cpp")
    explicit = explain_call(_parse(["--explain", "hlk_conv", "--size", "64x64", "--backend", "cpp"]))
    assert explicit.splitlines()[0].endswith("runs cpp") and "auto prefers" not in explicit
    with pytest.raises(SystemExit):
        _parse(["--explain", "hlk_conv", "--size", "64"])
