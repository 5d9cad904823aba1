// CPU multiscale_maxpool and split_attention. The per-element arithmetic is in
// istd/pool_attn_core.h, shared with the CUDA kernels; this file only decides the loop
// order and the split into OpenMP tasks.
#include "pool_attn_cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <vector>

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
    for (int64_t x = 0; x < W; ++x) a[x] += wj[x] * b[cj[x]];
  }
}

// The row's softmax weights, branch-major: wbuf[j * wstride + x], wstride >= W a multiple of 4
// (softmax_columns' blocks; the padding columns hold finite values).
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
  const int64_t wstride = (W + 3) / 4 * 4;
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
    // Branch j's weights and weight gradients of the band at j * px4 (a multiple of 4: the
    // softmax runs down softmax_columns' blocks; zeroed, so the padding stays finite).
    const size_t px = static_cast<size_t>(band * W), px4 = (px + 3) / 4 * 4;
    std::vector<T> wbuf(R * px4), gwbuf(R * px4), gabuf(px), rows(static_cast<size_t>(5 * W));
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
          const size_t p = j * px4 + static_cast<size_t>((y - y0) * W);
          for (int64_t x = 0; x < W; ++x) {
            wbuf[p + x] = l[x * in.logits_s.w] * inv_t;
            gwbuf[p + x] = T(0);
          }
        }
      softmax_columns<R, T>(wbuf.data(), static_cast<int64_t>(px4));
      for (int64_t ci = 0; ci < Dg; ++ci) {
        const int64_t c = k * Dg + ci;
        for (int64_t y = y0; y < y1; ++y) {
          const size_t p = static_cast<size_t>((y - y0) * W);
          sa_combine_row<R, T>(in, g, col.data(), wbuf.data() + p, px4, n, c, y, a);
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
            T* gw = gwbuf.data() + j * px4 + p;
            for (int64_t x = 0; x < W; ++x) gw[x] += ga[x] * brow[cj[x]];
          }
        }
        for (int j = 0; j < R; ++j) {
          const int s = g.scales[j];
          const T* wj = wbuf.data() + j * px4;
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
            w[j] = wbuf[j * px4 + p];
            gw[j] = gwbuf[j * px4 + p];
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
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows; ++t) {
      const int64_t oh = t % L.Ho, p = t / L.Ho, n = p / GC, r = p % GC, k = r / g.C, i = r % g.C;
      const int64_t uch = (k * g.radix + j) * g.C + i;
      const int64_t ih0 = oh * s, hlen = std::min<int64_t>(s, g.H - ih0);
      for (int64_t ow = 0; ow < L.Wo; ++ow) {
        const int64_t iw0 = ow * s, wlen = std::min<int64_t>(s, g.W - iw0);
        T m;
        const int arg = mmp_window_argmax<T, T, int64_t, int64_t>(u + n * us.n + uch * us.c + ih0 * us.h + iw0 * us.w,
                                                                  us.h, us.w, hlen, wlen, s, &m);
        *at4w<T>(L.data, L.data_s, n, r, oh, ow) = m;
        *at4w<Idx>(L.idx, L.idx_s, n, r, oh, ow) = static_cast<Idx>(arg);
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
