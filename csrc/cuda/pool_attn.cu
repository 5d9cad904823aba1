// CUDA multiscale_maxpool (forward, backward) and split_attention (forward, backward) for
// float, double, half and bfloat16. The per-element arithmetic lives in
// istd/pool_attn_core.h and is shared with the CPU build, which is where it is tested
// without a GPU; this file adds the launch geometry, the shared-memory footprint sums and
// the fixed-order reductions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "istd/cuda_convert.cuh"
#include "istd/pool_attn_core.h"
#include "istd/pool_attn_cuda.h"

namespace istd {
namespace {

// Every kernel is declared __launch_bounds__(kThreads, 1): with the thread count alone,
// ptxas 13 caps registers for occupancy and spills the split-attention kernels; the
// explicit minimum of one block lets it allocate what they need (checked spill-free for
// sm_86 / sm_90 by istd_kernels.tools.nvcc_gate).
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Grid-stride loops: enough blocks to fill any current GPU several times over, few enough
// that tiny blocks do not dominate.
constexpr int64_t kMaxBlocks = 65535;
constexpr int kMmpLevelsPerLaunch = 8;

// Split-attention backward: a block owns up to kSaPixelsPerThread * kThreads pixels of one
// (n, group); tile sides are multiples of every scale, at most kSaTileSide rows.
constexpr int kSaPixelsPerThread = 4;
constexpr int kSaTilePixels = kSaPixelsPerThread * kThreads;
constexpr int kSaTileSide = 32;

int64_t blocks_for(int64_t work) {
  const int64_t b = ceil_div(work, kThreads);
  return b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b);
}

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};

// Fixed-order block sum: a shuffle tree inside each warp, then the warps' partials added in
// index order by thread 0. The order depends only on the block size.
template <typename Acc>
__device__ ISTD_INLINE Acc block_sum(Acc v, Acc* s_red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if (lane == 0) s_red[warp] = v;
  __syncthreads();
  Acc s = Acc(0);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += s_red[w];
  }
  return s;
}

// ------------------------------------------------------------------------------------
// multiscale_maxpool. blockIdx.y picks the level inside a launch (up to
// kMmpLevelsPerLaunch levels per launch; more levels take more launches). The descriptors
// are __grid_constant__ so indexing them by blockIdx.y reads parameter memory in place
// instead of copying the array to local memory.

struct MmpPack {
  MmpLevel lv[kMmpLevelsPerLaunch];
  int first;  // level index of lv[0]
};

// One thread per pooled value; its window is read row by row.
template <typename T, typename Idx>
__global__ void __launch_bounds__(kThreads, 1)
    mmp_fwd_kernel(const T* __restrict__ u, Strides4 us, MmpGeometry g, const __grid_constant__ MmpPack pack) {
  using Acc = typename AccOf<T>::type;
  const MmpLevel& L = pack.lv[blockIdx.y];
  const int j = pack.first + static_cast<int>(blockIdx.y);
  const int s = L.s;
  const int64_t GC = g.groups * g.C;
  const int64_t total = g.N * GC * L.Ho * L.Wo;
  T* y = static_cast<T*>(L.data);
  Idx* ix = static_cast<Idx*>(L.idx);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t ow = e % L.Wo, t = e / L.Wo;
    const int64_t oh = t % L.Ho, p = t / L.Ho;
    const int64_t n = p / GC, r = p - n * GC;
    const int64_t k = r / g.C, i = r - k * g.C;
    const int64_t uch = (k * g.radix + j) * g.C + i;
    const int64_t ih0 = oh * s, iw0 = ow * s;
    const int hlen = static_cast<int>(g.H - ih0 < s ? g.H - ih0 : s);
    const int wlen = static_cast<int>(g.W - iw0 < s ? g.W - iw0 : s);
    Acc m;
    const int arg = mmp_window_argmax<T, Acc, int, int64_t>(u + n * us.n + uch * us.c + ih0 * us.h + iw0 * us.w,
                                                            us.h, us.w, hlen, wlen, s, &m);
    y[n * L.data_s.n + r * L.data_s.c + oh * L.data_s.h + ow * L.data_s.w] = convert<T>(m);
    ix[n * L.idx_s.n + r * L.idx_s.c + oh * L.idx_s.h + ow * L.idx_s.w] = static_cast<Idx>(arg);
  }
}

