// CUDA connected-component labelling: a lock-free union-find over the label array, then a
// renumbering of roots in raster order.
//
// The label array doubles as the parent array (per-image pixel indices, -1 = background).
// Phases, one kernel each: init; merge (every foreground pixel unites with the neighbours
// above and to its left, hooking the larger root under the smaller with atomicMin, so that,
// as on the CPU, parent[i] <= i and a component's root is its first pixel in raster order);
// compress (every pixel points at its root); rank (one block per image counts roots in
// raster order with warp ballots); finish (each pixel takes its root's rank + 1).
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "istd/components_cuda.h"
#include "istd/union_find.h"

namespace {

constexpr int kThreads = 256;
constexpr int kRankThreads = 1024;
constexpr int64_t kMaxBlocks = 65535LL * 16;

// Root of i, reading through L2: other blocks lower parents concurrently with atomicMin,
// and an L1 copy could stay stale across the retry loop of unite_atomic. Any value read is
// a past or present ancestor (parents only decrease), so the walk always ends at a root.
__device__ __forceinline__ int32_t find_root_coherent(const int32_t* parent, int32_t i) {
  int32_t p = __ldcg(parent + i);
  while (p != i) {
    i = p;
    p = __ldcg(parent + i);
  }
  return i;
}

// istd::uf::unite with the plain store replaced by atomicMin. When the min lands on a node
// that stopped being a root meanwhile (old != a), its previous parent still has to be joined
// to b, so the loop continues from there.
__device__ __forceinline__ void unite_atomic(int32_t* parent, int32_t a, int32_t b) {
  a = find_root_coherent(parent, a);
  b = find_root_coherent(parent, b);
  while (a != b) {
    if (a < b) {
      const int32_t t = a;
      a = b;
      b = t;
    }
    const int32_t old = atomicMin(parent + a, b);
    if (old == a) return;
    a = find_root_coherent(parent, old);
    b = find_root_coherent(parent, b);
  }
}

__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__global__ void __launch_bounds__(kThreads)
    cc_init_kernel(const uint8_t* __restrict__ mask, int32_t* __restrict__ parent, int64_t total, int64_t plane) {
  for (int64_t g = grid_start(); g < total; g += grid_step()) {
    parent[g] = mask[g] ? static_cast<int32_t>(g % plane) : -1;
  }
}

// Each pixel links to a subset of its earlier neighbours; the skipped edges are implied by
// edges other pixels link, whatever the order the pixels run in. With 8-connectivity, up
// touches up-left, up-right and left, so it alone suffices; without up, left and up-left
// touch each other (one of them suffices) and up-right touches neither.
template <int kConn>
__global__ void __launch_bounds__(kThreads)
    cc_merge_kernel(const uint8_t* __restrict__ mask, int32_t* parent, int64_t total, int32_t H, int32_t W) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for (int64_t g = grid_start(); g < total; g += grid_step()) {
    if (!mask[g]) continue;
    const int64_t base = g - g % plane;
    const int32_t p = static_cast<int32_t>(g - base);
    const int32_t r = p / W, c = p - r * W;
    const uint8_t* m = mask + base;
    int32_t* par = parent + base;
    const bool up = r > 0 && m[p - W];
    const bool left = c > 0 && m[p - 1];
    if (kConn == 4) {
      if (up) unite_atomic(par, p, p - W);
      if (left) unite_atomic(par, p, p - 1);
    } else if (up) {
      unite_atomic(par, p, p - W);
    } else {
      if (left) {
        unite_atomic(par, p, p - 1);
      } else if (r > 0 && c > 0 && m[p - W - 1]) {
        unite_atomic(par, p, p - W - 1);
      }
      if (r > 0 && c + 1 < W && m[p - W + 1]) unite_atomic(par, p, p - W + 1);
    }
  }
}

