"""Connected-component labelling against skimage, and component statistics against OpenCV."""

import cv2  # noqa: E402 - a hard requirement of the test extra: a missing cv2 must fail, not skip
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.measure import label as sk_label
from skimage.measure import regionprops
from tiers import example_counts

import istd_kernels
from istd_kernels import BackendUnavailableError
from istd_kernels.ops import component_stats, connected_components, connected_components_ref

BACKENDS = ["torch", "cpp"]
CONNS = [8, 4]


def sk_labels(mask: np.ndarray, conn: int) -> np.ndarray:
    """skimage's labelling of a [N, H, W] bool array, image by image."""
    out = np.zeros(mask.shape, dtype=np.int64)
    for i, m in enumerate(mask):
        out[i] = sk_label(m, connectivity=2 if conn == 8 else 1, background=0)
    return out


def check_labels(mask, conn, backend, fg=None):
    """Labels and counts of ``backend`` equal skimage's for ``mask`` (any accepted dtype)."""
    fg = (mask.numpy() if fg is None else fg).astype(bool)
    labels, counts = connected_components(mask, conn, backend=backend)
    expected = sk_labels(fg, conn)
    assert labels.dtype == torch.int32 and counts.dtype == torch.int64
    assert labels.shape == mask.shape and counts.shape == (mask.shape[0],)
    np.testing.assert_array_equal(labels.numpy(), expected)
    np.testing.assert_array_equal(counts.numpy(), expected.reshape(len(fg), -1).max(1, initial=0))
    return labels, counts


@example_counts(200)
def test_random_masks_match_skimage(examples):
    @settings(max_examples=examples, deadline=None)
    @given(n=st.integers(1, 3), h=st.integers(1, 24), w=st.integers(1, 24),
           density=st.sampled_from([0.05, 0.3, 0.5, 0.6, 0.8, 0.97]), seed=st.integers(0, 2**32 - 1),
           conn=st.sampled_from(CONNS))
    def check(n, h, w, density, seed, conn):
        mask = torch.from_numpy(np.random.default_rng(seed).random((n, h, w)) < density)
        for backend in BACKENDS:
            check_labels(mask, conn, backend)
    check()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("h,w", [(64, 64), (37, 129), (130, 9)])
def test_larger_random_masks(backend, conn, h, w):
    rng = np.random.default_rng(h * w + conn)
    mask = torch.from_numpy(rng.random((4, h, w)) < np.array([0.2, 0.45, 0.6, 0.75])[:, None, None])
    check_labels(mask, conn, backend)


def diagonal_chains(h, w):
    """Anti-diagonals and diagonals that touch only at corners."""
    m = np.zeros((h, w), dtype=bool)
    for r in range(h):
        m[r, r % w] = True
        m[r, (w - 1 - r) % w] = True
    return m


