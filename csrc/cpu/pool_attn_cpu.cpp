// CPU multiscale_maxpool and split_attention. The per-element arithmetic is in
// istd/pool_attn_core.h, shared with the CUDA kernels; this file only decides the loop
// order and the split into OpenMP tasks.
#include "pool_attn_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <type_traits>
#include <vector>

// Compiled for AVX2 + FMA: the 8-wide sigmoids and softmax made split_attention's forward
// 1.4-1.6x faster than the SSE2 ones at LCRNet's levels (docs/performance.md).
#include "avx2_target.h"
#include "vec_math.h"

namespace istd {
namespace cpu {
namespace {

template <typename T>
ISTD_INLINE const T* at4(const void* base, const Strides4& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<const T*>(base) + n * s.n + c * s.c + h * s.h + w * s.w;
}
template <typename T>
ISTD_INLINE T* at4w(void* base, const Strides4& s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return static_cast<T*>(base) + n * s.n + c * s.c + h * s.h + w * s.w;
}

// Column offset, in branch j's row, of the low-resolution cell of every pixel x of a row:
// col[j * W + x] = (x / s_j) * stride_w. Computed once per call so the row loops divide
// nothing (a 64-bit division per element and branch cost more than the arithmetic).
std::vector<int64_t> sa_columns(const SaInputs& in, const SaGeometry& g) {
  std::vector<int64_t> col(static_cast<size_t>(g.R * g.W));
  for (int j = 0; j < g.R; ++j)
    for (int64_t x = 0; x < g.W; ++x) col[j * g.W + x] = (x / g.scales[j]) * in.branch_s[j].w;
  return col;
}

#ifdef ISTD_CPU_AVX2
// a[x] += w[x] * up(b)[x] for the first W / 8 * 8 columns of a unit-stride branch row with a
// power-of-two scale s <= 16 (LCRNet's), 8 at a time; returns the columns done (0 for other
// rows, which keep the gather loop). Each block of 8 starts at a multiple of 8, so its cells are
// b[x0 / s ...], within the row: a block needs cells up to (x0 + 7) / s < ceil(W / s). The
// index gather of every element was about a third of the forward.
ISTD_INLINE int64_t combine8(float* a, const float* w, const float* b, int64_t b_stride, int s, int64_t W) {
  if (b_stride != 1 || s > 16 || (s & (s - 1))) return 0;
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const int64_t end = W / 8 * 8;
  for (int64_t x0 = 0; x0 < end; x0 += 8) {
    __m256 up;
    if (s == 1)
      up = _mm256_loadu_ps(b + x0);
    else if (s == 2)
      up = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(b + x0 / 2)), pairs);
    else if (s == 4)
      up = _mm256_setr_m128(_mm_set1_ps(b[x0 / 4]), _mm_set1_ps(b[x0 / 4 + 1]));
    else  // 8 or 16: one cell for the whole block
      up = _mm256_set1_ps(b[x0 / s]);
    _mm256_storeu_ps(a + x0, _mm256_fmadd_ps(_mm256_loadu_ps(w + x0), up, _mm256_loadu_ps(a + x0)));
  }
  return end;
}
#endif

// A of one channel row: a[x] = residual[x] + sum_j w_j[x] up_j[x] (w_j[x] = wbuf[j * wstride
// + x]), summed in sa_combine's order (residual first, then the branches in order), one
// branch at a time over the row.
template <int R, typename T>
ISTD_INLINE void sa_combine_row(const SaInputs& in, const SaGeometry& g, const int64_t* col, const T* wbuf,
                                size_t wstride, int64_t n, int64_t c, int64_t y, T* a) {
  const int64_t W = g.W;
  const T* res = at4<T>(in.residual, in.residual_s, n, c, y, 0);
  const int64_t rs = in.residual_s.w;
  for (int64_t x = 0; x < W; ++x) a[x] = res[x * rs];
  for (int j = 0; j < R; ++j) {
    const T* b = at4<T>(in.branch[j], in.branch_s[j], n, c, y / g.scales[j], 0);
    const T* wj = wbuf + j * wstride;
    const int64_t* cj = col + j * W;
    int64_t x = 0;
#ifdef ISTD_CPU_AVX2
    if constexpr (std::is_same<T, float>::value) x = combine8(a, wj, b, in.branch_s[j].w, g.scales[j], W);
#endif
    for (; x < W; ++x) a[x] += wj[x] * b[cj[x]];
  }
}

// The row's softmax weights, branch-major: wbuf[j * wstride + x], wstride >= W a multiple of
// kSoftmaxBlock (softmax_columns' blocks; the padding columns hold finite values).
template <int R, typename T>
ISTD_INLINE void sa_weights_row(const SaInputs& in, const SaGeometry& g, T inv_t, int64_t n, int64_t k, int64_t y,
                                T* wbuf, int64_t wstride) {
  for (int j = 0; j < R; ++j) {
    const T* l = at4<T>(in.logits, in.logits_s, n, k * R + j, y, 0);
    for (int64_t x = 0; x < g.W; ++x) wbuf[j * wstride + x] = l[x * in.logits_s.w] * inv_t;
  }
  softmax_columns<R, T>(wbuf, wstride);
}

// Loads a strided row into a contiguous buffer (the vector loops then see unit stride).
template <typename T>
ISTD_INLINE void load_row(const T* src, int64_t stride, int64_t n, T* dst) {
  for (int64_t x = 0; x < n; ++x) dst[x] = src[x * stride];
}

// Work is split by rows (n, group, y); each row computes its softmax weights once, then
// every channel of the group runs the row as a few unit-stride loops (combine, two
// sigmoids, gate) that the compiler vectorises.
template <int R, typename T>
void sa_forward_r(const SaInputs& in, T* z, Strides4 zs, const SaGeometry& g) {
  const int64_t N = g.N, G = g.G, H = g.H, W = g.W, Dg = g.D / g.G;
  const T inv_t = T(1) / *static_cast<const T*>(in.temperature);
  const int64_t rows = N * G * H;
  const std::vector<int64_t> col = sa_columns(in, g);
  const int64_t wstride = (W + kSoftmaxBlock - 1) / kSoftmaxBlock * kSoftmaxBlock;
#pragma omp parallel
  {
    std::vector<T> buf(static_cast<size_t>(R * wstride + 4 * W));  // zeroed: the padding columns stay finite
    T *wbuf = buf.data(), *a = wbuf + R * wstride, *v = a + W, *sa = v + W, *sv = sa + W;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t y = t % H, nk = t / H, k = nk % G, n = nk / G;
      sa_weights_row<R, T>(in, g, inv_t, n, k, y, wbuf, wstride);
      for (int64_t ci = 0; ci < Dg; ++ci) {
        const int64_t c = k * Dg + ci;
        sa_combine_row<R, T>(in, g, col.data(), wbuf, static_cast<size_t>(wstride), n, c, y, a);
        load_row(at4<T>(in.v, in.v_s, n, c, y, 0), in.v_s.w, W, v);
        sigmoid_row(a, sa, W);
        sigmoid_row(v, sv, W);
        T* zr = z + n * zs.n + c * zs.c + y * zs.h;
        // sa_gate's product order: SiLU(a) * SiLU(v).
        for (int64_t x = 0; x < W; ++x) zr[x * zs.w] = a[x] * sa[x] * (v[x] * sv[x]);
      }
    }
  }
}

