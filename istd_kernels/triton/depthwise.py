"""Triton kernels for depthwise 2-D convolution (groups == channels).

Every tensor is addressed through its element strides (n, c, h, w), so NCHW,
channels_last, sliced views and stride-0 (expanded) gradients are read in
place.  Plane base offsets are formed in 64 bits because ``n * stride_n`` can
pass 2**31 on large batches.

Three tiled direct convolutions share one scheme: a program owns a
BLOCK_H x BLOCK_W tile of one (n, c) plane, KH is a runtime loop and KW is a
constexpr so the inner tap loop is unrolled (in chunks of at most
KW_UNROLL_MAX taps, to bound register use for wide kernels).  Stride, padding
and dilation are runtime integers, so one compiled kernel serves every
geometry with the same KW.

The weight gradient is split into a per-tile partial-sum kernel and a second
reduction kernel that sums the partials over tiles in a fixed order; no
atomics are used, so a given configuration is bitwise reproducible.

On a GPU the three convolution kernels are autotuned over tile shape and warp
count.  Under ``TRITON_INTERPRET=1`` (read once, at import) the first config of
each list is launched directly, because benchmarking inside the interpreter
would take minutes per shape.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# The one layout rule shared by every backend and the meta implementation, so
# compiled graphs see the strides these kernels produce.
from ..layout import acc_dtype
from ..layout import output_memory_format as _memory_format
from . import _workspace
from ._launch import INTERPRET, TRITON_BEFORE_3_7, acc, device_ctx, launch, np2, plane_tile
from ._workspace import accumulate, item_run, used_rows_jit

__all__ = [
    "INTERPRET",
    "FWD_CONFIGS",
    "BWD_INPUT_CONFIGS",
    "BWD_WEIGHT_CONFIGS",
    "WGRAD_REDUCE_CONFIGS",
    "depthwise_fwd",
    "depthwise_bwd_input",
    "depthwise_bwd_weight",
    "wgrad_workspace_bytes",
    "aot_specs",
]


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _x_row_taps(acc, row_ptr, row_ok, iw0, w_row, j_first, DW, W, sxw,
                KW: tl.constexpr, N_TAPS: tl.constexpr, ACC_DTYPE: tl.constexpr):
    # Taps j_first .. j_first+N_TAPS-1 of one kernel row, forward direction.
    # Taps at j >= KW pad the last chunk and are skipped like padding.
    for jj in tl.static_range(N_TAPS):
        j = j_first + jj
        iw = iw0 + j * DW
        # j < KW is tested in vector form: the interpreter mishandles a
        # scalar bool broadcast into a mask (the compiler folds either).
        ok = row_ok[:, None] & ((iw >= 0) & (iw < W) & ((iw0 * 0 + j) < KW))[None, :]
        # Out-of-image taps are zero padding: skipped, not multiplied by a zero
        # load, so a non-finite weight reaches only the outputs F.conv2d gives it.
        # The masked load also keeps the overhanging part of edge tiles in bounds.
        xv = tl.load(row_ptr + iw.to(tl.int64)[None, :] * sxw, mask=ok, other=0.0)
        wv = tl.load(w_row + tl.minimum(j, KW - 1)).to(ACC_DTYPE)
        acc += tl.where(ok, xv.to(ACC_DTYPE) * wv, 0.0)
    return acc


@triton.jit
def _gy_row_taps(acc, row_ptr, row_ok, nw0, w_row, j_first, DW, SW, Wo, sgw,
                 KW: tl.constexpr, N_TAPS: tl.constexpr, ACC_DTYPE: tl.constexpr):
    # Same taps, gathered from grad_y for the input gradient.
    for jj in tl.static_range(N_TAPS):
        j = j_first + jj
        nw = nw0 - j * DW
        nw_c = tl.maximum(nw, 0)
        ow = nw_c // SW
        ok = row_ok[:, None] & ((nw >= 0) & (ow * SW == nw_c) & (ow < Wo) & ((nw0 * 0 + j) < KW))[None, :]
        gv = tl.load(row_ptr + ow.to(tl.int64)[None, :] * sgw, mask=ok, other=0.0)
        wv = tl.load(w_row + tl.minimum(j, KW - 1)).to(ACC_DTYPE)
        acc += tl.where(ok, gv.to(ACC_DTYPE) * wv, 0.0)
    return acc


@triton.jit
def _wgrad_row_taps(g, row_ptr, row_ok, iw0, ws_row, j_first, DW, W, sxw,
                    N_TAPS: tl.constexpr, ACC_DTYPE: tl.constexpr):
    # Tile share of each tap: sum(grad_y * shifted x) over the tile's outputs whose tap
    # reads the image (row_ok covers the output plane and the tap row); the rest is
    # skipped, so a non-finite grad_y meets no padding.
    for jj in tl.static_range(N_TAPS):
        j = j_first + jj
        iw = iw0 + j * DW
        ok = row_ok & ((iw >= 0) & (iw < W))[None, :]
        xv = tl.load(row_ptr + iw.to(tl.int64)[None, :] * sxw, mask=ok, other=0.0)
        accumulate(ws_row + j, tl.sum(tl.where(ok, g * xv.to(ACC_DTYPE), 0.0)), None)


@triton.jit
def _dw_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    C, H, W, Ho, Wo,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    SH, SW, PH, PW, DH, DW, KH,
    KW: tl.constexpr, KW_CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # N*C alone can pass the 65535 cap of grid axes 1/2: one flat axis (plane_tile).
    nc, th, tw = plane_tile(tl.program_id(0), Ho, Wo, BLOCK_H, BLOCK_W)
    n = nc // C
    c = nc - n * C

    oh = th * BLOCK_H + tl.arange(0, BLOCK_H)
    ow = tw * BLOCK_W + tl.arange(0, BLOCK_W)
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW

    x_base = x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
    w_base = w_ptr + c * (KH * KW)

    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC_DTYPE)
    for i in range(KH):
        ih = ih0 + i * DH
        row_ok = (ih >= 0) & (ih < H)
        row_ptr = x_base + ih.to(tl.int64)[:, None] * sxh
        w_row = w_base + i * KW
        # KW is split into equal chunks of at most KW_UNROLL_MAX taps, the
        # last one padded: a fully unrolled wide row lets ptxas hoist every
        # load of the row at once and spill.
        for j0 in range(0, KW, KW_CHUNK):
            acc = _x_row_taps(acc, row_ptr, row_ok, iw0, w_row, j0, DW, W, sxw, KW, KW_CHUNK, ACC_DTYPE)

    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(ACC_DTYPE)

    y_base = y_ptr + n.to(tl.int64) * syn + c.to(tl.int64) * syc
    y_ptrs = y_base + oh.to(tl.int64)[:, None] * syh + ow.to(tl.int64)[None, :] * syw
    out_ok = (oh < Ho)[:, None] & (ow < Wo)[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _dw_bwd_input_kernel(
    gy_ptr, w_ptr, gx_ptr,
    C, H, W, Ho, Wo,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    SH, SW, PH, PW, DH, DW, KH,
    KW: tl.constexpr, KW_CHUNK: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # Gather form: each grad_x element pulls the grad_y elements whose window
    # covered it, so every output is written exactly once (no atomics).
    nc, th, tw = plane_tile(tl.program_id(0), H, W, BLOCK_H, BLOCK_W)
    n = nc // C
    c = nc - n * C

    ih = th * BLOCK_H + tl.arange(0, BLOCK_H)
    iw = tw * BLOCK_W + tl.arange(0, BLOCK_W)
    # Numerator of oh = (ih + PH - i*DH) / SH before the tap shift.
    nh0 = ih + PH
    nw0 = iw + PW

    g_base = gy_ptr + n.to(tl.int64) * sgn + c.to(tl.int64) * sgc
    w_base = w_ptr + c * (KH * KW)

    acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC_DTYPE)
    for i in range(KH):
        nh = nh0 - i * DH
        # Clamp before dividing: the sign of % and // on negative operands is
        # not something to depend on, and negatives are rejected anyway.
        nh_c = tl.maximum(nh, 0)
        oh = nh_c // SH
        row_ok = (nh >= 0) & (oh * SH == nh_c) & (oh < Ho)
        row_ptr = g_base + oh.to(tl.int64)[:, None] * sgh
        w_row = w_base + i * KW
        for j0 in range(0, KW, KW_CHUNK):
            acc = _gy_row_taps(acc, row_ptr, row_ok, nw0, w_row, j0, DW, SW, Wo, sgw, KW, KW_CHUNK,
                               ACC_DTYPE)

    x_base = gx_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
    x_ptrs = x_base + ih.to(tl.int64)[:, None] * sxh + iw.to(tl.int64)[None, :] * sxw
    in_ok = (ih < H)[:, None] & (iw < W)[None, :]
    tl.store(x_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=in_ok)


@triton.jit
def _dw_wgrad_tile(g_base, x_base, ws_base, oh, ow, H, W, Ho, Wo, sgh, sgw, sxh, sxw, SH, SW, PH, PW, DH, DW, KH,
                   KW: tl.constexpr, KW_CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr):
    # Adds one output tile's share of every tap (and of the bias) to the workspace row.
    g_ptrs = g_base + oh.to(tl.int64)[:, None] * sgh + ow.to(tl.int64)[None, :] * sgw
    out_ok = (oh < Ho)[:, None] & (ow < Wo)[None, :]
    g = tl.load(g_ptrs, mask=out_ok, other=0.0).to(ACC_DTYPE)
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW
    for i in range(KH):
        ih = ih0 + i * DH
        row_ok = out_ok & ((ih >= 0) & (ih < H))[:, None]
        row_ptr = x_base + ih.to(tl.int64)[:, None] * sxh
        ws_row = ws_base + i * KW
        # Here the remainder is a separate unrolled block rather than masked
        # padding (a padded tap would need somewhere to store its partial);
        # the per-tap reductions already keep ptxas from hoisting loads far.
        for j0 in range(0, KW - KW % KW_CHUNK, KW_CHUNK):
            _wgrad_row_taps(g, row_ptr, row_ok, iw0, ws_row, j0, DW, W, sxw, KW_CHUNK, ACC_DTYPE)
        if KW % KW_CHUNK != 0:
            _wgrad_row_taps(g, row_ptr, row_ok, iw0, ws_row, KW - KW % KW_CHUNK, DW, W, sxw,
                            KW % KW_CHUNK, ACC_DTYPE)
    if HAS_BIAS:
        accumulate(ws_base + KH * KW, tl.sum(g), None)


@triton.jit
def _dw_bwd_weight_kernel(
    gy_ptr, x_ptr, ws_ptr,
    N, C, H, W, Ho, Wo,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    SH, SW, PH, PW, DH, DW, KH, K1, ROWS,
    KW: tl.constexpr, KW_CHUNK: tl.constexpr, HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # Program (channel c, workspace row r) sums r's run of (image, tile) items, in
    # order, into its row [r, c, :] (_workspace.item_run); _dw_wgrad_reduce_kernel then
    # sums the rows in a fixed order.  Neighbouring programs take neighbouring runs of
    # one plane, so they share halo rows in L2.
    pid = tl.program_id(0)
    tiles_w = tl.cdiv(Wo, BLOCK_W)
    tiles = tl.cdiv(Ho, BLOCK_H) * tiles_w
    used = used_rows_jit(N * tiles, ROWS)
    c = pid // used
    r = pid - c * used
    first, last = item_run(r, N * tiles, ROWS)
    ws_base = ws_ptr + (r.to(tl.int64) * C + c) * K1
    for item in range(first, last):
        n = item // tiles
        t = item - n * tiles
        th = t // tiles_w
        oh = th * BLOCK_H + tl.arange(0, BLOCK_H)
        ow = (t - th * tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)
        # This item adds to what the previous one stored in the row: order them.
        tl.debug_barrier()
        _dw_wgrad_tile(gy_ptr + n.to(tl.int64) * sgn + c.to(tl.int64) * sgc,
                       x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc, ws_base, oh, ow,
                       H, W, Ho, Wo, sgh, sgw, sxh, sxw, SH, SW, PH, PW, DH, DW, KH,
                       KW, KW_CHUNK, HAS_BIAS, ACC_DTYPE)


@triton.jit
def _dw_wgrad_reduce_kernel(
    ws_ptr, gw_ptr, gb_ptr,
    R, M, K1, KK,
    HAS_BIAS: tl.constexpr, ACC_DTYPE: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_M: tl.constexpr,
):
    # Columns m = c * K1 + k of the [R, C*K1] workspace; rows are visited in
    # ascending blocks and folded with one fixed-shape tree sum, so the result
    # does not depend on scheduling.
    pid = tl.program_id(0)
    m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < M
    acc = tl.zeros([BLOCK_R, BLOCK_M], dtype=ACC_DTYPE)
    for r0 in range(0, R, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        v = tl.load(ws_ptr + r.to(tl.int64)[:, None] * M + m[None, :],
                    mask=(r < R)[:, None] & m_ok[None, :], other=0.0)
        acc += v.to(ACC_DTYPE)
    tot = tl.sum(acc, axis=0)

    c = m // K1
    k = m - c * K1
    is_w = k < KK
    tl.store(gw_ptr + c * KK + k, tot.to(gw_ptr.dtype.element_ty), mask=m_ok & is_w)
    if HAS_BIAS:
        tl.store(gb_ptr + c, tot.to(gb_ptr.dtype.element_ty), mask=m_ok & (k == KK))


# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------


def _tile_configs(before_3_7: bool = TRITON_BEFORE_3_7):
    # (BLOCK_H, BLOCK_W, num_warps).  BLOCK_W >= 32 keeps a warp on one row
    # segment for NCHW; the 8x32 tile comes first because it is the cheapest
    # in the interpreter and the safest for tiny planes.
    # maxnreg: without an explicit cap, ptxas 13 (Triton's sm_90 assembler)
    # sometimes settles on 64 registers and spills a few bytes in the
    # weight-gradient kernel; with a cap it allocates freely below it and
    # does not spill.  At most 4 elements per thread: the 8-element tiles
    # (16x64 and 32x32 at 4 warps) spill 8-104 B at KW >= 7 once padding taps
    # are skipped with a select (Triton 3.7.1 and 3.9), so 32x32 runs at 8 warps.
    shapes = [(8, 32, 4), (16, 32, 4), (32, 32, 8), (16, 64, 8)]
    maxnreg = 128
    if before_3_7:
        # Triton 3.6 needs more registers per element: at 128 its 4-element tiles spill
        # 4-32 B at KW=7 and the weight gradient 184-256 B at KW=31 (still 4-16 B in fp64
        # at 255), and 8x32 spills 4-8 B there.  So only 2-element tiles (8x32 at 4 warps,
        # 16x32 at 8), under a cap of 160: the weight gradient uses all 160 at KW=31 without
        # spilling (3 four-warp programs fit an SM's 64K registers at 160, 4 at 128).
        shapes = [(8, 32, 4), (16, 32, 8)]
        maxnreg = 160
    return [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=nw, num_stages=1, maxnreg=maxnreg)
            for bh, bw, nw in shapes]


FWD_CONFIGS = _tile_configs()
BWD_INPUT_CONFIGS = _tile_configs()
BWD_WEIGHT_CONFIGS = _tile_configs()
# A single config on purpose: the reduction is a small fraction of the work,
# and a tuned choice could change the summation tree between processes.
WGRAD_REDUCE_CONFIGS = [triton.Config({"BLOCK_R": 32, "BLOCK_M": 64}, num_warps=4, num_stages=1)]


def _prune_by(h_name: str, w_name: str):
    # Tiles much larger than the plane only add masked lanes; drop them so
    # small planes are not benchmarked on useless shapes.
    def prune(configs, named_args, **kwargs):
        h = named_args[h_name]
        w = named_args[w_name]
        keep = [cfg for cfg in configs
                if cfg.kwargs["BLOCK_H"] <= max(8, np2(h))
                and cfg.kwargs["BLOCK_W"] <= max(32, np2(w))]
        return keep or configs[:1]
    return prune


# Above this many taps (8x8) the per-tap block reductions of the weight
# gradient dominate; only the tile shapes with the fewest tiles, which
# amortise them best, are then allowed.
WGRAD_BIG_KERNEL_TAPS = 64


def _prune_wgrad(configs, named_args, **kwargs):
    keep = _prune_by("Ho", "Wo")(configs, named_args)
    if named_args["K1"] > WGRAD_BIG_KERNEL_TAPS:
        ho, wo = named_args["Ho"], named_args["Wo"]
        fewest = min(_tiles(ho, wo, cfg.kwargs) for cfg in keep)
        keep = [cfg for cfg in keep if _tiles(ho, wo, cfg.kwargs) == fewest]
    return keep


# C and the inner stride are in the keys: they set the program count and the
# access pattern (sxw == C for channels_last), both of which move the optimum.
_FWD_KEY = ["C", "H", "W", "Ho", "Wo", "SH", "SW", "DH", "DW", "KH", "KW", "sxw"]
_BWD_INPUT_KEY = ["C", "H", "W", "Ho", "Wo", "SH", "SW", "DH", "DW", "KH", "KW", "sgw", "sxw"]
# K1 must be in the weight-gradient key: it feeds _prune_wgrad, and a config
# cached for another K1 could need more workspace rows than were allocated.
_BWD_WEIGHT_KEY = ["C", "H", "W", "Ho", "Wo", "SH", "SW", "DH", "DW", "KH", "KW", "K1", "sgw", "sxw"]

# The weight-gradient kernel adds into its zero-filled workspace, so every timing launch of
# the autotuner would add into it again: reset_to_zero clears it before each candidate and
# after the last (seen on an H200: wrong and irreproducible weight gradients on a key's first
# call).  One dict, so that tests/test_autotune_repeats.py builds the same autotuner.
BWD_WEIGHT_TUNING = dict(key=_BWD_WEIGHT_KEY, prune_configs_by={"early_config_prune": _prune_wgrad},
                         reset_to_zero=["ws_ptr"])

if INTERPRET:
    _fwd_tuned = None
    _bwd_input_tuned = None
    _bwd_weight_tuned = None
else:
    _fwd_tuned = triton.autotune(FWD_CONFIGS, key=_FWD_KEY,
                                 prune_configs_by={"early_config_prune": _prune_by("Ho", "Wo")})(_dw_fwd_kernel)
    _bwd_input_tuned = triton.autotune(BWD_INPUT_CONFIGS, key=_BWD_INPUT_KEY,
                                       prune_configs_by={"early_config_prune": _prune_by("H", "W")})(
                                           _dw_bwd_input_kernel)
    _bwd_weight_tuned = triton.autotune(BWD_WEIGHT_CONFIGS, **BWD_WEIGHT_TUNING)(_dw_bwd_weight_kernel)


# ---------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------


# Most taps of one kernel row that are unrolled together.  Fully unrolling a
# 31-wide row lets ptxas hoist all of its loads at once, which needs more than
# 255 registers on 8-element-per-thread tiles.  Wider rows are cut into equal
# chunks (31 -> 4 x 8, 11 -> 2 x 6), so at most one tap per chunk is padding.
KW_UNROLL_MAX = 8


def _kw_chunk(kw: int) -> int:
    return triton.cdiv(kw, triton.cdiv(kw, KW_UNROLL_MAX))


def _out_hw(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _tiles(h: int, w: int, cfg_kwargs) -> int:
    return triton.cdiv(h, cfg_kwargs["BLOCK_H"]) * triton.cdiv(w, cfg_kwargs["BLOCK_W"])


def depthwise_fwd(x: torch.Tensor, weight: torch.Tensor, bias, stride, padding, dilation) -> torch.Tensor:
    N, C, H, W = x.shape
    KH, KW = int(weight.shape[2]), int(weight.shape[3])
    SH, SW = stride
    PH, PW = padding
    DH, DW = dilation
    Ho = _out_hw(H, KH, SH, PH, DH)
    Wo = _out_hw(W, KW, SW, PW, DW)
    y = torch.empty((N, C, Ho, Wo), dtype=x.dtype, device=x.device,
                    memory_format=_memory_format(x))
    if y.numel() == 0:
        return y
    if x.numel() == 0:
        # Only reachable with padding around an empty image: every tap reads
        # padding, so the output is the bias alone.
        if bias is None:
            y.zero_()
        else:
            y.copy_(bias.to(y.dtype).view(1, C, 1, 1).expand_as(y))
        return y

    w = weight.contiguous()
    b = bias.contiguous() if bias is not None else w  # placeholder, never read
    args = (x, w, b, y,
            C, H, W, Ho, Wo,
            *x.stride(), *y.stride(),
            SH, SW, PH, PW, DH, DW, KH)
    consts = dict(KW=KW, KW_CHUNK=_kw_chunk(KW), HAS_BIAS=bias is not None, ACC_DTYPE=acc(x.dtype)[0])
    grid = lambda meta: (N * C * _tiles(Ho, Wo, meta),)  # noqa: E731
    with device_ctx(x):
        launch(_dw_fwd_kernel, _fwd_tuned, FWD_CONFIGS, grid, args, consts)
    return y


def depthwise_bwd_input(grad_y: torch.Tensor, weight: torch.Tensor, input_hw, stride, padding,
                        dilation) -> torch.Tensor:
    N, C, Ho, Wo = grad_y.shape
    H, W = input_hw
    KH, KW = int(weight.shape[2]), int(weight.shape[3])
    SH, SW = stride
    PH, PW = padding
    DH, DW = dilation
    gx = torch.empty((N, C, H, W), dtype=grad_y.dtype, device=grad_y.device,
                     memory_format=_memory_format(grad_y))
    if gx.numel() == 0:
        return gx
    if grad_y.numel() == 0:
        return gx.zero_()

    w = weight.contiguous()
    args = (grad_y, w, gx,
            C, H, W, Ho, Wo,
            *grad_y.stride(), *gx.stride(),
            SH, SW, PH, PW, DH, DW, KH)
    consts = dict(KW=KW, KW_CHUNK=_kw_chunk(KW), ACC_DTYPE=acc(grad_y.dtype)[0])
    grid = lambda meta: (N * C * _tiles(H, W, meta),)  # noqa: E731
    with device_ctx(grad_y):
        launch(_dw_bwd_input_kernel, _bwd_input_tuned, BWD_INPUT_CONFIGS, grid, args, consts)
    return gx


def _wgrad_rows(N: int, C: int, H: int, W: int, Ho: int, Wo: int, K1: int, dtype: torch.dtype):
    # (autotune candidates, workspace rows).  The autotuner may pick any candidate, so the
    # rows suit the one with the most tiles; the kernel spreads any tiling over them.
    candidates = _prune_wgrad(BWD_WEIGHT_CONFIGS, dict(Ho=Ho, Wo=Wo, K1=K1))
    items = N * max(_tiles(Ho, Wo, cfg.kwargs) for cfg in candidates)
    row_bytes = C * K1 * acc_dtype(dtype).itemsize
    return candidates, _workspace.rows(items, row_bytes, N * C * H * W * dtype.itemsize)


def wgrad_workspace_bytes(N: int, C: int, H: int, W: int, Ho: int, Wo: int, kernel_size, need_bias: bool,
                          dtype: torch.dtype) -> int:
    """Bytes of the workspace one :func:`depthwise_bwd_weight` call allocates.

    For x [N, C, H, W] of ``dtype``, grad_y [N, C, Ho, Wo] and a (kh, kw) kernel, from the
    real tiling, without running anything (0 where no kernel runs).  At most
    ``_workspace.budget(x.nbytes)`` unless one row (C * (kh*kw + bias) accumulators) is larger.
    """
    if C == 0 or N == 0 or Ho * Wo == 0 or H * W == 0:
        return 0
    K1 = kernel_size[0] * kernel_size[1] + int(bool(need_bias))
    return _wgrad_rows(N, C, H, W, Ho, Wo, K1, dtype)[1] * C * K1 * acc_dtype(dtype).itemsize


def _wgrad_without_products(grad_y, x, gw, gb):
    # No products contribute to the weight; grad_y may still be nonzero when x is an
    # empty padded image, which only feeds the bias.
    gw.zero_()
    if gb is not None:
        if grad_y.numel() == 0:
            gb.zero_()
        else:
            gb.copy_(grad_y.sum(dim=(0, 2, 3), dtype=acc_dtype(x.dtype)).to(x.dtype))
    return gw, gb


def _wgrad_reduce(ws, gw, gb, rows: int, K1: int, KK: int):
    M = ws.shape[1] * K1
    rcfg = WGRAD_REDUCE_CONFIGS[0]
    _dw_wgrad_reduce_kernel[(triton.cdiv(M, rcfg.kwargs["BLOCK_M"]),)](
        ws, gw, gb if gb is not None else gw, rows, M, K1, KK,
        HAS_BIAS=gb is not None, ACC_DTYPE=acc(gw.dtype)[0], **rcfg.all_kwargs())


def depthwise_bwd_weight(grad_y: torch.Tensor, x: torch.Tensor, kernel_size, stride, padding, dilation,
                         need_bias: bool):
    """Weight (and bias) gradient of :func:`depthwise_fwd`: ([C, 1, kh, kw], [C] or None).

    grad_y [N, C, Ho, Wo] and x [N, C, H, W] with any strides; results in x's dtype,
    accumulated in fp32 (fp64 for fp64) through a workspace of
    :func:`wgrad_workspace_bytes`, reduced in a fixed order.
    """
    N, C, H, W = x.shape
    Ho, Wo = int(grad_y.shape[2]), int(grad_y.shape[3])
    KH, KW = kernel_size
    K1 = KH * KW + (1 if need_bias else 0)
    gw = torch.empty((C, 1, KH, KW), dtype=x.dtype, device=x.device)
    gb = torch.empty((C,), dtype=x.dtype, device=x.device) if need_bias else None
    if C == 0:
        return gw, gb
    if N == 0 or Ho * Wo == 0 or x.numel() == 0:
        return _wgrad_without_products(grad_y, x, gw, gb)
    candidates, rows = _wgrad_rows(N, C, H, W, Ho, Wo, K1, x.dtype)
    ws = torch.zeros((rows, C, K1), dtype=acc_dtype(x.dtype), device=x.device)
    args = (grad_y, x, ws, N, C, H, W, Ho, Wo, *grad_y.stride(), *x.stride(),
            *stride, *padding, *dilation, KH, K1, rows)
    consts = dict(KW=KW, KW_CHUNK=_kw_chunk(KW), HAS_BIAS=need_bias, ACC_DTYPE=acc(x.dtype)[0])
    grid = lambda meta: (C * _workspace.used_rows(N * _tiles(Ho, Wo, meta), rows),)  # noqa: E731
    # Deterministic mode pins the tile shape (the first candidate) too, so
    # the partial sums, not just their reduction, match in every process.
    fixed = torch.are_deterministic_algorithms_enabled()
    with device_ctx(x):
        cfg = launch(_dw_bwd_weight_kernel, _bwd_weight_tuned, candidates, grid, args, consts, fixed=fixed)
        _wgrad_reduce(ws, gw, gb, _workspace.used_rows(N * _tiles(Ho, Wo, cfg.kwargs), rows), K1, KH * KW)
    return gw, gb


# ---------------------------------------------------------------------------
# Ahead-of-time compile specs (used by istd_kernels.tools.triton_gate)
# ---------------------------------------------------------------------------

_AOT_KWS = (1, 3, 7, 31)


def aot_specs() -> list[dict]:
    """Every kernel configuration the compile gate builds.

    One dict per (kernel, autotune config, dtype, KW), built by
    :func:`._launch.aot_spec` (``fn`` is the raw @triton.jit function).
    Covered: every tile config x {fp32, fp16, bf16, fp64} x KW in {1, 3, 7, 31} for
    the three convolution kernels, and the reduction kernel per dtype.  The
    bias variants are the ones compiled (a superset of the no-bias code).

    ``fn`` is whatever ``triton.jit`` produced at import; in interpreter mode
    that is not compilable, so the gate imports this module in a process
    without TRITON_INTERPRET.
    """
    from ._launch import AOT_DTYPES, aot_spec

    specs = []
    conv_ints = ["C", "H", "W", "Ho", "Wo"]
    dims = ["SH", "SW", "PH", "PW", "DH", "DW", "KH"]

    for dt in AOT_DTYPES:
        p = "*" + dt.name
        kernels = [
            ("_dw_fwd_kernel", _dw_fwd_kernel, FWD_CONFIGS,
             [("x_ptr", p), ("w_ptr", p), ("b_ptr", p), ("y_ptr", p)],
             conv_ints + ["sxn", "sxc", "sxh", "sxw", "syn", "syc", "syh", "syw"] + dims,
             dict(HAS_BIAS=True)),
            ("_dw_bwd_input_kernel", _dw_bwd_input_kernel, BWD_INPUT_CONFIGS,
             [("gy_ptr", p), ("w_ptr", p), ("gx_ptr", p)],
             conv_ints + ["sgn", "sgc", "sgh", "sgw", "sxn", "sxc", "sxh", "sxw"] + dims,
             dict()),
            ("_dw_bwd_weight_kernel", _dw_bwd_weight_kernel, BWD_WEIGHT_CONFIGS,
             [("gy_ptr", p), ("x_ptr", p), ("ws_ptr", dt.acc_ptr)],
             ["N"] + conv_ints + ["sgn", "sgc", "sgh", "sgw", "sxn", "sxc", "sxh", "sxw"] + dims + ["K1", "ROWS"],
             dict(HAS_BIAS=True)),
        ]
        for name, fn, configs, ptrs, ints, extra in kernels:
            for cfg in configs:
                for kw in _AOT_KWS:
                    consts = dict(KW=kw, KW_CHUNK=_kw_chunk(kw), ACC_DTYPE=dt.acc, **extra, **cfg.kwargs)
                    specs.append(aot_spec(name, fn, ptrs, ints, consts, cfg,
                                          f"BH={cfg.kwargs['BLOCK_H']} BW={cfg.kwargs['BLOCK_W']} KW={kw} {dt.name}"))
        for cfg in WGRAD_REDUCE_CONFIGS:
            consts = dict(HAS_BIAS=True, ACC_DTYPE=dt.acc, **cfg.kwargs)
            specs.append(aot_spec("_dw_wgrad_reduce_kernel", _dw_wgrad_reduce_kernel,
                                  [("ws_ptr", dt.acc_ptr), ("gw_ptr", p), ("gb_ptr", p)], ["R", "M", "K1", "KK"],
                                  consts, cfg, f"BR={cfg.kwargs['BLOCK_R']} BM={cfg.kwargs['BLOCK_M']} {dt.name}"))
    return specs

