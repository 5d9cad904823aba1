"""The implementation registry (istd_kernels/ops/_dispatch.py): each op's backends with their
own "can I run this call?" check, auto walking them in order, explicit requests refused with
the reason, and the explanation of a choice. GPU capability is mocked: these run on a CPU.
"""

import importlib
import subprocess
import sys

import pytest
import torch

from istd_kernels import backend as backend_mod
from istd_kernels.ops import _dispatch, hlk_conv

dw_mod = importlib.import_module("istd_kernels.ops.depthwise")  # the package exports the function
sa_mod = importlib.import_module("istd_kernels.ops.split_attention")  # the package exports the function

CUDA = torch.device("cuda")
SA = sa_mod.OP
HLK = "istd.hlk_conv"


@pytest.fixture
def gpu(monkeypatch):
    """A machine whose cuda and triton backends are available for CUDA tensors (mocked probes)."""
    available = {"torch", "cuda", "triton"}

    def fits(name, device, dtype):
        if device.type == "cuda" and name in available:
            return True, ""
        return False, f"{name} is unavailable here"

    monkeypatch.setattr(backend_mod, "_fits", fits)
    return available


def test_every_op_has_every_backend_it_names():
    for op in ("istd.depthwise_conv2d", "istd.hlk_conv", "istd.multiscale_maxpool", SA):
        assert set(_dispatch.backends(op)) == {"torch", "cpp", "cuda", "triton"}, op
    for op in ("istd.connected_components", "istd.component_stats", "istd.measure_components",
               "istd.connected_components_with_stats"):
        assert set(_dispatch.backends(op)) == {"torch", "cpp", "cuda"}, op
    # The metrics' own routed ops are records too.
    assert set(_dispatch.backends("istd.mask_overlap")) == {"torch", "cpp"}
    assert set(_dispatch.backends("istd.measure_pair")) == {"cpp"}


def test_no_module_keeps_a_backend_tuple_beside_the_registry():
    import istd_kernels.ops as ops_pkg

    for name in ("depthwise", "hlk_conv", "multiscale_maxpool", "split_attention", "components"):
        assert not hasattr(importlib.import_module(f"istd_kernels.ops.{name}"), "BACKENDS"), name
    assert ops_pkg


def test_hlk_triton_has_a_fused_and_a_composed_path(gpu):
    assert list(_dispatch.implementations(HLK)) == ["torch", "cpp", "cuda", "cpp-composed", "triton-fused",
                                                    "triton-composed"]
    k7, k23 = dict(k1=3, k2=3, dilation=2), dict(k1=5, k2=7, dilation=3)
    assert _dispatch.choose(HLK, CUDA, torch.float32, "triton", **k7) == "triton"
    assert _dispatch.impl(HLK, "triton", **k7).path == "triton-fused"
    assert _dispatch.impl(HLK, "triton", **k23).path == "triton-composed"
    ok, reason = _dispatch.implementations(HLK)["triton-fused"].supports(**k23)
    assert not ok and "halo" in reason and "got 11" in reason


def test_explain_lists_every_hlk_path(gpu):
    gpu.discard("cuda")
    # Named explicitly: auto on CUDA prefers cuDNN to both Triton paths (test_auto_on_a_gpu_...).
    lines = _dispatch.explain(HLK, "cuda", torch.float32, "triton", k1=5, k2=7, dilation=3).splitlines()
    assert lines[0].endswith("runs triton-composed"), lines
    verdicts = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert set(verdicts) == {"cuda", "triton-fused", "triton-composed", "torch", "cpp", "cpp-composed"}
    assert verdicts["triton-fused"].startswith("skipped:") and "halo" in verdicts["triton-fused"]
    assert verdicts["triton-composed"] == "can run"


def test_auto_on_a_gpu_prefers_cuda(gpu):
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(2, 4)) == "cuda"
    # lcm 15 <= 32: the CUDA kernel takes non-power-of-two scales the Triton kernels refuse.
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(3, 5)) == "cuda"


def test_auto_on_a_gpu_sends_convolutions_to_cudnn(gpu):
    # Measured on an H200 (ops/_auto_rules.py): cuDNN beat the depthwise and HLKConv kernels,
    # while the cuda split attention and max-pool made LCRNet's forward faster.
    for op, call in ((dw_mod.OP, {}), (HLK, dict(k1=3, k2=3, dilation=2))):
        assert _dispatch.choose(op, CUDA, torch.float32, **call) == "torch", op
        assert _dispatch.choose(op, CUDA, torch.float16, "auto", **call) == "torch", op
        assert _dispatch.choose(op, CUDA, torch.float32, "cuda", **call) == "cuda", op
        assert _dispatch.choose(op, CUDA, torch.float32, "triton", **call) == "triton", op
    assert _dispatch.choose("istd.multiscale_maxpool", CUDA, torch.float32) == "cuda"
    # The preference is CUDA's: on CPU tensors the cpp depthwise kernel keeps its place.
    assert [p.device for p in _dispatch.preferences(dw_mod.OP)] == ["cuda"]


