"""Backend registry, selection order and the errors of unavailable backends."""

import subprocess
import sys

import pytest
import torch

import istd_kernels
from istd_kernels import BackendUnavailableError, backends, extensions, use_backend
from istd_kernels import backend as backend_mod
from istd_kernels.nn import DepthwiseConv2d
from istd_kernels.ops import depthwise_conv2d

X = torch.randn(1, 2, 6, 6)
W = torch.randn(2, 1, 3, 3)
CPU = torch.device("cpu")


def test_backends_on_this_machine():
    status = backends()
    assert set(status) == {"torch", "cpp", "cuda", "triton"}
    assert status["torch"][0] and status["cpp"][0]
    assert status["triton"] == (True, status["triton"][1]) and "interpreter" in status["triton"][1]
    if not torch.cuda.is_available():
        ok, reason = status["cuda"]
        assert not ok and reason


def test_explicit_unavailable_backend_names_the_reason():
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' cannot run istd.depthwise_conv2d on cpu"):
        depthwise_conv2d(X, W, backend="cuda")


def test_triton_interpreter_refuses_bfloat16():
    with pytest.raises(BackendUnavailableError, match="bfloat16"):
        depthwise_conv2d(X.bfloat16(), W.bfloat16(), backend="triton")


def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        depthwise_conv2d(X, W, backend="tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        with use_backend("nope"):
            pass


def test_selection_order(monkeypatch):
    def select(backend=None):
        return backend_mod.select("op", backend_mod.NAMES, CPU, torch.float32, backend)
    assert select() == "cpp"
    monkeypatch.setenv("ISTD_BACKEND", "torch")
    assert select() == "torch"
    with use_backend("triton"):
        assert select() == "triton"
        with use_backend("auto"):
            assert select() == "cpp"
        assert select("torch") == "torch"
    assert select() == "torch"
    monkeypatch.setenv("ISTD_BACKEND", "bogus")
    with pytest.raises(ValueError, match="ISTD_BACKEND"):
        select()


def test_auto_never_fails_where_torch_runs():
    # bf16 on CPU: cpp takes it; an op with only torch+triton falls back to torch.
    assert backend_mod.select("op", ("torch", "triton"), CPU, torch.bfloat16) == "torch"
    assert backend_mod.select("op", ("torch", "cuda", "triton"), torch.device("meta"), torch.float32) == "torch"


def test_layer_follows_use_backend():
    layer = DepthwiseConv2d(2, 3, padding=1)
    with use_backend("cuda"):  # cuda never runs CPU tensors, GPU or not
        with pytest.raises(BackendUnavailableError, match="backend .cuda. cannot run istd.depthwise_conv2d on cpu"):
            layer(X)


def test_op_without_backend_is_refused():
    with pytest.raises(BackendUnavailableError, match="has no 'cpp' backend"):
        backend_mod.select("op", ("torch", "triton"), CPU, torch.float32, "cpp")


def test_version_mismatch_is_reported(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    ext = extensions._load("_C")
    assert not ext.available
    assert "built for torch" in ext.reason and "running torch 9.9.9" in ext.reason


def test_info_lists_backends():
    out = subprocess.run([sys.executable, "-m", "istd_kernels.info"], capture_output=True, text=True, check=True).stdout
    for name in ("torch", "cpp", "triton"):
        assert any(line.split()[:2] == [name, "available:"] for line in out.splitlines()), out
    if not torch.cuda.is_available():
        assert any(line.split()[:2] == ["cuda", "unavailable:"] for line in out.splitlines()), out
    assert istd_kernels.__version__ in out


def test_context_covers_ops_without_that_backend(monkeypatch):
    # A model-wide preference: ops that implement it use it, the others choose automatically.
    with use_backend("cpp"):
        assert backend_mod.select("op", ("torch", "triton"), CPU, torch.float32) == "torch"
        assert backend_mod.select("op", backend_mod.NAMES, CPU, torch.float32) == "cpp"
    monkeypatch.setenv("ISTD_BACKEND", "cpp")
    assert backend_mod.select("op", ("torch", "triton"), CPU, torch.float32) == "torch"
