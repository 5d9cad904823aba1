// CPU depthwise convolution. Forward and grad-input give each (n, c) plane to one OpenMP
// thread. Inside a plane, rows and columns whose taps all land inside the image (the
// interior) are computed a whole output row at a time, tap by tap, as unit-stride
// multiply-adds the compiler vectorises; only the border pixels go through the
// bounds-checked per-pixel cores of depthwise_core.h.
#include "depthwise_cpu.h"

#include <algorithm>
#include <vector>

#include "istd/depthwise_core.h"

namespace istd {
namespace cpu {
namespace {

// Copies a strided plane (or row, with rows == 1) into buf so that the row loops read
// unit-stride memory: channels_last and expanded tensors otherwise defeat vectorisation.
template <typename T>
const T* pack(const T* src, int64_t rows, int64_t cols, int64_t rs, int64_t cs, std::vector<T>& buf) {
  buf.resize(static_cast<size_t>(rows * cols));
  T* dst = buf.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = src[r * rs + c * cs];
  return dst;
}

// Sum of n unit-stride values in fixed-shape partial sums (see dw_wgrad_tap_row).
template <typename T>
T row_sum(const T* v, int64_t n) {
  constexpr int kLanes = 8;
  T s[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += v[k + l];
  for (int l = 0; k < n; ++k, ++l) s[l] += v[k];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// Half-open interval [lo, hi) of output positions whose every tap is inside the input
// along one axis (forward direction). Empty intervals come back as lo == hi.
void fwd_interior(int64_t in, int64_t out, int k, int s, int p, int d, int64_t* lo, int64_t* hi) {
  int64_t unused;
  tap_range(-static_cast<int64_t>(p), s, in, out, lo, &unused);
  tap_range(static_cast<int64_t>(d) * (k - 1) - p, s, in, out, &unused, hi);
  if (*hi < *lo) *hi = *lo;
}

// Input positions whose every tap maps inside grad_y (up to the stride's divisibility),
// so that the grad-input row loops need no bounds tests.
void bwd_interior(int64_t in, int64_t out, int k, int s, int p, int d, int64_t* lo, int64_t* hi) {
  *lo = std::min<int64_t>(in, std::max<int64_t>(0, static_cast<int64_t>(d) * (k - 1) - p));
  *hi = out > 0 ? std::min<int64_t>(in, (out - 1) * s - p + 1) : 0;
  if (*hi < *lo) *hi = *lo;
}

}  // namespace

template <typename T>
void dw_forward(const T* x, Strides4 xs, const T* w, const T* bias, T* y, Strides4 ys, const DwGeometry& g) {
  using Acc = T;
  const int64_t N = g.N, C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo;
  const int KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW, DH = g.DH, DW = g.DW;
  const int64_t planes = N * C;
  if (planes == 0 || Ho == 0 || Wo == 0) return;
  int64_t oh_lo, oh_hi, ow_lo, ow_hi;
  fwd_interior(H, Ho, KH, SH, PH, DH, &oh_lo, &oh_hi);
  fwd_interior(W, Wo, KW, SW, PW, DW, &ow_lo, &ow_hi);

#pragma omp parallel
  {
    std::vector<T> plane_buf;
    std::vector<Acc> acc_buf(static_cast<size_t>(Wo));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t n = p / C, c = p % C;
      const T* xp = x + n * xs.n + c * xs.c;
      int64_t rs = xs.h, cs = xs.w;
      if (cs != 1 && H > 0 && W > 0) {
        xp = pack(xp, H, W, rs, cs, plane_buf);
        rs = W;
        cs = 1;
      }
      const Plane2D<T, int64_t> in{xp, rs, cs, 0, 0, H, W};
      const T* wc = w + c * KH * KW;
      const Acc bc = bias ? static_cast<Acc>(bias[c]) : Acc(0);
      T* yp = y + n * ys.n + c * ys.c;
      for (int64_t oh = 0; oh < Ho; ++oh) {
        T* yr = yp + oh * ys.h;
        const int64_t ih0 = oh * SH - PH;
        const bool inner = oh >= oh_lo && oh < oh_hi;
        const int64_t a = inner ? ow_lo : Wo, b = inner ? ow_hi : Wo;
        for (int64_t ow = 0; ow < a; ++ow)
          yr[ow * ys.w] = static_cast<T>(dw_fwd_pixel<T, Acc>(in, wc, KH, KW, DH, DW, ih0, ow * SW - PW) + bc);
        for (int64_t ow = b; ow < Wo; ++ow)
          yr[ow * ys.w] = static_cast<T>(dw_fwd_pixel<T, Acc>(in, wc, KH, KW, DH, DW, ih0, ow * SW - PW) + bc);
        const int64_t m = b - a;
        if (m <= 0) continue;
        Acc* __restrict__ acc = acc_buf.data();
        std::fill(acc, acc + m, Acc(0));
        for (int i = 0; i < KH; ++i) {
          // cs == 1 here: interior columns exist only for a non-empty (hence packed) plane.
          const T* xr = xp + (ih0 + static_cast<int64_t>(i) * DH) * rs + (a * SW - PW);
          for (int j = 0; j < KW; ++j) {
            const Acc wv = static_cast<Acc>(wc[i * KW + j]);
            const T* __restrict__ src = xr + static_cast<int64_t>(j) * DW;
            if (SW == 1) {
              for (int64_t k = 0; k < m; ++k) acc[k] += wv * static_cast<Acc>(src[k]);
            } else {
              for (int64_t k = 0; k < m; ++k) acc[k] += wv * static_cast<Acc>(src[k * SW]);
            }
          }
        }
        for (int64_t k = 0; k < m; ++k) yr[(a + k) * ys.w] = static_cast<T>(acc[k] + bc);
      }
    }
  }
}

template <typename T>
void dw_backward_input(const T* gy, Strides4 gys, const T* w, T* gx, Strides4 gxs, const DwGeometry& g) {
  using Acc = T;
  const int64_t N = g.N, C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo;
  const int KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW, DH = g.DH, DW = g.DW;
  const int64_t planes = N * C;
  if (planes == 0 || H == 0 || W == 0) return;
  int64_t ih_lo, ih_hi, iw_lo, iw_hi;
  bwd_interior(H, Ho, KH, SH, PH, DH, &ih_lo, &ih_hi);
  bwd_interior(W, Wo, KW, SW, PW, DW, &iw_lo, &iw_hi);

#pragma omp parallel
  {
    std::vector<T> plane_buf;
    std::vector<Acc> acc_buf(static_cast<size_t>(W));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const int64_t n = p / C, c = p % C;
      const T* gp = gy + n * gys.n + c * gys.c;
      int64_t rs = gys.h, cs = gys.w;
      if (cs != 1 && Ho > 0 && Wo > 0) {
        gp = pack(gp, Ho, Wo, rs, cs, plane_buf);
        rs = Wo;
        cs = 1;
      }
      const Plane2D<T, int64_t> gplane{gp, rs, cs, 0, 0, Ho, Wo};
      const T* wc = w + c * KH * KW;
      T* xp = gx + n * gxs.n + c * gxs.c;
      for (int64_t ih = 0; ih < H; ++ih) {
        T* xr = xp + ih * gxs.h;
        const bool inner = ih >= ih_lo && ih < ih_hi;
        const int64_t a = inner ? iw_lo : W, b = inner ? iw_hi : W;
        for (int64_t iw = 0; iw < a; ++iw)
          xr[iw * gxs.w] =
              static_cast<T>(dw_bwd_input_pixel<T, Acc>(gplane, wc, KH, KW, SH, SW, PH, PW, DH, DW, ih, iw));
        for (int64_t iw = b; iw < W; ++iw)
          xr[iw * gxs.w] =
              static_cast<T>(dw_bwd_input_pixel<T, Acc>(gplane, wc, KH, KW, SH, SW, PH, PW, DH, DW, ih, iw));
        const int64_t m = b - a;
        if (m <= 0) continue;
        Acc* __restrict__ acc = acc_buf.data();
        std::fill(acc, acc + m, Acc(0));
        for (int i = 0; i < KH; ++i) {
          // Interior rows guarantee 0 <= t <= (Ho-1)*SH, so only divisibility is tested.
          const int64_t t = ih + PH - static_cast<int64_t>(i) * DH;
          if (t % SH != 0) continue;
          const T* gr = gp + (t / SH) * rs;
          for (int j = 0; j < KW; ++j) {
            const Acc wv = static_cast<Acc>(wc[i * KW + j]);
            const int64_t u0 = a + PW - static_cast<int64_t>(j) * DW;  // >= 0 in the interior
            if (SW == 1) {
              const T* __restrict__ src = gr + u0;
              for (int64_t k = 0; k < m; ++k) acc[k] += wv * static_cast<Acc>(src[k]);
            } else {
              // Only every SW-th input column received this tap; start at the first one.
              const int64_t k0 = (SW - u0 % SW) % SW;
              int64_t ow = (u0 + k0) / SW;
              for (int64_t k = k0; k < m; k += SW, ++ow) acc[k] += wv * static_cast<Acc>(gr[ow]);
            }
          }
        }
        for (int64_t k = 0; k < m; ++k) xr[(a + k) * gxs.w] = static_cast<T>(acc[k]);
      }
    }
  }
}

template <typename T>
void dw_backward_weight(const T* gy, Strides4 gys, const T* x, Strides4 xs, T* gw, T* gb, const DwGeometry& g) {
  using Acc = T;
  const int64_t N = g.N, C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo;
  const int KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW, DH = g.DH, DW = g.DW;
  if (C == 0) return;
  const int taps = KH * KW;
  const int64_t slots = taps + 1;  // the last slot holds the bias sum
  const int64_t R = N * Ho;        // output rows per channel, flattened over the batch

  // Rows of a channel are split into K chunks reduced independently, then combined in
  // chunk order. K depends on the shape alone (never on the thread count), so results
  // are identical for any OMP_NUM_THREADS; a few channels still spread over all cores.
  int64_t K = 1;
  if (R > 0 && Wo > 0) {
    const int64_t macs = R * Wo * taps;
    K = ceil_div(256, C);
    K = std::min<int64_t>(K, std::max<int64_t>(1, macs / 32768));
    K = std::min<int64_t>(K, R);
  }
  const int64_t tasks = C * K;
  std::vector<Acc> part(static_cast<size_t>(tasks * slots), Acc(0));

#pragma omp parallel
  {
    std::vector<T> gbuf, xbuf;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t c = task / K, k = task % K;
      const int64_t r0 = k * R / K, r1 = (k + 1) * R / K;
      Acc* out = part.data() + task * slots;
      // The chunk's rows are walked one image at a time so that strided planes are packed
      // once per image (the rows a chunk touches), not once per tap.
      for (int64_t r = r0; r < r1;) {
        const int64_t n = r / Ho, oa = r % Ho;
        const int64_t ob = std::min<int64_t>(Ho, oa + (r1 - r));
        r += ob - oa;
        const T* gp = gy + n * gys.n + c * gys.c + oa * gys.h;
        int64_t g_rs = gys.h;
        if (gys.w != 1) {
          gp = pack(gp, ob - oa, Wo, gys.h, gys.w, gbuf);
          g_rs = Wo;
        }
        // Input rows [xa, xb) cover every tap of output rows [oa, ob).
        const int64_t xa = std::max<int64_t>(0, oa * SH - PH);
        const int64_t xb = std::min<int64_t>(H, (ob - 1) * SH - PH + static_cast<int64_t>(KH - 1) * DH + 1);
        const T* xp = x + n * xs.n + c * xs.c;
        int64_t x_rs = xs.h, x_row0 = 0;
        if (xs.w != 1 && xb > xa) {
          xp = pack(xp + xa * xs.h, xb - xa, W, xs.h, xs.w, xbuf);
          x_rs = W;
          x_row0 = xa;
        }
        for (int64_t oh = oa; oh < ob; ++oh) {
          const T* gr = gp + (oh - oa) * g_rs;
          out[taps] += row_sum(gr, Wo);
          for (int i = 0; i < KH; ++i) {
            const int64_t ih = oh * SH - PH + static_cast<int64_t>(i) * DH;
            if (ih < 0 || ih >= H) continue;
            const T* xr = xp + (ih - x_row0) * x_rs;
            for (int j = 0; j < KW; ++j)
              out[i * KW + j] += dw_wgrad_tap_row<T, Acc>(gr, 1, xr, 1, Wo, W, SW, PW, DW, j);
          }
        }
      }
    }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      const Acc* pc = part.data() + c * K * slots;
      for (int t = 0; t < taps; ++t) {
        Acc s = Acc(0);
        for (int64_t k = 0; k < K; ++k) s += pc[k * slots + t];
        gw[c * taps + t] = static_cast<T>(s);
      }
      if (gb) {
        Acc s = Acc(0);
        for (int64_t k = 0; k < K; ++k) s += pc[k * slots + taps];
        gb[c] = static_cast<T>(s);
      }
    }
  }
}

#define ISTD_INSTANTIATE(T)                                                                                    \
  template void dw_forward<T>(const T*, Strides4, const T*, const T*, T*, Strides4, const DwGeometry&);       \
  template void dw_backward_input<T>(const T*, Strides4, const T*, T*, Strides4, const DwGeometry&);          \
  template void dw_backward_weight<T>(const T*, Strides4, const T*, Strides4, T*, T*, const DwGeometry&);
ISTD_INSTANTIATE(float)
ISTD_INSTANTIATE(double)
#undef ISTD_INSTANTIATE

}  // namespace cpu
}  // namespace istd
