"""Tensor-level wrappers of the emulated CUDA launchers (csrc/testing/emu_api.cpp).

Each wrapper takes CPU tensors, allocates outputs the way ``istd_kernels._cuda`` does (same
shapes, memory formats and workspaces), passes raw pointers and flat int64 descriptors to
the emulation library through ctypes and raises ``EmulationError`` with the emulator's
message when a kernel was stopped (race, deadlock, bad mask, out-of-bounds shared index).
"""
from __future__ import annotations

import ctypes

import emulation_build
import torch

DTYPES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_LIBS: dict = {}


class EmulationError(RuntimeError):
    """The emulator stopped a kernel, or a launcher returned a CUDA error."""


def lib(variant: str = "plain") -> ctypes.CDLL:
    """The emulation library: 'plain', or 'race' (shared-memory checker on)."""
    if variant not in _LIBS:
        so = emulation_build.load(variant)
        so.emu_error.restype = ctypes.c_char_p
        so.emu_log_entry.restype = ctypes.c_char_p
        so.emu_dw_bwd_weight_workspace.restype = ctypes.c_size_t
        so.emu_sa_bwd_workspace.restype = ctypes.c_size_t
        so.emu_set_seed.argtypes = [ctypes.c_uint64]
        _LIBS[variant] = so
    return _LIBS[variant]


def _i64(values) -> ctypes.Array:
    return (ctypes.c_int64 * len(values))(*[int(v) for v in values])


def _c64(*values) -> list[ctypes.c_int64]:
    return [ctypes.c_int64(int(v)) for v in values]


def _ptr(t) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _ptrs(ts) -> ctypes.Array:
    return (ctypes.c_void_p * len(ts))(*[None if t is None else t.data_ptr() for t in ts])


def _strides(t) -> ctypes.Array:
    return _i64(t.stride() if t is not None else (0, 0, 0, 0))


def _check(so: ctypes.CDLL, rc: int, what: str) -> None:
    if rc < 0:
        raise EmulationError(f"{what}: {so.emu_error().decode()}")
    if rc != 0:
        raise EmulationError(f"{what}: launcher returned cudaError_t {rc}")


def _fmt(t: torch.Tensor) -> torch.memory_format:
    cl = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def _like(t: torch.Tensor, shape, dtype=None) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype or t.dtype, memory_format=_fmt(t))


def log(variant: str = "plain") -> list[tuple[str, str, str, str, int]]:
    """Launches since clear_log: (name, instantiated signature, grid, block, dynamic smem)."""
    so = lib(variant)
    out = []
    for i in range(so.emu_log_size()):
        name, sig, grid, block, smem = so.emu_log_entry(i).decode().split("|")
        out.append((name, sig, grid, block, int(smem)))
    return out


def clear_log(variant: str = "plain") -> None:
    lib(variant).emu_clear_log()


