"""The CUDA component_stats kernel against the CPU one, exactly (skipped without a GPU).

The CPU ``cpp`` backend is the reference: both end in stats_core.h's finalisation of exact
integer sums, so area and bbox must be equal and centroids equal bit for bit, whatever
order the GPU's atomics ran in. Each case goes through the public ``backend="cuda"`` path
and straight through the extension's binding, so the kernel is exercised either way.
"""

import numpy as np
import pytest
import torch
from test_components import diagonal_chains, ir_like_masks, zigzag

from istd_kernels.extensions import cuda_extension
from istd_kernels.ops import component_stats, connected_components

pytestmark = pytest.mark.cuda

CONNS = [8, 4]


def kernel_stats(labels: torch.Tensor, m: int):
    """The binding called directly: int32 contiguous CUDA labels, on the current stream."""
    ext = cuda_extension()
    assert ext.available, ext.reason
    lab = labels.to(torch.int32).contiguous()
    with torch.cuda.device(lab.device):
        stream = torch.cuda.current_stream(lab.device).cuda_stream
        return ext.module.component_stats(lab, m, stream)


def assert_identical(got, expected):
    """``got`` (CUDA tensors) equals ``expected`` (CPU tensors): dtypes, shapes, values, bits."""
    for g, e in zip(got, expected):
        assert g.is_cuda
        assert g.dtype == e.dtype and g.shape == e.shape
        g = g.cpu()
        if g.dtype == torch.float64:
            # Bitwise: torch.equal would let -0.0 and 0.0 pass as equal.
            assert torch.equal(g.view(torch.int64), e.view(torch.int64))
        else:
            assert torch.equal(g, e)


def check(labels_cpu: torch.Tensor, counts_cpu: torch.Tensor):
    """Public cuda path and raw kernel on ``labels`` match the cpp backend, and the torch one."""
    expected = component_stats(labels_cpu, counts_cpu, backend="cpp")
    labels, counts = labels_cpu.cuda(), counts_cpu.cuda()
    got = component_stats(labels, counts, backend="cuda")
    assert_identical(got[:3], expected[:3])
    assert torch.equal(got.counts.cpu(), counts_cpu)
    m = int(counts_cpu.max()) if counts_cpu.numel() else 0
    assert_identical(kernel_stats(labels, m), expected[:3])
    assert_identical(component_stats(labels, counts, backend="torch")[:3], expected[:3])
    return expected


def label_on_cpu(fg: np.ndarray, conn: int):
    return connected_components(torch.from_numpy(fg), conn, backend="cpp")


@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.7, 0.97])
def test_random_masks(conn, density):
    rng = np.random.default_rng(int(density * 100) * 10 + conn)
    for shape in [(4, 33, 47), (3, 64, 64), (2, 129, 257)]:
        check(*label_on_cpu(rng.random(shape) < density, conn))


@pytest.mark.parametrize("conn", CONNS)
def test_ir_like_masks(conn):
    for seed in range(3):
        check(*label_on_cpu(ir_like_masks(16, 256, seed=seed + 10 * conn), conn))


def test_structured_masks():
    fg = np.stack([diagonal_chains(40, 70), zigzag(40, 70), np.ones((40, 70), bool), np.zeros((40, 70), bool)])
    for conn in CONNS:
        check(*label_on_cpu(fg, conn))


def test_empty_masks():
    labels, counts = label_on_cpu(np.zeros((3, 17, 31), bool), 8)
    stats = check(labels, counts)
    assert stats.area.shape == (3, 0)
    # Labels that no pixel carries: all-zero rows, from kernels that did run.
    stats = check(labels, counts + 2)
    assert stats.area.shape == (3, 2) and not stats.area.any() and not stats.bbox.any()
    assert not stats.centroid.any()


def test_full_mask():
    # One component covering whole images: every warp's lanes fold into one group and
    # every warp hits the same counters.
    for shape in [(2, 64, 100), (1, 1024, 1024), (3, 7, 5)]:
        labels, counts = label_on_cpu(np.ones(shape, bool), 8)
        stats = check(labels, counts)
        n, h, w = shape
        assert stats.area[:, 0].tolist() == [h * w] * n
        assert stats.bbox[:, 0].tolist() == [[0, 0, h, w]] * n
        assert stats.centroid[:, 0].tolist() == [[(h - 1) / 2, (w - 1) / 2]] * n


@pytest.mark.parametrize("shape", [(3, 1, 300), (3, 300, 1), (40, 1, 1), (64, 1, 3), (5, 3, 7), (2, 1, 70000),
                                   (2, 70000, 1), (1, 3, 70001)])
def test_thin_and_odd_shapes(shape):
    # Warps that straddle rows and images, and coordinates past 16 bits.
    rng = np.random.default_rng(sum(shape))
    fg = rng.random(shape) < 0.6
    fg[0] = True
    for conn in CONNS:
        check(*label_on_cpu(fg, conn))


@pytest.mark.parametrize("shape", [(0, 5, 7), (0, 0, 0), (2, 0, 4), (2, 4, 0)])
def test_empty_shapes(shape):
    labels = torch.zeros(shape, dtype=torch.int32)
    counts = torch.zeros(shape[0], dtype=torch.int64)
    stats = check(labels, counts)
    assert stats.area.shape == (shape[0], 0)
    if shape[0]:
        stats = check(labels, counts + 3)
        assert stats.area.shape == (shape[0], 3) and not stats.area.any() and not stats.bbox.any()


@pytest.mark.parametrize("m", [1, 2, 5, 40, 1000])
def test_scattered_labels(m):
    # Not a labelling, but valid input: components interleave pixel by pixel, so a warp
    # holds many groups with gaps between their lanes.
    rng = np.random.default_rng(m)
    labels = torch.from_numpy(rng.integers(0, m + 1, (3, 45, 77)).astype(np.int32))
    check(labels, torch.full((3,), m, dtype=torch.int64))


def test_int64_and_strided_labels():
    labels, counts = label_on_cpu(ir_like_masks(3, 40, seed=2), 8)
    expected = component_stats(labels, counts, backend="cpp")
    for lab in (labels.long(), labels.transpose(1, 2).contiguous().transpose(1, 2)):
        got = component_stats(lab.cuda(), counts.cuda(), backend="cuda")
        assert_identical(got[:3], expected[:3])


def test_kernel_ignores_labels_outside_range():
    # The Python side rejects them; the kernel must still neither count nor write them.
    rng = np.random.default_rng(5)
    m = 4
    raw = rng.integers(-3, m + 4, (2, 20, 33)).astype(np.int32)
    kept = torch.from_numpy(np.where((raw >= 0) & (raw <= m), raw, 0))
    expected = component_stats(kept, torch.full((2,), m, dtype=torch.int64), backend="cpp")
    assert_identical(kernel_stats(torch.from_numpy(raw).cuda(), m), expected[:3])


def test_side_stream_and_repeat():
    labels, counts = label_on_cpu(ir_like_masks(8, 128, seed=3), 8)
    expected = component_stats(labels, counts, backend="cpp")
    labels, counts = labels.cuda(), counts.cuda()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        runs = [component_stats(labels, counts, backend="cuda") for _ in range(5)]
    torch.cuda.current_stream().wait_stream(side)
    for got in runs:
        assert_identical(got[:3], expected[:3])
