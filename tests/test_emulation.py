"""Every CUDA kernel of csrc/cuda run on the CPU under the host emulation and compared with
its plain-PyTorch reference (docs/emulation.md). Small shapes: each block's threads are
fibers, so a launch costs about a microsecond per thread switch."""
from __future__ import annotations

import emulation_build
import pytest
import test_split_attention as sa_cases
import torch
from depthwise_cases import expected_and_grads

from istd_kernels.ops.components import component_stats as component_stats_op
from istd_kernels.ops.components import connected_components_ref
from istd_kernels.ops.depthwise import depthwise_conv2d_ref
from istd_kernels.ops.hlk_conv import hlk_conv_ref
from istd_kernels.ops.multiscale_maxpool import multiscale_maxpool_ref

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(emulation_build.compiler() is None, reason="no host C++ compiler (g++)")]

emu = pytest.importorskip("emulation_kernels")

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12), torch.float16: (1e-2, 1e-2),
       torch.bfloat16: (3e-2, 3e-2)}


def close(actual, expected, dtype=None):
    rtol, atol = TOL[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=rtol, atol=atol)


def signatures(variant="plain"):
    return [sig for _, sig, _, _, _ in emu.log(variant)]


def rand(shape, dtype, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


# ----------------------------------------------------------------------------------------
# depthwise: (N, C, H, W, k, stride, padding, dilation, tiled path expected)
DW_CASES = [
    (2, 3, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), True),
    (1, 5, 7, 6, (5, 3), (2, 1), (2, 0), (1, 2), True),
    (1, 2, 13, 10, (3, 3), (2, 2), (0, 3), (2, 1), True),
    (1, 1, 5, 5, (21, 21), (1, 1), (80, 80), (8, 8), False),  # window beyond 48 KiB: direct
]


def _dw_ids(case):
    return "x".join(map(str, case[:4])) + f"-k{case[4][0]}{case[4][1]}-s{case[5][0]}-d{case[7][0]}"


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", DW_CASES, ids=_dw_ids)
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise(case, dtype, channels_last):
    n, c, h, w, k, s, p, d, tiled = case
    if channels_last and dtype in (torch.float16, torch.bfloat16):
        pytest.skip("channels_last is covered in float32/float64; halves add only dtype coverage")
    x = rand((n, c, h, w), dtype, channels_last, 1)
    wt = rand((c, 1, *k), dtype, seed=2)
    b = rand((c,), dtype, seed=3)
    emu.clear_log()
    y = emu.dw_fwd(x, wt, b, s, p, d)
    assert any(f"kTiled = {str(tiled).lower()}" in sig for sig in signatures())
    # The comparison test_depthwise.py makes: F.conv2d and its gradients in float64.
    gy = rand(y.shape, dtype, channels_last, 4)
    y_ref, (gx_ref, gw_ref, gb_ref) = expected_and_grads(x, wt, b, gy, s, p, d)
    close(y, y_ref, dtype)
    close(emu.dw_bwd_input(gy, wt, (h, w), s, p, d), gx_ref, dtype)
    if not tiled and (dtype != torch.float32 or channels_last):
        # Grad-weight has one path, run in every dtype and format by the tiled cases; its
        # 441 taps here cost 126 block reductions (seconds of CPU) per call, so once is enough.
        return
    gw, gb = emu.dw_bwd_weight(gy, x, k, s, p, d)
    # grad-weight sums many products in the input dtype's accumulator, then rounds once.
    close(gw, gw_ref, dtype)
    close(gb, gb_ref, dtype)


# ----------------------------------------------------------------------------------------
# HLKConv forward: (N, C, H, W, Cout, groups, k1, k2, dilation) and, for float32, the mode
# (0 x tiled in shared memory, 1 x from global memory, 2 a recomputed per tap) it takes.
HLK_CASES = [
    ((1, 4, 9, 11, 6, 2, 3, 3, 2), 0),
    ((2, 3, 6, 5, 3, 1, 5, 3, 1), 0),
    ((1, 2, 8, 8, 4, 2, 9, 19, 8), 1),   # x window and a buffer exceed 99 KiB; a alone fits
    ((1, 2, 8, 8, 2, 1, 3, 31, 8), 2),   # not even a buffer of a fits
]