// After merge no parent changes except here, where each pixel's parent is set to its root:
// a concurrent reader sees an ancestor either way, and roots are never written.
__global__ void __launch_bounds__(kThreads) cc_compress_kernel(int32_t* parent, int64_t total, int64_t plane) {
  for (int64_t g = grid_start(); g < total; g += grid_step()) {
    const int32_t p = parent[g];
    if (p < 0) continue;
    const int64_t base = g - g % plane;
    parent[g] = istd::uf::find_root_readonly(parent + base, p);
  }
}

// One block per image: rank[root] = number of roots before it in raster order. Tiles of
// kRankThreads pixels are scanned with one ballot per warp and a scan of the warp totals.
__global__ void __launch_bounds__(kRankThreads)
    cc_rank_kernel(const int32_t* __restrict__ parent, int32_t* __restrict__ rank, int64_t* __restrict__ counts,
                   int64_t plane) {
  __shared__ int32_t warp_total[kRankThreads / 32];
  __shared__ int32_t carry;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * plane;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (int64_t t0 = 0; t0 < plane; t0 += kRankThreads) {
    const int64_t p = t0 + threadIdx.x;
    const bool root = p < plane && parent[base + p] == static_cast<int32_t>(p);
    const unsigned ballot = __ballot_sync(0xffffffffu, root);
    if (lane == 0) warp_total[warp] = __popc(ballot);
    __syncthreads();
    if (warp == 0) {
      // Inclusive scan of the warp totals by shuffles, turned exclusive.
      const int32_t own = warp_total[lane];
      int32_t v = own;
      for (int d = 1; d < 32; d <<= 1) {
        const int32_t up = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += up;
      }
      warp_total[lane] = v - own;
    }
    __syncthreads();
    const int32_t before = carry + warp_total[warp] + __popc(ballot & ((1u << lane) - 1u));
    if (root) rank[base + p] = before;
    __syncthreads();
    if (threadIdx.x == kRankThreads - 1) carry = before + (root ? 1 : 0);
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[blockIdx.x] = carry;
}

// In place: each thread reads only its own pixel's root, then overwrites that pixel.
__global__ void __launch_bounds__(kThreads)
    cc_finish_kernel(int32_t* labels, const int32_t* __restrict__ rank, int64_t total, int64_t plane) {
  for (int64_t g = grid_start(); g < total; g += grid_step()) {
    const int32_t root = labels[g];
    labels[g] = root < 0 ? 0 : rank[g - g % plane + root] + 1;
  }
}

}  // namespace

cudaError_t istd_connected_components_cuda(const uint8_t* mask, int32_t* labels, int64_t* counts,
                                           int32_t* workspace, int64_t N, int64_t H, int64_t W, int connectivity,
                                           cudaStream_t stream) {
  if (N < 0 || H < 0 || W < 0 || (connectivity != 4 && connectivity != 8)) return cudaErrorInvalidValue;
  if (H * W >= INT32_MAX || N > INT32_MAX) return cudaErrorInvalidValue;
  const int64_t plane = H * W, total = N * plane;
  if (N == 0) return cudaSuccess;
  if (total == 0) {
    return cudaMemsetAsync(counts, 0, static_cast<size_t>(N) * sizeof(int64_t), stream);
  }
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  const dim3 grid(static_cast<unsigned>(blocks));
  cc_init_kernel<<<grid, kThreads, 0, stream>>>(mask, labels, total, plane);
  if (connectivity == 8) {
    cc_merge_kernel<8><<<grid, kThreads, 0, stream>>>(mask, labels, total, static_cast<int32_t>(H),
                                                      static_cast<int32_t>(W));
  } else {
    cc_merge_kernel<4><<<grid, kThreads, 0, stream>>>(mask, labels, total, static_cast<int32_t>(H),
                                                      static_cast<int32_t>(W));
  }
  cc_compress_kernel<<<grid, kThreads, 0, stream>>>(labels, total, plane);
  cc_rank_kernel<<<dim3(static_cast<unsigned>(N)), kRankThreads, 0, stream>>>(labels, workspace, counts, plane);
  cc_finish_kernel<<<grid, kThreads, 0, stream>>>(labels, workspace, total, plane);
  return cudaGetLastError();
}
