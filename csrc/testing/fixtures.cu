// Kernels that exist only to prove the emulation catches what it claims to: a missing
// barrier, an out-of-bounds shared index, barriers that hang, bad warp masks, launches
// beyond sm_86's limits, and the warp intrinsics' results. Written as CUDA and built
// through the same source rewrite as csrc/cuda (never compiled by nvcc or shipped).
#include <cuda_runtime.h>

#include <cstring>
#include <string>

namespace {

constexpr int kThreads = 64;

// Each thread stages its value, then reads its neighbour's: needs a barrier in between.
template <bool kBarrier>
__global__ void __launch_bounds__(kThreads) neighbour_kernel(int* out) {
  __shared__ int s[kThreads];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) * 3;
  if (kBarrier) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % kThreads];
}

// Writes one past the end of its shared array.
__global__ void __launch_bounds__(kThreads) oob_kernel(int* out) {
  __shared__ int s[kThreads];
  s[threadIdx.x + 1] = 1;
  __syncthreads();
  out[threadIdx.x] = threadIdx.x + 1 < kThreads ? s[threadIdx.x + 1] : 0;
}

// Reads shared memory nobody wrote.
__global__ void __launch_bounds__(kThreads) uninit_kernel(int* out) {
  __shared__ int s[kThreads];
  out[threadIdx.x] = s[threadIdx.x];
}

// Threads 32.. return early while the others wait at the barrier.
__global__ void __launch_bounds__(kThreads) exit_before_barrier_kernel(int* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

// The two halves of the block wait at different barriers.
__global__ void __launch_bounds__(kThreads) split_barrier_kernel(int* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// A full-warp mask where only half the warp takes part.
__global__ void __launch_bounds__(kThreads) half_warp_shfl_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if ((threadIdx.x & 31) < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

// A mask that leaves out the calling lane.
__global__ void __launch_bounds__(kThreads) foreign_mask_kernel(int* out) {
  out[threadIdx.x] = static_cast<int>(__ballot_sync(0x1u, 1));
}

// Results of the warp intrinsics on a known pattern: 8 ints per thread.
__global__ void __launch_bounds__(kThreads) warp_ops_kernel(int* out) {
  const unsigned lane = threadIdx.x & 31;
  const unsigned key = lane / 5;
  int* o = out + 8 * threadIdx.x;
  o[0] = __shfl_sync(0xffffffffu, static_cast<int>(lane * 10), 7);
  o[1] = __shfl_up_sync(0xffffffffu, static_cast<int>(lane), 3);
  o[2] = __shfl_down_sync(0xffffffffu, static_cast<int>(lane), 3);
  o[3] = __shfl_xor_sync(0xffffffffu, static_cast<int>(lane), 5);
  o[4] = static_cast<int>(__ballot_sync(0xffffffffu, lane % 3 == 0));
  o[5] = static_cast<int>(__match_any_sync(0xffffffffu, key));
  const unsigned group = __match_any_sync(0xffffffffu, key);
  o[6] = static_cast<int>(__reduce_add_sync(group, lane));
  o[7] = static_cast<int>(lane % 2 == 0 ? __activemask() : 0u);
}

// Dynamic shared memory of `bytes`, every byte written then read back.
__global__ void __launch_bounds__(kThreads) dynamic_smem_kernel(int* out, int bytes) {
  extern __shared__ __align__(16) unsigned char smem[];
  for (int i = threadIdx.x; i < bytes; i += kThreads) smem[i] = static_cast<unsigned char>(i);
  __syncthreads();
  int sum = 0;
  for (int i = threadIdx.x; i < bytes; i += kThreads) sum += smem[i];
  out[threadIdx.x] = sum;
}

int launch_fixture(const std::string& name, int* out, int n) {
  if (n < 8 * kThreads) return cudaErrorInvalidValue;
  if (name == "missing_barrier") neighbour_kernel<false><<<1, kThreads>>>(out);
  else if (name == "with_barrier") neighbour_kernel<true><<<1, kThreads>>>(out);
  else if (name == "oob_shared") oob_kernel<<<1, kThreads>>>(out);
  else if (name == "uninit_shared") uninit_kernel<<<1, kThreads>>>(out);
  else if (name == "exit_before_barrier") exit_before_barrier_kernel<<<1, kThreads>>>(out);
  else if (name == "split_barrier") split_barrier_kernel<<<1, kThreads>>>(out);
  else if (name == "half_warp_shfl") half_warp_shfl_kernel<<<1, kThreads>>>(out);
  else if (name == "foreign_mask") foreign_mask_kernel<<<1, kThreads>>>(out);
  else if (name == "warp_ops") warp_ops_kernel<<<1, kThreads>>>(out);
  else if (name == "too_many_threads") neighbour_kernel<true><<<1, 1025>>>(out);
  else if (name == "launch_bounds") neighbour_kernel<true><<<1, 128>>>(out);
  else if (name == "grid_y") neighbour_kernel<true><<<dim3(1, 65536), kThreads>>>(out);
  else if (name == "smem_48k_plus_1") dynamic_smem_kernel<<<1, kThreads, 48 * 1024 + 1>>>(out, 16);
  else if (name == "smem_99k_optin") {
    const cudaError_t err =
        cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 99 * 1024);
    if (err != cudaSuccess) return err;
    dynamic_smem_kernel<<<1, kThreads, 99 * 1024>>>(out, 99 * 1024);
  } else if (name == "smem_optin_too_big") {
    return cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 99 * 1024 + 1);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

int istd_emu_fixture(const char* name, int* out, int n) { return launch_fixture(name, out, n); }
