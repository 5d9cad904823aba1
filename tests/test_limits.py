"""Limits have one source (csrc/include/istd/limits.h): the CPU extension exports it, Python
reads it, the header parser agrees with both; and the faults of issue 20 that concern the
ops' limits (memory and time bounded by the image, ValueError naming the argument).
"""

import importlib
import resource
import subprocess
import sys
import textwrap

import pytest
import torch

from istd_kernels import limits
from istd_kernels.extensions import cpu_extension
from istd_kernels.ops import (
    component_stats,
    connected_components,
    depthwise_conv2d,
    hlk_conv,
    measure_components,
    multiscale_maxpool,
    split_attention,
)

dw_mod = importlib.import_module("istd_kernels.ops.depthwise")  # the package exports the function
hlk_mod = importlib.import_module("istd_kernels.ops.hlk_conv")  # the package exports the function
mmp_mod = importlib.import_module("istd_kernels.ops.multiscale_maxpool")  # the package exports the function
sa_mod = importlib.import_module("istd_kernels.ops.split_attention")  # the package exports the function

needs_cpp = pytest.mark.skipif(not cpu_extension().available, reason="the C++ CPU extension is not built")


def test_header_parses_to_every_limit():
    parsed = limits.parse_header()
    assert parsed == limits.VALUES
    assert parsed["DW_MAX_KERNEL"] == 31 and parsed["SA_CUDA_MAX_LCM"] == 32 and len(parsed) == 9


@needs_cpp
def test_extension_exports_the_header():
    exported = cpu_extension().module.limits()
    assert {limits._snake(k[1:]): v for k, v in exported.items()} == limits.parse_header()
    assert limits.SOURCE == "istd_kernels._C"


def test_ops_use_the_one_source():
    assert dw_mod.MAX_KERNEL == hlk_mod.MAX_KERNEL == limits.DW_MAX_KERNEL
    assert dw_mod.MAX_DILATION == hlk_mod.MAX_DILATION == limits.DW_MAX_DILATION
    assert sa_mod.MAX_KERNEL_BRANCHES == limits.SA_MAX_BRANCHES
    assert sa_mod.CUDA_MAX_LCM == limits.SA_CUDA_MAX_LCM
    assert mmp_mod.MAX_SCALE == limits.MMP_MAX_SCALE


@needs_cpp
def test_binding_enforces_the_same_kernel_limits():
    ext = cpu_extension().module
    x = torch.randn(1, 1, 40, 40)
    k = limits.DW_MAX_KERNEL
    ext.depthwise_fwd(x, torch.randn(1, 1, k, k), None, [1, 1, 0, 0, 1, 1])
    with pytest.raises(RuntimeError, match=f"between 1 and {k}"):
        ext.depthwise_fwd(x, torch.randn(1, 1, k + 1, 1), None, [1, 1, 0, 0, 1, 1])
    with pytest.raises(RuntimeError, match=f"dilation must be between 1 and {limits.DW_MAX_DILATION}"):
        ext.depthwise_fwd(x, torch.randn(1, 1, 1, 1), None, [1, 1, 0, 0, 1, limits.DW_MAX_DILATION + 1])


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=(1, 2 ** 31)), "stride must be <= 2147483647"),
    (dict(padding=2 ** 31), "padding must be <= 2147483647"),
    (dict(dilation=limits.DW_MAX_DILATION + 1), f"dilation must be between 1 and {limits.DW_MAX_DILATION}"),
])
def test_hyper_parameters_beyond_32_bits_are_value_errors(backend, kwargs, match):
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), None, **kwargs, backend=backend)


