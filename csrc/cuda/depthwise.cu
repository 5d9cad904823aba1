// CUDA depthwise 2-D convolution: forward, grad-input and grad-weight/bias for float,
// double, half and bfloat16. The per-pixel arithmetic lives in istd/depthwise_core.h and
// is shared with the CPU build, which is where it is tested without a GPU; this file adds
// the memory staging (shared-memory tiles), the launch geometry and the reductions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "istd/depthwise_core.h"
#include "istd/depthwise_cuda.h"
#include "istd/cuda_convert.cuh"
#include "istd/cuda_staging.cuh"

namespace istd {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Without an opt-in attribute a block may use 48 KiB of shared memory (static plus
// dynamic) on every architecture; larger tiles take the direct (global-memory) kernels.
constexpr int64_t kMaxSmem = 48 * 1024;
// Horizontally adjacent taps whose grad-weight sums one pass accumulates: enough to reuse
// each loaded grad_y value a few times, few enough to stay in registers.
constexpr int kTapGroup = 4;
// Upper bound on the planes one block of the forward/grad-input kernels handles at once.
constexpr int kMaxPlanesPerBlock = 16;
constexpr int64_t kMaxGridX = INT_MAX;
constexpr int64_t kMaxGridYZ = 65535;

// Block-level tiling of one plane. For the forward pass the tile is TH x TW outputs read
// from an IH x IW input window; for grad-input it is TH x TW input pixels gathered from an
// IH x IW window of grad_y.
struct TileCfg {
  int TH, TW, IH, IW;
  int PB;  // planes per block
};

ISTD_HD ISTD_INLINE int64_t align16(int64_t bytes) { return (bytes + 15) & ~static_cast<int64_t>(15); }

// Fixed-order block reduction of G values per thread: a shuffle tree inside each warp,
// then warps summed in index order by the first `count` threads, which store to dst. The
// order depends only on the block size, so repeated runs agree bit for bit.
template <int G, typename Acc>
__device__ ISTD_INLINE void block_reduce_store(Acc (&v)[G], Acc* s_red, Acc* dst, int count) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int k = 0; k < G; ++k)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], off);
  if (lane == 0) {
#pragma unroll
    for (int k = 0; k < G; ++k) s_red[warp * G + k] = v[k];
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < count) {
    Acc s = Acc(0);
#pragma unroll
    for (int wi = 0; wi < kWarps; ++wi) s += s_red[wi * G + threadIdx.x];
    dst[threadIdx.x] = s;
  }
  __syncthreads();
}

// ------------------------------------------------------------------------------------
// Forward. A block computes one TH x TW output tile of PB consecutive (n, c) planes per
// iteration: small planes would otherwise leave most threads idle. blockIdx.x strides
// over plane groups and (blockIdx.y, blockIdx.z) is the tile. Planes vary fastest so that
// blocks running together read the same spatial window of neighbouring channels, which
// share cache sectors when the tensor is channels_last.

// Per-plane element offsets and channel of the group a block is working on, computed once
// per group so that the per-element loops never divide 64-bit numbers.
struct PlaneSlots {
  int64_t in_off[kMaxPlanesPerBlock];
  int64_t out_off[kMaxPlanesPerBlock];
  int64_t channel[kMaxPlanesPerBlock];
};

__device__ ISTD_INLINE void fill_plane_slots(PlaneSlots& s, int64_t p0, int np, const DwGeometry& g,
                                             const Strides4& in_s, const Strides4& out_s) {
  const int tid = threadIdx.x;
  if (tid < np) {
    const int64_t p = p0 + tid;
    const int64_t n = p / g.C, c = p - n * g.C;
    s.in_off[tid] = n * in_s.n + c * in_s.c;
    s.out_off[tid] = n * out_s.n + c * out_s.c;
    s.channel[tid] = c;
  }
}