// Gather formulation: one thread per grad_u element keeps its window's gradient iff it is
// the recorded argmax. Every element written once: no atomics, no zero fill.
template <typename T, typename Idx>
__global__ void __launch_bounds__(kThreads, 1)
    mmp_bwd_kernel(T* __restrict__ gu, Strides4 gus, MmpGeometry g, const __grid_constant__ MmpPack pack) {
  const MmpLevel& L = pack.lv[blockIdx.y];
  const int j = pack.first + static_cast<int>(blockIdx.y);
  const int s = L.s;
  const int64_t GC = g.groups * g.C;
  const int64_t total = g.N * GC * g.H * g.W;
  const T* gl = static_cast<const T*>(L.data);
  const Idx* ix = static_cast<const Idx*>(L.idx);
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t iw = e % g.W, t = e / g.W;
    const int64_t ih = t % g.H, p = t / g.H;
    const int64_t n = p / GC, r = p - n * GC;
    const int64_t k = r / g.C, i = r - k * g.C;
    const int64_t uch = (k * g.radix + j) * g.C + i;
    const int64_t wy = ih / s, wx = iw / s;
    const int stored = static_cast<int>(ix[n * L.idx_s.n + r * L.idx_s.c + wy * L.idx_s.h + wx * L.idx_s.w]);
    const T gv = gl[n * L.data_s.n + r * L.data_s.c + wy * L.data_s.h + wx * L.data_s.w];
    gu[n * gus.n + uch * gus.c + ih * gus.h + iw * gus.w] =
        stored == mmp_cell_offset<int64_t>(ih, iw, s) ? gv : convert<T>(0.0f);
  }
}

bool mmp_geometry_ok(const MmpGeometry& g, const MmpLevel* levels) {
  if (g.N < 0 || g.H < 0 || g.W < 0 || g.groups < 1 || g.radix < 1 || g.C < 1) return false;
  if (g.D != g.groups * g.radix * g.C) return false;
  for (int64_t j = 0; j < g.radix; ++j) {
    const int s = levels[j].s;
    if (s < 1 || levels[j].Ho != ceil_div(g.H, s) || levels[j].Wo != ceil_div(g.W, s)) return false;
  }
  return true;
}

