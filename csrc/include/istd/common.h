// Shared definitions for the istd kernels: plain structs and macros that compile with
// g++ alone (the CPU extension) as well as with nvcc (the CUDA kernels).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define ISTD_HD __host__ __device__
#else
#define ISTD_HD
#endif

#if defined(__CUDACC__)
#define ISTD_INLINE __forceinline__
#elif defined(__GNUC__)
#define ISTD_INLINE inline __attribute__((always_inline))
#else
#define ISTD_INLINE inline
#endif

namespace istd {

// Element strides of a 4-D tensor. Kernels address memory through these rather than
// assuming a layout, so channels_last, sliced views and stride-0 (expanded) tensors are
// consumed in place.
struct Strides4 {
  int64_t n, c, h, w;
};

// Shape and hyper-parameters of one depthwise convolution. Sizes that multiply into
// element offsets are 64-bit; kernel hyper-parameters are small and stay int.
struct DwGeometry {
  int64_t N, C, H, W, Ho, Wo;
  int KH, KW, SH, SW, PH, PW, DH, DW;
};

// Element type of the tensors handed to a launcher. The binding maps torch dtypes here so
// that the CUDA translation unit never needs PyTorch headers.
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Floor division that is correct for a negative numerator (C++ truncates toward zero).
// The divisor must be positive.
ISTD_HD ISTD_INLINE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

ISTD_HD ISTD_INLINE int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Output extent of a convolution along one axis, clamped at zero so that inputs smaller
// than the dilated kernel produce an empty result instead of a negative size.
ISTD_HD ISTD_INLINE int64_t conv_out_size(int64_t in, int k, int s, int p, int d) {
  const int64_t span = in + 2 * static_cast<int64_t>(p) - static_cast<int64_t>(d) * (k - 1) - 1;
  const int64_t out = floor_div(span, s) + 1;
  return out > 0 ? out : 0;
}

}  // namespace istd
