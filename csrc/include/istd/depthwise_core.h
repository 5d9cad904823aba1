// Per-pixel cores of the depthwise convolution, shared by the CPU implementation and the
// CUDA kernels. Everything here is a header-only template callable from host and device
// code; nothing assumes a memory space, so the same function reads a tensor plane in
// global memory or a tile staged in shared memory. Keeping one copy of the index logic
// means the CPU extension (testable without a GPU) exercises the code the GPU runs.
#pragma once

#include "istd/common.h"

namespace istd {

// Element conversion. The primary template is a plain static_cast; a translation unit
// whose types need something else (cuda_fp16 types when PyTorch's nvcc flags disable
// their implicit conversions) specialises it before instantiating any core.
template <typename To, typename From>
struct Convert {
  ISTD_HD static ISTD_INLINE To apply(From v) { return static_cast<To>(v); }
};

template <typename To, typename From>
ISTD_HD ISTD_INLINE To convert(From v) {
  return Convert<To, From>::apply(v);
}

// A read-only view of one 2-D plane in logical (image) coordinates. The buffer element
// data[0] sits at logical (row0, col0), which lets a tile that starts above or left of
// the image (negative origin) be read with image coordinates. Logical positions outside
// [0, rows) x [0, cols) are zero padding and are never dereferenced. Coordinates (I) and
// element strides (S) have separate types so that a device kernel can keep coordinates
// 32-bit (64-bit division on a GPU is a slow subroutine call) while addressing a plane of
// a tensor with more than 2^31 elements.
template <typename T, typename I, typename S = I>
struct Plane2D {
  const T* data;
  S row_stride, col_stride;
  I row0, col0;
  I rows, cols;