template <typename T, typename Idx>
cudaError_t mmp_launch(bool forward, const void* u, Strides4 us, void* gu, Strides4 gus, const MmpGeometry& g,
                       const MmpLevel* levels, cudaStream_t stream) {
  if (!mmp_geometry_ok(g, levels)) return cudaErrorInvalidValue;
  for (int64_t first = 0; first < g.radix; first += kMmpLevelsPerLaunch) {
    MmpPack pack{};
    pack.first = static_cast<int>(first);
    const int count = static_cast<int>(g.radix - first < kMmpLevelsPerLaunch ? g.radix - first : kMmpLevelsPerLaunch);
    int64_t work = 0;
    for (int l = 0; l < count; ++l) {
      pack.lv[l] = levels[first + l];
      const int64_t w = forward ? g.N * g.groups * g.C * pack.lv[l].Ho * pack.lv[l].Wo
                                : g.N * g.groups * g.C * g.H * g.W;
      work = w > work ? w : work;
    }
    if (work == 0) continue;
    const dim3 grid(static_cast<unsigned>(blocks_for(work)), static_cast<unsigned>(count));
    if (forward) {
      mmp_fwd_kernel<T, Idx><<<grid, kThreads, 0, stream>>>(static_cast<const T*>(u), us, g, pack);
    } else {
      mmp_bwd_kernel<T, Idx><<<grid, kThreads, 0, stream>>>(static_cast<T*>(gu), gus, g, pack);
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t mmp_dispatch_idx(bool forward, bool idx_u8, const void* u, Strides4 us, void* gu, Strides4 gus,
                             const MmpGeometry& g, const MmpLevel* levels, cudaStream_t stream) {
  return idx_u8 ? mmp_launch<T, uint8_t>(forward, u, us, gu, gus, g, levels, stream)
                : mmp_launch<T, int32_t>(forward, u, us, gu, gus, g, levels, stream);
}

cudaError_t mmp_dispatch(DType dtype, bool forward, bool idx_u8, const void* u, Strides4 us, void* gu, Strides4 gus,
                         const MmpGeometry& g, const MmpLevel* levels, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return mmp_dispatch_idx<float>(forward, idx_u8, u, us, gu, gus, g, levels, stream);
    case DType::kFloat64:
      return mmp_dispatch_idx<double>(forward, idx_u8, u, us, gu, gus, g, levels, stream);
    case DType::kFloat16:
      return mmp_dispatch_idx<__half>(forward, idx_u8, u, us, gu, gus, g, levels, stream);
    case DType::kBFloat16:
      return mmp_dispatch_idx<__nv_bfloat16>(forward, idx_u8, u, us, gu, gus, g, levels, stream);
  }
  return cudaErrorInvalidValue;
}

// ------------------------------------------------------------------------------------
// split_attention.

template <typename T>
__device__ ISTD_INLINE const T* ptr_nc(const void* base, const Strides4& s, int64_t n, int64_t c) {
  return static_cast<const T*>(base) + n * s.n + c * s.c;
}

// One thread per (n, group, pixel): the weights are computed once and reused by the
// group's Dg channels (a runtime loop), each branch gathered at (y / s_j, x / s_j) straight
// from its low-resolution tensor.
template <typename T, int R>
__global__ void __launch_bounds__(kThreads, 1)
    sa_fwd_kernel(const __grid_constant__ SaInputs in, T* __restrict__ z, Strides4 zs, SaGeometry g) {
  using Acc = typename AccOf<T>::type;
  const int64_t HW = g.H * g.W, total = g.N * g.G * HW, Dg = g.D / g.G;
  const Acc inv_t = Acc(1) / convert<Acc>(*static_cast<const T*>(in.temperature));
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t sp = e % HW, nk = e / HW;
    const int y = static_cast<int>(sp / g.W), x = static_cast<int>(sp - static_cast<int64_t>(y) * g.W);
    const int64_t n = nk / g.G, k = nk - n * g.G;
    Acc ev[R], w[R];
    const T* lg = ptr_nc<T>(in.logits, in.logits_s, n, k * R) + y * in.logits_s.h + x * in.logits_s.w;
    sa_softmax<R, Acc>([&](int j) { return convert<Acc>(lg[j * in.logits_s.c]); }, inv_t, ev, w);
    int64_t boff[R];
#pragma unroll
    for (int j = 0; j < R; ++j)
      boff[j] = (y / g.scales[j]) * in.branch_s[j].h + (x / g.scales[j]) * in.branch_s[j].w;
    for (int64_t ci = 0; ci < Dg; ++ci) {
      const int64_t c = k * Dg + ci;
      Acc up[R];
#pragma unroll
      for (int j = 0; j < R; ++j) up[j] = convert<Acc>(ptr_nc<T>(in.branch[j], in.branch_s[j], n, c)[boff[j]]);
      const Acc res =
          convert<Acc>(ptr_nc<T>(in.residual, in.residual_s, n, c)[y * in.residual_s.h + x * in.residual_s.w]);
      const Acc vv = convert<Acc>(ptr_nc<T>(in.v, in.v_s, n, c)[y * in.v_s.h + x * in.v_s.w]);
      z[n * zs.n + c * zs.c + y * zs.h + x * zs.w] = convert<T>(sa_gate<Acc>(sa_combine<R, Acc>(res, w, up), vv));
    }
  }
}

struct SaTile {
  int TH, TW;
  int64_t tiles_h, tiles_w;
};

// Tile sides: multiples of the scales' lcm (so tiles start on every footprint boundary),
// at most kSaTileSide rows and kSaTilePixels pixels, no larger than the image rounded up.
bool sa_tile(const SaGeometry& g, SaTile* t) {
  const int64_t l = scales_lcm(g.scales, g.R, kSaTileSide);
  if (l > kSaTileSide || g.H < 1 || g.W < 1) return false;
  const int64_t th_max = (kSaTileSide / l) * l, th_img = ceil_div(g.H, l) * l;
  const int64_t th = th_max < th_img ? th_max : th_img;
  const int64_t tw_max = (kSaTilePixels / th / l) * l, tw_img = ceil_div(g.W, l) * l;
  const int64_t tw = tw_max < tw_img ? tw_max : tw_img;
  t->TH = static_cast<int>(th);
  t->TW = static_cast<int>(tw);
  t->tiles_h = ceil_div(g.H, th);
  t->tiles_w = ceil_div(g.W, tw);
  return true;
}

// One block per (n, group, tile). Per channel, each thread computes dA and dv of its
// pixels, stages dA * w_j of the tile in shared memory, and the block then sums every
// low-resolution footprint of the tile (sa_footprint_sum, row-major) and stores it: each
// branch-gradient element is written once by one thread. After the channel loop the
// block writes grad_logits and its temperature partial.
template <typename T, int R>
__global__ void __launch_bounds__(kThreads, 1)
    sa_bwd_kernel(const T* __restrict__ gz, Strides4 gzs, const __grid_constant__ SaInputs in,
                  const __grid_constant__ SaGrads out, SaGeometry g, SaTile tile,
                  typename AccOf<T>::type* __restrict__ ws) {
  using Acc = typename AccOf<T>::type;
  constexpr int P = kSaPixelsPerThread;
  __shared__ Acc s_prod[R][kSaTilePixels];
  __shared__ Acc s_red[kWarps];
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.x;
  const int64_t tiles = tile.tiles_h * tile.tiles_w;
  const int64_t nk = b / tiles, tl = b - nk * tiles;
  const int64_t n = nk / g.G, k = nk - n * g.G;
  const int y0 = static_cast<int>(tl / tile.tiles_w) * tile.TH;
  const int x0 = static_cast<int>(tl % tile.tiles_w) * tile.TW;
  const int H = static_cast<int>(g.H), W = static_cast<int>(g.W);
  const int npx = tile.TH * tile.TW;
  const int64_t Dg = g.D / g.G;
  const Acc inv_t = Acc(1) / convert<Acc>(*static_cast<const T*>(in.temperature));
  const T* lg0 = ptr_nc<T>(in.logits, in.logits_s, n, k * R);

  int py[P], px[P];
  bool ok[P];
  Acc w[P][R], gw[P][R];
#pragma unroll
  for (int q = 0; q < P; ++q) {
    const int p = tid + q * kThreads;
    const int ty = p / tile.TW;
    py[q] = y0 + ty;
    px[q] = x0 + (p - ty * tile.TW);
    ok[q] = p < npx && py[q] < H && px[q] < W;
    Acc ev[R];
    if (ok[q]) {
      const T* lg = lg0 + py[q] * in.logits_s.h + px[q] * in.logits_s.w;
      sa_softmax<R, Acc>([&](int j) { return convert<Acc>(lg[j * in.logits_s.c]); }, inv_t, ev, w[q]);
    } else {
#pragma unroll
      for (int j = 0; j < R; ++j) w[q][j] = Acc(0);
    }
#pragma unroll
    for (int j = 0; j < R; ++j) gw[q][j] = Acc(0);
  }

  for (int64_t ci = 0; ci < Dg; ++ci) {
    const int64_t c = k * Dg + ci;
    Acc ga[P];
#pragma unroll
    for (int q = 0; q < P; ++q) {
      ga[q] = Acc(0);
      if (!ok[q]) continue;
      const int y = py[q], x = px[q];
      Acc up[R];
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const int s = g.scales[j];
        up[j] = convert<Acc>(
            ptr_nc<T>(in.branch[j], in.branch_s[j], n, c)[(y / s) * in.branch_s[j].h + (x / s) * in.branch_s[j].w]);
      }
      const Acc res =
          convert<Acc>(ptr_nc<T>(in.residual, in.residual_s, n, c)[y * in.residual_s.h + x * in.residual_s.w]);
      const Acc vv = convert<Acc>(ptr_nc<T>(in.v, in.v_s, n, c)[y * in.v_s.h + x * in.v_s.w]);
      const Acc gzv = convert<Acc>(gz[n * gzs.n + c * gzs.c + y * gzs.h + x * gzs.w]);
      Acc gv;
      sa_gate_grad<Acc>(sa_combine<R, Acc>(res, w[q], up), vv, gzv, &ga[q], &gv);
      static_cast<T*>(out.residual)[n * out.residual_s.n + c * out.residual_s.c + y * out.residual_s.h +
                                    x * out.residual_s.w] = convert<T>(ga[q]);
      static_cast<T*>(out.v)[n * out.v_s.n + c * out.v_s.c + y * out.v_s.h + x * out.v_s.w] = convert<T>(gv);
#pragma unroll
      for (int j = 0; j < R; ++j) gw[q][j] += ga[q] * up[j];
    }
    __syncthreads();  // the previous channel's footprint sums are done with s_prod
#pragma unroll
    for (int q = 0; q < P; ++q) {
      const int p = tid + q * kThreads;
      if (p < npx) {
#pragma unroll
        for (int j = 0; j < R; ++j) s_prod[j][p] = ga[q] * w[q][j];
      }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < R; ++j) {
      const int s = g.scales[j];
      const int lw = tile.TW / s, nlow = (tile.TH / s) * lw;
      const int64_t Hb = g.Hb[j], Wb = g.Wb[j];
      const Acc* sp = s_prod[j];
      for (int o = tid; o < nlow; o += kThreads) {
        const int ly = o / lw, lx = o - ly * lw;
        const int64_t by = y0 / s + ly, bx = x0 / s + lx;
        if (by >= Hb || bx >= Wb) continue;
        const Acc* cell = sp + ly * s * tile.TW + lx * s;
        const Acc sum = sa_footprint_sum<Acc>([&](int dy, int dx) { return cell[dy * tile.TW + dx]; }, s);
        static_cast<T*>(out.branch[j])[n * out.branch_s[j].n + c * out.branch_s[j].c + by * out.branch_s[j].h +
                                       bx * out.branch_s[j].w] = convert<T>(sum);
      }
    }
  }

  Acc tsum = Acc(0);
#pragma unroll
  for (int q = 0; q < P; ++q) {
    if (!ok[q]) continue;
    const int y = py[q], x = px[q];
    const T* lg = lg0 + y * in.logits_s.h + x * in.logits_s.w;
    Acc ev[R], wv[R], gl[R];
    // Recomputed rather than kept: the same function on the same inputs, and R fewer live
    // registers per pixel across the channel loop.
    sa_softmax<R, Acc>([&](int j) { return convert<Acc>(lg[j * in.logits_s.c]); }, inv_t, ev, wv);
    tsum += sa_logit_grads<R, Acc>(ev, wv, gw[q], inv_t, gl);
    T* glg = static_cast<T*>(out.logits) + n * out.logits_s.n + (k * R) * out.logits_s.c + y * out.logits_s.h +
             x * out.logits_s.w;
#pragma unroll
    for (int j = 0; j < R; ++j) glg[j * out.logits_s.c] = convert<T>(gl[j]);
  }
  const Acc total = block_sum<Acc>(tsum, s_red);
  if (tid == 0) ws[b] = -total * inv_t;
}

