// Device-side vocabulary of the host emulation: what a kernel translation unit of
// csrc/cuda sees in place of nvcc's built-ins. Every thread of a block is a fiber of the
// scheduler (csrc/testing/emu/scheduler.cpp); barriers, warp intrinsics and atomics are
// its switch points. Blocks run one at a time.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_runtime_api.h"
#include "istd_emu/half_types.h"

// The emulated device is an sm_86 part, so that the sm_80+ paths (redux.sync) are the
// ones run; a build may pass -D__CUDA_ARCH__=700 to run the older fallbacks instead.
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 860
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))

// Accesses the race checker must not see as plain memory traffic (atomics, the
// scheduler's own state read through inline helpers).
#define ISTD_EMU_UNCHECKED __attribute__((no_sanitize("thread"), noinline))

namespace istd_emu {

// Indices of the running fiber; the scheduler rewrites them at every switch.
extern uint3 cur_thread_idx, cur_block_idx;
extern dim3 cur_block_dim, cur_grid_dim;

enum class WarpOp : int {
  kShfl, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll, kMatchAny,
  kReduceAddU, kReduceMinU, kReduceMaxU, kReduceMinS, kReduceMaxS, kSyncWarp, kActiveMask
};

// One warp-synchronous operation of the calling lane: it waits until every lane of `mask`
// has reached an operation of the same kind and mask, then all of them get their result.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line);
void syncthreads(const char* file, int line);
// Static and dynamic shared memory of the running block.
void* static_shared(int id, size_t bytes, size_t align, const char* name);
void* dynamic_shared();
// Called by every thread at kernel entry (inserted by the build's source rewrite).
void kernel_entry(const char* name, const char* signature, long long max_threads);
// Atomics: recorded for the race checker, then a possible switch to another fiber so
// that lock-free code sees interleavings.
void atomic_access(const void* p, size_t bytes);
void atomic_done();

template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp value must fit 64 bits");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

template <typename T>
T& static_shared_ref(int id, const char* name) {
  return *static_cast<T*>(static_shared(id, sizeof(T), alignof(T), name));
}

// Kernel launch: `k<<<grid, block, smem, stream>>>(args)` is rewritten to
// `launch("k", k, grid, block, smem, stream)(args)`.
struct LaunchConfig {
  const char* name;
  const void* key;
  dim3 grid, block;
  size_t smem;
};
struct BlockBody {
  virtual void run() = 0;
  virtual ~BlockBody() = default;
};
void run_grid(const LaunchConfig& cfg, BlockBody& body);

template <typename... P>
struct Launcher {
  void (*kernel)(P...);
  LaunchConfig cfg;
  template <typename... A>
  void operator()(A&&... a) const {
    struct Body : BlockBody {
      void (*k)(P...);
      std::tuple<std::decay_t<P>...> args;
      Body(void (*kk)(P...), A&&... aa) : k(kk), args(std::forward<A>(aa)...) {}
      void run() override { std::apply(k, args); }
    } body(kernel, std::forward<A>(a)...);
    run_grid(cfg, body);
  }
};

template <typename... P>
Launcher<P...> launch(const char* name, void (*k)(P...), dim3 grid, dim3 block, size_t smem = 0,
                      cudaStream_t = nullptr) {
  return Launcher<P...>{k, LaunchConfig{name, reinterpret_cast<const void*>(k), grid, block, smem}};
}

}  // namespace istd_emu

#define threadIdx (::istd_emu::cur_thread_idx)
#define blockIdx (::istd_emu::cur_block_idx)
#define blockDim (::istd_emu::cur_block_dim)
#define gridDim (::istd_emu::cur_grid_dim)
#define warpSize 32

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::istd_emu::syncthreads(file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::istd_emu::warp_collective(::istd_emu::WarpOp::kSyncWarp, mask, 0, 0, 32, file, line);
}