// The windows of one output row that lie wholly inside the image's width (W / s of them),
// unit-stride rows: the cells are visited in every window's row-major order at once (one pass
// over the columns per cell offset), with mmp_window_argmax's update rule, so each window
// records the same cell; the column loops have a compile-time stride the compiler vectorises
// (a call per window of four cells was most of the pooling's time: 1.75 -> 0.74 ms at C16 256 x
// 256).
template <int S, typename T, typename Idx>
void mmp_row_windows(const T* u, int64_t rs, int64_t count, int64_t hlen, T* out, Idx* idx) {
  for (int64_t ow = 0; ow < count; ++ow) {
    out[ow] = u[ow * S];
    idx[ow] = 0;
  }
  for (int64_t dy = 0; dy < hlen; ++dy)
    for (int dx = (dy == 0 ? 1 : 0); dx < S; ++dx) {
      const T* cells = u + dy * rs + dx;
      const Idx off = static_cast<Idx>(dy * S + dx);
      for (int64_t ow = 0; ow < count; ++ow) {
        const T v = cells[ow * S];
        const bool take = v > out[ow] || v != v;
        out[ow] = take ? v : out[ow];
        idx[ow] = take ? off : idx[ow];
      }
    }
}

// Runs mmp_row_windows for the scales 2, 4, 8 and 16 (LCRNet's); returns the windows done (0 for
// other scales, which keep the per-window loop).
template <typename T, typename Idx>
int64_t mmp_row_full_windows(const T* u, int64_t rs, int64_t W, int s, int64_t hlen, T* out, Idx* idx) {
  if (s == 2) mmp_row_windows<2>(u, rs, W / 2, hlen, out, idx);
  else if (s == 4) mmp_row_windows<4>(u, rs, W / 4, hlen, out, idx);
  else if (s == 8) mmp_row_windows<8>(u, rs, W / 8, hlen, out, idx);
  else if (s == 16) mmp_row_windows<16>(u, rs, W / 16, hlen, out, idx);
  else return 0;
  return W / s;
}