// grad_temperature = the block partials added in index order (strided per thread, then
// the fixed block tree): one block, so the order never depends on the GPU.
template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    sa_temperature_kernel(const typename AccOf<T>::type* __restrict__ ws, int64_t count, T* __restrict__ gt) {
  using Acc = typename AccOf<T>::type;
  __shared__ Acc s_red[kWarps];
  Acc v = Acc(0);
  for (int64_t i = threadIdx.x; i < count; i += kThreads) v += ws[i];
  const Acc total = block_sum<Acc>(v, s_red);
  if (threadIdx.x == 0) *gt = convert<T>(total);
}

bool sa_geometry_ok(const SaGeometry& g) {
  if (g.R < 1 || g.R > kSaMaxBranches || g.G < 1 || g.D < 1 || g.D % g.G != 0) return false;
  if (g.N < 0 || g.H < 0 || g.W < 0 || g.H > INT_MAX / 2 || g.W > INT_MAX / 2) return false;
  for (int j = 0; j < g.R; ++j) {
    if (g.scales[j] < 1 || g.Hb[j] != ceil_div(g.H, g.scales[j]) || g.Wb[j] != ceil_div(g.W, g.scales[j]))
      return false;
  }
  return true;
}

template <typename T>
cudaError_t sa_fwd_impl(const SaInputs& in, void* z, Strides4 zs, const SaGeometry& g, cudaStream_t stream) {
  if (!sa_geometry_ok(g)) return cudaErrorInvalidValue;
  const int64_t work = g.N * g.G * g.H * g.W;
  if (work == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(blocks_for(work));
  T* zp = static_cast<T*>(z);
  switch (g.R) {
    case 1: sa_fwd_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(in, zp, zs, g); break;
    case 2: sa_fwd_kernel<T, 2><<<blocks, kThreads, 0, stream>>>(in, zp, zs, g); break;
    case 3: sa_fwd_kernel<T, 3><<<blocks, kThreads, 0, stream>>>(in, zp, zs, g); break;
    default: sa_fwd_kernel<T, 4><<<blocks, kThreads, 0, stream>>>(in, zp, zs, g); break;
  }
  return cudaGetLastError();
}

int64_t sa_blocks(const SaGeometry& g, SaTile* t) {
  if (!sa_geometry_ok(g) || !sa_tile(g, t)) return -1;
  return g.N * g.G * t->tiles_h * t->tiles_w;
}

template <typename T>
cudaError_t sa_bwd_impl(const void* gz, Strides4 gzs, const SaInputs& in, const SaGrads& out, void* gt,
                        const SaGeometry& g, void* workspace, size_t workspace_elems, cudaStream_t stream) {
  using Acc = typename AccOf<T>::type;
  SaTile tile{};
  const int64_t blocks = sa_blocks(g, &tile);
  if (blocks < 0 || blocks > INT_MAX) return cudaErrorInvalidValue;
  if (blocks > 0 && (workspace == nullptr || static_cast<int64_t>(workspace_elems) < blocks))
    return cudaErrorInvalidValue;
  Acc* ws = static_cast<Acc*>(workspace);
  const T* gzp = static_cast<const T*>(gz);
  if (blocks > 0) {
    const unsigned nb = static_cast<unsigned>(blocks);
    switch (g.R) {
      case 1: sa_bwd_kernel<T, 1><<<nb, kThreads, 0, stream>>>(gzp, gzs, in, out, g, tile, ws); break;
      case 2: sa_bwd_kernel<T, 2><<<nb, kThreads, 0, stream>>>(gzp, gzs, in, out, g, tile, ws); break;
      case 3: sa_bwd_kernel<T, 3><<<nb, kThreads, 0, stream>>>(gzp, gzs, in, out, g, tile, ws); break;
      default: sa_bwd_kernel<T, 4><<<nb, kThreads, 0, stream>>>(gzp, gzs, in, out, g, tile, ws); break;
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  sa_temperature_kernel<T><<<1, kThreads, 0, stream>>>(ws, blocks, static_cast<T*>(gt));
  return cudaGetLastError();
}

}  // namespace
}  // namespace istd

using istd::DType;
using istd::MmpGeometry;
using istd::MmpLevel;
using istd::SaGeometry;
using istd::SaGrads;
using istd::SaInputs;
using istd::Strides4;

cudaError_t istd_mmp_fwd_cuda(DType dtype, bool idx_u8, const void* u, Strides4 u_strides, const MmpGeometry& geo,
                              const MmpLevel* levels, cudaStream_t stream) {
  return istd::mmp_dispatch(dtype, true, idx_u8, u, u_strides, nullptr, Strides4{}, geo, levels, stream);
}

cudaError_t istd_mmp_bwd_cuda(DType dtype, bool idx_u8, const MmpLevel* levels, const MmpGeometry& geo, void* grad_u,
                              Strides4 gu_strides, cudaStream_t stream) {
  return istd::mmp_dispatch(dtype, false, idx_u8, nullptr, Strides4{}, grad_u, gu_strides, geo, levels, stream);
}

cudaError_t istd_split_attn_fwd_cuda(DType dtype, const SaInputs& in, void* z, Strides4 z_strides,
                                     const SaGeometry& geo, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return istd::sa_fwd_impl<float>(in, z, z_strides, geo, stream);
    case DType::kFloat64:
      return istd::sa_fwd_impl<double>(in, z, z_strides, geo, stream);
    case DType::kFloat16:
      return istd::sa_fwd_impl<__half>(in, z, z_strides, geo, stream);
    case DType::kBFloat16:
      return istd::sa_fwd_impl<__nv_bfloat16>(in, z, z_strides, geo, stream);
  }
  return cudaErrorInvalidValue;
}