#define ISTD_EMU_WARP(op, mask, v, arg, width) \
  ::istd_emu::warp_collective(::istd_emu::WarpOp::op, mask, v, arg, width, file, line)

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  return ::istd_emu::from_bits<T>(ISTD_EMU_WARP(kShfl, mask, ::istd_emu::to_bits(v), src, width));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  return ::istd_emu::from_bits<T>(ISTD_EMU_WARP(kShflUp, mask, ::istd_emu::to_bits(v), delta, width));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  return ::istd_emu::from_bits<T>(ISTD_EMU_WARP(kShflDown, mask, ::istd_emu::to_bits(v), delta, width));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  return ::istd_emu::from_bits<T>(ISTD_EMU_WARP(kShflXor, mask, ::istd_emu::to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kBallot, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(ISTD_EMU_WARP(kAny, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(ISTD_EMU_WARP(kAll, mask, pred != 0, 0, 32));
}
template <typename T>
unsigned __match_any_sync(unsigned mask, T key, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kMatchAny, mask, ::istd_emu::to_bits(key), 0, 32));
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v, const char* file = __builtin_FILE(),
                                  int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kReduceAddU, mask, v, 0, 32));
}
inline int __reduce_add_sync(unsigned mask, int v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(ISTD_EMU_WARP(kReduceAddU, mask, static_cast<unsigned>(v), 0, 32));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v, const char* file = __builtin_FILE(),
                                  int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kReduceMinU, mask, v, 0, 32));
}
inline int __reduce_min_sync(unsigned mask, int v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(ISTD_EMU_WARP(kReduceMinS, mask, static_cast<uint32_t>(v), 0, 32));
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v, const char* file = __builtin_FILE(),
                                  int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kReduceMaxU, mask, v, 0, 32));
}
inline int __reduce_max_sync(unsigned mask, int v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<int>(ISTD_EMU_WARP(kReduceMaxS, mask, static_cast<uint32_t>(v), 0, 32));
}
inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return static_cast<unsigned>(ISTD_EMU_WARP(kActiveMask, 0u, 0, 0, 32));
}
#undef ISTD_EMU_WARP

inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(unsigned v) { return v == 0 ? 32 : __builtin_clz(v); }
inline int __clz(int v) { return __clz(static_cast<unsigned>(v)); }
template <typename T>
T __ldcg(const T* p) {
  return *p;
}
template <typename T>
T __ldg(const T* p) {
  return *p;
}

// The device's min/max overloads for integers (float ones come from <cmath>'s fminf).
template <typename T, typename = std::enable_if_t<std::is_integral<T>::value>>
T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T, typename = std::enable_if_t<std::is_integral<T>::value>>
T max(T a, T b) {
  return a < b ? b : a;
}

// Atomics. The fibers of a block share one OS thread, so a read-modify-write is atomic by
// construction; what is emulated is the visibility to the checker and the interleaving.
#define ISTD_EMU_ATOMIC(name, expr)                    \
  template <typename T>                                \
  ISTD_EMU_UNCHECKED T name(T* p, T v) {               \
    ::istd_emu::atomic_access(p, sizeof(T));           \
    const T old = *p;                                  \
    *p = (expr);                                       \
    ::istd_emu::atomic_done();                         \
    return old;                                        \
  }
ISTD_EMU_ATOMIC(atomicAdd, old + v)
ISTD_EMU_ATOMIC(atomicSub, old - v)
ISTD_EMU_ATOMIC(atomicMin, v < old ? v : old)
ISTD_EMU_ATOMIC(atomicMax, old < v ? v : old)
ISTD_EMU_ATOMIC(atomicExch, v)
ISTD_EMU_ATOMIC(atomicOr, old | v)
ISTD_EMU_ATOMIC(atomicAnd, old & v)
#undef ISTD_EMU_ATOMIC

template <typename T>
ISTD_EMU_UNCHECKED T atomicCAS(T* p, T compare, T v) {
  ::istd_emu::atomic_access(p, sizeof(T));
  const T old = *p;
  if (old == compare) *p = v;
  ::istd_emu::atomic_done();
  return old;
}

// Inserted by the source rewrite at the top of every __global__ body.
#define ISTD_EMU_KERNEL_ENTRY(name, max_threads) \
  ::istd_emu::kernel_entry(#name, __PRETTY_FUNCTION__, static_cast<long long>(max_threads))