// Rows per backward task: a multiple of every scale (so tasks own whole footprints), or
// the whole height when the scales' lcm reaches it.
int64_t sa_band_rows(const SaGeometry& g) {
  const int64_t l = scales_lcm(g.scales, g.R, g.H);
  if (l >= g.H) return g.H;
  return l * ((8 + l - 1) / l);
}

template <int R, typename T>
T sa_backward_r(const T* gz, Strides4 gzs, const SaInputs& in, const SaGrads& out, const SaGeometry& g) {
  const int64_t N = g.N, G = g.G, H = g.H, W = g.W, Dg = g.D / g.G;
  const T inv_t = T(1) / *static_cast<const T*>(in.temperature);
  const int64_t band = sa_band_rows(g);
  const int64_t bands = (H + band - 1) / band;
  const int64_t tasks = N * G * bands;
  std::vector<T> partial(static_cast<size_t>(tasks));
  const std::vector<int64_t> col = sa_columns(in, g);
#pragma omp parallel
  {
    // Branch j's weights and weight gradients of the band at j * pxb (a multiple of
    // kSoftmaxBlock: the softmax runs down softmax_columns' blocks; zeroed, so the padding
    // stays finite).
    const size_t px = static_cast<size_t>(band * W), pxb = (px + kSoftmaxBlock - 1) / kSoftmaxBlock * kSoftmaxBlock;
    std::vector<T> wbuf(R * pxb), gwbuf(R * pxb), gabuf(px), rows(static_cast<size_t>(5 * W));
    T *a = rows.data(), *v = a + W, *gzr = v + W, *sa = gzr + W, *sv = sa + W;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t % bands, nk = t / bands, k = nk % G, n = nk / G;
      const int64_t y0 = b * band, y1 = std::min(H, y0 + band);
      const auto logit_at = [&](int64_t y, int64_t x) {
        return [&in, n, k, y, x](int j) { return *at4<T>(in.logits, in.logits_s, n, k * R + j, y, x); };
      };
      for (int64_t y = y0; y < y1; ++y)
        for (int j = 0; j < R; ++j) {
          const T* l = at4<T>(in.logits, in.logits_s, n, k * R + j, y, 0);
          const size_t p = j * pxb + static_cast<size_t>((y - y0) * W);
          for (int64_t x = 0; x < W; ++x) {
            wbuf[p + x] = l[x * in.logits_s.w] * inv_t;
            gwbuf[p + x] = T(0);
          }
        }
      softmax_columns<R, T>(wbuf.data(), static_cast<int64_t>(pxb));
      for (int64_t ci = 0; ci < Dg; ++ci) {
        const int64_t c = k * Dg + ci;
        for (int64_t y = y0; y < y1; ++y) {
          const size_t p = static_cast<size_t>((y - y0) * W);
          sa_combine_row<R, T>(in, g, col.data(), wbuf.data() + p, pxb, n, c, y, a);
          load_row(at4<T>(in.v, in.v_s, n, c, y, 0), in.v_s.w, W, v);
          load_row(gz + n * gzs.n + c * gzs.c + y * gzs.h, gzs.w, W, gzr);
          sigmoid_row(a, sa, W);
          sigmoid_row(v, sv, W);
          T* ga = gabuf.data() + p;
          T* gr = at4w<T>(out.residual, out.residual_s, n, c, y, 0);
          T* gv = at4w<T>(out.v, out.v_s, n, c, y, 0);
          // sa_gate_grad's formulas and order; d SiLU(x)/dx = s (1 + x (1 - s)).
          for (int64_t x = 0; x < W; ++x) {
            ga[x] = gzr[x] * (v[x] * sv[x]) * (sa[x] * (T(1) + a[x] * (T(1) - sa[x])));
            gv[x * out.v_s.w] = gzr[x] * (a[x] * sa[x]) * (sv[x] * (T(1) + v[x] * (T(1) - sv[x])));
          }
          for (int64_t x = 0; x < W; ++x) gr[x * out.residual_s.w] = ga[x];
          for (int j = 0; j < R; ++j) {
            const T* brow = at4<T>(in.branch[j], in.branch_s[j], n, c, y / g.scales[j], 0);
            const int64_t* cj = col.data() + j * W;
            T* gw = gwbuf.data() + j * pxb + p;
            for (int64_t x = 0; x < W; ++x) gw[x] += ga[x] * brow[cj[x]];
          }
        }
        for (int j = 0; j < R; ++j) {
          const int s = g.scales[j];
          const T* wj = wbuf.data() + j * pxb;
          for (int64_t py = y0 / s; py * s < y1; ++py)
            for (int64_t qx = 0; qx < g.Wb[j]; ++qx) {
              // The footprint clipped to the image: the cells beyond it contribute zeros, so
              // leaving them out keeps the row-major sum (sa_footprint_sum's order) while the
              // work stays bounded by the image, whatever the scale.
              const int64_t hy = std::min<int64_t>(s, y1 - py * s), hx = std::min<int64_t>(s, W - qx * s);
              T acc = T(0);
              for (int64_t dy = 0; dy < hy; ++dy) {
                const size_t row = static_cast<size_t>((py * s + dy - y0) * W + qx * s);
                for (int64_t dx = 0; dx < hx; ++dx) acc += gabuf[row + dx] * wj[row + dx];
              }
              *at4w<T>(out.branch[j], out.branch_s[j], n, c, py, qx) = acc;
            }
        }
      }
      T tsum = T(0);
      for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const size_t p = static_cast<size_t>((y - y0) * W + x);
          // The weights of the first pass (the ones the gradients above used).
          T e[R], w[R], gw[R], gl[R];
          for (int j = 0; j < R; ++j) {
            e[j] = logit_at(y, x)(j) * inv_t;
            w[j] = wbuf[j * pxb + p];
            gw[j] = gwbuf[j * pxb + p];
          }
          tsum += sa_logit_grads<R, T>(e, w, gw, inv_t, gl);
          for (int j = 0; j < R; ++j) *at4w<T>(out.logits, out.logits_s, n, k * R + j, y, x) = gl[j];
        }
      partial[static_cast<size_t>(t)] = -tsum * inv_t;
    }
  }
  T gt = T(0);
  for (const T& v : partial) gt += v;
  return gt;
}

}  // namespace

