"""Triton kernels for ``multiscale_maxpool``: every pooling level from one launch.

``u`` ([N, D, H, W], group-major, D = groups * radix * c) is pooled branch by branch:
channel ``(k*radix + j)*c + i`` goes, max-pooled by ``s_j`` (kernel = stride = ``s_j``,
ceil mode), to channel ``k*c + i`` of level ``j``.  Every u channel belongs to exactly one
level, so one launch reads u once and writes all levels.

Up to ``LEVELS_PER_LAUNCH`` levels go to one launch as plain kernel arguments (scale and
output pointers per level, placeholders for absent ones); a program finds its level from
the scales and picks its arguments with :func:`_pick`.  Nothing is built on the host or
copied to the device per call, so the launch can be captured in a CUDA graph, and one
compiled kernel per (dtype, index dtype, tile) serves any radix and any scales (radix > 4
takes one launch per 4 levels), at the cost of runtime (not unrolled) window loops.  The
level outputs stay separate tensors (a custom op may not return outputs that alias each
other); they are allocated here, contiguous or channels_last, so their strides follow from
the shape and the ``CL`` flag instead of taking four arguments per level.

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

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from ..layout import index_dtype
from ..layout import output_memory_format as _memory_format
from ._launch import AOT_DTYPES, INTERPRET, aot_spec, device_ctx, launch, pad, plane_tile

__all__ = ["INTERPRET", "LEVELS_PER_LAUNCH", "FWD_CONFIGS", "BWD_CONFIGS", "mmp_fwd", "mmp_bwd", "aot_specs"]

# Argument slots per level in one launch: four covers DLC's radix (2-4); more levels take
# more launches rather than more arguments.
LEVELS_PER_LAUNCH = 4


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _pick(l, a0, a1, a2, a3):
    # The per-level argument of level l (runtime or constexpr) among the four slots.
    v = a0
    if l == 1:
        v = a1
    if l == 2:
        v = a2
    if l == 3:
        v = a3
    return v


@triton.jit
def _out_strides(GC, Ho, Wo, CL):
    # Strides of a level output [N, GC, Ho, Wo] allocated contiguous (CL=0) or channels_last.
    syc = tl.where(CL != 0, 1, Ho * Wo)
    syw = tl.where(CL != 0, GC, 1)
    return GC * Ho * Wo, syc, syw * Wo, syw


@triton.jit
def _mmp_fwd_kernel(
    u_ptr, y0_ptr, y1_ptr, y2_ptr, y3_ptr, i0_ptr, i1_ptr, i2_ptr, i3_ptr,
    S0, S1, S2, S3, NLVL, LVL0, NGC, GC, C, RADIX, H, W,
    sun, suc, suh, suw, CL,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # Programs are laid out level after level, N*GC planes per level, tiles of a plane
    # adjacent.  The level's first program is recomputed from the scales (scalar integer
    # math) instead of being passed, so the grid can follow the autotuned tile.
    pid = tl.program_id(0).to(tl.int64)
    start = pid * 0
    lvl = pid * 0
    lstart = pid * 0
    for l in tl.static_range(4):
        s_l = _pick(l, S0, S1, S2, S3)
        take = (pid >= start) & (l < NLVL)
        lvl = tl.where(take, l, lvl)
        lstart = tl.where(take, start, lstart)
        start += NGC * tl.cdiv(tl.cdiv(H, s_l), BLOCK_H) * tl.cdiv(tl.cdiv(W, s_l), BLOCK_W)

    s = _pick(lvl, S0, S1, S2, S3)
    y_base = _pick(lvl, y0_ptr, y1_ptr, y2_ptr, y3_ptr)
    i_base = _pick(lvl, i0_ptr, i1_ptr, i2_ptr, i3_ptr)
    Ho = tl.cdiv(H, s)
    Wo = tl.cdiv(W, s)
    syn, syc, syh, syw = _out_strides(GC, Ho, Wo, CL)
    plane, th, tw = plane_tile(pid - lstart, Ho, Wo, BLOCK_H, BLOCK_W)
    n = plane // GC
    r = plane - n * GC
    k = r // C
    i = r - k * C
    uch = (k * RADIX + LVL0 + lvl) * C + i

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
    gu_ptr, g0_ptr, g1_ptr, g2_ptr, g3_ptr, i0_ptr, i1_ptr, i2_ptr, i3_ptr,
    S0, S1, S2, S3, LVL0, NGC, GC, C, RADIX, H, W,
    sgun, sguc, sguh, sguw,
    sg0n, sg0c, sg0h, sg0w, sg1n, sg1c, sg1h, sg1w,
    sg2n, sg2c, sg2h, sg2w, sg3n, sg3c, sg3h, sg3w, CL,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    # One program per tile of one grad_u plane, planes level after level (N*GC per level):
    # the tiling is the same for every level, only the scale, pointers and strides differ.
    pid = tl.program_id(0).to(tl.int64)
    plane, th, tw = plane_tile(pid, H, W, BLOCK_H, BLOCK_W)
    lvl = plane // NGC
    rest = plane - lvl * NGC
    n = rest // GC
    r = rest - n * GC
    k = r // C
    i = r - k * C
    ch = (k * RADIX + LVL0 + lvl) * C + i

    s = _pick(lvl, S0, S1, S2, S3)
    g_base = _pick(lvl, g0_ptr, g1_ptr, g2_ptr, g3_ptr)
    i_base = _pick(lvl, i0_ptr, i1_ptr, i2_ptr, i3_ptr)
    sgn = _pick(lvl, sg0n, sg1n, sg2n, sg3n)
    sgc = _pick(lvl, sg0c, sg1c, sg2c, sg3c)
    sgh = _pick(lvl, sg0h, sg1h, sg2h, sg3h)
    sgw = _pick(lvl, sg0w, sg1w, sg2w, sg3w)
    sin, sic, sih, siw = _out_strides(GC, tl.cdiv(H, s), tl.cdiv(W, s), CL)

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

# The scales are not in the key: they change the best tile only through the output sizes,
# and DLC uses one fixed set per module.
_FWD_KEY = ["NLVL", "NGC", "GC", "C", "RADIX", "H", "W", "suw"]
_BWD_KEY = ["NGC", "GC", "C", "RADIX", "H", "W", "sguw"]

if INTERPRET:
    _fwd_tuned = None
    _bwd_tuned = None
else:
    _fwd_tuned = triton.autotune(FWD_CONFIGS, key=_FWD_KEY)(_mmp_fwd_kernel)
    _bwd_tuned = triton.autotune(BWD_CONFIGS, key=_BWD_KEY)(_mmp_bwd_kernel)


# ---------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------


def _launch_groups(radix: int):
    """(first level, one past the last) of each launch."""
    return [(lo, min(radix, lo + LEVELS_PER_LAUNCH)) for lo in range(0, radix, LEVELS_PER_LAUNCH)]


def _slots(items, filler):
    return pad(items, LEVELS_PER_LAUNCH, filler)


def mmp_fwd(u: torch.Tensor, groups: int, radix: int, scales: Sequence[int]) -> list[torch.Tensor]:
    """Pool every level of ``u``: one launch per ``LEVELS_PER_LAUNCH`` levels.

    Args:
        u: ``[N, D, H, W]`` float tensor on the kernel's device, any strides (read in place).
        groups, radix, scales: as :func:`istd_kernels.ops.multiscale_maxpool` (checked there).

    Returns:
        ``2 * radix`` tensors: the ``radix`` levels ``[N, groups*c, ceil(H/s), ceil(W/s)]`` in
        ``u.dtype`` (channels_last if ``u`` is), then their window offsets ``dy*s + dx`` of
        the same shape and layout in :func:`index_dtype`.  Graph-capturable: no host data,
        no copies, no synchronisation.
    """
    N, D, H, W = u.shape
    c = D // (groups * radix)
    GC = groups * c
    fmt = _memory_format(u)
    idt = index_dtype(scales)
    ys, idx = [], []
    for s in scales:
        shape = (N, GC, triton.cdiv(H, s), triton.cdiv(W, s))
        ys.append(torch.empty(shape, dtype=u.dtype, device=u.device, memory_format=fmt))
        idx.append(torch.empty(shape, dtype=idt, device=u.device, memory_format=fmt))
    if u.numel() == 0:
        return ys + idx
    cl = int(fmt == torch.channels_last)
    for lo, hi in _launch_groups(radix):
        lvl_scales = list(scales[lo:hi])

        def grid(meta, lvl_scales=lvl_scales):
            return (N * GC * sum(triton.cdiv(triton.cdiv(H, s), meta["BLOCK_H"])
                                 * triton.cdiv(triton.cdiv(W, s), meta["BLOCK_W"]) for s in lvl_scales),)

        args = (u, *_slots(ys[lo:hi], ys[lo]), *_slots(idx[lo:hi], idx[lo]), *_slots(lvl_scales, 1),
                hi - lo, lo, N * GC, GC, c, radix, H, W, *u.stride(), cl)
        with device_ctx(u):
            launch(_mmp_fwd_kernel, _fwd_tuned, FWD_CONFIGS, grid, args, {})
    return ys + idx


def mmp_bwd(grads: Sequence[torch.Tensor], indices: Sequence[torch.Tensor], D: int, H: int, W: int, groups: int,
            radix: int, scales: Sequence[int], memory_format: torch.memory_format) -> torch.Tensor:
    """Gradient of ``u`` from the level gradients and the stored window offsets.

    Args:
        grads: ``radix`` tensors ``[N, groups*c, ceil(H/s), ceil(W/s)]``, any strides
            (stride-0 expanded ones included).
        indices: the offsets :func:`mmp_fwd` returned (other strides cost one copy).
        D, H, W: u's channel count and size; memory_format: u's layout rule.

    Returns:
        ``[N, D, H, W]`` in the gradients' dtype, every element written once.
    """
    N = grads[0].shape[0]
    c = D // (groups * radix)
    GC = groups * c
    g0 = grads[0]
    gu = torch.empty((N, D, H, W), dtype=g0.dtype, device=g0.device, memory_format=memory_format)
    if gu.numel() == 0:
        return gu
    # The kernel derives the offsets' strides from the layout, as mmp_fwd allocated them;
    # contiguous() is a no-op for those and a device copy otherwise.
    indices = [a.contiguous(memory_format=memory_format) for a in indices]
    cl = int(memory_format == torch.channels_last)
    for lo, hi in _launch_groups(radix):

        def grid(meta, nlvl=hi - lo):
            return (nlvl * N * GC * triton.cdiv(H, meta["BLOCK_H"]) * triton.cdiv(W, meta["BLOCK_W"]),)

        strides = [st for g in _slots(grads[lo:hi], grads[lo]) for st in g.stride()]
        args = (gu, *_slots(grads[lo:hi], grads[lo]), *_slots(indices[lo:hi], indices[lo]),
                *_slots(scales[lo:hi], 1), lo, N * GC, GC, c, radix, H, W, *gu.stride(), *strides, cl)
        with device_ctx(g0):
            launch(_mmp_bwd_kernel, _bwd_tuned, BWD_CONFIGS, grid, args, {})
    return gu


# ---------------------------------------------------------------------------
# Ahead-of-time compile specs (used by istd_kernels.tools.triton_gate)
# ---------------------------------------------------------------------------

_AOT_INDEX = ("u8", "i32")
_FWD_INTS = ["S0", "S1", "S2", "S3", "NLVL", "LVL0", "NGC", "GC", "C", "RADIX", "H", "W",
             "sun", "suc", "suh", "suw", "CL"]
_BWD_INTS = (["S0", "S1", "S2", "S3", "LVL0", "NGC", "GC", "C", "RADIX", "H", "W", "sgun", "sguc", "sguh", "sguw"]
             + [f"sg{j}{d}" for j in range(LEVELS_PER_LAUNCH) for d in "nchw"] + ["CL"])


def aot_specs() -> list[dict]:
    """Every kernel configuration the compile gate builds (format: :func:`._launch.aot_spec`).

    Covered: both kernels x every tile config x {fp32, fp16, bf16, fp64} x index dtype
    {uint8, int32}; scales, level count and layout are runtime arguments of the same binary.
    ``fn`` is only compilable when this module was imported without TRITON_INTERPRET.
    """
    specs = []
    kernels = [("_mmp_fwd_kernel", _mmp_fwd_kernel, FWD_CONFIGS, "u_ptr", "y", _FWD_INTS),
               ("_mmp_bwd_kernel", _mmp_bwd_kernel, BWD_CONFIGS, "gu_ptr", "g", _BWD_INTS)]
    for name, fn, configs, p_dense, p_level, ints in kernels:
        for dt in AOT_DTYPES:
            for iname in _AOT_INDEX:
                ptrs = ([(p_dense, "*" + dt.name)] + [(f"{p_level}{j}_ptr", "*" + dt.name) for j in range(4)]
                        + [(f"i{j}_ptr", "*" + iname) for j in range(4)])
                for cfg in configs:
                    kw = cfg.kwargs
                    specs.append(aot_spec(name, fn, ptrs, ints, dict(kw), cfg,
                                          f"BH={kw['BLOCK_H']} BW={kw['BLOCK_W']} {dt.name} idx={iname}"))
    return specs
