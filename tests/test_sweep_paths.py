"""The fast paths of the threshold sweeps give what the plain ones give: ``cut_maps`` (maps
scattered from the pixels over the lowest cut) equals ``above`` at every cut, the sparse
pixel histogram (exact zeros added from the mask's counts) equals the dense one, and the
numpy-backed helpers equal torch's ops, on sparse and dense maps with values on the cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from istd_kernels.metrics import PixelMetrics, pixel_curves, sweep

CUTS = (0.3, 0.0, 0.1, 0.3, 0.5, 0.9)  # unsorted, with a duplicate


def maps(dense: bool, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(3, 24, 20, generator=g, dtype=torch.float64)
    if not dense:
        values = torch.where(torch.rand(3, 24, 20, generator=g) < 0.03, values, 0.0)
    values = values.to(dtype)
    flat = values.view(-1)
    flat[:6] = torch.tensor([0.1, 0.3, 0.5, 0.9, 1 / 9, 8 / 9], dtype=torch.float64).to(dtype)  # on the cuts
    flat[6] = -0.0
    target = torch.rand(3, 24, 20, generator=g) < 0.1
    return values, target


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("share", [-1.0, 2.0])  # force the compare path, then the scatter path
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cut_maps_equal_above(monkeypatch, dense, share, dtype):
    monkeypatch.setattr(sweep, "_SPARSE_SHARE", share)
    values, _ = maps(dense, dtype)
    got = list(sweep.cut_maps(values, CUTS))
    assert len(got) == len(CUTS)
    for cut, m in zip(CUTS, got):
        assert torch.equal(m, values.double() > cut), cut  # the float64 comparison, as numpy makes it


@pytest.mark.parametrize("dense", [False, True])
def test_sparse_histogram_equals_the_dense_one(monkeypatch, dense):
    values, target = maps(dense)
    results = []
    for share in (-1.0, 2.0):
        monkeypatch.setattr(pixel_curves, "_SPARSE_SHARE", share)
        m = PixelMetrics(bins=10, threshold=0.3)
        m.update(values, target)
        results.append(m.compute())
    for k, v in results[0].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(results[1][k])), k


def test_host_helpers_equal_torch():
    values, target = maps(False)
    assert torch.equal(sweep.above(values, 0.1), values.double() > 0.1)
    assert int(sweep.count_true(target)) == int(target.sum())
    assert torch.equal(sweep.count_true(target.view(3, -1), 1), target.view(3, -1).sum(1))
    assert torch.equal(sweep.flat_true(target), target.reshape(-1).nonzero()[:, 0])
    assert sweep.flat_true(torch.zeros(2, 3, dtype=torch.bool)).numel() == 0


def test_above_takes_a_map_that_requires_grad():
    values = torch.full((1, 2, 2), 0.5, requires_grad=True)
    assert sweep.above(values, 0.4).all()


def test_above_compares_float32_maps_in_float64():
    # float32(0.1) rounds up: a pixel equal to it is above 0.1 in float64 (as numpy compares).
    v = torch.tensor([np.float32(0.1), np.nextafter(np.float32(0.1), np.float32(0))], dtype=torch.float32)
    assert sweep.above(v, 0.1).tolist() == [True, False]


def test_unique_indices_and_zeros_like_equal_torch():
    idx = torch.tensor([5, 3, 5, 0, 3, 11], dtype=torch.int64)
    assert torch.equal(sweep.unique_indices(idx, 12), idx.unique())
    assert sweep.unique_indices(torch.zeros(0, dtype=torch.int64), 4).numel() == 0
    for dtype in (torch.bool, torch.float64, torch.int32):
        like = torch.ones(2, 3, dtype=dtype)
        z = sweep.zeros_like(like)
        assert z.dtype == like.dtype and z.shape == like.shape and not z.any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_value_check_on_every_float_dtype(dtype):
    from istd_kernels.metrics._base import check_values
    check_values(torch.tensor([0.0, 1.0], dtype=dtype), False)
    with pytest.raises(ValueError, match="finite"):
        check_values(torch.tensor([0.5, float("nan")], dtype=dtype), True)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_values(torch.tensor([0.5, 2.0], dtype=dtype), False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.bool])
def test_take_equals_indexing(dtype):
    source = (torch.arange(24).reshape(2, 3, 4) % 5).to(dtype)
    index = torch.tensor([23, 0, 7, 7], dtype=torch.int64)
    assert torch.equal(sweep.take(source, index), source.reshape(-1)[index])
