// GroupNorm (+ SiLU) forward. ATen's CPU group norm parallelises its statistics over N x G
// only, so LCRNet's one-group norms of one image ran on one thread (docs/performance.md);
// here the statistics are split into fixed-size chunks and the normalisation into row blocks,
// both spread over every thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// Compiled for AVX2 + FMA: SSE2's 4-wide SiLU lost to ATen's.
#include "avx2_target.h"
#include "nhwc_cpu.h"
#include "norm_cpu.h"
#include "vec_math_avx2.h"

namespace istd {
namespace cpu {
namespace {

// Elements per statistics chunk (64 KiB of float): the unit of the parallel split, so the
// statistics do not depend on the thread count.
constexpr int64_t kChunk = 16384;
// The normalisation's task size and parallel threshold are nhwc_cpu.h's kTileElements and
// kParallelMin, shared with the residual.

struct Moments {
  double count = 0.0, mean = 0.0, m2 = 0.0;
};

// Count, mean and sum of squared deviations of `rows` rows of `len` elements, `stride` apart
// (one row: a contiguous run), in one pass: sums of d = x - x[0]
// and d^2 in double, so M2 = sum d^2 - (sum d)^2 / n loses nothing that matters at float
// inputs (the shift keeps the two sums of the same order as the spread). The sums run in
// kLanes independent partial sums, added lane by lane at the end: one running double sum is
// a dependent add per element, which the compiler may not split into vector lanes (no
// -ffast-math), and it made the statistics slower than ATen's single-threaded ones.
constexpr int kLanes = 8;

// The moments of n values from the sums of d = x - shift and of d^2.
inline Moments shifted_moments(int64_t n, double shift, double sum, double sq) {
  const double count = static_cast<double>(n), mean_d = sum / count;
  return {count, shift + mean_d, std::max(0.0, sq - sum * mean_d)};
}

template <typename T>
Moments block_moments(const T* x, int64_t rows, int64_t len, int64_t stride) {
  const double shift = static_cast<double>(x[0]);
  double s1[kLanes] = {}, s2[kLanes] = {};
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * stride;
    int64_t i = 0;
    for (; i + kLanes <= len; i += kLanes)
      for (int k = 0; k < kLanes; ++k) {
        const double d = static_cast<double>(row[i + k]) - shift;
        s1[k] += d;
        s2[k] += d * d;
      }
    for (int k = 0; i < len; ++i, ++k) {
      const double d = static_cast<double>(row[i]) - shift;
      s1[k] += d;
      s2[k] += d * d;
    }
  }
  double sum = 0.0, sq = 0.0;
  for (int k = 0; k < kLanes; ++k) {
    sum += s1[k];
    sq += s2[k];
  }
  return shifted_moments(rows * len, shift, sum, sq);
}

#ifdef ISTD_CPU_AVX2
// float: the same shifted sums, 16 values per step in four double vectors each for the sums and
// the squares (independent chains, so the adds' latency overlaps): the norm alone at C16
// 256 x 256 went from 0.53 to 0.31-0.43 ms.
template <>
Moments block_moments<float>(const float* x, int64_t rows, int64_t len, int64_t stride) {
  const double shift = static_cast<double>(x[0]);
  const __m256d sh = _mm256_set1_pd(shift);
  __m256d s1[4], s2[4];
  for (int k = 0; k < 4; ++k) s1[k] = s2[k] = _mm256_setzero_pd();
  double t1 = 0.0, t2 = 0.0;
  const auto add = [&](__m128 v, int k) {
    const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(v), sh);
    s1[k] = _mm256_add_pd(s1[k], d);
    s2[k] = _mm256_fmadd_pd(d, d, s2[k]);
  };
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * stride;
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
      const __m256 a = _mm256_loadu_ps(row + i), b = _mm256_loadu_ps(row + i + 8);
      add(_mm256_castps256_ps128(a), 0);
      add(_mm256_extractf128_ps(a, 1), 1);
      add(_mm256_castps256_ps128(b), 2);
      add(_mm256_extractf128_ps(b, 1), 3);
    }
    for (; i < len; ++i) {
      const double d = static_cast<double>(row[i]) - shift;
      t1 += d;
      t2 += d * d;
    }
  }
  alignas(32) double l1[4], l2[4];
  _mm256_store_pd(l1, _mm256_add_pd(_mm256_add_pd(s1[0], s1[1]), _mm256_add_pd(s1[2], s1[3])));
  _mm256_store_pd(l2, _mm256_add_pd(_mm256_add_pd(s2[0], s2[1]), _mm256_add_pd(s2[2], s2[3])));
  return shifted_moments(rows * len, shift, t1 + (l1[0] + l1[1]) + (l1[2] + l1[3]),
                         t2 + (l2[0] + l2[1]) + (l2[2] + l2[3]));
}
#endif