template <typename T, typename Idx>
void mmp_forward(const T* u, Strides4 us, const MmpGeometry& g, const MmpLevel* levels) {
  const int64_t GC = g.groups * g.C;
  for (int64_t j = 0; j < g.radix; ++j) {
    const MmpLevel& L = levels[j];
    const int s = L.s;
    const int64_t rows = g.N * GC * L.Ho;
    const bool unit = us.w == 1 && L.data_s.w == 1 && L.idx_s.w == 1;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t oh = t % L.Ho, p = t / L.Ho, n = p / GC, r = p % GC, k = r / g.C, i = r % g.C;
      const int64_t uch = (k * g.radix + j) * g.C + i;
      const int64_t ih0 = oh * s, hlen = std::min<int64_t>(s, g.H - ih0);
      const T* urow = u + n * us.n + uch * us.c + ih0 * us.h;
      T* out = at4w<T>(L.data, L.data_s, n, r, oh, 0);
      Idx* idx = at4w<Idx>(L.idx, L.idx_s, n, r, oh, 0);
      // The row's whole windows at once where the rows are unit-stride, the rest one window at a time.
      const int64_t ow0 = unit ? mmp_row_full_windows(urow, us.h, g.W, s, hlen, out, idx) : 0;
      for (int64_t ow = ow0; ow < L.Wo; ++ow) {
        const int64_t iw0 = ow * s, wlen = std::min<int64_t>(s, g.W - iw0);
        T m;
        const int arg = mmp_window_argmax<T, T, int64_t, int64_t>(urow + iw0 * us.w, us.h, us.w, hlen, wlen, s, &m);
        out[ow * L.data_s.w] = m;
        idx[ow * L.idx_s.w] = static_cast<Idx>(arg);
      }
    }
  }
}

