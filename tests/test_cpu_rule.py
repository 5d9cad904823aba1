"""auto's CPU size rule (istd_kernels/ops/_cpu_rule.py): where auto prefers torch to a cpp kernel."""

import pytest
import torch

from istd_kernels import use_backend
from istd_kernels.extensions import cpu_extension
from istd_kernels.info import _parse, explain_call
from istd_kernels.nn.hlk import HLKConv
from istd_kernels.ops import _dispatch
from istd_kernels.ops._cpu_rule import HLK_CPP_MAX_PIXELS, auto_size, hlk_cpp_takes

OP = "istd.hlk_conv"
GEOMETRY = dict(k1=5, k2=7, dilation=3)
needs_cpp = pytest.mark.skipif(cpu_extension() is None, reason="C++ extension not built")


def test_rule_takes_small_planes_and_calls_without_a_size():
    assert hlk_cpp_takes(pixels=HLK_CPP_MAX_PIXELS) == (True, "")
    assert hlk_cpp_takes() == (True, "")
    ok, reason = hlk_cpp_takes(pixels=HLK_CPP_MAX_PIXELS + 1)
    assert not ok and "torch" in reason and str(HLK_CPP_MAX_PIXELS + 1) in reason


def test_size_is_passed_only_when_auto_chooses():
    x = torch.zeros(1, 1, 64, 48)
    assert auto_size(x, None) == {"pixels": 64 * 48}
    assert auto_size(x, "auto") == {"pixels": 64 * 48}
    assert auto_size(x, "cpp") == {}
    with use_backend("torch"):
        assert auto_size(x, None) == {}


@needs_cpp
def test_auto_routes_large_planes_to_torch_and_explicit_cpp_still_runs():
    cpu = torch.device("cpu")
    assert _dispatch.choose(OP, cpu, torch.float32, None, **GEOMETRY, pixels=64 * 64) == "torch"
    assert _dispatch.choose(OP, cpu, torch.float32, None, **GEOMETRY, pixels=16 * 16) == "cpp"
    assert _dispatch.choose(OP, cpu, torch.float32, "cpp", **GEOMETRY) == "cpp"
    torch.manual_seed(0)
    m = HLKConv(8, 7, out_dim=8, groups=2)
    x = torch.randn(1, 8, 20, 20)
    ref = m(x)  # auto: 400 pixels, torch
    m.backend = "cpp"
    torch.testing.assert_close(m(x), ref, rtol=1e-4, atol=1e-5)


@needs_cpp
def test_explain_names_the_rule():
    out = explain_call(_parse(["--explain", "hlk_conv", "--size", "64x64"]))
    assert "runs torch" in out.splitlines()[0] and "16x16" in out
    assert "runs cpp" in explain_call(_parse(["--explain", "hlk_conv", "--size", "16x16"])).splitlines()[0]
    with pytest.raises(SystemExit):
        _parse(["--explain", "hlk_conv", "--size", "64"])