def _dw_geo(n, c, h, w, kh, kw, stride, padding, dilation) -> tuple[ctypes.Array, int, int]:
    ho = max((h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1, 0)
    wo = max((w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1, 0)
    return _i64([n, c, h, w, ho, wo, kh, kw, *stride, *padding, *dilation]), ho, wo


def dw_fwd(x, weight, bias, stride, padding, dilation, variant="plain"):
    """Depthwise forward: x [N, C, H, W], weight [C, 1, KH, KW], bias [C] or None."""
    so = lib(variant)
    n, c, h, w = x.shape
    geo, ho, wo = _dw_geo(n, c, h, w, weight.shape[2], weight.shape[3], stride, padding, dilation)
    y = _like(x, (n, c, ho, wo))
    wc = weight.contiguous()
    _check(so, so.emu_dw_fwd(DTYPES[x.dtype], _ptr(x), _strides(x), _ptr(wc), _ptr(bias), _ptr(y), _strides(y), geo),
           "depthwise forward")
    return y


def dw_bwd_input(grad_y, weight, hw, stride, padding, dilation, variant="plain"):
    """Depthwise grad-input: grad_x [N, C, H, W] from grad_y [N, C, Ho, Wo]."""
    so = lib(variant)
    n, c = grad_y.shape[:2]
    geo, _, _ = _dw_geo(n, c, hw[0], hw[1], weight.shape[2], weight.shape[3], stride, padding, dilation)
    gx = _like(grad_y, (n, c, hw[0], hw[1]))
    wc = weight.contiguous()
    _check(so, so.emu_dw_bwd_input(DTYPES[grad_y.dtype], _ptr(grad_y), _strides(grad_y), _ptr(wc), _ptr(gx),
                                   _strides(gx), geo), "depthwise grad-input")
    return gx


def dw_bwd_weight(grad_y, x, kernel, stride, padding, dilation, variant="plain"):
    """Depthwise grad-weight [C, 1, KH, KW] and grad-bias [C]."""
    so = lib(variant)
    n, c, h, w = x.shape
    geo, _, _ = _dw_geo(n, c, h, w, kernel[0], kernel[1], stride, padding, dilation)
    gw = torch.empty((c, 1, *kernel), dtype=x.dtype)
    gb = torch.empty((c,), dtype=x.dtype)
    nbytes = so.emu_dw_bwd_weight_workspace(geo, DTYPES[x.dtype])
    ws = torch.empty((max(nbytes, 1),), dtype=torch.uint8)
    _check(so, so.emu_dw_bwd_weight(DTYPES[x.dtype], _ptr(grad_y), _strides(grad_y), _ptr(x), _strides(x), _ptr(gw),
                                    _ptr(gb), geo, _ptr(ws), ctypes.c_size_t(nbytes)), "depthwise grad-weight")
    return gw, gb


def hlk_fwd(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups, variant="plain"):
    """Fused HLKConv forward: y [N, Cout, H, W]."""
    so = lib(variant)
    n, c, h, w = x.shape
    cout = w_pw.shape[0]
    ws = [w0.contiguous(), b0, w1.contiguous(), b1, w_pw.contiguous(), b_pw]
    y = _like(x, (n, cout, h, w))
    geo = _i64([n, c, h, w, cout, groups, w0.shape[-1], w1.shape[-1], dilation])
    _check(so, so.emu_hlk_fwd(DTYPES[x.dtype], _ptr(x), _strides(x), _ptrs(ws), _ptr(y), _strides(y), geo),
           "hlk forward")
    return y


def _levels_meta(levels, idx, scales) -> ctypes.Array:
    meta = []
    for y, i, s in zip(levels, idx, scales):
        meta += [s, y.shape[2], y.shape[3], *y.stride(), *i.stride()]
    return _i64(meta)


def mmp_fwd(u, groups, radix, scales, variant="plain"):
    """multiscale_maxpool forward: (levels, offsets) as the torch implementation returns them."""
    so = lib(variant)
    n, d, h, w = u.shape
    c = d // (groups * radix)
    idt = torch.uint8 if max(scales) <= 16 else torch.int32
    ys = [_like(u, (n, groups * c, -(-h // s), -(-w // s))) for s in scales]
    ix = [_like(u, y.shape, idt) for y in ys]
    geo = _i64([n, d, h, w, groups, radix, c])
    _check(so, so.emu_mmp_fwd(DTYPES[u.dtype], int(idt == torch.uint8), _ptr(u), _strides(u), geo, _ptrs(ys),
                              _ptrs(ix), _levels_meta(ys, ix, scales)), "multiscale_maxpool forward")
    return ys, ix


def mmp_bwd(grads, idx, shape, groups, radix, scales, channels_last=False, variant="plain"):
    """multiscale_maxpool backward: grad_u of `shape` from level gradients and offsets."""
    so = lib(variant)
    n, d, h, w = shape
    gu = torch.empty(shape, dtype=grads[0].dtype,
                     memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    geo = _i64([n, d, h, w, groups, radix, d // (groups * radix)])
    _check(so, so.emu_mmp_bwd(DTYPES[gu.dtype], int(idx[0].dtype == torch.uint8), _ptrs(grads), _ptrs(idx),
                              _levels_meta(grads, idx, scales), geo, _ptr(gu), _strides(gu)),
           "multiscale_maxpool backward")
    return gu


def _sa_geo(residual, groups, scales) -> ctypes.Array:
    n, d, h, w = residual.shape
    pad = [1] * (4 - len(scales))
    sc = list(scales) + pad
    return _i64([n, d, h, w, groups, len(scales), *sc, *[-(-h // s) for s in sc], *[-(-w // s) for s in sc]])


def _sa_in(branches, logits, temperature, residual, v):
    b = list(branches) + [None] * (4 - len(branches))
    ptrs = _ptrs(b + [logits, temperature, residual, v])
    strides = _i64([x for t in b + [logits, residual, v] for x in (t.stride() if t is not None else (0,) * 4)])
    return ptrs, strides


def sa_fwd(branches, logits, temperature, residual, v, groups, scales, variant="plain"):
    """split_attention forward: z [N, D, H, W]."""
    so = lib(variant)
    z = _like(residual, residual.shape)
    ptrs, strides = _sa_in(branches, logits, temperature, residual, v)
    _check(so, so.emu_sa_fwd(DTYPES[residual.dtype], ptrs, strides, _ptr(z), _strides(z),
                             _sa_geo(residual, groups, scales)), "split_attention forward")
    return z


def sa_bwd(grad_z, branches, logits, temperature, residual, v, groups, scales, variant="plain"):
    """split_attention backward: (grad branches, grad logits, grad temperature, grad residual, grad v)."""
    so = lib(variant)
    geo = _sa_geo(residual, groups, scales)
    gb = [_like(b, b.shape) for b in branches]
    gl, gr, gv = _like(logits, logits.shape), _like(residual, residual.shape), _like(v, v.shape)
    gt = torch.empty((), dtype=residual.dtype)
    outs = gb + [None] * (4 - len(gb)) + [gl, gr, gv]
    out_strides = _i64([x for t in outs for x in (t.stride() if t is not None else (0,) * 4)])
    elems = so.emu_sa_bwd_workspace(geo)
    acc = torch.float64 if residual.dtype == torch.float64 else torch.float32
    ws = torch.empty((max(elems, 1),), dtype=acc)
    ptrs, strides = _sa_in(branches, logits, temperature, residual, v)
    _check(so, so.emu_sa_bwd(DTYPES[residual.dtype], _ptr(grad_z), _strides(grad_z), ptrs, strides, _ptrs(outs),
                             out_strides, _ptr(gt), geo, _ptr(ws), ctypes.c_size_t(elems)),
           "split_attention backward")
    return gb, gl, gt.reshape(temperature.shape), gr, gv


def connected_components(mask, connectivity, variant="plain"):
    """Labelling of a bool/uint8 [N, H, W] mask: (labels int32, counts int64)."""
    so = lib(variant)
    m = mask.to(torch.uint8).contiguous()
    n, h, w = m.shape
    labels = torch.empty((n, h, w), dtype=torch.int32)
    counts = torch.empty((n,), dtype=torch.int64)
    ws = torch.empty((max(n * h * w, 1),), dtype=torch.int32)
    _check(so, so.emu_connected_components(_ptr(m), _ptr(labels), _ptr(counts), _ptr(ws), *_c64(n, h, w), connectivity),
           "connected components")
    return labels, counts


def component_stats(labels, m, sm70=False, variant="plain"):
    """(area [N, M], centroid [N, M, 2], bbox [N, M, 4]) of int32 labels [N, H, W]."""
    so = lib(variant)
    lab = labels.to(torch.int32).contiguous()
    n, h, w = lab.shape
    area = torch.empty((n, m), dtype=torch.int64)
    centroid = torch.empty((n, m, 2), dtype=torch.float64)
    bbox = torch.empty((n, m, 4), dtype=torch.int64)
    sums = torch.empty((max(n * m * 2, 1),), dtype=torch.int64)
    bounds = torch.empty((max(n * m * 4, 1),), dtype=torch.int32)
    _check(so, so.emu_component_stats(int(sm70), _ptr(lab), *_c64(n, h, w, m), _ptr(area), _ptr(centroid), _ptr(bbox),
                                      _ptr(sums), _ptr(bounds)), "component stats")
    return area, centroid, bbox


def fixture(name: str, variant: str = "plain") -> list[int]:
    """Runs a test kernel of csrc/testing/fixtures.cu; returns its 512-int output."""
    so = lib(variant)
    buf = (ctypes.c_int * 512)()
    _check(so, so.emu_fixture(name.encode(), buf, 512), f"fixture {name}")
    return list(buf)
