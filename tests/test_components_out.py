"""``out=`` of the labelling ops and ``connected_components_with_stats``.

A reused label buffer must come back holding exactly the new labels whatever it held
before; the fused labelling + statistics must equal the two calls it replaces, bit for bit.
"""

import numpy as np
import pytest
import torch
from test_components import sk_labels

from istd_kernels.ops import component_stats, connected_components, connected_components_with_stats

BACKENDS = ["torch", "cpp", pytest.param("cuda", marks=pytest.mark.cuda)]
LABELLERS = [connected_components, connected_components_with_stats]


def _device(backend):
    return "cuda" if backend == "cuda" else "cpu"


def _masks(shape):
    """Masks of one shape and very different content: dense noise, sparse blobs, empty, full."""
    rng = np.random.default_rng(sum(shape))
    sparse = np.zeros(shape, bool)
    sparse[:, 3:6, 4:9] = True
    sparse[:, -2:, -1] = True
    return [rng.random(shape) < 0.55, sparse, np.zeros(shape, bool), np.ones(shape, bool), rng.random(shape) < 0.1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labeller", LABELLERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("conn", [8, 4])
def test_out_reused_across_contents(backend, labeller, conn):
    shape = (3, 23, 37)
    out = torch.full(shape, -7, dtype=torch.int32, device=_device(backend))
    for fg in _masks(shape):
        result = labeller(torch.from_numpy(fg).to(out.device), conn, backend=backend, out=out)
        assert result[0] is out
        np.testing.assert_array_equal(out.cpu().numpy(), sk_labels(fg, conn))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", [8, 4])
@pytest.mark.parametrize("density", [0.002, 0.3, 0.6, 0.97])
def test_with_stats_equals_the_two_calls(backend, conn, density):
    rng = np.random.default_rng(int(density * 1000) + conn)
    mask = torch.from_numpy(rng.random((4, 41, 67)) < density).to(_device(backend))
    labels, counts = connected_components(mask, conn, backend=backend)
    expected = component_stats(labels, counts, backend=backend)
    for out in (None, torch.full(mask.shape, 5, dtype=torch.int32, device=mask.device)):
        got_labels, got = connected_components_with_stats(mask, conn, backend=backend, out=out)
        assert torch.equal(got_labels, labels)
        for name in expected._fields:
            e, g = getattr(expected, name), getattr(got, name)
            assert g.dtype == e.dtype and g.shape == e.shape and torch.equal(g, e), name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 5, 7), (2, 0, 4), (1, 1, 1), (2, 1, 9)])
def test_with_stats_small_and_empty(backend, shape):
    mask = torch.ones(shape, dtype=torch.bool, device=_device(backend))
    labels, stats = connected_components_with_stats(mask, backend=backend)
    assert labels.shape == shape and labels.dtype == torch.int32
    assert stats.counts.tolist() == [1 if shape[1] * shape[2] else 0] * shape[0]
    if shape[0] and shape[1] * shape[2]:
        assert stats.area[:, 0].tolist() == [shape[1] * shape[2]] * shape[0]


def test_fresh_cpp_labels_behave_like_any_tensor():
    """The cpp labels live in calloc memory: they must still resize, serialise and share."""
    mask = torch.from_numpy(np.random.default_rng(0).random((2, 9, 11)) < 0.4)
    labels, _ = connected_components(mask, backend="cpp")
    before = labels.clone()
    labels.resize_(4, 9, 11)
    assert torch.equal(labels[:2], before)
    assert torch.equal(before.clone().share_memory_(), before)


M = torch.zeros(2, 6, 7, dtype=torch.bool)


@pytest.mark.parametrize("labeller", LABELLERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("out,exc,match", [
    (np.zeros((2, 6, 7), np.int32), TypeError, "out must be a torch.Tensor"),
    (torch.zeros(2, 6, 7, dtype=torch.int64), TypeError, "out must have dtype int32; got torch"),
    (torch.zeros(2, 6, 7), TypeError, "out must have dtype int32; got torch"),
    (torch.zeros(6, 7, dtype=torch.int32), ValueError, "out must be 3-D"),
    (torch.zeros(2, 7, 6, dtype=torch.int32), ValueError, r"out must have mask's shape \(2, 6, 7\)"),
    (torch.zeros(2, 7, 6, dtype=torch.int32).transpose(1, 2), ValueError, "out must be contiguous"),
    (torch.zeros(2, 6, 7, dtype=torch.int32, device="meta"), ValueError, r"out must be on mask's device \(cpu\)"),
])
def test_bad_out(labeller, backend, out, exc, match):
    with pytest.raises(exc, match=match):
        labeller(M, backend=backend, out=out)


@pytest.mark.parametrize("labeller", LABELLERS, ids=lambda f: f.__name__)
def test_out_sharing_the_masks_memory(labeller):
    mask = torch.ones(2, 6, 7, dtype=torch.int32)
    with pytest.raises(ValueError, match="out must not share memory with mask"):
        labeller(mask, out=mask)
