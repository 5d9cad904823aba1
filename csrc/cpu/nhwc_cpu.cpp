// NCHW <-> NHWC kernels (nhwc_cpu.h). Both layouts' data pass through small tiles that stay in
// L1: a separate layout copy (Tensor.contiguous) cost a pass over memory and, at LCRNet's first
// level, more than the channels_last convolution saved.
#include "avx2_target.h"
#include "nhwc_cpu.h"

#ifdef ISTD_CPU_AVX2
#include <immintrin.h>
#endif

namespace istd {
namespace cpu {
namespace {

template <typename T>
void transpose_scalar(const T* src, int64_t ss, int64_t r0, int64_t rows, int64_t c0, int64_t cols, T* dst,
                      int64_t ds) {
  for (int64_t i = r0; i < rows; ++i)
    for (int64_t j = c0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
}

}  // namespace

bool avx2_kernels_run_here() {
#ifdef ISTD_CPU_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

template <typename T>
void transpose_block(const T* src, int64_t ss, int64_t rows, int64_t cols, T* dst, int64_t ds) {
  transpose_scalar(src, ss, 0, rows, 0, cols, dst, ds);
}

#ifdef ISTD_CPU_AVX2
// float: 8 x 8 blocks through registers (unpack, shuffle, lane permute), the edges element by
// element; the scalar loop cost half as much again as the normalisation it follows.
template <>
void transpose_block<float>(const float* src, int64_t ss, int64_t rows, int64_t cols, float* dst, int64_t ds) {
  const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t i0 = 0; i0 < r8; i0 += 8)
    for (int64_t j0 = 0; j0 < c8; j0 += 8) {
      __m256 r[8], t[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i0 + k) * ss + j0);
      for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
      }
      for (int k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
      }
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(dst + (j0 + k) * ds + i0, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps(dst + (j0 + k + 4) * ds + i0, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
      }
    }
  transpose_scalar(src, ss, 0, r8, c8, cols, dst, ds);
  transpose_scalar(src, ss, r8, rows, 0, cols, dst, ds);
}
#endif

template <typename T>
void scaled_residual(const T* x, const T* y, const T* gamma, T* out, int64_t N, int64_t C, int64_t HW, bool y_nhwc) {
  // An NHWC y's tile is first transposed into the L1 buffer; an NCHW y is read in place.
  for_each_pixel_tile<T>(N, C, HW, [&](int64_t n, int64_t p0, int64_t np, T* buf, int64_t P) {
    if (y_nhwc) transpose_block(y + (n * HW + p0) * C, C, np, C, buf, P);
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (n * C + c) * HW + p0;
      const T g = gamma[c], *b = y_nhwc ? buf + c * P : y + off, *xr = x + off;
      T* o = out + off;
      for (int64_t p = 0; p < np; ++p) o[p] = xr[p] + g * b[p];
    }
  });
}

template void transpose_block<float>(const float*, int64_t, int64_t, int64_t, float*, int64_t);
template void transpose_block<double>(const double*, int64_t, int64_t, int64_t, double*, int64_t);
template void scaled_residual<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t,
                                     bool);
template void scaled_residual<double>(const double*, const double*, const double*, double*, int64_t, int64_t,
                                      int64_t, bool);

}  // namespace cpu
}  // namespace istd