def test_explain_cites_the_gpu_measurement(gpu):
    lines = _dispatch.explain(dw_mod.OP, "cuda", torch.float32).splitlines()
    assert lines[0].endswith("runs torch"), lines
    for line in lines[1:3]:
        assert line.split()[1:5] == ["skipped:", "auto", "prefers", "torch"], line
        assert "nvidia-h200/2026-12-04-machine/report.md" in line and "backward not measured" in line
    assert _dispatch.explain(dw_mod.OP, "cuda", torch.float32, "cuda").splitlines()[0].endswith("runs cuda")


def test_auto_reaches_triton_when_cuda_refuses_the_call(gpu, monkeypatch):
    # With today's limits every call triton takes, cuda takes too; a cuda record that refuses
    # a call (a tighter kernel limit) must hand it to triton, not to the reference.
    cuda = _dispatch.impl(SA, "cuda")
    monkeypatch.setitem(_dispatch._REGISTRY[SA], "cuda", cuda._replace(supports=lambda **call: (False, "refused")))
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(2, 4)) == "triton"
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(3, 5)) == "torch"  # triton needs powers of two


def test_auto_without_cuda_extension_falls_past_triton_limits(gpu):
    # Before the registry, auto picked triton here and then raised on scales it cannot take.
    gpu.discard("cuda")
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(2, 4)) == "triton"
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(3, 5)) == "torch"
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(2, 4, 8, 16, 32)) == "torch"  # 5 branches


def test_auto_past_every_kernel_limit_is_torch(gpu):
    assert _dispatch.choose(SA, CUDA, torch.float32, scales=(64, 3)) == "torch"  # lcm 192, not powers of two


def test_explicit_request_gets_the_reason(gpu):
    with pytest.raises(ValueError, match="least common multiple is <= 32"):
        _dispatch.choose(SA, CUDA, torch.float32, "cuda", scales=(64, 3))
    with pytest.raises(ValueError, match="powers of two"):
        _dispatch.choose(SA, CUDA, torch.float32, "triton", scales=(3, 5))
    with pytest.raises(backend_mod.BackendUnavailableError, match="cpp is unavailable here"):
        _dispatch.choose(SA, CUDA, torch.float32, "cpp", scales=(2, 4))


def test_explain_names_the_choice_and_every_skip(gpu):
    gpu.discard("cuda")
    text = _dispatch.explain(SA, "cuda", torch.float32, scales=(3, 5))
    lines = text.splitlines()
    assert lines[0].endswith("runs torch"), text
    assert lines[1].split()[:2] == ["cuda", "skipped:"] and "unavailable" in lines[1]
    assert lines[2].split()[:2] == ["triton", "skipped:"] and "powers of two" in lines[2]
    assert lines[3].split()[:3] == ["torch", "can", "run"]
    assert "raises" in _dispatch.explain(SA, "cuda", torch.float32, "triton", scales=(3, 5)).splitlines()[0]


def test_info_explain_command():
    out = subprocess.run([sys.executable, "-m", "istd_kernels.info", "--explain", "split_attention", "--scales", "3,5"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].startswith("istd.split_attention on cpu float32 tensors with scales=(3, 5): runs ")
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"torch", "cpp", "cuda", "triton"}
    bad = subprocess.run([sys.executable, "-m", "istd_kernels.info", "--explain", "nope"], capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "unknown op 'istd.nope'" in bad.stderr
    hlk = subprocess.run([sys.executable, "-m", "istd_kernels.info", "--explain", "hlk_conv", "--k-size", "23"],
                         capture_output=True, text=True, check=True).stdout
    assert {line.split()[0] for line in hlk.splitlines()[1:]} == {"torch", "cpp", "cpp-composed", "cuda",
                                                                  "triton-fused", "triton-composed"}
    assert "k1=5, k2=7, dilation=3" in hlk.splitlines()[0]


def test_a_backend_registers_once():
    with pytest.raises(RuntimeError, match="already has a 'cpp' implementation"):
        _dispatch.register(dw_mod.OP, "cpp", lambda *a: None)
    with pytest.raises(ValueError, match="backend must be one of"):
        _dispatch.register("istd.new_op", "tensorrt", lambda *a: None)


def test_composed_hlk_backward_calls_the_depthwise_record(monkeypatch):
    # cpp's HLKConv backward is composed from depthwise kernels: through the depthwise
    # record, not that op's private helpers.
    calls = []
    record = _dispatch.impl(dw_mod.OP, "cpp")

    def counting(fn, what):
        def run(*args):
            calls.append(what)
            return fn(*args)
        return run

    monkeypatch.setitem(_dispatch._REGISTRY[dw_mod.OP], "cpp", record._replace(
        forward=counting(record.forward, "forward"), backward=counting(record.backward, "backward")))
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    params = [torch.randn(2, 1, 3, 3), torch.randn(2), torch.randn(2, 1, 3, 3), torch.randn(2),
              torch.randn(3, 4, 1, 1), torch.randn(3)]
    hlk_conv(x, *params, 2, backend="cpp").sum().backward()
    assert calls == ["forward", "forward", "backward", "backward"]
    assert x.grad is not None
