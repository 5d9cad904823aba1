// GroupNorm (+ SiLU) forward. ATen's CPU group norm parallelises its statistics over N x G
// only, so LCRNet's one-group norms of one image ran on one thread (docs/performance.md);
// here the statistics are split into fixed-size chunks and the normalisation into row blocks,
// both spread over every thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// The kernels are compiled for AVX2 + FMA (after the standard headers, so no out-of-line
// library code is): SSE2's 4-wide SiLU lost to ATen's. The op routes here only where the CPU
// has them (group_norm_runs_here).
#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC target("avx2,fma")
#define ISTD_NORM_NEEDS_AVX2 1
#endif

#include "norm_cpu.h"
#include "vec_math_avx2.h"

namespace istd {
namespace cpu {
namespace {

// Elements per statistics chunk (64 KiB of float): the unit of the parallel split, so the
// statistics do not depend on the thread count.
constexpr int64_t kChunk = 16384;
// Elements per normalisation task.
constexpr int64_t kBlock = 4096;
// Below this many elements one thread is faster: waking the OpenMP team cost more than the
// work at LCRNet's deepest level (64 x 32 x 32 measured 2x slower than ATen in parallel).
constexpr int64_t kParallelMin = int64_t(1) << 17;

struct Moments {
  double count = 0.0, mean = 0.0, m2 = 0.0;
};

// Count, mean and sum of squared deviations of x[0, n) in one pass: sums of d = x - x[0]
// and d^2 in double, so M2 = sum d^2 - (sum d)^2 / n loses nothing that matters at float
// inputs (the shift keeps the two sums of the same order as the spread). The sums run in
// kLanes independent partial sums, added lane by lane at the end: one running double sum is
// a dependent add per element, which the compiler may not split into vector lanes (no
// -ffast-math), and it made the statistics slower than ATen's single-threaded ones.
constexpr int kLanes = 8;

template <typename T>
Moments chunk_moments(const T* x, int64_t n) {
  const double shift = static_cast<double>(x[0]);
  double s1[kLanes] = {}, s2[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const double d = static_cast<double>(x[i + k]) - shift;
      s1[k] += d;
      s2[k] += d * d;
    }
  for (int k = 0; i < n; ++i, ++k) {
    const double d = static_cast<double>(x[i]) - shift;
    s1[k] += d;
    s2[k] += d * d;
  }
  double sum = 0.0, sq = 0.0;
  for (int k = 0; k < kLanes; ++k) {
    sum += s1[k];
    sq += s2[k];
  }
  const double count = static_cast<double>(n), mean_d = sum / count;
  return {count, shift + mean_d, std::max(0.0, sq - sum * mean_d)};
}

// Chan et al.'s pairwise update: the moments of the union of two disjoint sets.
Moments merge(const Moments& a, const Moments& b) {
  const double count = a.count + b.count, delta = b.mean - a.mean;
  return {count, a.mean + delta * b.count / count, a.m2 + b.m2 + delta * delta * a.count * b.count / count};
}

// mean and 1/sqrt(var + eps) of each of the N*G segments (each L = C/G*HW elements long).
template <typename T>
void segment_stats(const T* x, int64_t segments, int64_t L, double eps, std::vector<double>& mean,
                   std::vector<double>& rstd) {
  const int64_t chunks = (L + kChunk - 1) / kChunk, tasks = segments * chunks;
  std::vector<Moments> part(static_cast<size_t>(tasks));
#pragma omp parallel for schedule(static) if (segments * L >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t s = t / chunks, begin = (t % chunks) * kChunk;
    part[t] = chunk_moments(x + s * L + begin, std::min(kChunk, L - begin));
  }
  for (int64_t s = 0; s < segments; ++s) {
    Moments m = part[s * chunks];
    for (int64_t k = 1; k < chunks; ++k) m = merge(m, part[s * chunks + k]);
    mean[s] = m.mean;
    rstd[s] = 1.0 / std::sqrt(m.m2 / m.count + eps);
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

#ifdef ISTD_NORM_NEEDS_AVX2
// float, 8 at a time; the tail runs through the same 8-wide code (zero-padded), so a value's
// result does not depend on where in the row it sits.
template <>
void normalize_block<float>(const float* x, float* y, int64_t n, float scale, float shift, bool silu) {
  const __m256 a = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
  const auto step = [&](const float* in, float* out) {
    const __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(in), a, b);
    _mm256_storeu_ps(out, silu ? silu256(v) : v);
  };
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) step(x + i, y + i);
  if (i < n) {
    float tail[8] = {};
    std::memcpy(tail, x + i, static_cast<size_t>(n - i) * sizeof(float));
    step(tail, tail);
    std::memcpy(y + i, tail, static_cast<size_t>(n - i) * sizeof(float));
  }
}
#endif

}  // namespace

template <typename T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean_out, T* rstd_out, int64_t N,
                        int64_t C, int64_t HW, int64_t G, double eps, bool silu) {
  if (N * C * HW == 0) return;
  const int64_t Cg = C / G;
  std::vector<double> mean(static_cast<size_t>(N * G)), rstd(static_cast<size_t>(N * G));
  segment_stats(x, N * G, Cg * HW, eps, mean, rstd);
  for (int64_t s = 0; s < N * G; ++s) {
    mean_out[s] = static_cast<T>(mean[s]);
    rstd_out[s] = static_cast<T>(rstd[s]);
  }
  const int64_t blocks = (HW + kBlock - 1) / kBlock, tasks = N * C * blocks;
#pragma omp parallel for schedule(static) if (N * C * HW >= kParallelMin)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t row = t / blocks, begin = (t % blocks) * kBlock, c = row % C, s = (row / C) * G + c / Cg;
    // The affine folded into one multiply-add per element (scale and shift in double, rounded once).
    const double a = rstd[s] * (gamma ? static_cast<double>(gamma[c]) : 1.0);
    const double b = (beta ? static_cast<double>(beta[c]) : 0.0) - mean[s] * a;
    const int64_t off = row * HW + begin;
    normalize_block(x + off, y + off, std::min(kBlock, HW - begin), static_cast<T>(a), static_cast<T>(b), silu);
  }
}

bool group_norm_runs_here() {
#ifdef ISTD_NORM_NEEDS_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

template void group_norm_forward<float>(const float*, const float*, const float*, float*, float*, float*, int64_t,
                                        int64_t, int64_t, int64_t, double, bool);
template void group_norm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                         int64_t, int64_t, int64_t, int64_t, double, bool);

}  // namespace cpu
}  // namespace istd
