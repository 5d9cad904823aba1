// 8-wide exp, sigmoid and SiLU for x86-64 translation units compiled for AVX2 + FMA: include
// it only after avx2_target.h (`#pragma GCC target("avx2,fma")` does not define __AVX2__ in
// g++; hence the x86-64 test). SSE2's 4 lanes made a fused norm + SiLU slower than ATen's
// silu_, and the cpp split_attention 1.4-1.6x slower.
#pragma once

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "istd/common.h"

namespace istd {
namespace cpu {

// exp(x) of 8 floats, within 2 ulp of std::exp on [-87, 88]: x = n ln2 + r with |r| <= ln2/2
// (ln2 split in two so n*ln2 is exact), a degree-7 polynomial for exp(r) (Cephes' expf
// coefficients), then 2^n built in the exponent bits. Below -87 it returns exp(-87) (~1.6e-38)
// instead of a denormal or 0, +inf where float's exp overflows, NaN for NaN: a sigmoid moves
// by less than 1e-37 and SiLU(-inf) stays NaN, as in PyTorch. Written with intrinsics: GCC
// does not vectorise the clamps itself under -ftrapping-math.
ISTD_INLINE __m256 exp256(__m256 x) {
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256i n = _mm256_cvtps_epi32(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)));
  const __m256 fn = _mm256_cvtepi32_ps(n);
  const __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(-2.12194440e-4f),
                                    _mm256_fnmadd_ps(fn, _mm256_set1_ps(0.693359375f), xc));
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
  const __m256 over = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
  const __m256 y = _mm256_blendv_ps(_mm256_mul_ps(p, scale), _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                                    over);
  return _mm256_blendv_ps(y, x, nan);
}

// 1 / (1 + exp(-x)) of 8 floats.
ISTD_INLINE __m256 sigmoid256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// x * sigmoid(x) of 8 floats (SiLU(-inf) = NaN, as in PyTorch: -inf * 0).
ISTD_INLINE __m256 silu256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

}  // namespace cpu
}  // namespace istd
#endif
