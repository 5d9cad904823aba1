// CPU depthwise convolution. Forward and grad-input split the work by (n, c) plane (and,
// for the forward with few planes, by bands of output rows). Inside a plane, columns
// whose taps all land inside the image horizontally go through a register-blocked
// kernel, which drops the kernel rows that fall outside vertically; the remaining border
// pixels go through the bounds-checked per-pixel cores of depthwise_core.h (grad-input
// with a column stride above 1 keeps the older tap-by-tap row loop for its interior).
// The kernel keeps a block of consecutive outputs in vector registers across all taps,
// so each multiply-add costs one load instead of the load-modify-store of a row-at-a-time
// accumulation, which left the old loop L1-bound.
#include "depthwise_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cstring>
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

// The interior of one output row as the kernel sees it: output k of the segment reads,
// for every listed kernel row r and tap j, src[r][off[j] + pos0 + k] with weight
// wrow[r][j]. Forward and grad-input (stride 1 along the row) both reduce to this shape,
// forward strides too once the input is split into stride phases (see pack_phased).
template <typename T>
struct TapRows {
  const T* const* src;
  const T* const* wrow;
  int n;
  const int64_t* off;
  int KW;
};

// N vectors of consecutive outputs, each summed over all taps in registers. The last
// vector may start before the previous one ends (shift > 0): overlapping outputs are
// computed with the same operations in the same order, so rewriting them is harmless and
// lets any segment at least one vector long avoid a scalar tail.
template <typename T, int VB, int N>
ISTD_INLINE void seg_block(const TapRows<T>& t, int64_t pos, int64_t shift, T bias, T* out, int64_t os) {
  typedef T V __attribute__((vector_size(VB)));
  constexpr int L = VB / static_cast<int>(sizeof(T));
  V acc[N];
  for (int v = 0; v < N; ++v) acc[v] = V{};
  for (int r = 0; r < t.n; ++r) {
    const T* row = t.src[r] + pos;
    const T* wr = t.wrow[r];
    for (int j = 0; j < t.KW; ++j) {
      const T* s = row + t.off[j];
      const V wv = V{} + wr[j];
      for (int v = 0; v < N; ++v) {
        V xv;
        std::memcpy(&xv, s + v * L - (v == N - 1 ? shift : 0), VB);
        acc[v] += wv * xv;
      }
    }
  }
  for (int v = 0; v < N; ++v) {
    const V res = acc[v] + bias;
    const int64_t k0 = v * L - (v == N - 1 ? shift : 0);
    if (os == 1) {
      std::memcpy(out + k0, &res, VB);
    } else {
      for (int e = 0; e < L; ++e) out[(k0 + e) * os] = res[e];
    }
  }
}

// Outputs [0, m) of a segment whose first output reads source position pos0.
template <typename T, int VB, int NV>
ISTD_INLINE void seg_run(const TapRows<T>& t, int64_t pos0, int64_t m, T bias, T* out, int64_t os) {
  constexpr int L = VB / static_cast<int>(sizeof(T));
  constexpr int B = L * NV;
  int64_t k = 0;
  for (; k + B <= m; k += B) seg_block<T, VB, NV>(t, pos0 + k, 0, bias, out + k * os, os);
  const int64_t r = m - k;
  if (r == 0) return;
  if (m >= L) {
    // nv vectors cover the remainder; the last one is pulled back to end exactly at m.
    const int nv = static_cast<int>((r + L - 1) / L);
    const int64_t shift = nv * L - r;
    switch (nv) {
      case 1: seg_block<T, VB, 1>(t, pos0 + k, shift, bias, out + k * os, os); break;
      case 2: seg_block<T, VB, 2>(t, pos0 + k, shift, bias, out + k * os, os); break;
      case 3: seg_block<T, VB, 3>(t, pos0 + k, shift, bias, out + k * os, os); break;
      default: seg_block<T, VB, NV>(t, pos0 + k, shift, bias, out + k * os, os); break;
    }
    return;
  }
  // Narrower than one vector: plain per-output sums in the kernel's order.
  for (; k < m; ++k) {
    T acc = T(0);
    for (int rr = 0; rr < t.n; ++rr) {
      const T* row = t.src[rr] + pos0 + k;
      const T* wr = t.wrow[rr];
      for (int j = 0; j < t.KW; ++j) acc += wr[j] * row[t.off[j]];
    }
    out[k * os] = acc + bias;
  }
}

template <typename T>
using SegFn = void (*)(const TapRows<T>&, int64_t, int64_t, T, T*, int64_t);

