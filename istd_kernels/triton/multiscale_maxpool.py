"""Triton kernels for ``multiscale_maxpool``: every pooling level from one launch.

``u`` ([N, D, H, W], group-major, D = groups * radix * c) is pooled branch by branch:
channel ``(k*radix + j)*c + i`` goes, max-pooled by ``s_j`` (kernel = stride = ``s_j``,
ceil mode), to channel ``k*c + i`` of level ``j``.  Every u channel belongs to exactly one
level, so one launch reads u once and writes all levels.

Levels differ in scale, output size, output tensor and strides, so those live in a small
int64 *level table* on the device (one row per level, data pointers included) rather than
in kernel arguments; a program finds its level by walking the table.  That keeps one
compiled kernel per (dtype, index dtype, tile) for any radix and any scales, at the cost of
runtime (not unrolled) window loops.  The level outputs stay separate tensors (a custom op
may not return outputs that alias each other), hence data pointers in the table: loaded as
int64 and cast to the element pointer type of a typed "level 0" argument.

Forward: a program owns a BLOCK_H x BLOCK_W tile of one output plane of one level and scans
its ``s x s`` windows in row-major order, keeping the running max and its offset
``dy*s + dx`` inside the window.  The update rule ``v > m or v is NaN`` is the one of
``F.max_pool2d`` on CPU: among equal maxima the first in row-major order wins; a NaN
propagates and the last NaN of the window is the recorded position.  The offset is stored
(uint8 when every ``s <= 16``, else int32) for the backward.

Backward: gather over input positions.  A program owns a tile of one u plane; each element
reads the offset and the gradient of the one window it lies in and keeps the gradient iff
its own offset is the stored one.  Every grad_u element is written exactly once: no
atomics, no zero-fill pass, bitwise deterministic.

On a GPU both kernels are autotuned over the tile; under ``TRITON_INTERPRET=1`` (read once,
at import) the first config is launched directly, as in :mod:`.depthwise`.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import triton
import triton.language as tl

from ..layout import index_dtype, output_memory_format as _memory_format
from ._launch import INTERPRET, aot_signature, device_ctx, launch

__all__ = ["INTERPRET", "FWD_CONFIGS", "BWD_CONFIGS", "mmp_fwd", "mmp_bwd", "aot_specs"]

# Level-table row layouts (int64 fields).
_F_FWD = 9   # s, Ho, Wo, y_ptr, i_ptr, syn, syc, syh, syw
_F_BWD = 11  # s, g_ptr, i_ptr, sgn, sgc, sgh, sgw, sin, sic, sih, siw



# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _mmp_fwd_kernel(
    u_ptr, tab_ptr, y0_ptr, i0_ptr,
    NGC, GC, C, RADIX, H, W,
    sun, suc, suh, suw,
    F: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # Programs are laid out level after level, N*GC planes per level, tiles of a plane
    # adjacent.  The level's first program is recomputed from the table (a handful of
    # scalar loads) instead of being stored, so the grid can follow the autotuned tile.
    pid = tl.program_id(0).to(tl.int64)
    start = pid * 0
    lvl = pid * 0
    lstart = pid * 0
    for l in range(RADIX):
        row = tab_ptr + l * F
        ho_l = tl.load(row + 1)
        wo_l = tl.load(row + 2)
        take = pid >= start
        lvl = tl.where(take, l, lvl)
        lstart = tl.where(take, start, lstart)
        start += NGC * ((ho_l + BLOCK_H - 1) // BLOCK_H) * ((wo_l + BLOCK_W - 1) // BLOCK_W)

    row = tab_ptr + lvl * F
    s = tl.load(row + 0)
    Ho = tl.load(row + 1)
    Wo = tl.load(row + 2)
    y_base = tl.load(row + 3).to(tl.pointer_type(y0_ptr.dtype.element_ty))
    i_base = tl.load(row + 4).to(tl.pointer_type(i0_ptr.dtype.element_ty))
    syn = tl.load(row + 5)
    syc = tl.load(row + 6)
    syh = tl.load(row + 7)
    syw = tl.load(row + 8)

    tiles_w = (Wo + BLOCK_W - 1) // BLOCK_W
    tiles = ((Ho + BLOCK_H - 1) // BLOCK_H) * tiles_w
    local = pid - lstart
    plane = local // tiles
    t = local - plane * tiles
    n = plane // GC
    r = plane - n * GC
    k = r // C
    i = r - k * C
    uch = (k * RADIX + lvl) * C + i
    th = t // tiles_w
    tw = t - th * tiles_w

    oh = th * BLOCK_H + tl.arange(0, BLOCK_H)
    ow = tw * BLOCK_W + tl.arange(0, BLOCK_W)
    out_ok = (oh < Ho)[:, None] & (ow < Wo)[None, :]
    u_base = u_ptr + n * sun + uch * suc
    ih0 = oh * s
    iw0 = ow * s

    m = tl.full([BLOCK_H, BLOCK_W], float("-inf"), u_ptr.dtype.element_ty)
    arg = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.int32)
    # Windows start inside the image, so no window needs more than H rows / W columns:
    # bounding the loops by them saves the fully masked iterations when s > H or W.
    for dy in range(tl.minimum(s, H)):
        ih = ih0 + dy
        row_ok = ih < H
        row_ptr = u_base + ih[:, None] * suh
        for dx in range(tl.minimum(s, W)):
            iw = iw0 + dx
            ok = out_ok & row_ok[:, None] & (iw < W)[None, :]
            v = tl.load(row_ptr + iw[None, :] * suw, mask=ok, other=float("-inf"))
            # F.max_pool2d's CPU rule: strictly greater, or NaN (so NaN sticks and the
            # last NaN's position is recorded).
            upd = ok & ((v > m) | (v != v))
            m = tl.where(upd, v, m)
            arg = tl.where(upd, (dy * s + dx).to(tl.int32), arg)

    out_off = n * syn + r * syc + oh[:, None] * syh + ow[None, :] * syw
    tl.store(y_base + out_off, m, mask=out_ok)
    tl.store(i_base + out_off, arg.to(i0_ptr.dtype.element_ty), mask=out_ok)


@triton.jit
def _mmp_bwd_kernel(
    gu_ptr, tab_ptr, g0_ptr, i0_ptr,
    D, C, RADIX, H, W,
    sgun, sguc, sguh, sguw,
    F: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # One program per tile of one grad_u plane: the tiling is the same for every level,
    # only the table row (scale, pointers, strides) depends on the channel.
    pid = tl.program_id(0).to(tl.int64)
    tiles_w = tl.cdiv(W, BLOCK_W)
    tiles = tl.cdiv(H, BLOCK_H) * tiles_w
    plane = pid // tiles
    t = pid - plane * tiles
    n = plane // D
    ch = plane - n * D
    br = ch // C
    i = ch - br * C
    k = br // RADIX
    lvl = br - k * RADIX
    r = k * C + i
    th = t // tiles_w
    tw = t - th * tiles_w

    row = tab_ptr + lvl * F
    s = tl.load(row + 0)
    g_base = tl.load(row + 1).to(tl.pointer_type(g0_ptr.dtype.element_ty))
    i_base = tl.load(row + 2).to(tl.pointer_type(i0_ptr.dtype.element_ty))
    sgn = tl.load(row + 3)
    sgc = tl.load(row + 4)
    sgh = tl.load(row + 5)
    sgw = tl.load(row + 6)
    sin = tl.load(row + 7)
    sic = tl.load(row + 8)
    sih = tl.load(row + 9)
    siw = tl.load(row + 10)

    ih = th * BLOCK_H + tl.arange(0, BLOCK_H)
    iw = tw * BLOCK_W + tl.arange(0, BLOCK_W)
    ok = (ih < H)[:, None] & (iw < W)[None, :]
    wy = ih // s
    wx = iw // s
    off = ((ih - wy * s) * s)[:, None] + (iw - wx * s)[None, :]
    # Each window's gradient and offset are re-read by its s*s input positions; they are
    # s*s times smaller than grad_u and stay in cache.
    g = tl.load(g_base + n * sgn + r * sgc + wy[:, None] * sgh + wx[None, :] * sgw, mask=ok, other=0.0)
    a = tl.load(i_base + n * sin + r * sic + wy[:, None] * sih + wx[None, :] * siw, mask=ok, other=0)
    gu = tl.where(a.to(tl.int64) == off, g, tl.zeros_like(g))
    gu_off = n * sgun + ch * sguc + ih[:, None] * sguh + iw[None, :] * sguw
    tl.store(gu_ptr + gu_off, gu.to(gu_ptr.dtype.element_ty), mask=ok)


# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------


def _configs(shapes):
    # maxnreg as in .depthwise: a cap lets ptxas allocate freely below it; triton_gate
    # checks that no config spills on sm_86 / sm_90.
    return [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=nw, num_stages=1, maxnreg=128)
            for bh, bw, nw in shapes]


# Forward tiles are in output pixels (a quarter to 1/256 of the input), so they are small;
# the first is the interpreter's (cheapest on tiny planes).
FWD_CONFIGS = _configs([(8, 32, 4), (16, 32, 4), (8, 64, 4)])
# Backward tiles are in input pixels, wide rows for coalesced grad_u stores.
BWD_CONFIGS = _configs([(8, 32, 4), (16, 64, 4), (32, 64, 8)])

# The scales live in the table and are not in the key: they change the best tile only
# through the output sizes, and DLC uses one fixed set per module.
_FWD_KEY = ["NGC", "GC", "C", "RADIX", "H", "W", "suw"]
_BWD_KEY = ["D", "C", "RADIX", "H", "W", "sguw"]

if INTERPRET:
    _fwd_tuned = None
    _bwd_tuned = None
else:
    _fwd_tuned = triton.autotune(FWD_CONFIGS, key=_FWD_KEY)(_mmp_fwd_kernel)
    _bwd_tuned = triton.autotune(BWD_CONFIGS, key=_BWD_KEY)(_mmp_bwd_kernel)


# ---------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _table(rows, device) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64).to(device, non_blocking=True)


def mmp_fwd(u: torch.Tensor, groups: int, radix: int, scales: Sequence[int]) -> List[torch.Tensor]:
    """Pool every level of ``u`` in one launch.

    Args:
        u: ``[N, D, H, W]`` float tensor on the kernel's device, any strides (read in place).
        groups, radix, scales: as :func:`istd_kernels.ops.multiscale_maxpool` (checked there).

    Returns:
        ``2 * radix`` tensors: the ``radix`` levels ``[N, groups*c, ceil(H/s), ceil(W/s)]`` in
        ``u.dtype`` (channels_last if ``u`` is), then their window offsets ``dy*s + dx`` of
        the same shape and layout in :func:`index_dtype`.
    """
    N, D, H, W = u.shape
    c = D // (groups * radix)
    GC = groups * c
    fmt = _memory_format(u)
    idt = index_dtype(scales)
    ys, idx = [], []
    for s in scales:
        shape = (N, GC, _cdiv(H, s), _cdiv(W, s))
        ys.append(torch.empty(shape, dtype=u.dtype, device=u.device, memory_format=fmt))
        idx.append(torch.empty(shape, dtype=idt, device=u.device, memory_format=fmt))
    if u.numel() == 0:
        return ys + idx
    rows = []
    for s, y, a in zip(scales, ys, idx):
        # Same shape and layout rule, so one set of strides addresses both.
        assert y.stride() == a.stride()
        rows.extend([s, y.shape[2], y.shape[3], y.data_ptr(), a.data_ptr(), *y.stride()])
    tab = _table(rows, u.device)
    los = [(y.shape[2], y.shape[3]) for y in ys]

    def grid(meta):
        return (N * GC * sum(_cdiv(ho, meta["BLOCK_H"]) * _cdiv(wo, meta["BLOCK_W"]) for ho, wo in los),)

    args = (u, tab, ys[0], idx[0], N * GC, GC, c, radix, H, W, *u.stride())
    with device_ctx(u):
        launch(_mmp_fwd_kernel, _fwd_tuned, FWD_CONFIGS, grid, args, dict(F=_F_FWD))
    return ys + idx


def mmp_bwd(grads: Sequence[torch.Tensor], indices: Sequence[torch.Tensor], D: int, H: int, W: int, groups: int,
            radix: int, scales: Sequence[int], memory_format: torch.memory_format) -> torch.Tensor:
    """Gradient of ``u`` from the level gradients and the stored window offsets.

    Args:
        grads: ``radix`` tensors ``[N, groups*c, ceil(H/s), ceil(W/s)]``, any strides
            (stride-0 expanded ones included).
        indices: the offsets :func:`mmp_fwd` returned.
        D, H, W: u's channel count and size; memory_format: u's layout rule.

    Returns:
        ``[N, D, H, W]`` in the gradients' dtype, every element written once.
    """
    N = grads[0].shape[0]
    c = D // (groups * radix)
    g0 = grads[0]
    gu = torch.empty((N, D, H, W), dtype=g0.dtype, device=g0.device, memory_format=memory_format)
    if gu.numel() == 0:
        return gu
    rows = []
    for s, g, a in zip(scales, grads, indices):
        rows.extend([s, g.data_ptr(), a.data_ptr(), *g.stride(), *a.stride()])
    tab = _table(rows, g0.device)

    def grid(meta):
        return (N * D * _cdiv(H, meta["BLOCK_H"]) * _cdiv(W, meta["BLOCK_W"]),)

    args = (gu, tab, g0, indices[0], D, c, radix, H, W, *gu.stride())
    with device_ctx(g0):
        launch(_mmp_bwd_kernel, _bwd_tuned, BWD_CONFIGS, grid, args, dict(F=_F_BWD))
    return gu


# ---------------------------------------------------------------------------
# Ahead-of-time compile specs (used by istd_kernels.tools.triton_gate)
# ---------------------------------------------------------------------------

_AOT_DTYPES = ("fp32", "fp16", "bf16")
_AOT_INDEX = ("u8", "i32")


def aot_specs() -> list[dict]:
    """Every kernel configuration the compile gate builds, in :func:`.depthwise.aot_specs`'s format.

    Covered: both kernels x every tile config x {fp32, fp16, bf16} x index dtype
    {uint8, int32}.  ``fn`` is only compilable when this module was imported without
    TRITON_INTERPRET.
    """
    specs = []
    kernels = [
        ("_mmp_fwd_kernel", _mmp_fwd_kernel, FWD_CONFIGS, ("u_ptr", "tab_ptr", "y0_ptr", "i0_ptr"),
         ["NGC", "GC", "C", "RADIX", "H", "W", "sun", "suc", "suh", "suw"], _F_FWD),
        ("_mmp_bwd_kernel", _mmp_bwd_kernel, BWD_CONFIGS, ("gu_ptr", "tab_ptr", "g0_ptr", "i0_ptr"),
         ["D", "C", "RADIX", "H", "W", "sgun", "sguc", "sguh", "sguw"], _F_BWD),
    ]
    for name, fn, configs, (p_out, p_tab, p_lvl, p_idx), ints, fields in kernels:
        for dname in _AOT_DTYPES:
            for iname in _AOT_INDEX:
                ptrs = [(p_out, "*" + dname), (p_tab, "*i64"), (p_lvl, "*" + dname), (p_idx, "*" + iname)]
                for cfg in configs:
                    consts = dict(F=fields, **cfg.kwargs)
                    specs.append(dict(
                        name=name, fn=fn,
                        signature=aot_signature(fn, ptrs, ints, list(consts)),
                        constexprs=consts,
                        num_warps=cfg.num_warps, num_stages=cfg.num_stages, maxnreg=cfg.maxnreg,
                        config=(f"BH={cfg.kwargs['BLOCK_H']} BW={cfg.kwargs['BLOCK_W']} {dname} idx={iname} "
                                f"w{cfg.num_warps}"),
                    ))
    return specs

