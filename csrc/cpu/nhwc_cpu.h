// Kernels between the NCHW ([N, C, HW]) and NHWC ([N, HW, C]) layouts on raw pointers (no
// PyTorch types), for float and double. LCRNet's 3x3 convolutions run channels_last on the CPU
// (oneDNN measured 1.25-1.65x faster in it) inside blocks whose other ops keep NCHW; these
// kernels move between the two inside a pass that runs anyway (docs/performance.md).
#pragma once

#include <cstdint>

namespace istd {
namespace cpu {

// Whether this CPU runs the kernels compiled for AVX2 + FMA (this file's and norm_cpu's); on
// other architectures they are portable C++ and this is true.
bool avx2_kernels_run_here();

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols.
template <typename T>
void transpose_block(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst, int64_t dst_stride);

// out = x + gamma[c] * y per element: x and out NCHW, y NHWC when y_nhwc (a LayerScaled
// residual whose branch ends in a channels_last convolution), else NCHW; gamma [C]. out may be
// x, or y when y is NCHW (each element is read before its position is written).
template <typename T>
void scaled_residual(const T* x, const T* y, const T* gamma, T* out, int64_t N, int64_t C, int64_t HW, bool y_nhwc);

}  // namespace cpu
}  // namespace istd
