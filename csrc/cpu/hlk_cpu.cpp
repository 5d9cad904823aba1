// CPU fused HLKConv forward. Work is split by (n, group, strip of output rows); each task
// stages the strip's x window (plus halo) channel-interleaved in a thread-local buffer,
// computes a on the strip extended by dil*(k2/2) rows, d on the strip, then the split
// pointwise, and writes y once. All per-pixel arithmetic goes through the cores of
// istd/hlk_core.h, the same ones the CUDA kernel runs, instantiated with a lane type that
// carries L channels (depthwise steps) or L outputs (pointwise step) at once, so the
// compiler turns every core operation into SIMD without -ffast-math.
#include "hlk_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <vector>

#include "istd/hlk_core.h"

namespace istd {
namespace cpu {
#define ISTD_HLK_ISA baseline
#include "hlk_cpu_impl.h"
#undef ISTD_HLK_ISA

template <typename T>
void hlk_forward(const T* x, Strides4 xs, const T* w0, const T* b0, const T* w1, const T* b1, const T* w_pw,
                 const T* b_pw, T* y, Strides4 ys, const HlkGeometry& g) {
#if ISTD_HLK_AVX2
  if (__builtin_cpu_supports("avx2")) return avx2::hlk_forward_isa(x, xs, w0, b0, w1, b1, w_pw, b_pw, y, ys, g);
#endif
  baseline::hlk_forward_isa(x, xs, w0, b0, w1, b1, w_pw, b_pw, y, ys, g);
}

#define ISTD_INSTANTIATE_HLK(T)                                                                                   \
  template void hlk_forward<T>(const T*, Strides4, const T*, const T*, const T*, const T*, const T*, const T*, T*, \
                               Strides4, const HlkGeometry&);
ISTD_INSTANTIATE_HLK(float)
ISTD_INSTANTIATE_HLK(double)
#undef ISTD_INSTANTIATE_HLK

}  // namespace cpu
}  // namespace istd