// Walks the block's groups of tc.PB planes (blockIdx.x strides over them) and calls
// element(pl, ty, tx) for each plane of the group and each position of the TH x TW tile.
// Before the elements of a group run, the block stages its slots, its weights in Acc and,
// for the tiled kernels, the zero-padded IH x IW window of `src` whose top-left is (r0, c0)
// in an H x W plane addressed by src_s; the barrier in front keeps the previous group's
// readers from seeing the new data and the one behind publishes it.
template <bool kTiled, typename T, typename Acc, typename Element>
__device__ ISTD_INLINE void for_each_tile_element(PlaneSlots& slots, const DwGeometry& g, const Strides4& src_s,
                                                  const Strides4& dst_s, const T* __restrict__ w, Acc* s_w,
                                                  const T* __restrict__ src, T* s_win, const TileCfg& tc, int r0,
                                                  int c0, int H, int W, Element element) {
  const int taps = g.KH * g.KW;
  const int64_t planes = g.N * g.C;
  const int tile = tc.TH * tc.TW;
  for (int64_t p0 = static_cast<int64_t>(blockIdx.x) * tc.PB; p0 < planes;
       p0 += static_cast<int64_t>(gridDim.x) * tc.PB) {
    const int np = static_cast<int>(planes - p0 < tc.PB ? planes - p0 : tc.PB);
    __syncthreads();
    fill_plane_slots(slots, p0, np, g, src_s, dst_s);
    __syncthreads();
    for (int t = threadIdx.x; t < np * taps; t += kThreads) {
      const int pl = t / taps;
      s_w[t] = convert<Acc>(w[slots.channel[pl] * taps + (t - pl * taps)]);
    }
    if constexpr (kTiled) {
      stage_zero_padded_window<kThreads>(s_win, np, tc.IH, tc.IW, r0, c0, H, W, [&](int pl, int r, int c) {
        return src[slots.in_off[pl] + r * src_s.h + c * src_s.w];
      });
    }
    __syncthreads();
    for (int e = threadIdx.x; e < np * tile; e += kThreads) {
      const int pl = e / tile, ee = e - pl * tile;
      const int ty = ee / tc.TW;
      element(pl, ty, ee - ty * tc.TW);
    }
  }
}

template <typename T, typename Acc, bool kTiled>
__global__ void __launch_bounds__(kThreads)
    dw_fwd_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ w, const T* __restrict__ bias,
                  T* __restrict__ y, Strides4 ys, DwGeometry g, TileCfg tc) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ PlaneSlots slots;
  const int taps = g.KH * g.KW;
  Acc* s_w = reinterpret_cast<Acc*>(smem);
  T* s_in = reinterpret_cast<T*>(smem + align16(static_cast<int64_t>(tc.PB) * taps * sizeof(Acc)));
  // Coordinates are 32-bit (the launcher guarantees they fit); element offsets 64-bit.
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int Ho = static_cast<int>(g.Ho), Wo = static_cast<int>(g.Wo);
  const int oh0 = static_cast<int>(blockIdx.y) * tc.TH, ow0 = static_cast<int>(blockIdx.z) * tc.TW;
  const int ih0 = oh0 * g.SH - g.PH, iw0 = ow0 * g.SW - g.PW;
  const int window = tc.IH * tc.IW;
  for_each_tile_element<kTiled>(slots, g, xs, ys, w, s_w, x, s_in, tc, ih0, iw0, H, W, [&](int pl, int ty, int tx) {
    const int oh = oh0 + ty, ow = ow0 + tx;
    if (oh >= Ho || ow >= Wo) return;
    Acc acc;
    if constexpr (kTiled) {
      const Plane2D<T, int> in{s_in + pl * window, tc.IW, 1, ih0, iw0, H, W};
      acc = dw_fwd_pixel<T, Acc, Acc, int, int>(in, s_w + pl * taps, g.KH, g.KW, g.DH, g.DW, ih0 + ty * g.SH,
                                                iw0 + tx * g.SW);
    } else {
      const Plane2D<T, int, int64_t> in{x + slots.in_off[pl], xs.h, xs.w, 0, 0, H, W};
      acc = dw_fwd_pixel<T, Acc, Acc, int, int64_t>(in, s_w + pl * taps, g.KH, g.KW, g.DH, g.DW,
                                                    oh * g.SH - g.PH, ow * g.SW - g.PW);
    }
    if (bias != nullptr) acc += convert<Acc>(bias[slots.channel[pl]]);
    y[slots.out_off[pl] + oh * ys.h + ow * ys.w] = convert<T>(acc);
  });
}

