// Kernels between the NCHW ([N, C, HW]) and NHWC ([N, HW, C]) layouts on raw pointers (no
// PyTorch types), for float and double. LCRNet's 3x3 convolutions run channels_last on the CPU
// (oneDNN measured 1.25-1.65x faster in it) inside blocks whose other ops keep NCHW; these
// kernels move between the two inside a pass that runs anyway (docs/performance.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace istd {
namespace cpu {

// Elements per task of the element-wise CPU kernels (the group norm's normalisation, the
// residual): a tile and the buffer of its transposition stay in L1.
constexpr int64_t kTileElements = 4096;
// Below this many elements those kernels run on one thread: waking the OpenMP team cost more
// than the work at LCRNet's deepest level (a 64 x 32 x 32 norm measured 2x slower than ATen in
// parallel).
constexpr int64_t kParallelMin = int64_t(1) << 17;

// body(n, p0, np, buf, P) for every tile of np <= P pixels starting at pixel p0 of image n < N
// (P = max(8, kTileElements / C)), spread over the OpenMP threads from kParallelMin elements on;
// buf is the calling thread's own buffer of C * P elements, for the tile's transposition.
template <typename T, typename Body>
void for_each_pixel_tile(int64_t N, int64_t C, int64_t HW, Body&& body) {
  const int64_t P = std::max<int64_t>(8, kTileElements / std::max<int64_t>(C, 1)), blocks = (HW + P - 1) / P;
#pragma omp parallel if (N * C * HW >= kParallelMin)
  {
    std::vector<T> buf(static_cast<size_t>(C * P));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < N * blocks; ++t) {
      const int64_t p0 = (t % blocks) * P;
      body(t / blocks, p0, std::min(P, HW - p0), buf.data(), P);
    }
  }
}

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