size_t istd_split_attn_bwd_workspace_elems(const SaGeometry& geo) {
  istd::SaTile tile{};
  const int64_t blocks = istd::sa_blocks(geo, &tile);
  return blocks > 0 ? static_cast<size_t>(blocks) : 0;
}

cudaError_t istd_split_attn_bwd_cuda(DType dtype, const void* grad_z, Strides4 gz_strides, const SaInputs& in,
                                     const SaGrads& out, void* grad_temperature, const SaGeometry& geo,
                                     void* workspace, size_t workspace_elems, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return istd::sa_bwd_impl<float>(grad_z, gz_strides, in, out, grad_temperature, geo, workspace,
                                      workspace_elems, stream);
    case DType::kFloat64:
      return istd::sa_bwd_impl<double>(grad_z, gz_strides, in, out, grad_temperature, geo, workspace,
                                       workspace_elems, stream);
    case DType::kFloat16:
      return istd::sa_bwd_impl<__half>(grad_z, gz_strides, in, out, grad_temperature, geo, workspace,
                                       workspace_elems, stream);
    case DType::kBFloat16:
      return istd::sa_bwd_impl<__nv_bfloat16>(grad_z, gz_strides, in, out, grad_temperature, geo, workspace,
                                              workspace_elems, stream);
  }
  return cudaErrorInvalidValue;
}