// ------------------------------------------------------------------------------------
// Grad-input, organised like the forward kernel with grad_x tiles. The tiled kernel stages
// the window of grad_y that the tile's gather can touch.

template <typename T, typename Acc, bool kTiled>
__global__ void __launch_bounds__(kThreads)
    dw_bwd_input_kernel(const T* __restrict__ gy, Strides4 gys, const T* __restrict__ w, T* __restrict__ gx,
                        Strides4 gxs, DwGeometry g, TileCfg tc) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ PlaneSlots slots;
  const int taps = g.KH * g.KW;
  Acc* s_w = reinterpret_cast<Acc*>(smem);
  T* s_gy = reinterpret_cast<T*>(smem + align16(static_cast<int64_t>(tc.PB) * taps * sizeof(Acc)));
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int Ho = static_cast<int>(g.Ho), Wo = static_cast<int>(g.Wo);
  const int ih_a = static_cast<int>(blockIdx.y) * tc.TH, iw_a = static_cast<int>(blockIdx.z) * tc.TW;
  // First grad_y row/column any pixel of the tile can read (smallest numerator / stride).
  const int row0 = static_cast<int>(ceil_div(ih_a + g.PH - (g.KH - 1) * g.DH, g.SH));
  const int col0 = static_cast<int>(ceil_div(iw_a + g.PW - (g.KW - 1) * g.DW, g.SW));
  const int window = tc.IH * tc.IW;
  for_each_tile_element<kTiled>(slots, g, gys, gxs, w, s_w, gy, s_gy, tc, row0, col0, Ho, Wo,
                                [&](int pl, int ty, int tx) {
    const int ih = ih_a + ty, iw = iw_a + tx;
    if (ih >= H || iw >= W) return;
    Acc acc;
    if constexpr (kTiled) {
      const Plane2D<T, int> gpl{s_gy + pl * window, tc.IW, 1, row0, col0, Ho, Wo};
      acc = dw_bwd_input_pixel<T, Acc, Acc, int, int>(gpl, s_w + pl * taps, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                                                      g.DH, g.DW, ih, iw);
    } else {
      const Plane2D<T, int, int64_t> gpl{gy + slots.in_off[pl], gys.h, gys.w, 0, 0, Ho, Wo};
      acc = dw_bwd_input_pixel<T, Acc, Acc, int, int64_t>(gpl, s_w + pl * taps, g.KH, g.KW, g.SH, g.SW, g.PH,
                                                          g.PW, g.DH, g.DW, ih, iw);
    }
    gx[slots.out_off[pl] + ih * gxs.h + iw * gxs.w] = convert<T>(acc);
  });
}

// ------------------------------------------------------------------------------------
// Grad-weight/bias, stage 1: block k*C + c reduces chunk k of channel c's output rows
// (flattened over the batch) into part[(c*K + k) * (taps + 1) + slot], slot taps being the
// bias. Channels vary fastest across blocks for the same reason as in the forward kernel.
// The chunk's pixels are dealt to threads round-robin in (n, oh, ow) order, which keeps
// all threads busy and loads coalesced whatever the width of the image.

// Position of a thread's current pixel; advancing by kThreads pixels needs no 64-bit
// division.
struct PixelCursor {
  int64_t n;
  int oh, ow;
  int step_rows, step_cols;

  __device__ ISTD_INLINE void advance(int Ho, int Wo) {
    ow += step_cols;
    oh += step_rows;
    if (ow >= Wo) {
      ow -= Wo;
      ++oh;
    }
    if (oh >= Ho) {
      n += oh / Ho;
      oh %= Ho;
    }
  }
};

