// CUDA component statistics (area, centroid, bounding box of every labelled component), in
// three kernels: init clears the accumulators; accumulate makes one pass over the pixels;
// finish applies stats_core's finalisation to each component.
//
// Infrared components are small blobs, so the 32 consecutive pixels of a warp are mostly
// background or runs of one or two components. Lanes of one component are grouped with
// __match_any_sync and folded into a single update, so that one lane per component and
// warp issues the atomics rather than every pixel, and all-background warps issue none.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "istd/component_stats_cuda.h"
#include "istd/stats_core.h"

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535LL * 16;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// Lanes of `active` holding the same key as this one.
__device__ __forceinline__ unsigned match_group(unsigned active, unsigned long long key) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 700
  (void)active;
  (void)key;
  return 1u << (threadIdx.x & 31);  // no match instruction: every lane is its own group
#else
  return __match_any_sync(active, key);
#endif
}

// Reductions over the lanes of `group`; every lane of it calls with the same mask. Before
// sm_80 (no redux instruction) each lane reads every member in turn.
struct AddOp {
  __device__ unsigned operator()(unsigned a, unsigned b) const { return a + b; }
};
struct MinOp {
  __device__ unsigned operator()(unsigned a, unsigned b) const { return min(a, b); }
};
struct MaxOp {
  __device__ unsigned operator()(unsigned a, unsigned b) const { return max(a, b); }
};

// The pre-sm_80 path: each lane reads every member of its group in turn.
template <typename Op>
__device__ __forceinline__ unsigned group_fold(unsigned group, unsigned v, Op op) {
  unsigned acc = __shfl_sync(group, v, __ffs(group) - 1);
  for (unsigned rest = group & (group - 1); rest != 0; rest &= rest - 1) {
    acc = op(acc, __shfl_sync(group, v, __ffs(rest) - 1));
  }
  return acc;
}

__device__ __forceinline__ unsigned group_add(unsigned group, unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_add_sync(group, v);
#else
  return group_fold(group, v, AddOp());
#endif
}

__device__ __forceinline__ unsigned group_min(unsigned group, unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_min_sync(group, v);
#else
  return group_fold(group, v, MinOp());
#endif
}

__device__ __forceinline__ unsigned group_max(unsigned group, unsigned v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  return __reduce_max_sync(group, v);
#else
  return group_fold(group, v, MaxOp());
#endif
}

__global__ void __launch_bounds__(kThreads)
    stats_init_kernel(int64_t* __restrict__ area, int64_t* __restrict__ sums, int32_t* __restrict__ bounds,
                      int64_t components) {
  for (int64_t i = grid_start(); i < components; i += grid_step()) {
    area[i] = 0;
    sums[2 * i] = 0;
    sums[2 * i + 1] = 0;
    istd::stats_box_init<int32_t>(bounds + 4 * i, INT_MAX);
  }
}

// Component k of image n accumulates at index n * M + k - 1. Within one group the lanes
// are pixels of one image in increasing index order, so the first lane holds the minimum
// row and the last lane the maximum; only columns need a real min/max.
__global__ void __launch_bounds__(kThreads)
    stats_accumulate_kernel(const int32_t* __restrict__ labels, int64_t total, int64_t plane, int32_t W, int64_t M,
                            int64_t* __restrict__ area, int64_t* __restrict__ sums, int32_t* __restrict__ bounds) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  // The loop runs per warp, not per thread, so every warp intrinsic below sees whole
  // warps; lanes past the end read as background.
  for (int64_t base = grid_start() - lane; base < total; base += grid_step()) {
    const int64_t g = base + lane;
    const int32_t label = g < total ? labels[g] : 0;
    const bool fg = label >= 1 && label <= M;
    const unsigned active = __ballot_sync(kFullMask, fg);
    if (!fg) continue;
    const int64_t n = g / plane;
    const int32_t p = static_cast<int32_t>(g - n * plane);
    const int32_t r = p / W;
    const int32_t c = p - r * W;
    const int64_t component = n * M + (label - 1);
    const unsigned group = match_group(active, static_cast<unsigned long long>(component));
    const int first = __ffs(group) - 1;
    const int last = 31 - __clz(group);
    const int32_t p0 = __shfl_sync(group, p, first);
    const int32_t r0 = __shfl_sync(group, r, first);
    const int32_t r1 = __shfl_sync(group, r, last);
    const unsigned offsets = group_add(group, static_cast<unsigned>(p - p0) | (static_cast<unsigned>(r - r0) << 16));
    const unsigned c0 = group_min(group, static_cast<unsigned>(c));
    const unsigned c1 = group_max(group, static_cast<unsigned>(c));
    if (lane != first) continue;
    const int64_t count = __popc(group);
    int64_t row_sum, col_sum;
    istd::stats_group_sums(count, p0, r0, offsets, W, &row_sum, &col_sum);
    // Two's complement: adding the int64 bit patterns as unsigned is the int64 sum.
    atomicAdd(reinterpret_cast<unsigned long long*>(area + component), static_cast<unsigned long long>(count));
    atomicAdd(reinterpret_cast<unsigned long long*>(sums + 2 * component), static_cast<unsigned long long>(row_sum));
    atomicAdd(reinterpret_cast<unsigned long long*>(sums + 2 * component + 1),
              static_cast<unsigned long long>(col_sum));
    int32_t* b = bounds + 4 * component;
    atomicMin(b, r0);
    atomicMin(b + 1, static_cast<int32_t>(c0));
    atomicMax(b + 2, r1);
    atomicMax(b + 3, static_cast<int32_t>(c1));
  }
}

__global__ void __launch_bounds__(kThreads)
    stats_finish_kernel(const int64_t* __restrict__ area, const int64_t* __restrict__ sums,
                        const int32_t* __restrict__ bounds, double* __restrict__ centroid, int64_t* __restrict__ bbox,
                        int64_t components) {
  for (int64_t i = grid_start(); i < components; i += grid_step()) {
    const int32_t* b = bounds + 4 * i;
    istd::stats_finish(area[i], sums[2 * i], sums[2 * i + 1], b[0], b[1], b[2], b[3], centroid + 2 * i, bbox + 4 * i);
  }
}

dim3 grid_for(int64_t work) {
  int64_t blocks = (work + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return dim3(static_cast<unsigned>(blocks));
}

}  // namespace

cudaError_t istd_component_stats_cuda(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M,
                                      int64_t* area, double* centroid, int64_t* bbox, int64_t* sums,
                                      int32_t* bounds, cudaStream_t stream) {
  if (N < 0 || H < 0 || W < 0 || M < 0) return cudaErrorInvalidValue;
  if (H * W >= INT32_MAX) return cudaErrorInvalidValue;
  const int64_t components = N * M, plane = H * W, total = N * plane;
  if (components == 0) return cudaSuccess;
  stats_init_kernel<<<grid_for(components), kThreads, 0, stream>>>(area, sums, bounds, components);
  if (total > 0) {
    stats_accumulate_kernel<<<grid_for(total), kThreads, 0, stream>>>(labels, total, plane, static_cast<int32_t>(W),
                                                                      M, area, sums, bounds);
  }
  stats_finish_kernel<<<grid_for(components), kThreads, 0, stream>>>(area, sums, bounds, centroid, bbox, components);
  return cudaGetLastError();
}
