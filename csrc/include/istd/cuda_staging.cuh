// Shared-memory staging of zero-padded windows, the one copy used by the tiled depthwise
// kernels (forward and grad-input) and the fused HLKConv forward. A tile's per-pixel core
// then reads its whole receptive field from shared memory, and the convolution's zero
// padding is already in the window, so out-of-image taps read zeros like the reference.
#pragma once

#include "istd/common.h"
#include "istd/cuda_convert.cuh"
#include "istd/depthwise_core.h"

namespace istd {

// Fills dst[planes][rows][cols] (plane-major, then row-major) with the block's threads:
// element (p, r, q) is load(p, r0 + r, c0 + q) when (r0 + r, c0 + q) lies inside the
// H x W image, zero otherwise. `load(p, row, col)` reads plane p at an in-image position;
// each caller keeps its own addressing (per-plane offsets, strides, channel base), so this
// helper decides only the window's shape and the padding. Callers synchronise afterwards.
template <int kBlockThreads, typename T, typename Load>
__device__ ISTD_INLINE void stage_zero_padded_window(T* dst, int planes, int rows, int cols, int r0, int c0,
                                                     int H, int W, Load load) {
  const int area = rows * cols;
  for (int e = static_cast<int>(threadIdx.x); e < planes * area; e += kBlockThreads) {
    const int p = e / area, ee = e - p * area;
    const int r = ee / cols, q = ee - r * cols;
    const int gh = r0 + r, gw = c0 + q;
    dst[e] = (gh >= 0 && gh < H && gw >= 0 && gw < W) ? load(p, gh, gw) : convert<T>(0.0f);
  }
}

}  // namespace istd