template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads)
    dw_wgrad_partial_kernel(const T* __restrict__ gy, Strides4 gys, const T* __restrict__ x, Strides4 xs,
                            DwGeometry g, int64_t K, Acc* __restrict__ part) {
  __shared__ Acc s_red[kWarps * kTapGroup];
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int Ho = static_cast<int>(g.Ho), Wo = static_cast<int>(g.Wo);
  const int64_t k = blockIdx.x / g.C, c = blockIdx.x - k * g.C;
  const int64_t R = g.N * g.Ho;
  const int64_t q_begin = (k * R / K) * Wo + threadIdx.x, q_end = ((k + 1) * R / K) * Wo;
  const int taps = g.KH * g.KW;
  Acc* out = part + (c * K + k) * (taps + 1);
  const T* gy_c = gy + c * gys.c;
  const T* x_c = x + c * xs.c;

  PixelCursor first{};
  {
    const int wo1 = Wo > 0 ? Wo : 1, ho1 = Ho > 0 ? Ho : 1;
    const int64_t row = q_begin / wo1;
    first.ow = static_cast<int>(q_begin - row * wo1);
    first.n = row / ho1;
    first.oh = static_cast<int>(row - first.n * ho1);
    first.step_rows = kThreads / wo1;
    first.step_cols = kThreads - first.step_rows * wo1;
  }

  {
    Acc s[1] = {Acc(0)};
    PixelCursor px = first;
    for (int64_t q = q_begin; q < q_end; q += kThreads, px.advance(Ho, Wo))
      s[0] += convert<Acc>(gy_c[px.n * gys.n + px.oh * gys.h + px.ow * gys.w]);
    block_reduce_store<1>(s, s_red, out + taps, 1);
  }

  for (int i = 0; i < g.KH; ++i) {
    for (int j0 = 0; j0 < g.KW; j0 += kTapGroup) {
      const int nj = min(kTapGroup, g.KW - j0);
      Acc a[kTapGroup];
#pragma unroll
      for (int t = 0; t < kTapGroup; ++t) a[t] = Acc(0);
      PixelCursor px = first;
      for (int64_t q = q_begin; q < q_end; q += kThreads, px.advance(Ho, Wo)) {
        const int ih = px.oh * g.SH - g.PH + i * g.DH;
        if (ih < 0 || ih >= H) continue;
        const Acc gv = convert<Acc>(gy_c[px.n * gys.n + px.oh * gys.h + px.ow * gys.w]);
        const Plane2D<T, int, int64_t> xpl{x_c + px.n * xs.n, xs.h, xs.w, 0, 0, H, W};
        dw_wgrad_pixel_taps<kTapGroup, T, Acc, int, int64_t>(xpl, gv, ih, px.ow * g.SW - g.PW + j0 * g.DW, g.DW,
                                                             nj, a);
      }
      block_reduce_store<kTapGroup>(a, s_red, out + i * g.KW + j0, nj);
    }
  }
}

// Stage 2: one thread per (channel, slot) sums the K chunk partials in chunk order.
template <typename T, typename Acc>
__global__ void __launch_bounds__(kThreads)
    dw_wgrad_finalize_kernel(const Acc* __restrict__ part, int64_t C, int64_t K, int taps, T* __restrict__ gw,
                             T* __restrict__ gb) {
  const int64_t slots = taps + 1;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= C * slots) return;
  const int64_t c = idx / slots;
  const int t = static_cast<int>(idx - c * slots);
  if (t == taps && gb == nullptr) return;
  const Acc* p = part + c * K * slots + t;
  Acc s = Acc(0);
  for (int64_t k = 0; k < K; ++k) s += p[k * slots];
  if (t < taps)
    gw[c * taps + t] = convert<T>(s);
  else
    gb[c] = convert<T>(s);
}

// ------------------------------------------------------------------------------------
// Host side.

// Kernel coordinates are 32-bit (element offsets are 64-bit); keep well clear of the
// limit so that tile corners and padded coordinates cannot overflow.
bool fits_int(const DwGeometry& g) {
  const int64_t lim = INT_MAX / 4;
  return g.H < lim && g.W < lim && g.Ho < lim && g.Wo < lim && g.PH < lim && g.PW < lim;
}

bool geometry_ok(const DwGeometry& g) {
  return fits_int(g) && g.N >= 0 && g.C >= 0 && g.H >= 0 && g.W >= 0 && g.Ho >= 0 && g.Wo >= 0 && g.KH >= 1 &&
         g.KW >= 1 && g.SH >= 1 && g.SW >= 1 && g.PH >= 0 && g.PW >= 0 && g.DH >= 1 && g.DW >= 1;
}