template <typename T, typename Idx>
void mmp_backward(const MmpLevel* levels, const MmpGeometry& g, T* gu, Strides4 gus) {
  const int64_t GC = g.groups * g.C;
  for (int64_t j = 0; j < g.radix; ++j) {
    const MmpLevel& L = levels[j];
    const int s = L.s;
    const int64_t rows = g.N * GC * g.H;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t ih = t % g.H, p = t / g.H, n = p / GC, r = p % GC, k = r / g.C, i = r % g.C;
      const int64_t uch = (k * g.radix + j) * g.C + i;
      const int64_t wy = ih / s;
      T* row = gu + n * gus.n + uch * gus.c + ih * gus.h;
      for (int64_t iw = 0; iw < g.W; ++iw) {
        const int64_t wx = iw / s;
        const int stored = static_cast<int>(*at4<Idx>(L.idx, L.idx_s, n, r, wy, wx));
        row[iw * gus.w] = stored == mmp_cell_offset<int64_t>(ih, iw, s) ? *at4<T>(L.data, L.data_s, n, r, wy, wx)
                                                                          : T(0);
      }
    }
  }
}

template <typename T>
void sa_forward(const SaInputs& in, T* z, Strides4 zs, const SaGeometry& g) {
  switch (g.R) {
    case 1: return sa_forward_r<1, T>(in, z, zs, g);
    case 2: return sa_forward_r<2, T>(in, z, zs, g);
    case 3: return sa_forward_r<3, T>(in, z, zs, g);
    default: return sa_forward_r<4, T>(in, z, zs, g);
  }
}

template <typename T>
T sa_backward(const T* gz, Strides4 gzs, const SaInputs& in, const SaGrads& out, const SaGeometry& g) {
  switch (g.R) {
    case 1: return sa_backward_r<1, T>(gz, gzs, in, out, g);
    case 2: return sa_backward_r<2, T>(gz, gzs, in, out, g);
    case 3: return sa_backward_r<3, T>(gz, gzs, in, out, g);
    default: return sa_backward_r<4, T>(gz, gzs, in, out, g);
  }
}

#define ISTD_MMP_INST(T, Idx)                                                                   \
  template void mmp_forward<T, Idx>(const T*, Strides4, const MmpGeometry&, const MmpLevel*); \
  template void mmp_backward<T, Idx>(const MmpLevel*, const MmpGeometry&, T*, Strides4);
ISTD_MMP_INST(float, uint8_t)
ISTD_MMP_INST(float, int32_t)
ISTD_MMP_INST(double, uint8_t)
ISTD_MMP_INST(double, int32_t)
#undef ISTD_MMP_INST

template void sa_forward<float>(const SaInputs&, float*, Strides4, const SaGeometry&);
template void sa_forward<double>(const SaInputs&, double*, Strides4, const SaGeometry&);
template float sa_backward<float>(const float*, Strides4, const SaInputs&, const SaGrads&, const SaGeometry&);
template double sa_backward<double>(const double*, Strides4, const SaInputs&, const SaGrads&, const SaGeometry&);

}  // namespace cpu
}  // namespace istd