// NV == 4 keeps the accumulators to a quarter of the vector registers, leaving room for
// the broadcast weight and the loads; seg_run's remainder switch assumes NV <= 4.
template <typename T>
void seg_generic(const TapRows<T>& t, int64_t pos0, int64_t m, T bias, T* out, int64_t os) {
  seg_run<T, 16, 4>(t, pos0, m, bias, out, os);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ISTD_DW_X86_DISPATCH 1
// The extension is built for the baseline ISA; these clones let the same source use
// the wider vectors and fused multiply-adds of the machine it runs on. Rounding then
// depends on the machine (fused or not) but never on the thread count.
template <typename T>
__attribute__((target("avx2,fma"))) void seg_avx2(const TapRows<T>& t, int64_t pos0, int64_t m, T bias, T* out,
                                                   int64_t os) {
  seg_run<T, 32, 4>(t, pos0, m, bias, out, os);
}
template <typename T>
__attribute__((target("avx512f"))) void seg_avx512(const TapRows<T>& t, int64_t pos0, int64_t m, T bias, T* out,
                                                    int64_t os) {
  seg_run<T, 64, 4>(t, pos0, m, bias, out, os);
}
#endif

template <typename T>
SegFn<T> pick_seg() {
#ifdef ISTD_DW_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return &seg_avx512<T>;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &seg_avx2<T>;
#endif
  return &seg_generic<T>;
}

// Copies input rows [r0, r1) of a plane into SW stride phases per row: element (r, col)
// lands at (r - r0) * SW * Wp + (col % SW) * Wp + col / SW. Along a phase, consecutive
// outputs of a stride-SW convolution read consecutive elements, so every stride runs the
// unit-stride kernel. With SW == 1 this is a plain unit-stride copy of the rows.
template <typename T>
void pack_phased(const T* src, int64_t r0, int64_t r1, int64_t W, int64_t rs, int64_t cs, int SW, int64_t Wp,
                 std::vector<T>& buf) {
  const int64_t prs = SW * Wp;
  buf.resize(static_cast<size_t>((r1 - r0) * prs));
  for (int64_t r = r0; r < r1; ++r) {
    const T* s = src + r * rs;
    T* d = buf.data() + (r - r0) * prs;
    for (int q = 0; q < SW; ++q)
      for (int64_t i = 0, col = q; col < W; ++i, col += SW) d[q * Wp + i] = s[col * cs];
  }
}

}  // namespace