// Shared memory of a block handling pb planes: their weights (Acc) then their windows (T).
int64_t block_smem(int64_t pb, int64_t weight_bytes, int64_t window_bytes) {
  return align16(pb * weight_bytes) + pb * window_bytes;
}

// Chooses the launch of a forward or grad-input kernel over out_h x out_w planes. The tile
// is 32 columns wide (or the whole row) and tall enough for two outputs per thread, or one
// when two do not fit; window_h/w give the staged window of a tile extent. When no tile
// fits in shared memory, the direct kernel (weights only in shared memory) is chosen.
// Small planes are grouped so that a block still has an output for most threads.
template <typename WindowH, typename WindowW>
bool configure(int64_t out_h, int64_t out_w, int64_t planes, int64_t elem, int64_t weight_bytes, bool allow_tiled,
               WindowH window_h, WindowW window_w, TileCfg* tc, int64_t* smem, bool* tiled, dim3* grid) {
  // The kernels' static shared memory counts against the same per-block limit.
  const int64_t budget = kMaxSmem - static_cast<int64_t>(sizeof(PlaneSlots));
  const int64_t TW = out_w < 32 ? (out_w > 0 ? out_w : 1) : 32;
  int64_t TH = 0, window_bytes = 0;
  *tiled = false;
  for (int per_thread = 2; allow_tiled && per_thread >= 1; --per_thread) {
    TH = per_thread * kThreads / TW;
    if (TH > out_h) TH = out_h > 0 ? out_h : 1;
    window_bytes = window_h(TH) * window_w(TW) * elem;
    if (block_smem(1, weight_bytes, window_bytes) <= budget) {
      *tiled = true;
      break;
    }
  }
  if (!*tiled) {
    TH = kThreads / TW;
    if (TH > out_h) TH = out_h > 0 ? out_h : 1;
    window_bytes = 0;
  }
  if (block_smem(1, weight_bytes, window_bytes) > budget) return false;
  int64_t pb = kThreads / (TH * TW);
  if (pb > kMaxPlanesPerBlock) pb = kMaxPlanesPerBlock;
  if (pb > planes) pb = planes;
  if (pb < 1) pb = 1;
  while (pb > 1 && block_smem(pb, weight_bytes, window_bytes) > budget) --pb;

  const int64_t tiles_h = ceil_div(out_h, TH), tiles_w = ceil_div(out_w, TW);
  if (tiles_h > kMaxGridYZ || tiles_w > kMaxGridYZ) return false;
  const int64_t groups = ceil_div(planes, pb);
  *tc = TileCfg{static_cast<int>(TH), static_cast<int>(TW), *tiled ? static_cast<int>(window_h(TH)) : 0,
                *tiled ? static_cast<int>(window_w(TW)) : 0, static_cast<int>(pb)};
  *smem = block_smem(pb, weight_bytes, window_bytes);
  *grid = dim3(static_cast<unsigned>(groups < kMaxGridX ? groups : kMaxGridX), static_cast<unsigned>(tiles_h),
               static_cast<unsigned>(tiles_w));
  return true;
}

template <typename T, typename Acc>
cudaError_t fwd_impl(const void* x, Strides4 xs, const void* w, const void* bias, void* y, Strides4 ys,
                     const DwGeometry& g, cudaStream_t stream) {
  if (!geometry_ok(g)) return cudaErrorInvalidValue;
  const int64_t planes = g.N * g.C;
  if (planes == 0 || g.Ho == 0 || g.Wo == 0) return cudaSuccess;
  const auto win_h = [&](int64_t th) { return (th - 1) * g.SH + static_cast<int64_t>(g.KH - 1) * g.DH + 1; };
  const auto win_w = [&](int64_t tw) { return (tw - 1) * g.SW + static_cast<int64_t>(g.KW - 1) * g.DW + 1; };
  TileCfg tc{};
  int64_t smem = 0;
  bool tiled = false;
  dim3 grid;
  if (!configure(g.Ho, g.Wo, planes, sizeof(T), static_cast<int64_t>(g.KH) * g.KW * sizeof(Acc), true, win_h, win_w,
                 &tc, &smem, &tiled, &grid))
    return cudaErrorInvalidValue;
  const T* xp = static_cast<const T*>(x);
  const T* wp = static_cast<const T*>(w);
  const T* bp = static_cast<const T*>(bias);
  T* yp = static_cast<T*>(y);
  if (tiled)
    dw_fwd_kernel<T, Acc, true><<<grid, kThreads, smem, stream>>>(xp, xs, wp, bp, yp, ys, g, tc);
  else
    dw_fwd_kernel<T, Acc, false><<<grid, kThreads, smem, stream>>>(xp, xs, wp, bp, yp, ys, g, tc);
  return cudaGetLastError();
}

