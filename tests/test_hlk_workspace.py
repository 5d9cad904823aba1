"""The weight-gradient workspace of one Triton backward call stays within its budget.

Budget: a quarter of x's bytes or 16 MiB, whichever is larger (``_workspace.budget``). The
figures come from the kernels' own sizing functions, which use the real tiling; at a small
shape the allocation made by an actual run (interpreter) is recorded and must equal them.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

from istd_kernels.layout import hlk_halos
from istd_kernels.ops.hlk_conv import decompose, hlk_conv_ref
from istd_kernels.triton import _workspace
from istd_kernels.triton import depthwise as tdw
from istd_kernels.triton import hlk_conv as thlk

MiB = 1 << 20


def hlk_workspace_bytes(n, c, h, w, cout, groups, k_size, dtype):
    """Workspace of the Triton HLKConv backward for this call (path as the op layer picks it)."""
    k1, k2, dil = decompose(k_size)
    if hlk_halos(k1, k2, dil)[1] <= thlk.MAX_TUNED_HALO:
        return thlk.bwd_workspace_bytes(n, c, h, w, cout, groups, k1, k2, dil, dtype)
    # Larger halos run the composed path: two depthwise weight gradients, one after the other.
    return max(tdw.wgrad_workspace_bytes(n, c, h, w, h, w, (k, k), True, dtype) for k in (k1, k2))


def lcrnet_hlkconvs(batch=8, size=512, channels=(16, 32, 64, 64), groups=4, radix=4):
    """(N, C, H, W, Cout, groups) of every HLKConv 7x7 in LCRNet's DLC-Attention (docs/networks.md §3.2)."""
    for level, dim in enumerate(channels):
        side = size >> level
        yield batch, dim, side, side, groups * radix, groups  # the score HLKConv
        for j in range(1, radix + 1):  # branch j, pooled by 2**j: dim/radix channels -> dim
            pooled = -(-side // 2 ** j)
            yield batch, dim // radix, pooled, pooled, dim, groups


SHAPES = ([(s, 7) for s in lcrnet_hlkconvs()]
          + [((n, c, 512, 512, c, 1), k) for c in (64, 128) for n in (1, 4, 8) for k in (7, 11, 23)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
@pytest.mark.parametrize("shape,k_size", SHAPES, ids=[f"{'x'.join(map(str, s))}-k{k}" for s, k in SHAPES])
def test_workspace_within_budget(shape, k_size, dtype):
    n, c, h, w = shape[:4]
    x_bytes = n * c * h * w * dtype.itemsize
    got = hlk_workspace_bytes(*shape, k_size, dtype)
    assert 0 < got <= max(x_bytes // 4, 16 * MiB), f"{got / MiB:.1f} MiB for x of {x_bytes / MiB:.1f} MiB"


@pytest.mark.parametrize("items,rows", [(1, 1), (7, 3), (8, 2), (100, 7), (21632, 2048), (5, 9)])
def test_runs_cover_every_item_once(items, rows):
    rows = min(rows, items)
    used = _workspace.used_rows(items, rows)
    span = -(-items // rows)
    runs = [range(r * span, min(r * span + span, items)) for r in range(used)]
    assert [i for run in runs for i in run] == list(range(items))
    assert all(len(run) > 0 for run in runs) and used <= rows


@contextlib.contextmanager
def recorded_zeros():
    """Bytes of every torch.zeros result inside the block: the kernels' one workspace allocation."""
    sizes, real = [], torch.zeros

    def zeros(*args, **kwargs):
        t = real(*args, **kwargs)
        sizes.append(t.numel() * t.element_size())
        return t

    torch.zeros = zeros
    try:
        yield sizes
    finally:
        torch.zeros = real


def _small_budget(monkeypatch):
    # Budget x.nbytes // 4 with no floor: at this size every workspace row then sums
    # several (image, tile) items, the path that bounds the memory at full size.
    monkeypatch.setattr(_workspace, "FLOOR_BYTES", 0)


def _hlk_inputs(seed=0):
    n, c, h, w, k_size, cout, groups = 2, 4, 13, 11, 7, 4, 2
    k1, k2, dil = decompose(k_size)
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n, c, h, w), (c, 1, k1, k1), (c,), (c, 1, k2, k2), (c,), (cout, 2 * c // groups, 1, 1), (cout,)]
    params = [torch.randn(s, generator=gen) for s in shapes]
    gy = torch.randn(n, cout, h, w, generator=gen)
    return params, gy, dil, groups


def test_measured_hlk_workspace(monkeypatch):
    _small_budget(monkeypatch)
    params, gy, dil, groups = _hlk_inputs()
    x, w0, b0, w1, b1, w_pw, b_pw = params
    n, c, h, w = x.shape
    want = thlk.bwd_workspace_bytes(n, c, h, w, w_pw.shape[0], groups, w0.shape[2], w1.shape[2], dil, x.dtype)
    rows_bytes = sum((c * 9, c, c * 9, c, w_pw.shape[0] * w_pw.shape[1], w_pw.shape[0])) * 4
    assert want // rows_bytes >= 2, "the case must spread items over several rows"
    assert want <= x.nbytes // 4

    runs = []
    for _ in range(2):
        with recorded_zeros() as sizes:
            runs.append(thlk.hlk_bwd(gy, x, w0, b0, w1, b1, w_pw, dil, groups, [True] * 7))
        assert sizes == [want], "one workspace allocation, of the computed size"
    assert all(torch.equal(a, b) for a, b in zip(*runs)), "bitwise reproducible"

    leaves = [p.double().requires_grad_() for p in params]
    ref = torch.autograd.grad(hlk_conv_ref(*leaves, dil, groups), leaves, gy.double())
    for got, r in zip(runs[0], ref):
        torch.testing.assert_close(got.double(), r, rtol=1e-4, atol=1e-4)


def test_measured_depthwise_workspace(monkeypatch):
    # Here the row cap does it: 12 (image, tile) items over 3 rows.
    monkeypatch.setattr(_workspace, "MAX_ROWS", 3)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 12, 40, generator=gen)
    w = torch.randn(2, 1, 3, 3, generator=gen)
    gy = torch.randn(3, 2, 12, 40, generator=gen)
    want = tdw.wgrad_workspace_bytes(3, 2, 12, 40, 12, 40, (3, 3), True, x.dtype)
    assert want == 3 * 2 * 10 * 4

    with recorded_zeros() as sizes:
        gw, gb = tdw.depthwise_bwd_weight(gy, x, (3, 3), (1, 1), (1, 1), (1, 1), True)
    assert sizes == [want], "one workspace allocation, of the computed size"

    xd, wd, bd = x.double(), w.double().requires_grad_(), torch.zeros(2, dtype=torch.float64, requires_grad=True)
    ref_w, ref_b = torch.autograd.grad(F.conv2d(xd, wd, bd, 1, 1, 1, 2), (wd, bd), gy.double())
    torch.testing.assert_close(gw.double(), ref_w, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb.double(), ref_b, rtol=1e-4, atol=1e-4)