template <typename T>
void dw_forward(const T* x, Strides4 xs, const T* w, const T* bias, T* y, Strides4 ys, const DwGeometry& g) {
  using Acc = T;
  const int64_t N = g.N, C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo;
  const int KH = g.KH, KW = g.KW, SH = g.SH, SW = g.SW, PH = g.PH, PW = g.PW, DH = g.DH, DW = g.DW;
  const int64_t planes = N * C;
  if (planes == 0 || Ho == 0 || Wo == 0) return;
  int64_t ow_lo, ow_hi;
  fwd_interior(W, Wo, KW, SW, PW, DW, &ow_lo, &ow_hi);
  // A stride wider than the row leaves at most one interior output per row, and the phased
  // copy below would hold SW * ceil(W / SW) >= SW elements per row: such rows go through the
  // per-pixel path, so memory stays bounded by the input whatever the stride.
  if (SW > W) ow_hi = ow_lo;
  const SegFn<T> seg = pick_seg<T>();

  // Few planes would leave cores idle, so each plane is then cut into bands of output
  // rows. Every output is computed the same way whatever the split, so the result does
  // not depend on the thread count.
#ifdef _OPENMP
  const int64_t want = 4 * static_cast<int64_t>(omp_get_max_threads());
#else
  const int64_t want = 1;
#endif
  const int64_t bands = planes >= want ? 1 : std::min<int64_t>(Ho, ceil_div(want, planes));
  const int64_t tasks = planes * bands;
  // Unit-stride input rows are read in place; anything else is packed per task.
  const bool direct = xs.w == 1 && SW == 1;
  const int64_t Wp = ceil_div(W, SW);
  // Tap column offsets relative to the output column, in the (possibly phased) row.
  std::vector<int64_t> off(static_cast<size_t>(KW));
  for (int j = 0; j < KW; ++j) {
    const int64_t c0 = static_cast<int64_t>(j) * DW - PW;
    const int64_t f = floor_div(c0, SW);
    off[j] = direct ? c0 : (c0 - f * SW) * Wp + f;
  }

#pragma omp parallel
  {
    std::vector<T> plane_buf;
    std::vector<const T*> src(static_cast<size_t>(KH)), wrow(static_cast<size_t>(KH));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t p = task / bands, band = task % bands;
      const int64_t oh0 = band * Ho / bands, oh1 = (band + 1) * Ho / bands;
      const int64_t n = p / C, c = p % C;
      const T* xp = x + n * xs.n + c * xs.c;
      const Plane2D<T, int64_t> in{xp, xs.h, xs.w, 0, 0, H, W};
      const T* wc = w + c * KH * KW;
      const Acc bc = bias ? static_cast<Acc>(bias[c]) : Acc(0);
      T* yp = y + n * ys.n + c * ys.c;

      // Input rows read by this band, clipped to the image. Rows whose taps leave the
      // image vertically still use the kernel for their interior columns, with the
      // kernel rows that fall outside simply left out of the tap list.
      const int64_t r0 = std::max<int64_t>(0, oh0 * SH - PH);
      const int64_t r1 = std::min<int64_t>(H, (oh1 - 1) * SH - PH + static_cast<int64_t>(KH - 1) * DH + 1);
      const bool any_inner = ow_hi > ow_lo;
      const T* base = xp;
      int64_t brs = xs.h, brow0 = 0;
      if (any_inner && !direct && r1 > r0) {
        pack_phased(xp, r0, r1, W, xs.h, xs.w, SW, Wp, plane_buf);
        base = plane_buf.data();
        brs = SW * Wp;
        brow0 = r0;
      }

      const int64_t a = any_inner ? ow_lo : Wo, b = any_inner ? ow_hi : Wo;
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        T* yr = yp + oh * ys.h;
        const int64_t ih0 = oh * SH - PH;
        for (int64_t ow = 0; ow < a; ++ow)
          yr[ow * ys.w] = static_cast<T>(dw_fwd_pixel<T, Acc>(in, wc, KH, KW, DH, DW, ih0, ow * SW - PW) + bc);
        for (int64_t ow = b; ow < Wo; ++ow)
          yr[ow * ys.w] = static_cast<T>(dw_fwd_pixel<T, Acc>(in, wc, KH, KW, DH, DW, ih0, ow * SW - PW) + bc);
        if (b <= a) continue;
        int nr = 0;
        for (int i = 0; i < KH; ++i) {
          const int64_t ih = ih0 + static_cast<int64_t>(i) * DH;
          if (ih < 0 || ih >= H) continue;
          src[nr] = base + (ih - brow0) * brs;
          wrow[nr] = wc + i * KW;
          ++nr;
        }
        const TapRows<T> taps{src.data(), wrow.data(), nr, off.data(), KW};
        seg(taps, a, b - a, bc, yr + a * ys.w, ys.w);
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
  const SegFn<T> seg = pick_seg<T>();
  // With SW == 1 every tap reaches every input column, which is the kernel's shape.
  std::vector<int64_t> off(static_cast<size_t>(KW));
  for (int j = 0; j < KW; ++j) off[j] = PW - static_cast<int64_t>(j) * DW;

#pragma omp parallel
  {
    std::vector<T> plane_buf;
    std::vector<Acc> acc_buf(static_cast<size_t>(W));
    std::vector<const T*> src(static_cast<size_t>(KH)), wrow(static_cast<size_t>(KH));
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
        // With SW == 1 the kernel takes every row, leaving out the kernel rows that miss
        // grad_y; the older row loop below (SW > 1) needs the fully interior rows.
        const bool inner = SW == 1 || (ih >= ih_lo && ih < ih_hi);
        const int64_t a = inner ? iw_lo : W, b = inner ? iw_hi : W;
        for (int64_t iw = 0; iw < a; ++iw)
          xr[iw * gxs.w] =
              static_cast<T>(dw_bwd_input_pixel<T, Acc>(gplane, wc, KH, KW, SH, SW, PH, PW, DH, DW, ih, iw));
        for (int64_t iw = b; iw < W; ++iw)
          xr[iw * gxs.w] =
              static_cast<T>(dw_bwd_input_pixel<T, Acc>(gplane, wc, KH, KW, SH, SW, PH, PW, DH, DW, ih, iw));
        const int64_t m = b - a;
        if (m <= 0) continue;
        if (SW == 1) {
          int nr = 0;
          for (int i = 0; i < KH; ++i) {
            const int64_t t = ih + PH - static_cast<int64_t>(i) * DH;
            if (t < 0 || t % SH != 0 || t / SH >= Ho) continue;
            src[nr] = gp + (t / SH) * rs;
            wrow[nr] = wc + i * KW;
            ++nr;
          }
          const TapRows<T> taps{src.data(), wrow.data(), nr, off.data(), KW};
          seg(taps, a, m, Acc(0), xr + a * gxs.w, gxs.w);
          continue;
        }
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
            // Only every SW-th input column received this tap; start at the first one.
            const int64_t k0 = (SW - u0 % SW) % SW;
            int64_t ow = (u0 + k0) / SW;
            for (int64_t k = k0; k < m; k += SW, ++ow) acc[k] += wv * static_cast<Acc>(gr[ow]);
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