template <typename T, typename Acc>
cudaError_t bwd_input_impl(const void* gy, Strides4 gys, const void* w, void* gx, Strides4 gxs, const DwGeometry& g,
                           cudaStream_t stream) {
  if (!geometry_ok(g)) return cudaErrorInvalidValue;
  const int64_t planes = g.N * g.C;
  if (planes == 0 || g.H == 0 || g.W == 0) return cudaSuccess;
  // A tile of th input rows reads at most floor((th - 1 + (KH-1)*DH) / SH) + 1 grad_y rows.
  const auto win_h = [&](int64_t th) { return (th - 1 + static_cast<int64_t>(g.KH - 1) * g.DH) / g.SH + 1; };
  const auto win_w = [&](int64_t tw) { return (tw - 1 + static_cast<int64_t>(g.KW - 1) * g.DW) / g.SW + 1; };
  TileCfg tc{};
  int64_t smem = 0;
  bool tiled = false;
  dim3 grid;
  // An empty grad_y (Ho or Wo == 0) still needs grad_x zero-filled; the direct kernel does that.
  const bool has_gy = g.Ho > 0 && g.Wo > 0;
  if (!configure(g.H, g.W, planes, sizeof(T), static_cast<int64_t>(g.KH) * g.KW * sizeof(Acc), has_gy, win_h, win_w,
                 &tc, &smem, &tiled, &grid))
    return cudaErrorInvalidValue;
  const T* gyp = static_cast<const T*>(gy);
  const T* wp = static_cast<const T*>(w);
  T* gxp = static_cast<T*>(gx);
  if (tiled)
    dw_bwd_input_kernel<T, Acc, true><<<grid, kThreads, smem, stream>>>(gyp, gys, wp, gxp, gxs, g, tc);
  else
    dw_bwd_input_kernel<T, Acc, false><<<grid, kThreads, smem, stream>>>(gyp, gys, wp, gxp, gxs, g, tc);
  return cudaGetLastError();
}

// Chunks per channel for the grad-weight reduction, from the shape alone (so results do
// not depend on the device): about 8K output pixels per block, more chunks (down to 2K
// pixels) when there are too few channels to fill a GPU.
int64_t wgrad_chunks(const DwGeometry& g) {
  const int64_t R = g.N * g.Ho;
  if (R <= 0 || g.Wo <= 0 || g.C <= 0) return 1;
  const int64_t pixels = R * g.Wo;
  int64_t K = ceil_div(pixels, 8192);
  const int64_t fill = ceil_div(pixels, 2048) < ceil_div(1024, g.C) ? ceil_div(pixels, 2048) : ceil_div(1024, g.C);
  if (fill > K) K = fill;
  if (K > 4096) K = 4096;
  if (K > R) K = R;
  return K > 0 ? K : 1;
}

int64_t acc_size(DType dt) { return dt == DType::kFloat64 ? 8 : 4; }

