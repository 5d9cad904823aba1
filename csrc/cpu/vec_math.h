// Row-wise sigmoid in SIMD. std::exp is a scalar libm call (no -ffast-math, so no
// libmvec), which made every sigmoid of split_attention a function call per element: on a
// 2-core CPU that cost more than the whole PyTorch composition (aten's silu is vectorised).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "istd/common.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
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

#if defined(__SSE2__)
// exp(x) of 4 floats, within 2 ulp of std::exp on [-87, 88]: x = n ln2 + r with
// |r| <= ln2/2 (ln2 split in two so n*ln2 is exact), a degree-7 polynomial for exp(r)
// (Cephes' expf coefficients), then 2^n built in the exponent bits. Below -87 it returns
// exp(-87) (~1.6e-38) instead of a denormal or 0, +inf where float's exp overflows, NaN
// for NaN: a sigmoid moves by less than 1e-37 and keeps SiLU(-inf) = NaN, as in PyTorch. Written with SSE2 intrinsics (every
// x86-64 CPU has them): GCC does not vectorise the clamps itself under -ftrapping-math.
ISTD_INLINE __m128 exp_ps(__m128 x) {
  const __m128 nan = _mm_cmpunord_ps(x, x);
  const __m128 xc = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-87.0f)), _mm_set1_ps(88.0f));
  const __m128i n = _mm_cvtps_epi32(_mm_mul_ps(xc, _mm_set1_ps(1.44269504088896341f)));
  const __m128 fn = _mm_cvtepi32_ps(n);
  const __m128 r = _mm_sub_ps(_mm_sub_ps(xc, _mm_mul_ps(fn, _mm_set1_ps(0.693359375f))),
                              _mm_mul_ps(fn, _mm_set1_ps(-2.12194440e-4f)));
  __m128 p = _mm_set1_ps(1.9875691500e-4f);
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
  p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
  p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(_mm_mul_ps(p, r), r), r), _mm_set1_ps(1.0f));
  const __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23));
  const __m128 over = _mm_cmpgt_ps(x, _mm_set1_ps(88.72283935546875f));  // float's exp overflows here
  const __m128 y = _mm_or_ps(_mm_and_ps(over, _mm_set1_ps(std::numeric_limits<float>::infinity())),
                             _mm_andnot_ps(over, _mm_mul_ps(p, scale)));
  return _mm_or_ps(_mm_and_ps(nan, x), _mm_andnot_ps(nan, y));
}

ISTD_INLINE __m128 sigmoid_ps(__m128 x) {
  const __m128 one = _mm_set1_ps(1.0f);
  return _mm_div_ps(one, _mm_add_ps(one, exp_ps(_mm_sub_ps(_mm_setzero_ps(), x))));
}

// The tail runs through the same vector code (zero-padded), so a value's result does not
// depend on where in the row it sits. 8-wide where the translation unit is compiled for AVX2
// (csrc/cpu/avx2_target.h): split_attention's two sigmoids per element were most of its time.
template <>
ISTD_INLINE void sigmoid_row<float>(const float* x, float* out, int64_t n) {
#ifdef ISTD_CPU_AVX2
  const auto step = [](const float* in, float* o) { _mm256_storeu_ps(o, sigmoid256(_mm256_loadu_ps(in))); };
  constexpr int64_t kW = 8;
#else
  const auto step = [](const float* in, float* o) { _mm_storeu_ps(o, sigmoid_ps(_mm_loadu_ps(in))); };
  constexpr int64_t kW = 4;
#endif
  int64_t i = 0;
  for (; i + kW <= n; i += kW) step(x + i, out + i);
  if (i < n) {
    float tail[kW] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    step(tail, tail);
    std::memcpy(out + i, tail, static_cast<size_t>(n - i) * sizeof(float));
  }
}
#endif

// Columns per block of softmax_columns: callers pad their rows to a multiple of it.
#ifdef ISTD_CPU_AVX2
constexpr int64_t kSoftmaxBlock = 8;
#else
constexpr int64_t kSoftmaxBlock = 4;
#endif

// Softmax down the R rows of w (row j at w + j * stride, on entry logit_j / t) for every
// column x < stride, in place: sa_softmax's steps per column (max, exp of the difference,
// sum in branch order, one reciprocal). float runs kSoftmaxBlock columns at a time (exp256
// under AVX2, else exp_ps), so stride must be a multiple of it (the caller pads the rows).
// Scalar, this was a libm exp per output element of split_attention's forward (R per pixel
// and group, shared by D/G = R channels in LCRNet); vectorised, the forward ran 1.0-1.3x
// faster (docs/performance.md).
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
#elif defined(__SSE2__)
  if constexpr (std::is_same<T, float>::value) {
    for (int64_t x = 0; x < stride; x += 4) {
      __m128 e[R];
      __m128 m = e[0] = _mm_loadu_ps(w + x);
      for (int j = 1; j < R; ++j) m = _mm_max_ps(m, e[j] = _mm_loadu_ps(w + j * stride + x));
      __m128 sum = _mm_setzero_ps();
      for (int j = 0; j < R; ++j) sum = _mm_add_ps(sum, e[j] = exp_ps(_mm_sub_ps(e[j], m)));
      const __m128 inv = _mm_div_ps(_mm_set1_ps(1.0f), sum);
      for (int j = 0; j < R; ++j) _mm_storeu_ps(w + j * stride + x, _mm_mul_ps(e[j], inv));
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
