"""Triton kernels for split attention over low-resolution branches (DLC-Attention's combine).

With ``r`` branches, ``G`` groups, ``Dg = D // G`` channels per group and, per pixel,
``w[k, :] = softmax(logits[k*r : k*r + r] / T)``::

    A[c] = residual[c] + sum_j w[k(c), j] * branch_j[c, y // s_j, x // s_j]
    Z[c] = SiLU(A[c]) * SiLU(v[c])

Forward: ONE kernel.  A program owns (n, group k, BH x BW spatial tile).  It
computes the r softmax weights of its tile once, then loops over the group's
Dg channels (runtime loop), gathering each branch at ``(y // s_j, x // s_j)``
straight from the low-resolution tensor, so no upsampled branch ever exists.
Scales are runtime ints here: the forward is elementwise, any integer scale
works and one binary serves every scale set.

Backward: ONE kernel plus a tiny reduction.  Same program layout; it
recomputes A from the inputs (only inputs are saved) and writes, per channel,
grad_residual, grad_v and the branch gradients; after the channel loop it
writes grad_logits and one temperature partial sum.

* Branch gradients without atomics: the tile is BH x BW with BH, BW powers
  of two >= max(scales), and every scale is a power of two, so tiles start
  at multiples of every s_j and each low-res pixel's s_j x s_j footprint lies
  inside exactly one program.  The program reduces ``grad_A * w_j`` over the
  footprint with a reshape to ``[BH/s, s, BW/s, s]`` and two sums, and stores
  each low-res gradient exactly once.  Pixels outside the image contribute
  zero, which is the border clipping.  The summation tree depends only on
  s_j, so the result does not depend on the tile shape either.  This is why
  the backward takes the scales as constexprs and why the Triton backend
  accepts power-of-two scales <= MAX_SCALE only.
* Temperature: each program stores ``sum(dL/de_j * (-e_j / T))`` over its
  tile and branches (e = logits / T) to its own slot of a float32 (float64
  for float64) workspace; the slots are summed by ``torch.sum`` in a fixed
  order.  The backward uses one fixed tile config (never autotuned), so the
  partial sums themselves are the same in every process.

Branch count r is a constexpr, 1..MAX_BRANCHES (4): absent branch pointers
are placeholders that are never read.

Tensors are made contiguous NCHW by the wrappers (a copy for channels_last or
strided inputs; the kernels then index with plain NCHW arithmetic and 64-bit
plane offsets).  The forward writes Z through its strides, so a
channels_last residual gives a channels_last Z without an extra copy.
Half types accumulate in float32, float64 in float64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..layout import output_memory_format as _memory_format
from ._launch import AOT_DTYPES, INTERPRET, TRITON_BEFORE_3_7, acc, aot_spec, device_ctx, launch, np2, pad, plane_tile

__all__ = [
    "MAX_BRANCHES",
    "MAX_SCALE",
    "FWD_CONFIGS",
    "BWD_CONFIG",
    "fwd_configs",
    "split_attention_fwd",
    "split_attention_bwd",
    "check_triton_args",
    "triton_supports",
    "aot_specs",
]

MAX_BRANCHES = 4
# Largest scale the backward tiles for: a 32x32 tile keeps ~10 live fp32
# tiles per program within the register budget; 64x64 would spill.
MAX_SCALE = 32


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _gather_low(b_ptr, plane, y, x, H, W, S, ok):
    # Nearest upsampling by S then crop, as a gather: pixel (y, x) reads the
    # low-res pixel whose pooling window holds it.
    Hj = tl.cdiv(H, S)
    Wj = tl.cdiv(W, S)
    off = plane * Hj * Wj + (y // S).to(tl.int64)[:, None] * Wj + (x // S).to(tl.int64)[None, :]
    return tl.load(b_ptr + off, mask=ok, other=0.0)


@triton.jit
def _load_logit(lg_base, j, HW, sp, ok, inv_t, ACC_DTYPE: tl.constexpr):
    return tl.load(lg_base + j * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE) * inv_t


@triton.jit
def _softmax_weights(lg_ptr, t_ptr, n, k, G, HW, sp, ok,
                     R: tl.constexpr, ACC_DTYPE: tl.constexpr):
    # Scaled logits e_j = logit / T and w = softmax_j(e); slots j >= R are
    # zero weights (and zero e) so callers can use all four unconditionally.
    inv_t = 1.0 / tl.load(t_ptr).to(ACC_DTYPE)
    lg_base = lg_ptr + (n * G + k).to(tl.int64) * R * HW
    e0 = _load_logit(lg_base, 0, HW, sp, ok, inv_t, ACC_DTYPE)
    zero = e0 * 0.0
    m = e0
    e1 = zero
    e2 = zero
    e3 = zero
    if R > 1:
        e1 = _load_logit(lg_base, 1, HW, sp, ok, inv_t, ACC_DTYPE)
        m = tl.maximum(m, e1)
    if R > 2:
        e2 = _load_logit(lg_base, 2, HW, sp, ok, inv_t, ACC_DTYPE)
        m = tl.maximum(m, e2)
    if R > 3:
        e3 = _load_logit(lg_base, 3, HW, sp, ok, inv_t, ACC_DTYPE)
        m = tl.maximum(m, e3)
    w0 = tl.exp(e0 - m)
    w1 = zero
    w2 = zero
    w3 = zero
    if R > 1:
        w1 = tl.exp(e1 - m)
    if R > 2:
        w2 = tl.exp(e2 - m)
    if R > 3:
        w3 = tl.exp(e3 - m)
    inv_sum = 1.0 / (w0 + w1 + w2 + w3)
    return e0, e1, e2, e3, w0 * inv_sum, w1 * inv_sum, w2 * inv_sum, w3 * inv_sum, inv_t


@triton.jit
def _program_tile(H, W, G, BH: tl.constexpr, BW: tl.constexpr):
    # This program's image n, group k and BH x BW tile (th, tw); the tile's rows y and
    # columns x, which lie in the image, and their offsets in a contiguous H x W plane.
    ng, th, tw = plane_tile(tl.program_id(0), H, W, BH, BW)
    y = th * BH + tl.arange(0, BH)
    x = tw * BW + tl.arange(0, BW)
    ok = (y < H)[:, None] & (x < W)[None, :]
    sp = y.to(tl.int64)[:, None] * W + x.to(tl.int64)[None, :]
    return ng // G, ng % G, th, tw, y, x, ok, sp


@triton.jit
def _sa_fwd_kernel(
    b0_ptr, b1_ptr, b2_ptr, b3_ptr, lg_ptr, t_ptr, res_ptr, v_ptr, z_ptr,
    D, H, W, G, Dg, S0, S1, S2, S3,
    szn, szc, szh, szw,
    R: tl.constexpr, ACC_DTYPE: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    n, k, th, tw, y, x, ok, sp = _program_tile(H, W, G, BH, BW)
    HW = H * W
    spz = y.to(tl.int64)[:, None] * szh + x.to(tl.int64)[None, :] * szw

    e0, e1, e2, e3, w0, w1, w2, w3, inv_t = _softmax_weights(lg_ptr, t_ptr, n, k, G, HW, sp, ok, R, ACC_DTYPE)

    for ci in range(Dg):
        c = k * Dg + ci
        plane = (n * D + c).to(tl.int64)
        a = tl.load(res_ptr + plane * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE)
        a += w0 * _gather_low(b0_ptr, plane, y, x, H, W, S0, ok).to(ACC_DTYPE)
        if R > 1:
            a += w1 * _gather_low(b1_ptr, plane, y, x, H, W, S1, ok).to(ACC_DTYPE)
        if R > 2:
            a += w2 * _gather_low(b2_ptr, plane, y, x, H, W, S2, ok).to(ACC_DTYPE)
        if R > 3:
            a += w3 * _gather_low(b3_ptr, plane, y, x, H, W, S3, ok).to(ACC_DTYPE)
        vv = tl.load(v_ptr + plane * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE)
        z = a * _sigmoid(a) * (vv * _sigmoid(vv))
        zoff = n.to(tl.int64) * szn + c.to(tl.int64) * szc + spz
        tl.store(z_ptr + zoff, z.to(z_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _footprint_store(gb_ptr, g, plane, th, tw, H, W,
                     S: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr):
    # Sum g over each S x S footprint of the tile (tile origin is a multiple
    # of S, BH and BW are multiples of S) and store the low-res gradient.
    # Out-of-image pixels hold zero in g: the footprint is clipped for free.
    low = tl.sum(tl.sum(tl.reshape(g, [BH // S, S, BW // S, S]), axis=3), axis=1)
    Hj = tl.cdiv(H, S)
    Wj = tl.cdiv(W, S)
    py = th * (BH // S) + tl.arange(0, BH // S)
    px = tw * (BW // S) + tl.arange(0, BW // S)
    off = plane * Hj * Wj + py.to(tl.int64)[:, None] * Wj + px.to(tl.int64)[None, :]
    tl.store(gb_ptr + off, low.to(gb_ptr.dtype.element_ty), mask=(py < Hj)[:, None] & (px < Wj)[None, :])


@triton.jit
def _sa_bwd_kernel(
    gz_ptr, b0_ptr, b1_ptr, b2_ptr, b3_ptr, lg_ptr, t_ptr, res_ptr, v_ptr,
    gb0_ptr, gb1_ptr, gb2_ptr, gb3_ptr, glg_ptr, gres_ptr, gv_ptr, ws_ptr,
    D, H, W, G, Dg,
    R: tl.constexpr, S0: tl.constexpr, S1: tl.constexpr, S2: tl.constexpr, S3: tl.constexpr,
    ACC_DTYPE: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr,
):
    pid = tl.program_id(0)
    n, k, th, tw, y, x, ok, sp = _program_tile(H, W, G, BH, BW)
    HW = H * W

    e0, e1, e2, e3, w0, w1, w2, w3, inv_t = _softmax_weights(lg_ptr, t_ptr, n, k, G, HW, sp, ok, R, ACC_DTYPE)
    # dL/dw_j summed over the group's channels.
    gw0 = w0 * 0.0
    gw1 = gw0
    gw2 = gw0
    gw3 = gw0

    for ci in range(Dg):
        c = k * Dg + ci
        plane = (n * D + c).to(tl.int64)
        a = tl.load(res_ptr + plane * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE)
        u0 = _gather_low(b0_ptr, plane, y, x, H, W, S0, ok).to(ACC_DTYPE)
        a += w0 * u0
        u1 = u0
        u2 = u0
        u3 = u0
        if R > 1:
            u1 = _gather_low(b1_ptr, plane, y, x, H, W, S1, ok).to(ACC_DTYPE)
            a += w1 * u1
        if R > 2:
            u2 = _gather_low(b2_ptr, plane, y, x, H, W, S2, ok).to(ACC_DTYPE)
            a += w2 * u2
        if R > 3:
            u3 = _gather_low(b3_ptr, plane, y, x, H, W, S3, ok).to(ACC_DTYPE)
            a += w3 * u3
        vv = tl.load(v_ptr + plane * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE)
        gz = tl.load(gz_ptr + plane * HW + sp, mask=ok, other=0.0).to(ACC_DTYPE)
        sa = _sigmoid(a)
        sv = _sigmoid(vv)
        # d SiLU(x) / dx = s (1 + x (1 - s)), s = sigmoid(x).  The where()
        # keeps out-of-image lanes exactly zero for the footprint sums.
        ga = tl.where(ok, gz * (vv * sv) * (sa * (1.0 + a * (1.0 - sa))), 0.0)
        gv = gz * (a * sa) * (sv * (1.0 + vv * (1.0 - sv)))
        tl.store(gres_ptr + plane * HW + sp, ga.to(gres_ptr.dtype.element_ty), mask=ok)
        tl.store(gv_ptr + plane * HW + sp, gv.to(gv_ptr.dtype.element_ty), mask=ok)
        gw0 += ga * u0
        _footprint_store(gb0_ptr, ga * w0, plane, th, tw, H, W, S0, BH, BW)
        if R > 1:
            gw1 += ga * u1
            _footprint_store(gb1_ptr, ga * w1, plane, th, tw, H, W, S1, BH, BW)
        if R > 2:
            gw2 += ga * u2
            _footprint_store(gb2_ptr, ga * w2, plane, th, tw, H, W, S2, BH, BW)
        if R > 3:
            gw3 += ga * u3
            _footprint_store(gb3_ptr, ga * w3, plane, th, tw, H, W, S3, BH, BW)

    # Softmax backward: dL/de_j = w_j (gw_j - sum_i w_i gw_i); e_j = logit_j / T.
    dot = w0 * gw0 + w1 * gw1 + w2 * gw2 + w3 * gw3
    ge0 = w0 * (gw0 - dot)
    ge1 = w1 * (gw1 - dot)
    ge2 = w2 * (gw2 - dot)
    ge3 = w3 * (gw3 - dot)
    glg_base = glg_ptr + (n * G + k).to(tl.int64) * R * HW
    gty = glg_ptr.dtype.element_ty
    tl.store(glg_base + sp, (ge0 * inv_t).to(gty), mask=ok)
    if R > 1:
        tl.store(glg_base + HW + sp, (ge1 * inv_t).to(gty), mask=ok)
    if R > 2:
        tl.store(glg_base + 2 * HW + sp, (ge2 * inv_t).to(gty), mask=ok)
    if R > 3:
        tl.store(glg_base + 3 * HW + sp, (ge3 * inv_t).to(gty), mask=ok)
    # de_j / dT = -e_j / T.  Absent branches have ge = 0; masked lanes too
    # (ga = 0 there), the where() only guards against non-finite padding.
    tsum = ge0 * e0 + ge1 * e1 + ge2 * e2 + ge3 * e3
    tsum = tl.where(ok, tsum, 0.0)
    tl.store(ws_ptr + pid, -tl.sum(tl.sum(tsum, axis=1), axis=0) * inv_t)


# ---------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------

# (BH, BW, num_warps).  The forward is elementwise, so its tile never changes
# the result and it may be autotuned.  16x32 comes first: cheapest in the
# interpreter for tiny planes.  Registers grow with elements per thread (r=4:
# ~60 at 2, ~115 at 4, 255 + spills at 8), so every config keeps 2-4.
_FWD_SHAPES = [(16, 32, 8), (16, 64, 8), (32, 64, 16)]
FWD_CONFIGS = [triton.Config({"BH": bh, "BW": bw}, num_warps=nw, num_stages=1) for bh, bw, nw in _FWD_SHAPES]
# The backward's tile sets the temperature partial sums, so it is fixed (it
# is widened to max(scales) per side when a scale exceeds it).
# 8 warps: 2 elements per thread keeps r=4 near 120 registers (4 warps: ~225).  The cap
# keeps two programs per SM (8 warps x 128 registers); without any cap Triton 3.7.1 gives
# r=2 fp32 80 registers and a 4-byte spill on sm_86.
BWD_CONFIG = triton.Config({"BH": 16, "BW": 32}, num_warps=8, num_stages=1, maxnreg=128)
# float64 values take two registers each (r=4: ~210): up to the 255 that 8 warps allow.
_BWD_FP64_MAXNREG = 255
# Triton 3.6 spills 4-8 B in the r=4 fp32 backward on sm_90 at 128 and 136, none at 144.
# Above 128 only one 8-warp program fits an SM, so the other branch counts keep 128.
_BWD_TRITON36_R4_MAXNREG = 144


def _bwd_maxnreg(dtype: torch.dtype, r: int) -> int:
    if dtype == torch.float64:
        return _BWD_FP64_MAXNREG
    if TRITON_BEFORE_3_7 and r == MAX_BRANCHES:
        return _BWD_TRITON36_R4_MAXNREG
    return BWD_CONFIG.maxnreg


# float64 values take two registers each: at 16 warps (128 registers per thread) the r=4
# forward spills, so float64 runs only the configs of at most this many warps.
_FP64_MAX_WARPS = 8


def fwd_configs(dtype: torch.dtype) -> list:
    """The forward configs autotuned (and compile-gated) for inputs of ``dtype``."""
    if dtype == torch.float64:
        return [cfg for cfg in FWD_CONFIGS if cfg.num_warps <= _FP64_MAX_WARPS]
    return FWD_CONFIGS


def _prune_fwd(configs, named_args, **kwargs):
    h, w = named_args["H"], named_args["W"]
    allowed = fwd_configs(named_args["res_ptr"].dtype)
    keep = [cfg for cfg in configs if cfg in allowed
            and cfg.kwargs["BH"] <= max(16, np2(h)) and cfg.kwargs["BW"] <= max(32, np2(w))]
    return keep or configs[:1]


if INTERPRET:
    _fwd_tuned = None
else:
    _fwd_tuned = triton.autotune(FWD_CONFIGS, key=["D", "H", "W", "G", "Dg", "szw"],
                                 prune_configs_by={"early_config_prune": _prune_fwd})(_sa_fwd_kernel)


# ---------------------------------------------------------------------------
# Launch helpers
# ---------------------------------------------------------------------------


def _tiles(h: int, w: int, bh: int, bw: int) -> int:
    return triton.cdiv(h, bh) * triton.cdiv(w, bw)


def triton_supports(r: int, scales) -> tuple[bool, str]:
    """Whether the Triton kernels take ``r`` branches with these ``scales``, and why not."""
    if r > MAX_BRANCHES:
        return False, (f"the triton backend of split_attention supports at most {MAX_BRANCHES} branches "
                       f"(len(branches) <= {MAX_BRANCHES}); got {r}")
    if any(s > MAX_SCALE or s & (s - 1) for s in scales):
        return False, (f"the triton backend of split_attention needs scales that are powers of two <= {MAX_SCALE} "
                       f"(its backward tiles by them); got scales={tuple(scales)}")
    return True, ""


def check_triton_args(r: int, scales) -> None:
    """Raise ValueError unless the Triton kernels support ``r`` branches with these ``scales``."""
    ok, reason = triton_supports(r, scales)
    if not ok:
        raise ValueError(f"{reason}. Use backend='torch'")


def _pad4(items, filler):
    return pad(items, MAX_BRANCHES, filler)


def split_attention_fwd(branches, logits: torch.Tensor, temperature: torch.Tensor, residual: torch.Tensor,
                        v: torch.Tensor, groups: int, scales) -> torch.Tensor:
    """Z = SiLU(A) * SiLU(v) in one kernel.

    branches: r <= 4 tensors ``[N, D, ceil(H/s_j), ceil(W/s_j)]``; logits ``[N, G*r, H, W]``;
    temperature: 1 element; residual, v: ``[N, D, H, W]``; all one float dtype and device
    (inputs are made contiguous here).  Returns Z ``[N, D, H, W]`` in the input dtype with
    memory format ``_memory_format(residual)``.
    """
    scales = tuple(int(s) for s in scales)
    r = len(branches)
    if r > MAX_BRANCHES:
        check_triton_args(r, scales)
    N, D, H, W = (int(s) for s in residual.shape)
    G = int(groups)
    z = torch.empty((N, D, H, W), dtype=residual.dtype, device=residual.device,
                    memory_format=_memory_format(residual))
    if z.numel() == 0:
        return z
    bs = [b.contiguous() for b in branches]
    lg, res, vc = logits.contiguous(), residual.contiguous(), v.contiguous()
    tt = temperature.reshape(1).contiguous()
    args = (*_pad4(bs, bs[0]), lg, tt, res, vc, z,
            D, H, W, G, D // G, *_pad4(scales, 1), *z.stride())
    consts = dict(R=r, ACC_DTYPE=acc(residual.dtype)[0])
    grid = lambda meta: (N * G * _tiles(H, W, meta["BH"], meta["BW"]),)  # noqa: E731
    with device_ctx(residual):
        launch(_sa_fwd_kernel, _fwd_tuned, FWD_CONFIGS, grid, args, consts)
    return z


def split_attention_bwd(grad_z: torch.Tensor, branches, logits: torch.Tensor, temperature: torch.Tensor,
                        residual: torch.Tensor, v: torch.Tensor, groups: int, scales):
    """All gradients in one kernel pass plus the temperature reduction.

    Arguments as :func:`split_attention_fwd`; ``grad_z`` ``[N, D, H, W]``, any strides
    (made contiguous, so an expanded grad costs one copy).  Returns
    ``(grad_branches: list, grad_logits, grad_temperature, grad_residual, grad_v)``, each
    contiguous with its input's shape and dtype.  Deterministic: no atomics, fixed tile.
    """
    scales = tuple(int(s) for s in scales)
    r = len(branches)
    check_triton_args(r, scales)
    N, D, H, W = (int(s) for s in residual.shape)
    G = int(groups)
    dt, dev = residual.dtype, residual.device
    acc_tl, acc_t = acc(dt)
    gbs = [torch.empty(b.shape, dtype=dt, device=dev) for b in branches]
    glg = torch.empty(logits.shape, dtype=dt, device=dev)
    gres = torch.empty(residual.shape, dtype=dt, device=dev)
    gv = torch.empty(v.shape, dtype=dt, device=dev)
    if N * D * H * W == 0:
        for g in gbs + [glg, gres, gv]:
            g.zero_()
        return gbs, glg, torch.zeros_like(temperature), gres, gv

    s_max = max(scales)
    bh = max(BWD_CONFIG.kwargs["BH"], s_max)
    bw = max(BWD_CONFIG.kwargs["BW"], s_max)
    progs = N * G * _tiles(H, W, bh, bw)
    ws = torch.empty((progs,), dtype=acc_t, device=dev)
    bs = [b.contiguous() for b in branches]
    args = (grad_z.contiguous(), *_pad4(bs, bs[0]), logits.contiguous(), temperature.reshape(1).contiguous(),
            residual.contiguous(), v.contiguous(), *_pad4(gbs, gbs[0]), glg, gres, gv, ws,
            D, H, W, G, D // G)
    s4 = _pad4(scales, 1)
    consts = dict(R=r, S0=s4[0], S1=s4[1], S2=s4[2], S3=s4[3], ACC_DTYPE=acc_tl, BH=bh, BW=bw)
    with device_ctx(residual):
        _sa_bwd_kernel[(progs,)](*args, **consts, num_warps=BWD_CONFIG.num_warps, num_stages=BWD_CONFIG.num_stages,
                                 maxnreg=_bwd_maxnreg(dt, r))
    # torch.sum over a fixed-size 1-D workspace: a fixed-order reduction, no atomics.
    gt = ws.sum().to(dt).reshape(temperature.shape)
    return gbs, glg, gt, gres, gv


# ---------------------------------------------------------------------------
# Ahead-of-time compile specs (used by istd_kernels.tools.triton_gate)
# ---------------------------------------------------------------------------

_FWD_INTS = ["D", "H", "W", "G", "Dg", "S0", "S1", "S2", "S3", "szn", "szc", "szh", "szw"]


def _aot_ptrs(kernel_fn, dt) -> list:
    # Every pointer of the kernel in the data dtype, but the temperature workspace.
    return [(a, dt.acc_ptr if a == "ws_ptr" else "*" + dt.name) for a in kernel_fn.arg_names if a.endswith("_ptr")]


def aot_specs() -> list[dict]:
    """Every kernel configuration the compile gate builds (format: :func:`._launch.aot_spec`).

    Covered: the forward for every config of :func:`fwd_configs` x r in 1..4 x {fp32,
    fp16, bf16, fp64} (scales are runtime there), and the backward with its fixed config x r in 1..4 with the
    default scales (2, 4, ..., 2**r) x the four dtypes.  Other power-of-two scale sets are
    other constexpr variants of the same code; scales above 16 widen the backward tile (up
    to 32x32) and are not covered.
    """
    specs = []
    for dt in AOT_DTYPES:
        for cfg in fwd_configs(dt.dtype):
            for r in range(1, MAX_BRANCHES + 1):
                kw = cfg.kwargs
                specs.append(aot_spec("_sa_fwd_kernel", _sa_fwd_kernel, _aot_ptrs(_sa_fwd_kernel, dt), _FWD_INTS,
                                      dict(R=r, ACC_DTYPE=dt.acc, **kw), cfg,
                                      f"BH={kw['BH']} BW={kw['BW']} R={r} {dt.name}"))
        cfg = BWD_CONFIG
        for r in range(1, MAX_BRANCHES + 1):
            s4 = _pad4([2 ** (j + 1) for j in range(r)], 1)
            consts = dict(R=r, S0=s4[0], S1=s4[1], S2=s4[2], S3=s4[3], ACC_DTYPE=dt.acc, **cfg.kwargs)
            spec = aot_spec("_sa_bwd_kernel", _sa_bwd_kernel, _aot_ptrs(_sa_bwd_kernel, dt),
                            ["D", "H", "W", "G", "Dg"], consts, cfg,
                            f"BH={cfg.kwargs['BH']} BW={cfg.kwargs['BW']} R={r} S={tuple(s4[:r])} {dt.name}")
            spec["maxnreg"] = _bwd_maxnreg(dt.dtype, r)
            specs.append(spec)
    return specs
