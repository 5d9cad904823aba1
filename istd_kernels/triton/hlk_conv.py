"""Triton kernels for HLKConv: a hierarchical large-kernel convolution.

For an input x [N, C, H, W] split into G channel groups (Cg = C // G,
Og = Cout // G):

    a = dwconv(x, w0, pad k1 // 2) + b0                 (zero outside the image)
    d = dwconv(a, w1, dilation, pad dilation * (k2 // 2)) + b1
    y[:, g*Og + o] = sum_c w_pw[g*Og + o, c] a[:, g*Cg + c]
                   + sum_c w_pw[g*Og + o, Cg + c] d[:, g*Cg + c] + b_pw[g*Og + o]

so the concatenation [a, d] that the pointwise conv reads is never formed.

Forward: one kernel.  A program owns (n, group, spatial tile, block of output
channels) and works on a flattened TH x TW halo tile (P = TH * TW positions)
whose inner (TH - 2*h2) x (TW - 2*h2) part is its output, h2 = dilation *
(k2 // 2).  ``a`` is computed on the whole halo tile straight from x, ``d`` by
gathering ``a`` at the dilated tap offsets inside the tile (``tl.gather`` on
the flat index; rim positions read clamped garbage and are never stored), and
the pointwise conv is two contractions (``tl.dot``, see Dtypes) per input-channel
chunk.  Neither ``a`` nor ``d`` touches global memory, and both stay in the
accumulation dtype.

Backward: one kernel source launched up to three times (constexpr NEED_GX /
NEED_W), recomputing instead of saving.  The halo is H2 = k1 // 2 + h2 and a
program owns the inner (TH - 2*H2) x (TW - 2*H2) part of its tile.  From
grad_y on the whole tile it forms g_d = Wd^T gy and g_a = Wa^T gy +
(transposed dilated conv of g_d, by gather).  The grad_x pass writes the
transposed conv of g_a with w0 on the owned part.  The first weight pass
recomputes g_d / g_a and a, the second a and d (it needs no g_a / g_d): each
adds its sums over the owned in-image pixels (every image pixel is owned by
exactly one tile) to its columns of an fp32 (fp64 for fp64) workspace row.
A program takes a fixed run of (image, tile) items into one row, so the
workspace is bounded (``_workspace``: at most max(x.nbytes / 4, 16 MiB));
``torch.sum`` over the rows, a fixed-order reduction, finishes them, so the
result is bitwise reproducible without atomics.  The passes are separate
because one program doing two of them spills (see the configs).
Padding taps are skipped, never multiplied by zero, so NaN / Inf reach
exactly the outputs and gradients they reach in the exact convolution.
No a, d, g_a or g_d tensor is ever written to global memory.

The kernel sizes k1 and k2 are runtime loop bounds (not constexpr): one
compiled kernel serves every kernel size, and unrolling 31 x 31 gathers
would make code size and compile time explode.

All tensors are addressed through their element strides (channels_last,
views, stride-0 grad_y), with 64-bit plane and spatial offsets.  On a GPU the
grad_x pass is autotuned over tile shape (the forward and weight pass have a
single spill-free tile each); under ``TRITON_INTERPRET=1`` (read at import by
``depthwise``) the first config that fits the halo is launched directly.

Tiles are small (256 / 512 positions: the register budget), so the tiles
serve backward halos up to MAX_TUNED_HALO (6); the registry routes larger ones
(k_size 23 and up) to the composed path (``triton-composed`` in
istd_kernels/ops/hlk_conv.py), and the launchers refuse them.

Channel chunks: the forward and the grad_x pass contract 16-channel chunks with
``tl.dot``; the weight passes take 8 channels and contract grad_y as outer products
(below the dot's minimum, and 30-40 registers lighter, which keeps them spill-free
under Triton 3.7.1 too).

Dtypes: fp16 / bf16 / fp32 accumulate in fp32 (the dots use
input_precision="ieee", never tf32, and name out_dtype), fp64 in fp64 without
any dot: its forward pointwise goes one channel at a time (_pw_mac) and its
grad_x pass uses the weight passes' 8-channel chunks, because fp64 operands
staged for an FMA dot take two registers each and spill.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..layout import hlk_halos
from ..layout import output_memory_format as _memory_format
from . import _workspace
from ._launch import INTERPRET, TRITON_BEFORE_3_7, acc, device_ctx, launch, np2
from ._workspace import accumulate, item_run

__all__ = [
    "MAX_TUNED_HALO",
    "FWD_CONFIGS",
    "BWD_GX_CONFIGS",
    "BWD_W_CONFIGS",
    "bwd_gx_configs",
    "fwd_configs",
    "hlk_fwd",
    "hlk_bwd",
    "bwd_workspace_bytes",
    "aot_specs",
]


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _in_image(hh, ww, H, W):
    return (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)


@triton.jit
def _x_tap(x_c, sp_x, ih, iw, t, K, H, W, sxh, sxw, extra_ok):
    # Tap t of a K x K conv read straight from x ([C_CHUNK, P] rows x_c): the values and
    # which positions read the image (and extra_ok, when given). Elsewhere the load reads
    # zero and callers skip the lane: padding is not multiplied, so a non-finite weight
    # reaches only the outputs it reaches in F.conv2d.
    di = t // K - K // 2
    dj = t - (t // K) * K - K // 2
    ok = _in_image(ih + di, iw + dj, H, W)
    if extra_ok is not None:
        ok = ok & extra_ok
    tap = di.to(tl.int64) * sxh + dj.to(tl.int64) * sxw
    return tl.load(x_c + (sp_x + tap)[None, :], mask=ok[None, :], other=0.0), ok


@triton.jit
def _dw_a_tile(x_c, sp_off, ih, iw, c_ok, w0_c, b0_c, H, W, K1, sxh, sxw,
               HAS_B0: tl.constexpr, ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr, P: tl.constexpr):
    # First depthwise conv on every tile position, forced to zero outside the image: that is
    # the zero padding the dilated conv sees.
    # x_c / w0_c / b0_c must point at valid channels even in padding rows
    # (callers clamp the channel): the loads then need no channel mask, whose
    # per-element predicates cost ~70 registers; padding rows are zeroed at
    # the end instead, so even a non-finite x cannot leak into them.
    a = tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE)
    for t1 in range(K1 * K1):
        xv, ok = _x_tap(x_c, sp_off, ih, iw, t1, K1, H, W, sxh, sxw, None)
        wv = tl.load(w0_c + t1).to(ACC_DTYPE)
        a += tl.where(ok[None, :], xv.to(ACC_DTYPE) * wv[:, None], 0.0)
    if HAS_B0:
        a += tl.load(b0_c).to(ACC_DTYPE)[:, None]
    return tl.where(c_ok[:, None] & _in_image(ih, iw, H, W)[None, :], a, 0.0)


@triton.jit
def _tap(t, K, DIL, SIGN: tl.constexpr, TW, ih, iw, H, W, P: tl.constexpr):
    # Tap t of a K x K kernel (dilation DIL): the flat tile position each position reads,
    # q + s for a convolution (SIGN 1) or q - s for its transpose (SIGN -1), and whether
    # that source lies in the image; callers skip the others (padding, see _x_tap). The
    # clamp only keeps rim lanes, whose results are never used, in bounds.
    di = SIGN * (t // K - K // 2) * DIL
    dj = SIGN * (t - (t // K) * K - K // 2) * DIL
    src = tl.minimum(tl.maximum(tl.arange(0, P) + (di * TW + dj), 0), P - 1)
    return src, _in_image(ih + di, iw + dj, H, W)


@triton.jit
def _tap_conv(acc, tile, w_rows, w_ok, K, DIL, SIGN: tl.constexpr, TW, ih, iw, H, W, ACC_DTYPE: tl.constexpr,
              C_CHUNK: tl.constexpr, P: tl.constexpr):
    # acc + the depthwise K x K convolution (SIGN 1) or its transpose (SIGN -1) of a
    # [C_CHUNK, P] tile, by gathers inside the tile; w_rows points at each row's K*K taps.
    # w_ok None loads them unmasked, for callers whose rows all point at valid channels
    # (the forward, at its register ceiling, cannot afford the predicates); otherwise
    # rows where w_ok is false read zero weights.
    for t in range(K * K):
        src, ok = _tap(t, K, DIL, SIGN, TW, ih, iw, H, W, P)
        v = tl.gather(tile, tl.broadcast_to(src[None, :], (C_CHUNK, P)), axis=1)
        if w_ok is None:
            wv = tl.load(w_rows + t)
        else:
            wv = tl.load(w_rows + t, mask=w_ok, other=0.0)
        acc += tl.where(ok[None, :], v * wv.to(ACC_DTYPE)[:, None], 0.0)
    return acc


@triton.jit
def _halo_tile(t, tiles_w, H, W, HALO, TH: tl.constexpr, TW: tl.constexpr, P: tl.constexpr):
    # Tile t's TH x TW positions, flattened: image row/col, which lie in the image, and
    # which form the tile's own (inner) region. Tiles step by the inner size, so every image
    # pixel is inner to exactly one tile.
    th = t // tiles_w
    tw = t - th * tiles_w
    r = tl.arange(0, P)
    lr = r // TW
    lc = r % TW
    ih = th * (TH - 2 * HALO) - HALO + lr
    iw = tw * (TW - 2 * HALO) - HALO + lc
    in_img = _in_image(ih, iw, H, W)
    inner = (lr >= HALO) & (lr < TH - HALO) & (lc >= HALO) & (lc < TW - HALO) & in_img
    return ih, iw, in_img, inner


@triton.jit
def _pw_mac(w, v, acc, ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr):
    # acc + w @ v for w [CO_BLOCK, C_CHUNK], v [C_CHUNK, P].  fp64 goes one channel at a
    # time (each row / column picked out exactly, by a masked sum with zeros): an fp64 FMA
    # dot stages two-register operand slices of both factors per thread, and the forward
    # then spills 8 B on sm_86 under Triton 3.9.
    if ACC_DTYPE == tl.float64:
        k = tl.arange(0, C_CHUNK)
        for c in range(C_CHUNK):
            v_c = tl.sum(tl.where((k == c)[:, None], v, 0.0), axis=0)
            w_c = tl.sum(tl.where((k == c)[None, :], w, 0.0), axis=1)
            acc += w_c[:, None] * v_c[None, :]
    else:
        acc = tl.dot(w, v, acc, input_precision="ieee", out_dtype=ACC_DTYPE)
    return acc


@triton.jit
def _hlk_fwd_kernel(
    x_ptr, w0_ptr, b0_ptr, w1_ptr, b1_ptr, wpw_ptr, bpw_ptr, y_ptr,
    H, W, Cg, Og, G, K1, K2, DIL, HALO,
    sxn, sxc, sxh, sxw,
    syn, syc, syh, syw,
    HAS_B0: tl.constexpr, HAS_B1: tl.constexpr, HAS_BPW: tl.constexpr, ACC_DTYPE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, C_CHUNK: tl.constexpr, CO_BLOCK: tl.constexpr,
):
    P: tl.constexpr = TH * TW
    # One flat grid axis (axes 1/2 are capped at 65535).  The output-channel
    # block varies fastest so programs that recompute the same a/d tile run
    # together and share x in L2.
    pid = tl.program_id(0)
    IH = TH - 2 * HALO
    IW = TW - 2 * HALO
    tiles_w = tl.cdiv(W, IW)
    tiles = tl.cdiv(H, IH) * tiles_w
    n_ob = tl.cdiv(Og, CO_BLOCK)
    ob = pid % n_ob
    rest = pid // n_ob
    t = rest % tiles
    ng = rest // tiles
    g = ng % G
    n = ng // G
    ih, iw, in_img, inner = _halo_tile(t, tiles_w, H, W, HALO, TH, TW, P)
    sp_x = ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw

    C2 = 2 * Cg
    o = ob * CO_BLOCK + tl.arange(0, CO_BLOCK)
    o_ok = o < Og
    oc = g * Og + o
    x_n = x_ptr + n.to(tl.int64) * sxn
    KK1 = K1 * K1
    KK2 = K2 * K2

    acc = tl.zeros([CO_BLOCK, P], dtype=ACC_DTYPE)
    for c0 in range(0, Cg, C_CHUNK):
        cc = c0 + tl.arange(0, C_CHUNK)
        # Channels past Cg (C_CHUNK pads tiny groups up to the dot's minimum
        # of 16) read a real channel, are zeroed in a and d, and meet zero
        # pointwise weights, so they contribute exactly nothing.
        c_ok = cc < Cg
        ch_ld = g * Cg + tl.minimum(cc, Cg - 1)
        x_c = x_n + ch_ld.to(tl.int64)[:, None] * sxc
        a = _dw_a_tile(x_c, sp_x, ih, iw, c_ok, w0_ptr + ch_ld * KK1, b0_ptr + ch_ld, H, W, K1, sxh, sxw,
                       HAS_B0, ACC_DTYPE, C_CHUNK, P)
        wmask = o_ok[:, None] & c_ok[None, :]
        w_off = oc[:, None] * C2 + cc[None, :]
        wa = tl.load(wpw_ptr + w_off, mask=wmask, other=0.0).to(ACC_DTYPE)
        # ieee: fp32 operands must not be rounded to tf32.  The a half is
        # applied before d is built so its dot staging buffer is dead by the
        # time the gathers need theirs (shared memory is the limit on sm_86).
        acc = _pw_mac(wa, a, acc, ACC_DTYPE, C_CHUNK)

        # Exact for inner positions: the halo keeps their taps in the tile.
        d = _tap_conv(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), a, w1_ptr + ch_ld * KK2, None, K2, DIL, 1, TW,
                      ih, iw, H, W, ACC_DTYPE, C_CHUNK, P)
        if HAS_B1:
            d += tl.load(b1_ptr + ch_ld).to(ACC_DTYPE)[:, None]
        d = tl.where(c_ok[:, None], d, 0.0)

        wd = tl.load(wpw_ptr + w_off + Cg, mask=wmask, other=0.0).to(ACC_DTYPE)
        acc = _pw_mac(wd, d, acc, ACC_DTYPE, C_CHUNK)

    if HAS_BPW:
        acc += tl.load(bpw_ptr + oc, mask=o_ok, other=0.0).to(ACC_DTYPE)[:, None]

    sp_y = ih.to(tl.int64) * syh + iw.to(tl.int64) * syw
    y_ptrs = y_ptr + n.to(tl.int64) * syn + oc.to(tl.int64)[:, None] * syc + sp_y[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=o_ok[:, None] & inner[None, :])


@triton.jit
def _pw_grad_in(acc, gy_n, sp_g, in_img, w_ptr, sgc, g, Og, C2, cc, c_ok,
                ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr, CO_BLOCK: tl.constexpr, P: tl.constexpr):
    # acc + W_half^T @ grad_y for one input-channel chunk, over all of the group's
    # output channels.
    if C_CHUNK < 16:
        # Below tl.dot's minimum (the weight passes' chunks): outer products, one grad_y
        # row at a time, which stage no [C_CHUNK, CO_BLOCK] / [CO_BLOCK, P] operands.
        for o in range(Og):
            oc = g * Og + o
            gy_row = tl.load(gy_n + oc.to(tl.int64) * sgc + sp_g, mask=in_img, other=0.0).to(ACC_DTYPE)
            w_col = tl.load(w_ptr + oc * C2 + cc, mask=c_ok, other=0.0).to(ACC_DTYPE)
            acc += w_col[:, None] * gy_row[None, :]
    else:
        for o0 in range(0, Og, CO_BLOCK):
            o = o0 + tl.arange(0, CO_BLOCK)
            o_ok = o < Og
            oc = g * Og + o
            gy = tl.load(gy_n + oc.to(tl.int64)[:, None] * sgc + sp_g[None, :],
                         mask=o_ok[:, None] & in_img[None, :], other=0.0).to(ACC_DTYPE)
            w_t = tl.load(w_ptr + oc[None, :] * C2 + cc[:, None], mask=c_ok[:, None] & o_ok[None, :],
                          other=0.0).to(ACC_DTYPE)
            acc = tl.dot(w_t, gy, acc, input_precision="ieee", out_dtype=ACC_DTYPE)
    return acc


@triton.jit
def _grad_tiles(gy_n, sp_g, ih, iw, in_img, wpw_ptr, w1_rows, sgc, g, H, W, Cg, Og, K2, DIL, TW, cc, c_ok,
                ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr, CO_BLOCK: tl.constexpr, P: tl.constexpr):
    # g_d and g_a of one channel chunk on the whole tile (grad_y reads zero outside the
    # image, where y does not exist).  Two passes over grad_y rather than one: a single
    # pass keeps two FMA-dot accumulators and their operands live at once, which spills.
    g_d = _pw_grad_in(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), gy_n, sp_g, in_img, wpw_ptr + Cg, sgc, g, Og,
                      2 * Cg, cc, c_ok, ACC_DTYPE, C_CHUNK, CO_BLOCK, P)
    # Transposed dilated conv: d[q] used a[q + s2], so g_a[q] collects
    # g_d[q - s2].  Exact on [h2, TH - h2), which covers what follows.  It goes first and
    # W_a^T grad_y is added last, so no second tile is live through that contraction
    # (the other order spilled 4 B on sm_90 under Triton 3.7.1).
    g_a = _tap_conv(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), g_d, w1_rows, c_ok, K2, DIL, -1, TW, ih, iw, H, W,
                    ACC_DTYPE, C_CHUNK, P)
    g_a = _pw_grad_in(g_a, gy_n, sp_g, in_img, wpw_ptr, sgc, g, Og, 2 * Cg, cc, c_ok,
                      ACC_DTYPE, C_CHUNK, CO_BLOCK, P)
    # Outside the image a was padding, not a variable: no gradient.
    return g_d, tl.where(in_img[None, :], g_a, 0.0)


@triton.jit
def _store_grad_x(gx_n, g_a, w0_rows, ch, c_ok, owned, ih, iw, H, W, K1, TW, sqc, sqh, sqw,
                  ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr, P: tl.constexpr):
    gx = _tap_conv(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), g_a, w0_rows, c_ok, K1, 1, -1, TW, ih, iw, H, W,
                   ACC_DTYPE, C_CHUNK, P)
    sp_q = ih.to(tl.int64) * sqh + iw.to(tl.int64) * sqw
    gx_ptrs = gx_n + ch.to(tl.int64)[:, None] * sqc + sp_q[None, :]
    tl.store(gx_ptrs, gx.to(gx_n.dtype.element_ty), mask=c_ok[:, None] & owned[None, :])


@triton.jit
def _wgrad_w0(ws_w0, ws_b0, g_a, x_c, sp_x, ih, iw, owned, c_ok, H, W, K1, sxh, sxw, ACC_DTYPE: tl.constexpr):
    # grad_w0[c, t1] = sum over owned q of g_a[c, q] x[c, q + s1], padding taps skipped.
    for t1 in range(K1 * K1):
        xv, ok = _x_tap(x_c, sp_x, ih, iw, t1, K1, H, W, sxh, sxw, owned)
        accumulate(ws_w0 + t1, tl.sum(tl.where(ok[None, :], g_a * xv.to(ACC_DTYPE), 0.0), axis=1), c_ok)
    accumulate(ws_b0, tl.sum(tl.where(owned[None, :], g_a, 0.0), axis=1), c_ok)


@triton.jit
def _wgrad_pw(ws_wpw, a, d, gy_n, sp_g, owned, sgc, g, Og, Cg, cc, c_ok, ACC_DTYPE: tl.constexpr):
    # grad_w_pw as one row reduction per output channel.  A tl.dot here would contract
    # over the P pixels, and the FMA dot holds a whole K-long operand row per thread:
    # hundreds of registers.  Only owned pixels count (every image pixel once); the rest
    # of a is skipped, not multiplied by a zero grad_y (d is already zero there).
    for o in range(Og):
        oc = g * Og + o
        gy = tl.load(gy_n + oc.to(tl.int64) * sgc + sp_g, mask=owned, other=0.0).to(ACC_DTYPE)
        w_off = oc * (2 * Cg) + cc
        accumulate(ws_wpw + w_off, tl.sum(tl.where(owned[None, :], a * gy[None, :], 0.0), axis=1), c_ok)
        accumulate(ws_wpw + w_off + Cg, tl.sum(d * gy[None, :], axis=1), c_ok)


@triton.jit
def _wgrad_w1(ws_w1, ws_b1, g_d, a, ih, iw, owned, c_ok, H, W, K2, DIL, TW,
              C_CHUNK: tl.constexpr, P: tl.constexpr):
    # grad_w1[c, t2] = sum over owned q of g_d[c, q] a[c, q + s2], padding taps skipped.
    # Its own loop, after d is dead: reducing inside the d loop keeps a, d, g_d and the
    # gathered tap live together, which spills.
    for t2 in range(K2 * K2):
        src, ok = _tap(t2, K2, DIL, 1, TW, ih, iw, H, W, P)
        av = tl.gather(a, tl.broadcast_to(src[None, :], (C_CHUNK, P)), axis=1)
        accumulate(ws_w1 + t2, tl.sum(tl.where((ok & owned)[None, :], g_d * av, 0.0), axis=1), c_ok)
    accumulate(ws_b1, tl.sum(tl.where(owned[None, :], g_d, 0.0), axis=1), c_ok)


@triton.jit
def _x_chunk(x_n, g, cc, Cg, sxc):
    # x rows of one channel chunk; padding rows (cc >= Cg) point at the last real channel.
    ch_ld = g * Cg + tl.minimum(cc, Cg - 1)
    return ch_ld, x_n + ch_ld.to(tl.int64)[:, None] * sxc


@triton.jit
def _wgrad_w0_chunk(ws_row, g_a, x_n, sp_x, ih, iw, owned, g, cc, c_ok, H, W, Cg, G, K1, sxc, sxh, sxw,
                    ACC_DTYPE: tl.constexpr):
    # Adds one channel chunk's share of one tile to the grad_w0 and grad_b0 columns of the
    # workspace row (layout: hlk_bwd's _ws_columns).
    C = G * Cg
    ch = g * Cg + cc
    _, x_c = _x_chunk(x_n, g, cc, Cg, sxc)
    _wgrad_w0(ws_row + ch * K1 * K1, ws_row + C * K1 * K1 + ch, g_a, x_c, sp_x, ih, iw, owned, c_ok,
              H, W, K1, sxh, sxw, ACC_DTYPE)


@triton.jit
def _wgrad_w1_chunk(ws_row, x_n, w0_ptr, b0_ptr, wpw_ptr, gy_n, sp_x, sp_g, ih, iw, in_img, owned, g, cc, c_ok,
                    H, W, Cg, Og, G, K1, K2, DIL, TW, sxc, sxh, sxw, sgc,
                    HAS_B0: tl.constexpr, ACC_DTYPE: tl.constexpr, C_CHUNK: tl.constexpr,
                    CO_BLOCK: tl.constexpr, P: tl.constexpr):
    # The grad_w1 and grad_b1 columns, from a and g_d (not g_a).  a first: built while g_d
    # was live instead, Triton 3.7.1 spilled 16-28 B on sm_86 / sm_90 (at 16-channel chunks).
    C = G * Cg
    ch = g * Cg + cc
    ch_ld, x_c = _x_chunk(x_n, g, cc, Cg, sxc)
    # a on the whole tile (exact everywhere: it reads x from global).
    a = _dw_a_tile(x_c, sp_x, ih, iw, c_ok, w0_ptr + ch_ld * K1 * K1, b0_ptr + ch_ld, H, W, K1, sxh, sxw,
                   HAS_B0, ACC_DTYPE, C_CHUNK, P)
    g_d = _pw_grad_in(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), gy_n, sp_g, in_img, wpw_ptr + Cg, sgc, g, Og,
                      2 * Cg, cc, c_ok, ACC_DTYPE, C_CHUNK, CO_BLOCK, P)
    off_w1 = C * K1 * K1 + C
    _wgrad_w1(ws_row + off_w1 + ch * K2 * K2, ws_row + off_w1 + C * K2 * K2 + ch, g_d, a, ih, iw, owned,
              c_ok, H, W, K2, DIL, TW, C_CHUNK, P)


@triton.jit
def _wgrad_pw_chunk(ws_wpw, x_n, w0_ptr, b0_ptr, w1_ptr, b1_ptr, gy_n, sp_x, sp_g, ih, iw, owned, g, cc, c_ok,
                    H, W, Cg, Og, K1, K2, DIL, TW, sxc, sxh, sxw, sgc,
                    HAS_B0: tl.constexpr, HAS_B1: tl.constexpr, ACC_DTYPE: tl.constexpr,
                    C_CHUNK: tl.constexpr, P: tl.constexpr):
    # Adds one channel chunk's share of one tile to the grad_w_pw columns: recomputes a
    # and d (exact on the owned pixels, the only ones grad_y reaches; zeroed elsewhere).
    ch = g * Cg + cc
    ch_ld, x_c = _x_chunk(x_n, g, cc, Cg, sxc)
    a = _dw_a_tile(x_c, sp_x, ih, iw, c_ok, w0_ptr + ch_ld * K1 * K1, b0_ptr + ch_ld, H, W, K1, sxh, sxw,
                   HAS_B0, ACC_DTYPE, C_CHUNK, P)
    d = _tap_conv(tl.zeros([C_CHUNK, P], dtype=ACC_DTYPE), a, w1_ptr + ch * K2 * K2, c_ok, K2, DIL, 1, TW,
                  ih, iw, H, W, ACC_DTYPE, C_CHUNK, P)
    if HAS_B1:
        d += tl.load(b1_ptr + ch, mask=c_ok, other=0.0).to(ACC_DTYPE)[:, None]
    d = tl.where(owned[None, :], d, 0.0)
    _wgrad_pw(ws_wpw, a, d, gy_n, sp_g, owned, sgc, g, Og, Cg, cc, c_ok, ACC_DTYPE)


@triton.jit
def _wgrad_bpw(ws_bpw, gy_n, sp_g, owned, sgc, g, Og, ACC_DTYPE: tl.constexpr, CO_BLOCK: tl.constexpr,
               P: tl.constexpr):
    for o0 in range(0, Og, CO_BLOCK):
        o = o0 + tl.arange(0, CO_BLOCK)
        o_ok = o < Og
        oc = g * Og + o
        gy = tl.load(gy_n + oc.to(tl.int64)[:, None] * sgc + sp_g[None, :],
                     mask=o_ok[:, None] & owned[None, :], other=0.0)
        accumulate(ws_bpw + oc, tl.sum(gy.to(ACC_DTYPE), axis=1), o_ok)


# The backward kernel's passes (its NEED_W constexpr): the grad_x pass, and three weight
# passes, each adding to its own columns of the workspace.
GX_PASS = tl.constexpr(0)  # no weight gradient
W0_PASS = tl.constexpr(1)  # w0 and b0, from g_a
PW_PASS = tl.constexpr(2)  # the pointwise w_pw and b_pw, which need neither g_a nor g_d
W1_PASS = tl.constexpr(3)  # w1 and b1, from g_d


@triton.jit
def _hlk_bwd_kernel(
    gy_ptr, x_ptr, w0_ptr, b0_ptr, w1_ptr, b1_ptr, wpw_ptr, gx_ptr, ws_ptr,
    N, H, W, Cg, Og, G, K1, K2, DIL, HALO, LW, ROWS,
    sgn, sgc, sgh, sgw,
    sxn, sxc, sxh, sxw,
    sqn, sqc, sqh, sqw,
    NEED_GX: tl.constexpr, NEED_W: tl.constexpr,
    HAS_B0: tl.constexpr, HAS_B1: tl.constexpr, ACC_DTYPE: tl.constexpr,
    TH: tl.constexpr, TW: tl.constexpr, C_CHUNK: tl.constexpr, CO_BLOCK: tl.constexpr,
):
    # HALO here is k1 // 2 + dilation * (k2 // 2): g_d is needed on the whole
    # tile, g_a on it less h2, grad_x and the owned pixels less the full halo.
    # NEED_W: which pass (GX_PASS, W0_PASS, W1_PASS, PW_PASS).  Program (workspace row r, group g)
    # handles r's run of (image, tile) items in order (_workspace.item_run); the grad_x
    # pass gets ROWS >= items, one item each.
    P: tl.constexpr = TH * TW
    pid = tl.program_id(0)
    tiles_w = tl.cdiv(W, TW - 2 * HALO)
    tiles = tl.cdiv(H, TH - 2 * HALO) * tiles_w
    g = pid % G
    row = pid // G
    first, last = item_run(row, N * tiles, ROWS)
    ws_row = ws_ptr + row.to(tl.int64) * LW
    for item in range(first, last):
        n = item // tiles
        ih, iw, in_img, owned = _halo_tile(item - n * tiles, tiles_w, H, W, HALO, TH, TW, P)
        sp_g = ih.to(tl.int64) * sgh + iw.to(tl.int64) * sgw
        sp_x = ih.to(tl.int64) * sxh + iw.to(tl.int64) * sxw
        gy_n = gy_ptr + n.to(tl.int64) * sgn
        x_n = x_ptr + n.to(tl.int64) * sxn
        if NEED_W != GX_PASS:
            # This item adds to what the previous one stored in the row: order them.
            tl.debug_barrier()
        for c0 in range(0, Cg, C_CHUNK):
            cc = c0 + tl.arange(0, C_CHUNK)
            c_ok = cc < Cg
            if NEED_W == PW_PASS:
                _wgrad_pw_chunk(ws_row + (LW - G * Og * (2 * Cg + 1)), x_n, w0_ptr, b0_ptr, w1_ptr, b1_ptr,
                                gy_n, sp_x, sp_g, ih, iw, owned, g, cc, c_ok, H, W, Cg, Og, K1, K2, DIL, TW,
                                sxc, sxh, sxw, sgc, HAS_B0, HAS_B1, ACC_DTYPE, C_CHUNK, P)
            elif NEED_W == W1_PASS:
                _wgrad_w1_chunk(ws_row, x_n, w0_ptr, b0_ptr, wpw_ptr, gy_n, sp_x, sp_g, ih, iw, in_img, owned, g,
                                cc, c_ok, H, W, Cg, Og, G, K1, K2, DIL, TW, sxc, sxh, sxw, sgc, HAS_B0, ACC_DTYPE,
                                C_CHUNK, CO_BLOCK, P)
            else:
                g_d, g_a = _grad_tiles(gy_n, sp_g, ih, iw, in_img, wpw_ptr, w1_ptr + (g * Cg + cc) * (K2 * K2),
                                       sgc, g, H, W, Cg, Og, K2, DIL, TW, cc, c_ok, ACC_DTYPE, C_CHUNK, CO_BLOCK, P)
                if NEED_GX:
                    _store_grad_x(gx_ptr + n.to(tl.int64) * sqn, g_a, w0_ptr + (g * Cg + cc) * (K1 * K1),
                                  g * Cg + cc, c_ok, owned, ih, iw, H, W, K1, TW, sqc, sqh, sqw,
                                  ACC_DTYPE, C_CHUNK, P)
                if NEED_W == W0_PASS:
                    _wgrad_w0_chunk(ws_row, g_a, x_n, sp_x, ih, iw, owned, g, cc, c_ok, H, W, Cg, G, K1,
                                    sxc, sxh, sxw, ACC_DTYPE)
        if NEED_W == PW_PASS:
            _wgrad_bpw(ws_row + (LW - G * Og), gy_n, sp_g, owned, sgc, g, Og, ACC_DTYPE, CO_BLOCK, P)


# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------

# (TH, TW, C_CHUNK, CO_BLOCK, num_warps).  C_CHUNK and CO_BLOCK are 16 where
# they are dot dimensions (K >= 16), C_CHUNK 8 where no dot runs.  Register use
# is set by the elements per thread of one [C_CHUNK, TH*TW] block: 16 (256 positions at
# 8 warps) fits without spills on sm_86 and sm_90; 32 does not (4 warps, or
# 512 positions at 16 warps, which caps at 128 registers, spill hundreds of
# words).  The forward also spills a few words at 16x32 / 8 warps in bf16 on
# sm_90, so it keeps the one 16x16 tile; the grad_x pass is lighter and
# takes 512-position tiles too.
_FWD_SHAPES = [
    (16, 16, 16, 16, 8),
]
_BWD_GX_SHAPES = [
    (16, 16, 16, 16, 8),
    (16, 32, 16, 16, 8),
    (32, 16, 16, 16, 8),
]
if TRITON_BEFORE_3_7:
    # Triton 3.6 spills 384-664 B in the grad_x pass's 512-position tiles at 255 registers.
    _BWD_GX_SHAPES = _BWD_GX_SHAPES[:1]
# The weight passes are the heaviest kernels.  One tile only, which also fixes
# the partial-sum split, for reproducibility across processes.  8-channel chunks (their
# grad_y contraction is then outer products, _pw_grad_in): at 16 and a dot they sit at
# 255 registers, and Triton 3.7.1 spills 4-28 B on sm_86 / sm_90 (fp64: up to 96 B);
# at 8 they need 208-252 (Triton 3.7.1) in every dtype, fp64 included.
_BWD_W_SHAPES = [
    (16, 16, 8, 16, 8),
]

# An explicit cap, even the 255 that 8 warps allow anyway: without one,
# ptxas (sm_86) picked 80 registers for the grad_x pass and spilled.
_MAXNREG = 255


def _configs(shapes):
    return [triton.Config({"TH": th, "TW": tw, "C_CHUNK": cc, "CO_BLOCK": cob},
                          num_warps=nw, num_stages=1, maxnreg=_MAXNREG)
            for th, tw, cc, cob, nw in shapes]


FWD_CONFIGS = _configs(_FWD_SHAPES)
BWD_GX_CONFIGS = _configs(_BWD_GX_SHAPES)
BWD_W_CONFIGS = _configs(_BWD_W_SHAPES)
# fp64 values take two registers: its grad_x pass runs the weight passes' 8-channel
# chunks (16 and a dot spill up to 32 B) and only the 256-position tile (512 spill).
BWD_GX_FP64_CONFIGS = BWD_W_CONFIGS
# Under Triton 3.6 the fp64 forward spills 4 B on sm_90 at 16 channels: it takes the same
# 8-channel chunks (its fp64 contraction goes one channel at a time, in the same order).
FWD_FP64_CONFIGS = BWD_W_CONFIGS if TRITON_BEFORE_3_7 else FWD_CONFIGS


def fwd_configs(dtype: torch.dtype) -> list:
    """The forward configs for inputs of ``dtype`` (autotuned unless they are FWD_FP64_CONFIGS)."""
    return FWD_FP64_CONFIGS if dtype == torch.float64 else FWD_CONFIGS


def bwd_gx_configs(dtype: torch.dtype) -> list:
    """The grad_x pass configs for inputs of ``dtype`` (autotuned unless float64)."""
    return BWD_GX_FP64_CONFIGS if dtype == torch.float64 else BWD_GX_CONFIGS


# Smallest inner region (per side) a tuned tile must leave.  Below it the
# halo recompute dominates so badly (a 2x2 output from a 16x16 tile) that
# the composed path is the better deal (MAX_TUNED_HALO follows from it).
_MIN_INNER = 4


def _fits(cfg_kwargs, halo: int, h: int, w: int) -> bool:
    th, tw = cfg_kwargs["TH"], cfg_kwargs["TW"]
    if th - 2 * halo < _MIN_INNER or tw - 2 * halo < _MIN_INNER:
        return False
    # Tiles far larger than the halo-padded image only add masked lanes.
    return th <= max(16, np2(h + 2 * halo)) and tw <= max(16, np2(w + 2 * halo))


def _candidates(configs, halo: int, h: int, w: int, og: int):
    keep = [cfg for cfg in configs if _fits(cfg.kwargs, halo, h, w)]
    # Wider output blocks only pay off when there are that many outputs.
    small = [cfg for cfg in keep if cfg.kwargs["CO_BLOCK"] <= max(16, np2(og))]
    return small or keep


# Largest halo the tuned, spill-free tiles serve (16 - 2 * 6 = _MIN_INNER). The registry
# sends larger halos (k_size 23 and up) to the composed path.
MAX_TUNED_HALO = 6


def _check_halo(halo: int, what: str) -> None:
    # The op routes larger halos to the composed path; a direct call gets the reason.
    if halo > MAX_TUNED_HALO:
        raise ValueError(f"hlk_conv Triton {what}: halo {halo} > {MAX_TUNED_HALO}, which no tuned tile serves; "
                         f"call istd_kernels.ops.hlk_conv, which composes the Triton depthwise kernels instead")


def _prune(configs, named_args, **kwargs):
    keep = [cfg for cfg in configs
            if cfg in _candidates(configs, named_args["HALO"], named_args["H"], named_args["W"],
                                  named_args["Og"])]
    return keep or configs[:1]


def _tiles(h: int, w: int, halo: int, cfg_kwargs) -> int:
    return (triton.cdiv(h, cfg_kwargs["TH"] - 2 * halo)
            * triton.cdiv(w, cfg_kwargs["TW"] - 2 * halo))


_FWD_KEY = ["H", "W", "Cg", "Og", "G", "K1", "K2", "DIL", "HALO", "sxw", "syw"]
_BWD_KEY = ["H", "W", "Cg", "Og", "G", "K1", "K2", "DIL", "HALO", "sgw", "sxw"]

if INTERPRET:
    _fwd_tuned = None
    _bwd_gx_tuned = None
else:
    _fwd_tuned = triton.autotune(FWD_CONFIGS, key=_FWD_KEY,
                                 prune_configs_by={"early_config_prune": _prune})(_hlk_fwd_kernel)
    _bwd_gx_tuned = triton.autotune(BWD_GX_CONFIGS, key=_BWD_KEY,
                                    prune_configs_by={"early_config_prune": _prune})(_hlk_bwd_kernel)


# ---------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------


def hlk_fwd(x: torch.Tensor, w0: torch.Tensor, b0, w1: torch.Tensor, b1, w_pw: torch.Tensor, b_pw,
            dilation: int, groups: int) -> torch.Tensor:
    """HLKConv forward.

    x [N, C, H, W] (any strides), w0 [C, 1, k1, k1], b0 [C] or None,
    w1 [C, 1, k2, k2], b1 [C] or None, w_pw [Cout, 2*C//groups, 1, 1],
    b_pw [Cout] or None; k1, k2 odd.  fp16 / bf16 / fp32 accumulate in fp32,
    fp64 in fp64.  Returns y [N, Cout, H, W] in x's dtype, memory format
    ``_memory_format(x)``.
    """
    N, C, H, W = (int(s) for s in x.shape)
    Cout = int(w_pw.shape[0])
    G = int(groups)
    Cg, Og = C // G, Cout // G
    K1, K2 = int(w0.shape[-1]), int(w1.shape[-1])
    DIL = int(dilation)
    halo = hlk_halos(K1, K2, DIL)[0]
    y = torch.empty((N, Cout, H, W), dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    if y.numel() == 0:
        return y
    if Cg == 0:
        # No input channels: the pointwise conv sees an empty sum.
        if b_pw is None:
            return y.zero_()
        return y.copy_(b_pw.to(y.dtype).view(1, Cout, 1, 1).expand_as(y))

    _check_halo(hlk_halos(K1, K2, DIL)[1], "forward")
    acc_tl, _ = acc(x.dtype)
    w0c, w1c, wpc = w0.contiguous(), w1.contiguous(), w_pw.contiguous()
    ph = w0c  # placeholder pointer for absent biases, never read
    args = (x, w0c, b0.contiguous() if b0 is not None else ph, w1c,
            b1.contiguous() if b1 is not None else ph, wpc,
            b_pw.contiguous() if b_pw is not None else ph, y,
            H, W, Cg, Og, G, K1, K2, DIL, halo,
            *x.stride(), *y.stride())
    consts = dict(HAS_B0=b0 is not None, HAS_B1=b1 is not None, HAS_BPW=b_pw is not None,
                  ACC_DTYPE=acc_tl)
    configs = fwd_configs(x.dtype)
    cands = _candidates(configs, halo, H, W, Og)
    grid = lambda meta: (N * G * _tiles(H, W, halo, meta) * triton.cdiv(Og, meta["CO_BLOCK"]),)  # noqa: E731
    with device_ctx(x):
        # The autotuner knows FWD_CONFIGS only: other configs launch directly.
        launch(_hlk_fwd_kernel, _fwd_tuned if configs is FWD_CONFIGS else None, cands, grid, args, consts)
    return y


def _ws_columns(C: int, Cout: int, Cg: int, K1: int, K2: int) -> list[int]:
    # Column layout of a workspace row (mirrored in _wgrad_chunk / _wgrad_bpw).
    return [C * K1 * K1, C, C * K2 * K2, C, Cout * 2 * Cg, Cout]


def _ws_plan(N: int, C: int, H: int, W: int, Cout: int, groups: int, K1: int, K2: int, dilation: int,
             dtype: torch.dtype):
    # (weight-pass config, workspace rows, row length) of one backward call.
    halo = hlk_halos(K1, K2, dilation)[1]
    cfg = _candidates(BWD_W_CONFIGS, halo, H, W, Cout // groups)[0]
    lw = sum(_ws_columns(C, Cout, C // groups, K1, K2))
    row_bytes = lw * acc(dtype)[1].itemsize
    items = N * _tiles(H, W, halo, cfg.kwargs)
    return cfg, _workspace.rows(items, row_bytes, N * C * H * W * dtype.itemsize), lw


def bwd_workspace_bytes(N: int, C: int, H: int, W: int, Cout: int, groups: int, k1: int, k2: int,
                        dilation: int, dtype: torch.dtype) -> int:
    """Bytes of the weight-gradient workspace one :func:`hlk_bwd` call allocates.

    For x [N, C, H, W] of ``dtype``, w_pw [Cout, 2*C/groups], kernels k1 / k2 and
    ``dilation``, when any weight gradient is asked for (0 for an empty input).  Uses the
    weight pass's real tiling, so it is what the kernel gets, without running it.  At most
    ``_workspace.budget(x.nbytes)`` unless one row (all weight gradients in the
    accumulation dtype) is larger.
    """
    if N * H * W == 0:
        return 0
    _, rows, lw = _ws_plan(N, C, H, W, Cout, groups, k1, k2, dilation, dtype)
    return rows * lw * acc(dtype)[1].itemsize


def _split_grads(gx, wsum, cols, need, shapes, dtype):
    out = [gx]
    off = 0
    for k, (size, shape) in enumerate(zip(cols, shapes)):
        out.append(wsum[off:off + size].view(shape).to(dtype) if need[k + 1] else None)
        off += size
    return tuple(out)


def _bwd_launch(pass_args, grad_y, x, N, G, halo, gx, ws, rows, cfg_or_cands, tuned, w_pass):
    # One launch of _hlk_bwd_kernel: the grad_x pass (w_pass GX_PASS, ws unused) or a weight
    # pass (gx unused).
    need_gx = w_pass == GX_PASS.value
    H, W = int(x.shape[2]), int(x.shape[3])
    w0c, b0p, w1c, b1p, wpc, geo, flags = pass_args
    args = (grad_y, x, w0c, b0p, w1c, b1p, wpc, gx if need_gx else w0c, ws, N, H, W, *geo, rows,
            *grad_y.stride(), *x.stride(), *(gx.stride() if need_gx else (0, 0, 0, 0)))
    consts = dict(NEED_GX=need_gx, NEED_W=w_pass, **flags)
    grid = lambda meta: (G * _workspace.used_rows(N * _tiles(H, W, halo, meta), rows),)  # noqa: E731
    launch(_hlk_bwd_kernel, tuned, cfg_or_cands, grid, args, consts)


def hlk_bwd(grad_y: torch.Tensor, x: torch.Tensor, w0: torch.Tensor, b0, w1: torch.Tensor, b1,
            w_pw: torch.Tensor, dilation: int, groups: int, need):
    """HLKConv backward, recomputing a and d from x.

    Arguments as in :func:`hlk_fwd`; grad_y [N, Cout, H, W] with any strides
    (stride 0 included).  ``need`` is 7 bools for (grad_x, grad_w0, grad_b0,
    grad_w1, grad_b1, grad_w_pw, grad_b_pw); the result is that 7-tuple with
    None in slots not needed.  Each gradient has its input's shape and dtype
    (grad_b_pw: [Cout], x's dtype); grad_x has memory format
    ``_memory_format(x)``.  Weight gradients are reduced deterministically, through a
    workspace of :func:`bwd_workspace_bytes`.
    """
    need = tuple(bool(v) for v in need)
    N, C, H, W = (int(s) for s in x.shape)
    Cout, G, DIL = int(w_pw.shape[0]), int(groups), int(dilation)
    K1, K2 = int(w0.shape[-1]), int(w1.shape[-1])
    halo = hlk_halos(K1, K2, DIL)[1]
    acc_tl, acc_t = acc(x.dtype)
    gx = torch.empty((N, C, H, W), dtype=x.dtype, device=x.device, memory_format=_memory_format(x)) if need[0] else None
    cols = _ws_columns(C, Cout, C // G, K1, K2)
    shapes = [tuple(w0.shape), (C,), tuple(w1.shape), (C,), tuple(w_pw.shape), (Cout,)]
    if N * H * W == 0 or C == 0:
        wsum = torch.zeros(sum(cols), dtype=acc_t, device=x.device)
        if need[6] and grad_y.numel() > 0:
            wsum[-Cout:] = grad_y.sum(dim=(0, 2, 3), dtype=acc_t)
        return _split_grads(gx.zero_() if gx is not None else None, wsum, cols, need, shapes, x.dtype)
    if not any(need):
        return (None,) * 7
    _check_halo(halo, "backward")
    w0c = w0.contiguous()
    pass_args = (w0c, b0.contiguous() if b0 is not None else w0c, w1.contiguous(),
                 b1.contiguous() if b1 is not None else w0c, w_pw.contiguous(),
                 (C // G, Cout // G, G, K1, K2, DIL, halo, sum(cols)),
                 dict(HAS_B0=b0 is not None, HAS_B1=b1 is not None, ACC_DTYPE=acc_tl))
    with device_ctx(x):
        if need[0]:
            # Unused workspace pointer, but typed as the gate compiles it; ROWS = H * W is at
            # least the item count of any tile, so every program takes one item.
            ws_ph = torch.empty(1, dtype=torch.float32, device=x.device)
            cands = _candidates(bwd_gx_configs(x.dtype), halo, H, W, Cout // G)
            # The autotuner knows BWD_GX_CONFIGS only: fp64's configs launch directly.
            tuned = _bwd_gx_tuned if bwd_gx_configs(x.dtype) is BWD_GX_CONFIGS else None
            _bwd_launch(pass_args, grad_y, x, N, G, halo, gx, ws_ph, N * H * W, cands, tuned, GX_PASS.value)
        if not any(need[1:]):
            return (gx,) + (None,) * 6
        # A single, fixed tile and a split that depends on the shape only: the partial sums,
        # not only their reduction order, are the same in every process.
        cfg, rows, lw = _ws_plan(N, C, H, W, Cout, G, K1, K2, DIL, x.dtype)
        ws = torch.zeros((rows, lw), dtype=acc_t, device=x.device)
        # Three weight passes into disjoint columns (w0/b0, w1/b1, the pointwise ones): one
        # program doing more keeps g_a, g_d, a and d in flight and spills.
        for w_pass, slots in ((W0_PASS, need[1:3]), (W1_PASS, need[3:5]), (PW_PASS, need[5:])):
            if any(slots):
                _bwd_launch(pass_args, grad_y, x, N, G, halo, gx, ws, rows, [cfg], None, w_pass.value)
    # torch.sum over a fixed-shape dim is a fixed-order reduction (no atomics).
    return _split_grads(gx, ws.sum(dim=0), cols, need, shapes, x.dtype)


# ---------------------------------------------------------------------------
# Ahead-of-time compile specs (used by istd_kernels.tools.triton_gate)
# ---------------------------------------------------------------------------

# k1 and k2 are runtime loop bounds, so every (k1, k2) shares one binary;
# the pair in the label only records what the specs stand for.
_AOT_KS = "k1,k2 runtime (3,3)/(5,7)"


def aot_specs() -> list[dict]:
    """Every kernel configuration the compile gate builds.

    Built by :func:`._launch.aot_spec`.  Covered: every :func:`fwd_configs` / BWD_W config and every
    :func:`bwd_gx_configs` config x {fp32, fp16, bf16, fp64} with all biases on; the
    backward kernel appears four times, as its grad_x pass and its three weight passes
    (the constexpr variants launched).
    k1 / k2 are runtime arguments, so the (3, 3) and (5, 7) kernels are the
    same binary and compiled once.
    """
    from ._launch import AOT_DTYPES, aot_spec

    specs = []
    geo = ["H", "W", "Cg", "Og", "G", "K1", "K2", "DIL", "HALO"]
    for dt in AOT_DTYPES:
        p = "*" + dt.name
        wsp = dt.acc_ptr
        kernels = [
            ("_hlk_fwd_kernel", _hlk_fwd_kernel, fwd_configs(dt.dtype),
             [("x_ptr", p), ("w0_ptr", p), ("b0_ptr", p), ("w1_ptr", p), ("b1_ptr", p),
              ("wpw_ptr", p), ("bpw_ptr", p), ("y_ptr", p)],
             geo + ["sxn", "sxc", "sxh", "sxw", "syn", "syc", "syh", "syw"],
             dict(HAS_B0=True, HAS_B1=True, HAS_BPW=True)),
        ]
        bwd_ptrs = [("gy_ptr", p), ("x_ptr", p), ("w0_ptr", p), ("b0_ptr", p), ("w1_ptr", p),
                    ("b1_ptr", p), ("wpw_ptr", p), ("gx_ptr", p), ("ws_ptr", wsp)]
        bwd_ints = ["N"] + geo + ["LW", "ROWS", "sgn", "sgc", "sgh", "sgw", "sxn", "sxc", "sxh", "sxw",
                          "sqn", "sqc", "sqh", "sqw"]
        kernels += [
            ("_hlk_bwd_kernel[grad_x]", _hlk_bwd_kernel, bwd_gx_configs(dt.dtype), bwd_ptrs, bwd_ints,
             dict(NEED_GX=True, NEED_W=GX_PASS.value, HAS_B0=True, HAS_B1=True)),
            ("_hlk_bwd_kernel[weights_w0]", _hlk_bwd_kernel, BWD_W_CONFIGS, bwd_ptrs, bwd_ints,
             dict(NEED_GX=False, NEED_W=W0_PASS.value, HAS_B0=True, HAS_B1=True)),
            ("_hlk_bwd_kernel[weights_w1]", _hlk_bwd_kernel, BWD_W_CONFIGS, bwd_ptrs, bwd_ints,
             dict(NEED_GX=False, NEED_W=W1_PASS.value, HAS_B0=True, HAS_B1=True)),
            ("_hlk_bwd_kernel[weights_pw]", _hlk_bwd_kernel, BWD_W_CONFIGS, bwd_ptrs, bwd_ints,
             dict(NEED_GX=False, NEED_W=PW_PASS.value, HAS_B0=True, HAS_B1=True)),
        ]
        for name, fn, configs, ptrs, ints, extra in kernels:
            for cfg in configs:
                consts = dict(ACC_DTYPE=dt.acc, **extra, **cfg.kwargs)
                kw = cfg.kwargs
                specs.append(aot_spec(name, fn, ptrs, ints, consts, cfg,
                                      f"TH={kw['TH']} TW={kw['TW']} CC={kw['C_CHUNK']} CO={kw['CO_BLOCK']} "
                                      f"{dt.name} {_AOT_KS}"))
    return specs