def zigzag(h, w):
    """A one-pixel-wide snake: the longest geodesic a mask of this size can have."""
    m = np.zeros((h, w), dtype=bool)
    m[::2, :] = True
    for r in range(1, h, 2):
        m[r, w - 1 if (r // 2) % 2 == 0 else 0] = True
    return m


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
def test_structured_masks(backend, conn):
    h, w = 23, 31
    cases = {
        "diagonals": diagonal_chains(h, w),
        "zigzag": zigzag(h, w),
        "border": np.pad(np.zeros((h - 2, w - 2), dtype=bool), 1, constant_values=True),
        "checker": (np.add.outer(np.arange(h), np.arange(w)) % 2 == 0),
        "empty": np.zeros((h, w), dtype=bool),
        "full": np.ones((h, w), dtype=bool),
        "corners": np.zeros((h, w), dtype=bool),
        "u_shape": np.zeros((h, w), dtype=bool),
    }
    cases["corners"][[0, 0, -1, -1], [0, -1, 0, -1]] = True
    # Two arms joined only at the bottom: the right arm's first pixel is seen before the join.
    cases["u_shape"][2:20, 3] = cases["u_shape"][2:20, 25] = cases["u_shape"][19, 3:26] = True
    mask = torch.from_numpy(np.stack(list(cases.values())))
    labels, counts = check_labels(mask, conn, backend)
    names = list(cases)
    assert counts[names.index("full")] == 1 and counts[names.index("empty")] == 0
    assert counts[names.index("u_shape")] == 1 and counts[names.index("border")] == 1
    checker = counts[names.index("checker")]
    assert checker == (1 if conn == 8 else (h * w + 1) // 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_diagonal_chain_counts(backend):
    m = np.zeros((1, 9, 9), dtype=bool)
    m[0, np.arange(9), np.arange(9)] = True
    assert connected_components(torch.from_numpy(m), 8, backend=backend)[1].tolist() == [1]
    assert connected_components(torch.from_numpy(m), 4, backend=backend)[1].tolist() == [9]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("shape", [(3, 1, 1), (2, 1, 40), (2, 40, 1), (2, 1, 8), (2, 1, 9), (1, 3, 17)])
def test_thin_images(backend, conn, shape):
    rng = np.random.default_rng(sum(shape))
    mask = torch.from_numpy(rng.random(shape) < 0.5)
    mask[0] = True
    check_labels(mask, conn, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(0, 5, 7), (0, 0, 0), (2, 0, 4), (2, 4, 0)])
def test_empty_shapes(backend, shape):
    labels, counts = connected_components(torch.zeros(shape, dtype=torch.bool), backend=backend)
    assert labels.shape == shape and labels.dtype == torch.int32
    assert counts.tolist() == [0] * shape[0] and counts.dtype == torch.int64


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_dtypes(backend):
    rng = np.random.default_rng(7)
    prob = rng.random((2, 19, 21))
    fg = prob > 0.5
    for mask in (torch.from_numpy(fg), torch.from_numpy(fg.astype(np.uint8)),
                 torch.from_numpy(fg.astype(np.uint8) * 255), torch.from_numpy(fg.astype(np.int64)),
                 torch.from_numpy(prob), torch.from_numpy(prob).float(), torch.from_numpy(prob).half(),
                 torch.from_numpy(prob).bfloat16()):
        if mask.dtype in (torch.float16, torch.bfloat16):
            fg_cast = (mask > 0.5).numpy()  # rounding to half may move values across 0.5
        else:
            fg_cast = fg
        check_labels(mask, 8, backend, fg=fg_cast)
    # 0.5 itself is background, as in `probability > 0.5`.
    half = torch.full((1, 3, 3), 0.5)
    assert connected_components(half, backend=backend)[1].tolist() == [0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_mask(backend):
    rng = np.random.default_rng(3)
    base = torch.from_numpy(rng.random((3, 30, 40)) < 0.5)
    mask = base.transpose(1, 2)[:, ::2, 1:]
    check_labels(mask, 8, backend, fg=mask.numpy())


def ir_like_masks(n, size, seed):
    """Infrared-style masks: a few small blobs (some touching the border) on empty images."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), dtype=bool)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        for _ in range(rng.integers(0, 6)):
            cy, cx = rng.integers(-2, size + 2, 2)
            ry, rx = rng.uniform(0.5, 4, 2)
            out[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
def test_ir_like_sparse_masks(backend, conn):
    mask = torch.from_numpy(ir_like_masks(8, 128, seed=conn))
    check_labels(mask, conn, backend)


def test_reference_is_the_torch_backend():
    mask = torch.from_numpy(np.random.default_rng(1).random((2, 16, 16)) < 0.5)
    for conn in CONNS:
        a = connected_components_ref(mask, conn)
        b = connected_components(mask, conn, backend="torch")
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_auto_and_context():
    mask = torch.from_numpy(ir_like_masks(2, 32, seed=5))
    expected = connected_components(mask, backend="torch")
    with istd_kernels.use_backend("cpp"):
        got = connected_components(mask)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    got = connected_components(mask, backend="auto")
    assert torch.equal(got[0], expected[0])


# --- component_stats ---------------------------------------------------------------------


def cv2_stats(mask: np.ndarray, conn: int):
    """OpenCV's stats of one image as rows (area, min_row, min_col, max_row+1, max_col+1, cy, cx), sorted."""
    _, _, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=conn,
                                                              ltype=cv2.CV_32S)
    rows = []
    for (x, y, w, h, area), (cx, cy) in zip(stats[1:], centroids[1:]):
        rows.append((int(area), int(y), int(x), int(y + h), int(x + w), float(cy), float(cx)))
    return sorted(rows)


def ours_as_rows(stats, i):
    k = int(stats.counts[i])
    return sorted(
        (int(a), *(int(v) for v in b), float(c[0]), float(c[1]))
        for a, b, c in zip(stats.area[i, :k], stats.bbox[i, :k], stats.centroid[i, :k])
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("density", [0.1, 0.45, 0.7])
def test_component_stats_match_opencv(backend, conn, density):
    rng = np.random.default_rng(int(density * 100) + conn)
    fg = rng.random((4, 33, 47)) < density
    labels, counts = connected_components(torch.from_numpy(fg), conn)
    stats = component_stats(labels, counts, backend=backend)
    m = int(counts.max())
    assert stats.area.shape == (4, m) and stats.area.dtype == torch.int64
    assert stats.centroid.shape == (4, m, 2) and stats.centroid.dtype == torch.float64
    assert stats.bbox.shape == (4, m, 4) and stats.bbox.dtype == torch.int64
    for i in range(4):
        expected = cv2_stats(fg[i], conn)
        got = ours_as_rows(stats, i)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g[:5] == e[:5]
            assert g[5:] == pytest.approx(e[5:], rel=0, abs=1e-12)
        k = int(counts[i])
        assert not stats.area[i, k:].any() and not stats.bbox[i, k:].any() and not stats.centroid[i, k:].any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conn", CONNS)
def test_component_stats_in_label_order_match_regionprops(backend, conn):
    fg = ir_like_masks(3, 64, seed=11)
    fg[0, 10:13, 20:30] = True
    labels, counts = connected_components(torch.from_numpy(fg), conn)
    stats = component_stats(labels, counts, backend=backend)
    for i in range(3):
        props = regionprops(labels[i].numpy())
        assert len(props) == int(counts[i])
        for k, p in enumerate(props):
            assert p.label == k + 1
            assert int(stats.area[i, k]) == p.area
            assert tuple(stats.bbox[i, k].tolist()) == p.bbox
            assert stats.centroid[i, k].tolist() == pytest.approx(list(p.centroid), rel=0, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_component_stats_empty(backend):
    for shape in [(0, 4, 4), (2, 5, 5), (2, 0, 3)]:
        labels, counts = connected_components(torch.zeros(shape, dtype=torch.bool))
        stats = component_stats(labels, counts, backend=backend)
        assert stats.area.shape == (shape[0], 0) and stats.centroid.shape == (shape[0], 0, 2)
        assert stats.bbox.shape == (shape[0], 0, 4) and stats.counts.shape == (shape[0],)


def test_component_stats_backends_agree_on_int64_and_strided_labels():
    fg = torch.from_numpy(ir_like_masks(3, 40, seed=2))
    fg[1, 5:30, 7:9] = True
    labels, counts = connected_components(fg)
    a = component_stats(labels, counts, backend="torch")
    for lab in (labels.long(), labels.transpose(1, 2).contiguous().transpose(1, 2)):
        for backend in BACKENDS:
            b = component_stats(lab, counts, backend=backend)
            assert all(torch.equal(x, y) for x, y in zip(a, b))
    # A label that no pixel carries (counts larger than needed) gives a zero row.
    more = counts + 1
    for backend in BACKENDS:
        c = component_stats(labels, more, backend=backend)
        assert c.area.shape[1] == int(more.max())
        assert torch.equal(c.area[:, : a.area.shape[1]], a.area)
        assert not c.area[:, a.area.shape[1]:].any() and not c.bbox[:, a.area.shape[1]:].any()


# --- bad input ---------------------------------------------------------------------------

M = torch.zeros(2, 5, 5, dtype=torch.bool)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args,exc,match", [
    ((M.numpy(),), TypeError, "mask must be a torch.Tensor"),
    ((M[0],), ValueError, r"mask must be 3-D \[N, H, W\]"),
    ((M[:, None],), ValueError, "mask must be 3-D"),
    ((M.to(torch.complex64),), TypeError, "mask must have dtype"),
    ((M, 6), ValueError, "connectivity must be 4 or 8"),
    ((M, 2), ValueError, "connectivity must be 4 or 8"),
    ((M, 8.0), TypeError, "connectivity must be the int 4 or 8"),
    ((M, True), TypeError, "connectivity must be the int 4 or 8"),
])
def test_bad_input(backend, args, exc, match):
    with pytest.raises(exc, match=match):
        connected_components(*args, backend=backend)
    with pytest.raises(exc, match=match):
        connected_components_ref(*args)


def test_unavailable_backends():
    with pytest.raises(BackendUnavailableError, match="istd.connected_components"):
        connected_components(M, backend="cuda")
    with pytest.raises(BackendUnavailableError, match="istd.connected_components has no 'triton' backend"):
        connected_components(M, backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        connected_components(M, backend="gpu")
    labels, counts = connected_components(M)
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' cannot run istd.component_stats on cpu"):
        component_stats(labels, counts, backend="cuda")


@pytest.mark.parametrize("args,exc,match", [
    ((torch.zeros(2, 3, 3, dtype=torch.int32), torch.zeros(3, dtype=torch.int64)), ValueError,
     r"counts must have shape \(2,\)"),
    ((torch.zeros(2, 3, 3, dtype=torch.int32), torch.zeros(2, dtype=torch.int32)), TypeError, "counts must have dtype"),
    ((torch.zeros(2, 3, 3), torch.zeros(2, dtype=torch.int64)), TypeError, "labels must have dtype"),
    ((torch.zeros(3, 3, dtype=torch.int32), torch.zeros(3, dtype=torch.int64)), ValueError, "labels must be 3-D"),
    ((torch.full((1, 3, 3), 2, dtype=torch.int32), torch.ones(1, dtype=torch.int64)), ValueError, "labels must lie in"),
    ((torch.full((1, 3, 3), -1, dtype=torch.int32), torch.ones(1, dtype=torch.int64)), ValueError,
     "labels must lie in"),
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_component_stats_bad_input(backend, args, exc, match):
    with pytest.raises(exc, match=match):
        component_stats(*args, backend=backend)


CUDA_CASES = {
    "random": lambda rng: rng.random((6, 37, 53)) < np.array([0.1, 0.3, 0.45, 0.6, 0.8, 0.97])[:, None, None],
    "ir_like": lambda rng: ir_like_masks(16, 512, seed=int(rng.integers(1000))),
    "structured": lambda rng: np.stack([diagonal_chains(40, 70), zigzag(40, 70), np.ones((40, 70), bool),
                                        np.zeros((40, 70), bool)]),
    "thin": lambda rng: rng.random((3, 1, 300)) < 0.6,
    "tall": lambda rng: rng.random((3, 300, 1)) < 0.6,
    "large": lambda rng: rng.random((2, 700, 900)) < 0.55,
}


@pytest.mark.cuda
@pytest.mark.parametrize("conn", CONNS)
@pytest.mark.parametrize("case", list(CUDA_CASES))
def test_cuda_backend_matches_skimage(case, conn):
    fg = CUDA_CASES[case](np.random.default_rng(conn))
    for _ in range(3):  # the merge phase races by design; repeat to shake out orderings
        labels, counts = connected_components(torch.from_numpy(fg).cuda(), conn, backend="cuda")
        assert labels.is_cuda and counts.is_cuda
        expected = sk_labels(fg, conn)
        np.testing.assert_array_equal(labels.cpu().numpy(), expected)
        np.testing.assert_array_equal(counts.cpu().numpy(), expected.reshape(len(fg), -1).max(1, initial=0))


@pytest.mark.cuda
def test_cuda_backend_empty_shapes_and_auto():
    for shape in [(0, 5, 7), (2, 0, 4), (2, 4, 0)]:
        labels, counts = connected_components(torch.zeros(shape, dtype=torch.bool, device="cuda"), backend="cuda")
        assert labels.shape == shape and counts.tolist() == [0] * shape[0]
    fg = torch.from_numpy(ir_like_masks(2, 64, seed=4)).cuda()
    a = connected_components(fg)
    b = connected_components(fg, backend="torch")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.cuda
def test_reference_on_cuda():
    fg = ir_like_masks(4, 64, seed=9)
    labels, counts = connected_components(torch.from_numpy(fg).cuda(), backend="torch")
    assert labels.is_cuda
    np.testing.assert_array_equal(labels.cpu().numpy(), sk_labels(fg, 8))
    stats = component_stats(labels, counts, backend="cuda")
    assert stats.area.is_cuda
    cpu = component_stats(labels.cpu(), counts.cpu())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(stats, cpu))
