// Row-wise sigmoid and column-wise softmax of the cpp split_attention, 8 floats at a time
// where the translation unit is compiled for AVX2 (csrc/cpu/avx2_target.h; exp256 in
// vec_math_avx2.h), scalar otherwise. std::exp is a scalar libm call (no -ffast-math, so no
// libmvec), which made every sigmoid of split_attention a function call per element: on a
// 2-core CPU that cost more than the whole PyTorch composition (aten's silu is vectorised).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "istd/common.h"

#ifdef ISTD_CPU_AVX2
#include "vec_math_avx2.h"
#endif

namespace istd {
namespace cpu {

// double keeps libm: the float64 path is for checking, not speed.
template <typename T>
ISTD_INLINE void sigmoid_row(const T* x, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = T(1) / (T(1) + std::exp(-x[i]));
}

#ifdef ISTD_CPU_AVX2
// The tail runs through the same 8-wide code (zero-padded), so a value's result does not
// depend on where in the row it sits; split_attention's two sigmoids per element were most of
// its time.
template <>
ISTD_INLINE void sigmoid_row<float>(const float* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, sigmoid256(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float tail[8] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm256_storeu_ps(tail, sigmoid256(_mm256_loadu_ps(tail)));
    std::memcpy(out + i, tail, static_cast<size_t>(n - i) * sizeof(float));
  }
}
#endif

// Columns per block of softmax_columns (the AVX2 vector's width; the scalar loop takes any):
// callers pad their rows to a multiple of it.
constexpr int64_t kSoftmaxBlock = 8;

// Softmax down the R rows of w (row j at w + j * stride, on entry logit_j / t) for every
// column x < stride, in place: sa_softmax's steps per column (max, exp of the difference,
// sum in branch order, one reciprocal). Under AVX2, float runs 8 columns at a time, so stride
// must be a multiple of kSoftmaxBlock (the caller pads the rows). Scalar, this was a libm exp
// per output element of split_attention's forward (R per pixel and group, shared by D/G = R
// channels in LCRNet); vectorised, the forward ran 1.0-1.3x faster with 4-wide SSE2 and
// 1.4-1.6x faster again 8-wide (docs/performance.md).
template <int R, typename T>
ISTD_INLINE void softmax_columns(T* w, int64_t stride) {
#ifdef ISTD_CPU_AVX2
  if constexpr (std::is_same<T, float>::value) {
    for (int64_t x = 0; x < stride; x += 8) {
      __m256 e[R];
      __m256 m = e[0] = _mm256_loadu_ps(w + x);
      for (int j = 1; j < R; ++j) m = _mm256_max_ps(m, e[j] = _mm256_loadu_ps(w + j * stride + x));
      __m256 sum = _mm256_setzero_ps();
      for (int j = 0; j < R; ++j) sum = _mm256_add_ps(sum, e[j] = exp256(_mm256_sub_ps(e[j], m)));
      const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
      for (int j = 0; j < R; ++j) _mm256_storeu_ps(w + j * stride + x, _mm256_mul_ps(e[j], inv));
    }
    return;
  }
#endif
  for (int64_t x = 0; x < stride; ++x) {
    T m = w[x];
    for (int j = 1; j < R; ++j) m = w[j * stride + x] > m ? w[j * stride + x] : m;
    T sum = T(0);
    for (int j = 0; j < R; ++j) sum += (w[j * stride + x] = std::exp(w[j * stride + x] - m));
    const T inv = T(1) / sum;
    for (int j = 0; j < R; ++j) w[j * stride + x] *= inv;
  }
}

}  // namespace cpu
}  // namespace istd