def _run_capped(code: str, gib: float, timeout: float) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose address space is capped at ``gib``."""
    cap = int(gib * 2 ** 30)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit)


@needs_cpp
def test_cpp_depthwise_memory_is_bounded_by_the_image_not_the_stride():
    # Used to allocate ~SW elements per packed row: OOM-killed at 23.6 GB for stride 2^30.
    out = _run_capped("""
        import torch
        from istd_kernels.ops import depthwise_conv2d
        x, w = torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3)
        y = depthwise_conv2d(x, w, None, (1, 2 ** 30), 0, 1, backend="cpp")
        ref = torch.nn.functional.conv2d(x, w, None, (1, 2 ** 30))
        assert y.shape == ref.shape == (1, 1, 3, 1), y.shape
        torch.testing.assert_close(y, ref)
        print("ok")
    """, gib=6, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_split_attention_work_is_bounded_by_the_image(backend):
    # Scale 2^20 on 8x8: the cpp backward looped 2^40 cells per branch pixel (hours), the
    # torch backend asked for 13 TB. A subprocess with a memory cap and a timeout.
    if backend == "cpp" and not cpu_extension().available:
        pytest.skip("the C++ CPU extension is not built")
    out = _run_capped(f"""
        import torch
        from istd_kernels.ops import split_attention, split_attention_ref
        g = torch.Generator().manual_seed(0)
        scales = (2 ** 20, 2)
        b = [torch.randn(1, 2, -(-8 // s), -(-8 // s), generator=g, dtype=torch.float64, requires_grad=True)
             for s in scales]
        rest = [torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64, requires_grad=True),
                torch.tensor(1.0, dtype=torch.float64, requires_grad=True)]
        rest += [torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
        z = split_attention(b, *rest, 1, scales, backend="{backend}")
        grads = torch.autograd.grad(z.sum(), b + rest)
        # The reference on the same call, with the huge scale replaced by one covering the image.
        ref = split_attention_ref(b, *rest, 1, (8, 2))
        want = torch.autograd.grad(ref.sum(), b + rest)
        torch.testing.assert_close(z, ref)
        for got, exp in zip(grads, want):
            torch.testing.assert_close(got, exp)
        print("ok")
    """, gib=6, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_split_attention_scale_beyond_the_limit_is_a_value_error():
    s = limits.SA_MAX_SCALE + 1
    b = [torch.randn(1, 2, 1, 1)]
    t = torch.randn(1, 2, 4, 4)
    for backend in ("torch", "cpp"):
        with pytest.raises(ValueError, match=f"scales must be <= {limits.SA_MAX_SCALE}"):
            split_attention(b, torch.randn(1, 1, 4, 4), torch.tensor(1.0), t, t, 1, (s,), backend=backend)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_labeller_image_size_limit_is_a_value_error(backend):
    # An expanded view: 2^31 pixels without the memory.
    mask = torch.zeros(1, 1, 1, dtype=torch.bool).expand(1, 65536, 32768)
    with pytest.raises(ValueError, match=f"at most {limits.MAX_IMAGE_PIXELS} pixels"):
        connected_components(mask, backend=backend)
    with pytest.raises(ValueError, match=f"at most {limits.MAX_IMAGE_PIXELS} pixels"):
        measure_components(mask, backend=backend)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_negative_counts_are_a_value_error(backend):
    labels = torch.zeros(2, 3, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        component_stats(labels, torch.tensor([-1, -2]), backend=backend)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_empty_image_is_the_same_value_error_on_every_backend(backend):
    w = torch.randn(2, 1, 3, 3)
    with pytest.raises(ValueError, match="x must have at least one channel, row and column"):
        hlk_conv(torch.randn(1, 2, 0, 5), w, None, w, None, torch.randn(2, 4, 1, 1), None, 2, backend=backend)
    with pytest.raises(ValueError, match="u must have at least one row and column"):
        multiscale_maxpool(torch.randn(1, 4, 5, 0), 1, 2, backend=backend)
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        depthwise_conv2d(torch.randn(1, 2, 0, 5), torch.randn(2, 1, 1, 1), backend=backend)


def test_meta_tensors_propagate_shapes_with_the_torch_backend():
    meta = dict(device="meta")
    y = depthwise_conv2d(torch.empty(2, 3, 9, 9, **meta), torch.empty(3, 1, 3, 3, **meta), None, 2, 1, backend="torch")
    assert y.device.type == "meta" and y.shape == (2, 3, 5, 5)
    w = torch.empty(2, 1, 3, 3, **meta)
    y = hlk_conv(torch.empty(1, 2, 6, 6, **meta), w, None, w, None, torch.empty(5, 4, 1, 1, **meta), None, 2,
                 backend="torch")
    assert y.device.type == "meta" and y.shape == (1, 5, 6, 6)
    levels = multiscale_maxpool(torch.empty(1, 4, 7, 7, **meta), 1, 2, backend="auto")
    assert [tuple(t.shape) for t in levels] == [(1, 2, 4, 4), (1, 2, 2, 2)]