template <typename T, typename Acc>
cudaError_t bwd_weight_impl(const void* gy, Strides4 gys, const void* x, Strides4 xs, void* gw, void* gb,
                            const DwGeometry& g, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!geometry_ok(g)) return cudaErrorInvalidValue;
  if (g.C == 0) return cudaSuccess;
  const int64_t K = wgrad_chunks(g);
  const int taps = g.KH * g.KW;
  const int64_t slots = taps + 1;
  const int64_t need = g.C * K * slots * static_cast<int64_t>(sizeof(Acc));
  if (workspace == nullptr || static_cast<int64_t>(workspace_bytes) < need) return cudaErrorInvalidValue;
  if (g.C * K > INT_MAX || ceil_div(g.C * slots, kThreads) > INT_MAX) return cudaErrorInvalidValue;
  Acc* part = static_cast<Acc*>(workspace);
  dw_wgrad_partial_kernel<T, Acc><<<static_cast<unsigned>(g.C * K), kThreads, 0, stream>>>(
      static_cast<const T*>(gy), gys, static_cast<const T*>(x), xs, g, K, part);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  dw_wgrad_finalize_kernel<T, Acc><<<static_cast<unsigned>(ceil_div(g.C * slots, kThreads)), kThreads, 0, stream>>>(
      part, g.C, K, taps, static_cast<T*>(gw), static_cast<T*>(gb));
  return cudaGetLastError();
}

}  // namespace
}  // namespace istd

using istd::DType;
using istd::DwGeometry;
using istd::Strides4;

cudaError_t istd_dw_fwd_cuda(DType dtype, const void* x, Strides4 x_strides, const void* weight, const void* bias,
                             void* y, Strides4 y_strides, const DwGeometry& geo, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return istd::fwd_impl<float, float>(x, x_strides, weight, bias, y, y_strides, geo, stream);
    case DType::kFloat64:
      return istd::fwd_impl<double, double>(x, x_strides, weight, bias, y, y_strides, geo, stream);
    case DType::kFloat16:
      return istd::fwd_impl<__half, float>(x, x_strides, weight, bias, y, y_strides, geo, stream);
    case DType::kBFloat16:
      return istd::fwd_impl<__nv_bfloat16, float>(x, x_strides, weight, bias, y, y_strides, geo, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t istd_dw_bwd_input_cuda(DType dtype, const void* grad_y, Strides4 gy_strides, const void* weight,
                                   void* grad_x, Strides4 gx_strides, const DwGeometry& geo, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return istd::bwd_input_impl<float, float>(grad_y, gy_strides, weight, grad_x, gx_strides, geo, stream);
    case DType::kFloat64:
      return istd::bwd_input_impl<double, double>(grad_y, gy_strides, weight, grad_x, gx_strides, geo, stream);
    case DType::kFloat16:
      return istd::bwd_input_impl<__half, float>(grad_y, gy_strides, weight, grad_x, gx_strides, geo, stream);
    case DType::kBFloat16:
      return istd::bwd_input_impl<__nv_bfloat16, float>(grad_y, gy_strides, weight, grad_x, gx_strides, geo,
                                                        stream);
  }
  return cudaErrorInvalidValue;
}

size_t istd_dw_bwd_weight_workspace_bytes(const DwGeometry& geo, DType dtype) {
  if (geo.C <= 0 || geo.KH < 1 || geo.KW < 1) return 0;
  const int64_t slots = static_cast<int64_t>(geo.KH) * geo.KW + 1;
  return static_cast<size_t>(geo.C * istd::wgrad_chunks(geo) * slots * istd::acc_size(dtype));
}

cudaError_t istd_dw_bwd_weight_cuda(DType dtype, const void* grad_y, Strides4 gy_strides, const void* x,
                                    Strides4 x_strides, void* grad_w, void* grad_b, const DwGeometry& geo,
                                    void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return istd::bwd_weight_impl<float, float>(grad_y, gy_strides, x, x_strides, grad_w, grad_b, geo, workspace,
                                                 workspace_bytes, stream);
    case DType::kFloat64:
      return istd::bwd_weight_impl<double, double>(grad_y, gy_strides, x, x_strides, grad_w, grad_b, geo, workspace,
                                                   workspace_bytes, stream);
    case DType::kFloat16:
      return istd::bwd_weight_impl<__half, float>(grad_y, gy_strides, x, x_strides, grad_w, grad_b, geo, workspace,
                                                  workspace_bytes, stream);
    case DType::kBFloat16:
      return istd::bwd_weight_impl<__nv_bfloat16, float>(grad_y, gy_strides, x, x_strides, grad_w, grad_b, geo,
                                                         workspace, workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}