// Chan et al.'s pairwise update: the moments of the union of two disjoint sets.
Moments merge(const Moments& a, const Moments& b) {
  const double count = a.count + b.count, delta = b.mean - a.mean;
  return {count, a.mean + delta * b.count / count, a.m2 + b.m2 + delta * delta * a.count * b.count / count};
}

// mean and 1/sqrt(var + eps) of each (image, group) segment. A segment is one contiguous run
// of C/G * HW elements, except for an NHWC x with several groups: there it is HW rows of C/G
// channels, C apart, split into chunks of whole rows.
template <typename T>
void segment_stats(const T* x, const GroupNormArgs& a, std::vector<double>& mean, std::vector<double>& rstd) {
  const int64_t segments = a.N * a.G, Cg = a.C / a.G, L = Cg * a.HW;
  const bool strided = a.x_nhwc && a.G > 1;
  const int64_t rows = strided ? std::max<int64_t>(1, kChunk / Cg) : 0;  // rows per strided chunk
  const int64_t chunks = strided ? (a.HW + rows - 1) / rows : (L + kChunk - 1) / kChunk, tasks = segments * chunks;
  std::vector<Moments> part(static_cast<size_t>(tasks));
#pragma omp parallel for schedule(static) if (segments * L >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t s = t / chunks, k = t % chunks;
    if (strided) {
      const int64_t n = s / a.G, r0 = k * rows;
      part[t] = block_moments(x + (n * a.HW + r0) * a.C + (s % a.G) * Cg, std::min(rows, a.HW - r0), Cg, a.C);
    } else {
      part[t] = block_moments(x + s * L + k * kChunk, 1, std::min(kChunk, L - k * kChunk), 0);
    }
  }
  for (int64_t s = 0; s < segments; ++s) {
    Moments m = part[s * chunks];
    for (int64_t k = 1; k < chunks; ++k) m = merge(m, part[s * chunks + k]);
    mean[s] = m.mean;
    rstd[s] = 1.0 / std::sqrt(m.m2 / m.count + a.eps);
  }
}

// y[i] = x[i] * scale + shift over one block, then y * sigmoid(y) when silu.
template <typename T>
void normalize_block(const T* x, T* y, int64_t n, T scale, T shift, bool silu) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i] * scale + shift;
    y[i] = silu ? v / (T(1) + std::exp(-v)) : v;
  }
}

// One NHWC pixel: y[c] = x[c] * scale[c] + shift[c], then the SiLU when silu.
template <typename T>
void normalize_pixel(const T* x, T* y, int64_t C, const T* scale, const T* shift, bool silu) {
  for (int64_t c = 0; c < C; ++c) {
    const T v = x[c] * scale[c] + shift[c];
    y[c] = silu ? v / (T(1) + std::exp(-v)) : v;
  }
}

#ifdef ISTD_CPU_AVX2
// out[0, 8) = in * a + b (one rounding), then the SiLU when silu: both layouts' float kernels
// run every value through this step, so NCHW and NHWC outputs agree bit for bit.
inline void affine8(const float* in, __m256 a, __m256 b, bool silu, float* out) {
  const __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(in), a, b);
  _mm256_storeu_ps(out, silu ? silu256(v) : v);
}

// The last n < 8 values through the same 8-wide step (zero-padded), so a value's result does
// not depend on where in the row it sits.
inline void affine8_tail(const float* in, __m256 a, __m256 b, bool silu, float* out, int64_t n) {
  float tail[8] = {};
  std::memcpy(tail, in, static_cast<size_t>(n) * sizeof(float));
  affine8(tail, a, b, silu, tail);
  std::memcpy(out, tail, static_cast<size_t>(n) * sizeof(float));
}

template <>
void normalize_block<float>(const float* x, float* y, int64_t n, float scale, float shift, bool silu) {
  const __m256 a = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) affine8(x + i, a, b, silu, y + i);
  if (i < n) affine8_tail(x + i, a, b, silu, y + i, n - i);
}

template <>
void normalize_pixel<float>(const float* x, float* y, int64_t C, const float* scale, const float* shift, bool silu) {
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) affine8(x + c, _mm256_loadu_ps(scale + c), _mm256_loadu_ps(shift + c), silu, y + c);
  if (c < C) {
    float a[8] = {}, b[8] = {};
    std::memcpy(a, scale + c, static_cast<size_t>(C - c) * sizeof(float));
    std::memcpy(b, shift + c, static_cast<size_t>(C - c) * sizeof(float));
    affine8_tail(x + c, _mm256_loadu_ps(a), _mm256_loadu_ps(b), silu, y + c, C - c);
  }
}
#endif

