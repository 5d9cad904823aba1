// Per-pixel cores of the fused HLKConv forward (depthwise k1 -> dilated depthwise k2 ->
// split grouped 1x1), shared by the CPU implementation and the CUDA kernel. As with
// depthwise_core.h, nothing here assumes a memory space or a value type beyond +=, * and
// construction from 0: the GPU instantiates the cores with float/double over shared-memory
// tiles, the CPU with a small SIMD-friendly lane type over thread-local buffers, and both
// run the same index logic and summation order.
#pragma once

#include "istd/common.h"
#include "istd/depthwise_core.h"

namespace istd {

// Shape of one HLKConv forward. x is [N, C, H, W], y is [N, Cout, H, W]; channels and
// outputs are split into `groups` equal groups (Cg = C / groups, Og = Cout / groups).
// k1 and k2 are odd, so both depthwise steps are "same" convolutions.
struct HlkGeometry {
  int64_t N, C, H, W, Cout, groups;
  int k1, k2, dilation;
};

// Padding of the first depthwise step and of the (dilated) second one. Their sum is the
// halo of x an output pixel depends on (the same rule as hlk_halos in istd_kernels/layout.py,
// which the Triton tiles and the op's routing use).
ISTD_HD ISTD_INLINE int hlk_pad1(const HlkGeometry& g) { return g.k1 / 2; }
ISTD_HD ISTD_INLINE int64_t hlk_pad2(const HlkGeometry& g) { return static_cast<int64_t>(g.dilation) * (g.k2 / 2); }

// a(r, c) = b0 + sum_{i,j} w0[i, j] * x(r - k1/2 + i, c - k1/2 + j), for a pixel inside
// the image. (r, c) are image coordinates; x may be a tile (see Plane2D).
template <typename T, typename Acc, typename Wt, typename I, typename S>
ISTD_HD ISTD_INLINE Acc hlk_a_pixel(const Plane2D<T, I, S>& x, const Wt* w0, Acc b0, int k1, I r, I c) {
  const I p = static_cast<I>(k1 / 2);
  return dw_fwd_pixel<T, Acc, Wt, I, S>(x, w0, k1, k1, 1, 1, r - p, c - p) + b0;
}

// d(r, c) = b1 + sum_{i,j} w1[i, j] * a(r - P2 + i*D, c - P2 + j*D). The plane's logical
// bounds must be the image: a is zero outside it (it is the zero padding of this conv),
// which Plane2D provides by never reading there.
template <typename A, typename Acc, typename Wt, typename I, typename S>
ISTD_HD ISTD_INLINE Acc hlk_d_pixel(const Plane2D<A, I, S>& a, const Wt* w1, Acc b1, int k2, int dil, I r, I c) {
  const I p = static_cast<I>(dil) * static_cast<I>(k2 / 2);
  return dw_fwd_pixel<A, Acc, Wt, I, S>(a, w1, k2, k2, dil, dil, r - p, c - p) + b1;
}

// d(r, c) straight from x, recomputing a at every tap of w1. k1*k1 times the work of
// hlk_d_pixel, but needs no buffer of a: the fallback when no tile of a fits on chip.
// Sums in the same order as hlk_d_pixel (taps row-major, out-of-image taps skipped).
template <typename T, typename Acc, typename Wt, typename I, typename S>
ISTD_HD ISTD_INLINE Acc hlk_d_pixel_direct(const Plane2D<T, I, S>& x, const Wt* w0, Acc b0, int k1, const Wt* w1,
                                           Acc b1, int k2, int dil, I r, I c) {
  const I p = static_cast<I>(dil) * static_cast<I>(k2 / 2);
  Acc acc = Acc(0);
  for (int i = 0; i < k2; ++i) {
    const I ar = r - p + static_cast<I>(i) * dil;
    if (ar < 0 || ar >= x.rows) continue;
    for (int j = 0; j < k2; ++j) {
      const I ac = c - p + static_cast<I>(j) * dil;
      if (ac < 0 || ac >= x.cols) continue;
      acc += hlk_a_pixel<T, Acc, Wt, I, S>(x, w0, b0, k1, ar, ac) * convert<Acc>(w1[i * k2 + j]);
    }
  }
  return acc + b1;
}

// The split pointwise step over n channels of one group at one pixel:
//   acc + sum_{c<n} wa[c*ws] * a[c*as] + sum_{c<n} wd[c*ws] * d[c*ds].
// The caller seeds acc with the output's bias (or a running partial sum when the channels
// are processed in chunks). On the GPU Acc is a scalar and wa/wd a row of the pointwise
// weight; on the CPU Acc holds several outputs at once and wa/wd point into a transposed
// weight whose elements are the matching lanes, while a/d stay scalars (broadcast).
template <typename Acc, typename Wt, typename V, typename S>
ISTD_HD ISTD_INLINE Acc hlk_pw_pixel(Acc acc, const V* a, S as, const V* d, S ds, const Wt* wa, const Wt* wd, S ws,
                                     int n) {
  for (int c = 0; c < n; ++c) acc += convert<Acc>(wa[c * ws]) * convert<Acc>(a[c * as]);
  for (int c = 0; c < n; ++c) acc += convert<Acc>(wd[c * ws]) * convert<Acc>(d[c * ds]);
  return acc;
}

}  // namespace istd
