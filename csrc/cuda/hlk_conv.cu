// Fused CUDA HLKConv forward: y = pw(concat(a, d)) per group, with a = dw_k1(x) + b0 and
// d = dw_k2,dil(a) + b1, in one pass that writes y once and never materialises a or d in
// global memory. The per-pixel arithmetic is istd/hlk_core.h (over depthwise_core.h),
// shared with the CPU build where it is tested without a GPU; this file adds the staging
// in shared memory and the launch geometry.
//
// A block owns (n, group, TH x TW output tile). For each chunk of the group's channels it
//   1. loads the chunk's depthwise weights and its slice of the pointwise weights,
//   2. stages the x window of the tile plus the full halo k1/2 + dil*(k2/2) (kTiledX),
//   3. computes a on the tile extended by dil*(k2/2), zero outside the image,
//   4. computes d on the tile from that buffer,
//   5. adds the chunk's pointwise contribution to each (output, pixel) sum, kept in
//      shared memory between chunks, and writes y after the last chunk.
// When no tile with its x window fits, x is read from global memory (kGlobalX); when not
// even a buffer of a fits (very large dilation), a is recomputed per tap (kDirect).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "istd/hlk_core.h"
#include "istd/hlk_cuda.h"
#include "istd/cuda_convert.cuh"
#include "istd/cuda_staging.cuh"