// The affine of every (image, channel): y = x * scale + shift, folded from the statistics, gamma
// and beta in double and rounded once.
template <typename T>
void affine_coefficients(const T* gamma, const T* beta, const std::vector<double>& mean,
                         const std::vector<double>& rstd, const GroupNormArgs& a, std::vector<T>& scale,
                         std::vector<T>& shift) {
  for (int64_t row = 0; row < a.N * a.C; ++row) {
    const int64_t c = row % a.C, s = (row / a.C) * a.G + c / (a.C / a.G);
    const double k = rstd[s] * (gamma ? static_cast<double>(gamma[c]) : 1.0);
    scale[row] = static_cast<T>(k);
    shift[row] = static_cast<T>((beta ? static_cast<double>(beta[c]) : 0.0) - mean[s] * k);
  }
}

// NCHW -> NCHW: blocks of kTileElements elements of one channel row.
template <typename T>
void apply_nchw(const T* x, T* y, const T* scale, const T* shift, const GroupNormArgs& a) {
  const int64_t blocks = (a.HW + kTileElements - 1) / kTileElements, tasks = a.N * a.C * blocks;
#pragma omp parallel for schedule(static) if (a.N * a.C * a.HW >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t row = t / blocks, begin = (t % blocks) * kTileElements, off = row * a.HW + begin;
    normalize_block(x + off, y + off, std::min(kTileElements, a.HW - begin), scale[row], shift[row], a.silu);
  }
}

// NHWC -> NHWC: blocks of whole pixels (about kTileElements elements).
template <typename T>
void apply_nhwc(const T* x, T* y, const T* scale, const T* shift, const GroupNormArgs& a) {
  const int64_t px = std::max<int64_t>(1, kTileElements / a.C), blocks = (a.HW + px - 1) / px, tasks = a.N * blocks;
#pragma omp parallel for schedule(static) if (a.N * a.C * a.HW >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / blocks, p0 = (t % blocks) * px, p1 = std::min(a.HW, p0 + px);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t off = (n * a.HW + p) * a.C;
      normalize_pixel(x + off, y + off, a.C, scale + n * a.C, shift + n * a.C, a.silu);
    }
  }
}

// NCHW -> NHWC: a tile of pixels of every channel is normalised row by row into the L1
// buffer, then written out transposed; the transposition costs a pass over L1 instead of a
// second pass over memory (a separate channels_last copy).
template <typename T>
void apply_nchw_to_nhwc(const T* x, T* y, const T* scale, const T* shift, const GroupNormArgs& a) {
  for_each_pixel_tile<T>(a.N, a.C, a.HW, [&](int64_t n, int64_t p0, int64_t np, T* buf, int64_t P) {
    for (int64_t c = 0; c < a.C; ++c) {
      const int64_t row = n * a.C + c;
      normalize_block(x + row * a.HW + p0, buf + c * P, np, scale[row], shift[row], a.silu);
    }
    transpose_block(buf, P, a.C, np, y + (n * a.HW + p0) * a.C, a.C);
  });
}

}  // namespace

template <typename T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean_out, T* rstd_out,
                        const GroupNormArgs& a) {
  if (a.N * a.C * a.HW == 0) return;
  std::vector<double> mean(static_cast<size_t>(a.N * a.G)), rstd(static_cast<size_t>(a.N * a.G));
  segment_stats(x, a, mean, rstd);
  for (int64_t s = 0; s < a.N * a.G; ++s) {
    mean_out[s] = static_cast<T>(mean[s]);
    rstd_out[s] = static_cast<T>(rstd[s]);
  }
  std::vector<T> scale(static_cast<size_t>(a.N * a.C)), shift(static_cast<size_t>(a.N * a.C));
  affine_coefficients(gamma, beta, mean, rstd, a, scale, shift);
  if (a.x_nhwc)
    apply_nhwc(x, y, scale.data(), shift.data(), a);
  else if (a.y_nhwc)
    apply_nchw_to_nhwc(x, y, scale.data(), shift.data(), a);
  else
    apply_nchw(x, y, scale.data(), shift.data(), a);
}

template void group_norm_forward<float>(const float*, const float*, const float*, float*, float*, float*,
                                        const GroupNormArgs&);
template void group_norm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                         const GroupNormArgs&);

}  // namespace cpu
}  // namespace istd