  ISTD_HD ISTD_INLINE const T* row_ptr(I r) const { return data + static_cast<S>(r - row0) * row_stride; }
  ISTD_HD ISTD_INLINE const T& at_in_row(const T* row, I c) const { return row[static_cast<S>(c - col0) * col_stride]; }
};

// Positions o in [0, n_out) whose input coordinate o * s + off falls inside [0, limit),
// as the half-open range [*lo, *hi). Lets loops skip the padding without testing each
// element, so their bodies stay branch-free.
ISTD_HD ISTD_INLINE void tap_range(int64_t off, int s, int64_t limit, int64_t n_out, int64_t* lo, int64_t* hi) {
  int64_t a = off >= 0 ? 0 : ceil_div(-off, s);
  int64_t b = (limit - 1 - off) < 0 ? 0 : floor_div(limit - 1 - off, s) + 1;
  if (b > n_out) b = n_out;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

// Forward: the tap sum of the output pixel whose top-left tap reads input (ih0, iw0),
// i.e. ih0 = oh * SH - PH, iw0 = ow * SW - PW. Bias is left to the caller.
template <typename T, typename Acc, typename Wt, typename I, typename S>
ISTD_HD ISTD_INLINE Acc dw_fwd_pixel(const Plane2D<T, I, S>& in, const Wt* w, int KH, int KW, int DH, int DW, I ih0,
                                     I iw0) {
  Acc acc = Acc(0);
  for (int i = 0; i < KH; ++i) {
    const I r = ih0 + static_cast<I>(i) * DH;
    if (r < 0 || r >= in.rows) continue;
    const T* row = in.row_ptr(r);
    const Wt* wr = w + i * KW;
    for (int j = 0; j < KW; ++j) {
      const I c = iw0 + static_cast<I>(j) * DW;
      if (c < 0 || c >= in.cols) continue;
      acc += convert<Acc>(in.at_in_row(row, c)) * convert<Acc>(wr[j]);
    }
  }
  return acc;
}

// Grad-input at input pixel (ih, iw), gathered from grad_y (a Plane2D whose logical
// bounds are [0, Ho) x [0, Wo)). Tap (i, j) received this pixel from output
// ((ih + PH - i*DH) / SH, (iw + PW - j*DW) / SW) when both divisions are exact and land
// inside grad_y. The numerator shrinks as the tap index grows, so the first negative one
// ends the loop, which also keeps % away from negative operands.
template <typename T, typename Acc, typename Wt, typename I, typename S>
ISTD_HD ISTD_INLINE Acc dw_bwd_input_pixel(const Plane2D<T, I, S>& gy, const Wt* w, int KH, int KW, int SH, int SW,
                                           int PH, int PW, int DH, int DW, I ih, I iw) {
  Acc acc = Acc(0);
  for (int i = 0; i < KH; ++i) {
    const I t = ih + PH - static_cast<I>(i) * DH;
    if (t < 0) break;
    if (SH != 1 && t % SH != 0) continue;
    const I oh = SH == 1 ? t : t / SH;
    if (oh >= gy.rows) continue;
    const T* row = gy.row_ptr(oh);
    const Wt* wr = w + i * KW;
    for (int j = 0; j < KW; ++j) {
      const I u = iw + PW - static_cast<I>(j) * DW;
      if (u < 0) break;
      if (SW != 1 && u % SW != 0) continue;
      const I ow = SW == 1 ? u : u / SW;
      if (ow >= gy.cols) continue;
      acc += convert<Acc>(gy.at_in_row(row, ow)) * convert<Acc>(wr[j]);
    }
  }
  return acc;
}

// Grad-weight, per pixel: adds g * x(ih, iw0 + k*DW) to acc[k] for the first nj of G
// horizontally adjacent taps of one kernel row. The caller owns the reduction order.
template <int G, typename T, typename Acc, typename I, typename S>
ISTD_HD ISTD_INLINE void dw_wgrad_pixel_taps(const Plane2D<T, I, S>& x, Acc g, I ih, I iw0, int DW, int nj,
                                             Acc (&acc)[G]) {
  if (ih < 0 || ih >= x.rows) return;
  const T* row = x.row_ptr(ih);
#pragma unroll
  for (int k = 0; k < G; ++k) {
    const I c = iw0 + static_cast<I>(k) * DW;
    if (k < nj && c >= 0 && c < x.cols) acc[k] += g * convert<Acc>(x.at_in_row(row, c));
  }
}

// Grad-weight, per row: the contribution of horizontal tap j of one kernel row over a
// whole output row, sum over ow of gy_row[ow] * x_row[ow*SW - PW + j*DW] (x_row already
// selected for the tap's input row). Partial sums in kLanes independent accumulators,
// combined in a fixed tree, so the result does not depend on how a compiler vectorises
// and the loop can use SIMD without -ffast-math.
template <typename T, typename Acc>
ISTD_HD ISTD_INLINE Acc dw_wgrad_tap_row(const T* gy_row, int64_t gy_cs, const T* x_row, int64_t x_cs, int64_t Wo,
                                         int64_t W, int SW, int PW, int DW, int j) {
  constexpr int kLanes = 8;
  int64_t lo, hi;
  tap_range(static_cast<int64_t>(j) * DW - PW, SW, W, Wo, &lo, &hi);
  const int64_t n = hi - lo;
  if (n <= 0) return Acc(0);
  const T* g = gy_row + lo * gy_cs;
  const T* xv = x_row + (lo * SW - PW + static_cast<int64_t>(j) * DW) * x_cs;
  const int64_t xstep = static_cast<int64_t>(SW) * x_cs;
  Acc s[kLanes];
  for (int l = 0; l < kLanes; ++l) s[l] = Acc(0);
  int64_t k = 0;
  if (gy_cs == 1 && xstep == 1) {
    for (; k + kLanes <= n; k += kLanes)
      for (int l = 0; l < kLanes; ++l) s[l] += convert<Acc>(g[k + l]) * convert<Acc>(xv[k + l]);
  } else {
    for (; k + kLanes <= n; k += kLanes)
      for (int l = 0; l < kLanes; ++l)
        s[l] += convert<Acc>(g[(k + l) * gy_cs]) * convert<Acc>(xv[(k + l) * xstep]);
  }
  for (int l = 0; k < n; ++k, ++l) s[l] += convert<Acc>(g[k * gy_cs]) * convert<Acc>(xv[k * xstep]);
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace istd