namespace istd {

namespace {

constexpr int kThreads = 256;
// Shared memory every architecture grants without opting in; larger plans opt in up to
// the device's per-block maximum.
constexpr int64_t kDefaultSmem = 48 * 1024;
constexpr int64_t kMaxGridYZ = 65535;

enum Mode : int { kTiledX = 0, kGlobalX = 1, kDirect = 2 };

// Launch plan of one call. Offsets are bytes into the dynamic shared memory.
struct HlkTile {
  int TH, TW;  // output tile
  int cc;      // channels per chunk
  int XH, XW;  // staged x window (kTiledX only)
  int AH, AW;  // buffer of a: the tile plus dil*(k2/2) on each side, or just the tile (kDirect)
  int aoff;    // row/column of the tile's first pixel inside the a buffer
  int off_w1, off_b, off_wp, off_x, off_a, off_d, off_y;
};

ISTD_HD ISTD_INLINE int64_t align16(int64_t bytes) { return (bytes + 15) & ~static_cast<int64_t>(15); }

// Four resident blocks' worth of registers (64 per thread): the loops are bound by shared
// memory latency, so occupancy matters more than unrolling. Left to itself ptxas picked a
// 32-register budget here on sm_90 and spilled.
template <typename T, typename Acc, int kMode>
__global__ void __launch_bounds__(kThreads, 4)
    hlk_fwd_kernel(const T* __restrict__ x, Strides4 xs, const T* __restrict__ w0, const T* __restrict__ b0,
                   const T* __restrict__ w1, const T* __restrict__ b1, const T* __restrict__ wpw,
                   const T* __restrict__ bpw, T* __restrict__ y, Strides4 ys, HlkGeometry g, HlkTile t) {
  extern __shared__ __align__(16) unsigned char smem[];
  Acc* s_w0 = reinterpret_cast<Acc*>(smem);
  Acc* s_w1 = reinterpret_cast<Acc*>(smem + t.off_w1);
  Acc* s_b = reinterpret_cast<Acc*>(smem + t.off_b);  // b0 of the chunk, then b1 at [cc]
  Acc* s_wp = reinterpret_cast<Acc*>(smem + t.off_wp);
  T* s_x = reinterpret_cast<T*>(smem + t.off_x);
  Acc* s_a = reinterpret_cast<Acc*>(smem + t.off_a);
  Acc* s_d = reinterpret_cast<Acc*>(smem + t.off_d);
  Acc* s_y = reinterpret_cast<Acc*>(smem + t.off_y);

  const int tid = threadIdx.x;
  // Coordinates are 32-bit (the launcher guarantees they fit); element offsets 64-bit.
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int Cg = static_cast<int>(g.C / g.groups), Og = static_cast<int>(g.Cout / g.groups);
  const int k1 = g.k1, k2 = g.k2, dil = g.dilation;
  const int t1 = k1 * k1, t2 = k2 * k2;
  const int R = k1 / 2 + dil * (k2 / 2);
  const int tiles_w = (W + t.TW - 1) / t.TW;
  const int tile_y = static_cast<int>(blockIdx.x) / tiles_w;
  const int oh0 = tile_y * t.TH, ow0 = (static_cast<int>(blockIdx.x) - tile_y * tiles_w) * t.TW;
  const int TP = t.TH * t.TW;
  const int a_r0 = oh0 - t.aoff, a_c0 = ow0 - t.aoff;
  const int x_r0 = oh0 - R, x_c0 = ow0 - R;
  const int x_area = t.XH * t.XW, a_area = t.AH * t.AW;
  const int wrow = 2 * t.cc;

  for (int64_t n = blockIdx.z; n < g.N; n += gridDim.z) {
    for (int64_t gi = blockIdx.y; gi < g.groups; gi += gridDim.y) {
      const int64_t ch0 = gi * Cg;
      const T* x_ng = x + n * xs.n + ch0 * xs.c;
      T* y_ng = y + n * ys.n + gi * Og * ys.c;
      // At least one pass even for Cg == 0, so that y still receives the pointwise bias.
      for (int c0 = 0; c0 == 0 || c0 < Cg; c0 += t.cc) {
        const int nc = min(t.cc, Cg - c0);
        const bool first = c0 == 0, last = c0 + t.cc >= Cg;
        __syncthreads();  // the previous chunk's readers are done with shared memory
        for (int e = tid; e < nc * t1; e += kThreads) s_w0[e] = convert<Acc>(w0[(ch0 + c0) * t1 + e]);
        for (int e = tid; e < nc * t2; e += kThreads) s_w1[e] = convert<Acc>(w1[(ch0 + c0) * t2 + e]);
        for (int e = tid; e < nc; e += kThreads) {
          s_b[e] = b0 != nullptr ? convert<Acc>(b0[ch0 + c0 + e]) : Acc(0);
          s_b[t.cc + e] = b1 != nullptr ? convert<Acc>(b1[ch0 + c0 + e]) : Acc(0);
        }
        // Row o of the chunk's pointwise slice: a-weights at [0, nc), d-weights at [cc, cc + nc).
        for (int e = tid; e < Og * 2 * nc; e += kThreads) {
          const int o = e / (2 * nc), k = e - o * 2 * nc;
          const bool is_a = k < nc;
          const int col = is_a ? c0 + k : Cg + c0 + (k - nc);
          s_wp[o * wrow + (is_a ? k : t.cc + k - nc)] = convert<Acc>(wpw[(gi * Og + o) * (2 * Cg) + col]);
        }
        if constexpr (kMode == kTiledX) {
          stage_zero_padded_window<kThreads>(s_x, nc, t.XH, t.XW, x_r0, x_c0, H, W, [&](int c, int gh, int gw) {
            return x_ng[static_cast<int64_t>(c0 + c) * xs.c + gh * xs.h + gw * xs.w];
          });
        }
        __syncthreads();

        // a on the (extended) tile; zero outside the image, where it pads the next conv.
        for (int e = tid; e < nc * a_area; e += kThreads) {
          const int c = e / a_area, ee = e - c * a_area;
          const int r = ee / t.AW, q = ee - r * t.AW;
          const int gh = a_r0 + r, gw = a_c0 + q;
          Acc v = Acc(0);
          if (gh >= 0 && gh < H && gw >= 0 && gw < W) {
            if constexpr (kMode == kTiledX) {
              const Plane2D<T, int> xp{s_x + c * x_area, t.XW, 1, x_r0, x_c0, H, W};
              v = hlk_a_pixel<T, Acc, Acc, int, int>(xp, s_w0 + c * t1, s_b[c], k1, gh, gw);
            } else {
              const Plane2D<T, int, int64_t> xp{x_ng + static_cast<int64_t>(c0 + c) * xs.c, xs.h, xs.w, 0, 0, H, W};
              v = hlk_a_pixel<T, Acc, Acc, int, int64_t>(xp, s_w0 + c * t1, s_b[c], k1, gh, gw);
            }
          }
          s_a[e] = v;
        }
        if constexpr (kMode != kDirect) __syncthreads();

        for (int e = tid; e < nc * TP; e += kThreads) {
          const int c = e / TP, p = e - c * TP;
          const int ty = p / t.TW, tx = p - ty * t.TW;
          const int gh = oh0 + ty, gw = ow0 + tx;
          if (gh >= H || gw >= W) continue;
          Acc v;
          if constexpr (kMode == kDirect) {
            const Plane2D<T, int, int64_t> xp{x_ng + static_cast<int64_t>(c0 + c) * xs.c, xs.h, xs.w, 0, 0, H, W};
            v = hlk_d_pixel_direct<T, Acc, Acc, int, int64_t>(xp, s_w0 + c * t1, s_b[c], k1, s_w1 + c * t2,
                                                              s_b[t.cc + c], k2, dil, gh, gw);
          } else {
            const Plane2D<Acc, int> ap{s_a + c * a_area, t.AW, 1, a_r0, a_c0, H, W};
            v = hlk_d_pixel<Acc, Acc, Acc, int, int>(ap, s_w1 + c * t2, s_b[t.cc + c], k2, dil, gh, gw);
          }
          s_d[e] = v;
        }
        __syncthreads();

        // Consecutive threads take consecutive pixels of one output: coalesced stores for
        // NCHW, conflict-free reads of a and d, and a broadcast weight row. Each (output,
        // pixel) sum stays with the same thread across chunks, so s_y needs no barrier.
        for (int idx = tid; idx < Og * TP; idx += kThreads) {
          const int o = idx / TP, p = idx - o * TP;
          const int ty = p / t.TW, tx = p - ty * t.TW;
          const int gh = oh0 + ty, gw = ow0 + tx;
          if (gh >= H || gw >= W) continue;
          Acc acc = first ? (bpw != nullptr ? convert<Acc>(bpw[gi * Og + o]) : Acc(0)) : s_y[idx];
          const Acc* ap = s_a + (ty + t.aoff) * t.AW + (tx + t.aoff);
          acc = hlk_pw_pixel<Acc, Acc, Acc, int>(acc, ap, a_area, s_d + p, TP, s_wp + o * wrow,
                                                 s_wp + o * wrow + t.cc, 1, nc);
          if (last)
            y_ng[static_cast<int64_t>(o) * ys.c + gh * ys.h + gw * ys.w] = convert<T>(acc);
          else
            s_y[idx] = acc;
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------
// Host side.

// Shared-memory layout of a plan; returns its total bytes (int64 so that oversized
// candidates compare correctly instead of overflowing).
int64_t layout(const HlkGeometry& g, int mode, int64_t TH, int64_t TW, int64_t cc, bool partials, int64_t tsz,
               int64_t asz, HlkTile* t) {
  const int64_t Og = g.Cout / g.groups;
  const int64_t P2 = hlk_pad2(g), R = hlk_pad1(g) + P2;
  const int64_t XH = mode == kTiledX ? TH + 2 * R : 0, XW = mode == kTiledX ? TW + 2 * R : 0;
  const int64_t AH = mode == kDirect ? TH : TH + 2 * P2, AW = mode == kDirect ? TW : TW + 2 * P2;
  int64_t off = align16(cc * g.k1 * g.k1 * asz);
  const int64_t off_w1 = off;
  off += align16(cc * g.k2 * g.k2 * asz);
  const int64_t off_b = off;
  off += align16(2 * cc * asz);
  const int64_t off_wp = off;
  off += align16(Og * 2 * cc * asz);
  const int64_t off_x = off;
  off += align16(cc * XH * XW * tsz);
  const int64_t off_a = off;
  off += align16(cc * AH * AW * asz);
  const int64_t off_d = off;
  off += align16(cc * TH * TW * asz);
  const int64_t off_y = off;
  if (partials) off += align16(Og * TH * TW * asz);
  if (t != nullptr && off <= INT_MAX) {
    *t = HlkTile{static_cast<int>(TH),     static_cast<int>(TW),     static_cast<int>(cc),    static_cast<int>(XH),
                 static_cast<int>(XW),     static_cast<int>(AH),     static_cast<int>(AW),
                 mode == kDirect ? 0 : static_cast<int>(P2),         static_cast<int>(off_w1),
                 static_cast<int>(off_b),  static_cast<int>(off_wp), static_cast<int>(off_x), static_cast<int>(off_a),
                 static_cast<int>(off_d),  static_cast<int>(off_y)};
  }
  return off;
}

// Largest channel chunk of a (mode, tile) within budget, 0 if even one channel does not
// fit. All channels at once need no partial sums; chunking adds the s_y buffer.
int64_t best_chunk(const HlkGeometry& g, int mode, int64_t TH, int64_t TW, int64_t budget, int64_t tsz, int64_t asz) {
  const int64_t Cg = g.C / g.groups;
  const int64_t full = Cg > 0 ? Cg : 1;
  if (layout(g, mode, TH, TW, full, false, tsz, asz, nullptr) <= budget) return full;
  int64_t lo = 0, hi = full - 1;  // layout is monotonic in cc: binary search the last fit
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (layout(g, mode, TH, TW, mid, true, tsz, asz, nullptr) <= budget)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Picks the mode, tile and chunk. Tiles are tried largest first because the halo work
// (a on the extended tile, the x window) shrinks relative to the tile as it grows; the
// default 48 KiB is preferred at each size, opting in to more only when needed, and never
// beyond kMaxOptIn so that a large plan still leaves room for a second resident block
// (unmeasured: no GPU was available when this was written).
constexpr int64_t kMaxOptIn = 113 * 1024;
bool plan(const HlkGeometry& g, int64_t optin, int64_t tsz, int64_t asz, int* mode, HlkTile* t, int64_t* smem) {
  static const int kTiles[][2] = {{16, 32}, {16, 16}, {8, 16}, {8, 8}, {4, 8}, {4, 4}, {2, 2}, {1, 1}};
  constexpr int kHaloTiles = 5;  // smaller tiles are only worth it for kDirect (no halo)
  const int64_t big = optin < kMaxOptIn ? optin : kMaxOptIn;
  const int64_t budgets[2] = {kDefaultSmem, big > kDefaultSmem ? big : kDefaultSmem};
  for (int m = kTiledX; m <= kDirect; ++m) {
    const int ntiles = m == kDirect ? static_cast<int>(sizeof(kTiles) / sizeof(kTiles[0])) : kHaloTiles;
    for (int i = 0; i < ntiles; ++i) {
      const int64_t TH = kTiles[i][0] < g.H ? kTiles[i][0] : g.H;
      const int64_t TW = kTiles[i][1] < g.W ? kTiles[i][1] : g.W;
      for (int64_t budget : budgets) {
        const int64_t cc = best_chunk(g, m, TH, TW, budget, tsz, asz);
        if (cc < 1) continue;
        const int64_t Cg = g.C / g.groups;
        *smem = layout(g, m, TH, TW, cc, cc < Cg, tsz, asz, t);
        *mode = m;
        return true;
      }
    }
  }
  return false;
}

bool geometry_ok(const HlkGeometry& g) {
  // Coordinates in the kernel are 32-bit; keep tile corners and halos well clear of overflow.
  const int64_t lim = INT_MAX / 4;
  if (g.N < 0 || g.C < 0 || g.H < 0 || g.W < 0 || g.Cout < 0 || g.groups < 1) return false;
  if (g.k1 < 1 || g.k2 < 1 || g.k1 % 2 == 0 || g.k2 % 2 == 0 || g.k1 > 63 || g.k2 > 63 || g.dilation < 1) return false;
  if (g.C % g.groups != 0 || g.Cout % g.groups != 0) return false;
  if (g.C / g.groups > lim || g.Cout / g.groups > lim) return false;
  return g.H < lim && g.W < lim && hlk_pad1(g) + hlk_pad2(g) < lim;
}

template <typename T, typename Acc, int kMode>
cudaError_t launch(const void* x, Strides4 xs, const void* w0, const void* b0, const void* w1, const void* b1,
                   const void* wpw, const void* bpw, void* y, Strides4 ys, const HlkGeometry& g, const HlkTile& t,
                   int64_t smem, dim3 grid, cudaStream_t stream) {
  auto kernel = hlk_fwd_kernel<T, Acc, kMode>;
  if (smem > kDefaultSmem) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  kernel<<<grid, kThreads, static_cast<size_t>(smem), stream>>>(
      static_cast<const T*>(x), xs, static_cast<const T*>(w0), static_cast<const T*>(b0), static_cast<const T*>(w1),
      static_cast<const T*>(b1), static_cast<const T*>(wpw), static_cast<const T*>(bpw), static_cast<T*>(y), ys, g, t);
  return cudaGetLastError();
}

template <typename T, typename Acc>
cudaError_t fwd_impl(const void* x, Strides4 xs, const void* w0, const void* b0, const void* w1, const void* b1,
                     const void* wpw, const void* bpw, void* y, Strides4 ys, const HlkGeometry& g,
                     cudaStream_t stream) {
  if (!geometry_ok(g)) return cudaErrorInvalidValue;
  if (g.N == 0 || g.Cout == 0 || g.H == 0 || g.W == 0) return cudaSuccess;
  int64_t optin = kDefaultSmem;
  int dev = 0, value = 0;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess)
    optin = value;
  int mode = kTiledX;
  HlkTile t{};
  int64_t smem = 0;
  if (!plan(g, optin, sizeof(T), sizeof(Acc), &mode, &t, &smem)) return cudaErrorInvalidValue;
  const int64_t tiles = ((g.H + t.TH - 1) / t.TH) * ((g.W + t.TW - 1) / t.TW);
  if (tiles > INT_MAX) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(g.groups < kMaxGridYZ ? g.groups : kMaxGridYZ),
                  static_cast<unsigned>(g.N < kMaxGridYZ ? g.N : kMaxGridYZ));
  switch (mode) {
    case kTiledX:
      return launch<T, Acc, kTiledX>(x, xs, w0, b0, w1, b1, wpw, bpw, y, ys, g, t, smem, grid, stream);
    case kGlobalX:
      return launch<T, Acc, kGlobalX>(x, xs, w0, b0, w1, b1, wpw, bpw, y, ys, g, t, smem, grid, stream);
    default:
      return launch<T, Acc, kDirect>(x, xs, w0, b0, w1, b1, wpw, bpw, y, ys, g, t, smem, grid, stream);
  }
}

}  // namespace
}  // namespace istd

cudaError_t istd_hlk_fwd_cuda(istd::DType dtype, const void* x, istd::Strides4 x_strides, const void* w0,
                              const void* b0, const void* w1, const void* b1, const void* w_pw, const void* b_pw,
                              void* y, istd::Strides4 y_strides, const istd::HlkGeometry& geo, cudaStream_t stream) {
  using istd::DType;
  switch (dtype) {
    case DType::kFloat32:
      return istd::fwd_impl<float, float>(x, x_strides, w0, b0, w1, b1, w_pw, b_pw, y, y_strides, geo, stream);
    case DType::kFloat64:
      return istd::fwd_impl<double, double>(x, x_strides, w0, b0, w1, b1, w_pw, b_pw, y, y_strides, geo, stream);
    case DType::kFloat16:
      return istd::fwd_impl<__half, float>(x, x_strides, w0, b0, w1, b1, w_pw, b_pw, y, y_strides, geo, stream);
    case DType::kBFloat16:
      return istd::fwd_impl<__nv_bfloat16, float>(x, x_strides, w0, b0, w1, b1, w_pw, b_pw, y, y_strides, geo,
                                                  stream);
  }
  return cudaErrorInvalidValue;
}