def _hlk_inputs(case, dtype):
    n, c, h, w, cout, groups, k1, k2, dil = case
    return (rand((n, c, h, w), dtype, seed=1), rand((c, 1, k1, k1), dtype, seed=2), rand((c,), dtype, seed=3),
            rand((c, 1, k2, k2), dtype, seed=4), rand((c,), dtype, seed=5),
            rand((cout, 2 * c // groups, 1, 1), dtype, seed=6), rand((cout,), dtype, seed=7), dil, groups)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case,mode", HLK_CASES, ids=lambda c: "x".join(map(str, c)) if isinstance(c, tuple) else "")
def test_hlk_forward(case, mode, dtype):
    args = _hlk_inputs(case, dtype)
    emu.clear_log()
    y = emu.hlk_fwd(*args)
    rtol, atol = TOL[dtype]
    # Up to 31x31 taps summed in float32 in another order than the reference's.
    scale = 20 if dtype == torch.float32 else 1
    torch.testing.assert_close(y, hlk_conv_ref(*args), rtol=rtol * scale, atol=atol * scale)
    if dtype == torch.float32:
        assert any(f"int kMode = {mode}" in sig for sig in signatures()), signatures()


def test_hlk_channels_last_chunked():
    """Channels in chunks (partial sums kept in shared memory), channels_last x and y."""
    n, c, h, w, cout, groups = 1, 48, 20, 21, 8, 1
    x = rand((n, c, h, w), torch.float32, True, 1)
    w0, w1 = rand((c, 1, 3, 3), torch.float32, seed=2), rand((c, 1, 3, 3), torch.float32, seed=3)
    wp = rand((cout, 2 * c, 1, 1), torch.float32, seed=4)
    y = emu.hlk_fwd(x, w0, None, w1, None, wp, None, 4, groups)
    # 96 products per output summed in float32 in another order than the reference's einsum.
    torch.testing.assert_close(y, hlk_conv_ref(x, w0, None, w1, None, wp, None, 4, groups), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------
# multiscale_maxpool
MMP_CASES = [((2, 12, 7, 9), 2, 3, (1, 2, 4)), ((1, 4, 20, 19), 1, 2, (3, 17))]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", MMP_CASES, ids=["u8-offsets", "int32-offsets"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_multiscale_maxpool(case, dtype, channels_last):
    shape, groups, radix, scales = case
    # Distinct values: the argmax (and so the backward) has no ties to break.
    u = (torch.randperm(torch.Size(shape).numel(), generator=torch.Generator().manual_seed(0))
         .reshape(shape).to(torch.float64) / 64).to(dtype)
    if channels_last:
        u = u.contiguous(memory_format=torch.channels_last)
    ys, idx = emu.mmp_fwd(u, groups, radix, scales)
    u64 = u.double().requires_grad_()
    refs = multiscale_maxpool_ref(u64, groups, radix, scales)
    for y, r in zip(ys, refs):
        close(y, r, dtype)
    grads = [rand(y.shape, dtype, channels_last, 5 + j) for j, y in enumerate(ys)]
    gu_ref, = torch.autograd.grad(refs, (u64,), [g.double() for g in grads])
    gu = emu.mmp_bwd(grads, idx, shape, groups, radix, scales, channels_last)
    close(gu, gu_ref, dtype)


# ----------------------------------------------------------------------------------------
# split_attention
SA_CASES = [((2, 4, 5, 7), 2, (1, 2)), ((1, 6, 9, 8), 3, (1, 2, 4)), ((1, 2, 33, 40), 1, (1,)),
            ((1, 4, 6, 6), 1, (1, 2, 3, 6))]


def _sa_inputs(shape, groups, scales, dtype, channels_last):
    n, d, h, w = shape
    r = len(scales)
    mk = lambda s, seed: rand(s, dtype, channels_last, seed)  # noqa: E731
    branches = [mk((n, d, -(-h // s), -(-w // s)), 10 + j) for j, s in enumerate(scales)]
    return branches, mk((n, groups * r, h, w), 1), torch.tensor(0.7, dtype=dtype), mk(shape, 2), mk(shape, 3)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", SA_CASES, ids=lambda c: f"r{len(c[2])}")
@pytest.mark.parametrize("channels_last", [False, True])
def test_split_attention(case, dtype, channels_last):
    shape, groups, scales = case
    branches, logits, temp, res, v = _sa_inputs(shape, groups, scales, dtype, channels_last)
    z = emu.sa_fwd(branches, logits, temp, res, v, groups, scales)
    r = len(scales)
    gz = rand(shape, dtype, channels_last, 9)
    # The float64 reference and gradients test_split_attention.py compares with.
    z_ref, ref = sa_cases.expected((branches, logits, temp, res, v), groups, gz, scales)
    close(z, z_ref, dtype)
    gb, gl, gt, gr, gv = emu.sa_bwd(gz, branches, logits, temp, res, v, groups, scales)
    for got, want in zip([*gb, gl, gr, gv], [*ref[:r], ref[r], ref[r + 2], ref[r + 3]]):
        close(got, want, dtype)
    # The temperature gradient sums every pixel's contribution: compare relative to its size.
    rtol, _ = TOL[dtype]
    assert abs(float(gt) - float(ref[r + 1])) <= rtol * 10 * (1 + abs(float(ref[r + 1])))


# ----------------------------------------------------------------------------------------
# labelling and component statistics
def _mask(n, h, w, density, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, h, w), generator=g) < density


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("shape,density", [((2, 13, 17), 0.45), ((1, 40, 37), 0.55), ((3, 1, 29), 0.5),
                                           ((1, 6, 5), 0.0)], ids=["small", "two-rank-tiles", "row", "empty"])
@pytest.mark.parametrize("seed", [0, 1])
def test_connected_components(shape, density, connectivity, seed):
    mask = _mask(*shape, density, seed)
    emu.lib().emu_set_seed(seed + 1)  # a different interleaving of the atomics per seed
    labels, counts = emu.connected_components(mask, connectivity)
    ref_labels, ref_counts = connected_components_ref(mask, connectivity)
    assert torch.equal(counts, ref_counts.to(torch.int64))
    assert torch.equal(labels.to(torch.int64), ref_labels.to(torch.int64))


@pytest.mark.parametrize("sm70", [False, True], ids=["sm86-redux", "sm70-shfl-fold"])
@pytest.mark.parametrize("shape", [(2, 13, 17), (1, 40, 37)])
def test_component_stats(shape, sm70):
    labels, counts = connected_components_ref(_mask(*shape, 0.5, 3), 8)
    m = int(counts.max())
    area, centroid, bbox = emu.component_stats(labels, m, sm70=sm70)
    ref = component_stats_op(labels.to(torch.int64), counts.to(torch.int64), backend="torch")
    assert torch.equal(area, ref.area)
    assert torch.equal(bbox, ref.bbox)
    assert torch.equal(centroid, ref.centroid)


# ----------------------------------------------------------------------------------------
# The race-checked build (shared-memory checker on) over the tiling paths of each kernel.
@pytest.mark.parametrize("case", [DW_CASES[0], DW_CASES[3]], ids=["tiled", "direct"])
def test_depthwise_race_checked(case):
    n, c, h, w, k, s, p, d, _ = case
    x, wt = rand((n, c, h, w), torch.float32, seed=1), rand((c, 1, *k), torch.float32, seed=2)
    y = emu.dw_fwd(x, wt, None, s, p, d, variant="race")
    close(y, depthwise_conv2d_ref(x, wt, None, s, p, d))
    emu.dw_bwd_input(y, wt, (h, w), s, p, d, variant="race")
    if case is DW_CASES[0]:  # grad-weight has one path; its block reductions are checked here
        emu.dw_bwd_weight(y, x, k, s, p, d, variant="race")


@pytest.mark.parametrize("case,mode", HLK_CASES[::2] + HLK_CASES[3:], ids=["tiled", "global-x", "direct"])
def test_hlk_race_checked(case, mode):
    args = _hlk_inputs(case, torch.float32)
    torch.testing.assert_close(emu.hlk_fwd(*args, variant="race"), hlk_conv_ref(*args), rtol=2e-4, atol=2e-4)


def test_split_attention_and_labelling_race_checked():
    shape, groups, scales = SA_CASES[1]
    ins = _sa_inputs(shape, groups, scales, torch.float32, False)
    emu.sa_bwd(rand(shape, torch.float32, seed=9), *ins, groups, scales, variant="race")
    mask = _mask(1, 40, 37, 0.55, 0)
    labels, counts = emu.connected_components(mask, 8, variant="race")
    assert torch.equal(labels.long(), connected_components_ref(mask, 8)[0].long())
