// Per-element cores of multiscale_maxpool and split_attention, shared by the CPU
// implementation (csrc/cpu/pool_attn_cpu.cpp) and the CUDA kernels (csrc/cuda/pool_attn.cu).
// The CPU build is where these are tested without a GPU, so every decision that fixes a
// result (tie and NaN rule of the window argmax, the softmax formula, the order of the
// footprint sums) lives here and nowhere else.
#pragma once

#include <cmath>

#include "istd/common.h"
#include "istd/depthwise_core.h"

namespace istd {

// split_attention's kernels keep per-branch state in fixed-size register arrays; the Triton
// backend has the same limit.
constexpr int kSaMaxBranches = 4;

template <typename Acc>
ISTD_HD ISTD_INLINE bool is_nan(Acc v) {
  return v != v;  // NOLINT: the only NaN test that needs no <cmath> overload on the device
}

ISTD_HD ISTD_INLINE float exp_acc(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}
ISTD_HD ISTD_INLINE double exp_acc(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}

// ------------------------------------------------------------------------------------
// multiscale_maxpool

// Max of the window whose top-left cell is base (row stride rs, column stride cs), hlen x
// wlen cells (already clipped to the image), s the window side. Returns the offset dy*s + dx
// of the recorded cell and the max in *out. The update `v > m || isnan(v)` is F.max_pool2d's
// CPU rule: among equal maxima the first in row-major order wins, a NaN wins over numbers and
// the last NaN is recorded. Comparing in Acc is exact: half types widen without rounding.
template <typename T, typename Acc, typename I, typename S>
ISTD_HD ISTD_INLINE int mmp_window_argmax(const T* base, S rs, S cs, I hlen, I wlen, int s, Acc* out) {
  Acc m = convert<Acc>(base[0]);
  int arg = 0;
  for (I dy = 0; dy < hlen; ++dy) {
    const T* row = base + static_cast<S>(dy) * rs;
    for (I dx = (dy == 0 ? 1 : 0); dx < wlen; ++dx) {
      const Acc v = convert<Acc>(row[static_cast<S>(dx) * cs]);
      if (v > m || is_nan(v)) {
        m = v;
        arg = static_cast<int>(dy) * s + static_cast<int>(dx);
      }
    }
  }
  *out = m;
  return arg;
}

// Offset of input cell (ih, iw) inside its s x s window: the value the forward stored when
// this cell was the window's argmax.
template <typename I>
ISTD_HD ISTD_INLINE int mmp_cell_offset(I ih, I iw, int s) {
  return static_cast<int>(ih % s) * s + static_cast<int>(iw % s);
}

// ------------------------------------------------------------------------------------
// split_attention
//
// Per pixel and group, with e_j = logit_j / T (computed as logit_j * (1/T), like the Triton
// kernel) and w = softmax(e):
//   A = residual + sum_j w_j up_j,  Z = SiLU(A) SiLU(v)
// Backward, per channel: dA, dv; over the group's channels gw_j = sum_c dA_c up_j,c; then
// de_j = w_j (gw_j - sum_i w_i gw_i), dlogit_j = de_j / T and dT += sum_j de_j * (-e_j / T).

// Scaled logits and softmax weights of one pixel; `logit(j)` reads the raw logit of branch j.
template <int R, typename Acc, typename Loader>
ISTD_HD ISTD_INLINE void sa_softmax(const Loader& logit, Acc inv_t, Acc (&e)[R], Acc (&w)[R]) {
  Acc m = Acc(0);
#pragma unroll
  for (int j = 0; j < R; ++j) {
    e[j] = logit(j) * inv_t;
    m = (j == 0 || e[j] > m) ? e[j] : m;
  }
  Acc sum = Acc(0);
#pragma unroll
  for (int j = 0; j < R; ++j) {
    w[j] = exp_acc(e[j] - m);
    sum += w[j];
  }
  const Acc inv_sum = Acc(1) / sum;
#pragma unroll
  for (int j = 0; j < R; ++j) w[j] *= inv_sum;
}

// A of one element from its residual and the gathered low-resolution branch values.
template <int R, typename Acc>
ISTD_HD ISTD_INLINE Acc sa_combine(Acc residual, const Acc (&w)[R], const Acc (&up)[R]) {
  Acc a = residual;
#pragma unroll
  for (int j = 0; j < R; ++j) a += w[j] * up[j];
  return a;
}

template <typename Acc>
ISTD_HD ISTD_INLINE Acc sigmoid_acc(Acc x) {
  return Acc(1) / (Acc(1) + exp_acc(-x));
}

// Z = SiLU(a) * SiLU(v), written as the Triton kernel writes it.
template <typename Acc>
ISTD_HD ISTD_INLINE Acc sa_gate(Acc a, Acc v) {
  return a * sigmoid_acc(a) * (v * sigmoid_acc(v));
}

// dL/dA and dL/dv of one element from dL/dZ; d SiLU(x)/dx = s (1 + x (1 - s)).
template <typename Acc>
ISTD_HD ISTD_INLINE void sa_gate_grad(Acc a, Acc v, Acc gz, Acc* ga, Acc* gv) {
  const Acc sa = sigmoid_acc(a);
  const Acc sv = sigmoid_acc(v);
  *ga = gz * (v * sv) * (sa * (Acc(1) + a * (Acc(1) - sa)));
  *gv = gz * (a * sa) * (sv * (Acc(1) + v * (Acc(1) - sv)));
}

// Softmax backward of one pixel: dL/dlogit_j into glogit, and the pixel's term
// sum_j de_j e_j of the temperature gradient. The caller sums that term over its pixels and
// multiplies the sum by -1/T once, so every backend rounds the same kind of partial sum.
template <int R, typename Acc>
ISTD_HD ISTD_INLINE Acc sa_logit_grads(const Acc (&e)[R], const Acc (&w)[R], const Acc (&gw)[R], Acc inv_t,
                                       Acc (&glogit)[R]) {
  Acc dot = Acc(0);
#pragma unroll
  for (int j = 0; j < R; ++j) dot += w[j] * gw[j];
  Acc t = Acc(0);
#pragma unroll
  for (int j = 0; j < R; ++j) {
    const Acc ge = w[j] * (gw[j] - dot);
    glogit[j] = ge * inv_t;
    t += ge * e[j];
  }
  return t;
}

// Gradient of one low-resolution branch pixel: the sum of prod (dA * w_j, zero outside the
// image) over its s x s footprint, in row-major order. `prod(dy, dx)` reads footprint cell
// (dy, dx). The fixed order makes the result independent of how work is tiled.
template <typename Acc, typename Prod>
ISTD_HD ISTD_INLINE Acc sa_footprint_sum(const Prod& prod, int s) {
  Acc acc = Acc(0);
  for (int dy = 0; dy < s; ++dy)
    for (int dx = 0; dx < s; ++dx) acc += prod(dy, dx);
  return acc;
}

// Least common multiple of the scales, or `cap` as soon as it would exceed cap (callers
// only need to know whether a tile side of at most cap can be a multiple of every scale).
ISTD_HD ISTD_INLINE int64_t scales_lcm(const int* scales, int r, int64_t cap) {
  int64_t l = 1;
  for (int j = 0; j < r; ++j) {
    int64_t a = l, b = scales[j];
    while (b != 0) {
      const int64_t t = a % b;
      a = b;
      b = t;
    }
    l = l / a * scales[j];
    if (l > cap) return cap + 1;
  }
  return l;
}

// Geometry of one split_attention call: residual/v/Z are [N, D, H, W], logits
// [N, G*R, H, W], branch j [N, D, Hb[j], Wb[j]] with Hb = ceil(H / s_j).
struct SaGeometry {
  int64_t N, D, H, W, G;
  int R;
  int scales[kSaMaxBranches];
  int64_t Hb[kSaMaxBranches], Wb[kSaMaxBranches];
};

// Geometry of one multiscale_maxpool call: u is [N, D, H, W] with D = groups * radix * C,
// level j is [N, groups*C, ceil(H/s_j), ceil(W/s_j)].
struct MmpGeometry {
  int64_t N, D, H, W, groups, radix, C;
};

// One pooling level as the launchers see it. Forward: `data` is the level (written) and
// `idx` its window offsets (written). Backward: `data` is the level's gradient (read) and
// `idx` the offsets the forward stored (read).
struct MmpLevel {
  int s;
  int64_t Ho, Wo;
  void* data;
  Strides4 data_s;
  void* idx;
  Strides4 idx_s;
};

// The inputs of split_attention, addressed through their element strides; temperature is
// one element.
struct SaInputs {
  const void* branch[kSaMaxBranches];
  Strides4 branch_s[kSaMaxBranches];
  const void* logits;
  Strides4 logits_s;
  const void* temperature;
  const void* residual;
  Strides4 residual_s;
  const void* v;
  Strides4 v_s;
};

// The gradients split_attention's backward writes (every element of each).
struct SaGrads {
  void* branch[kSaMaxBranches];
  Strides4 branch_s[kSaMaxBranches];
  void* logits;
  Strides4 logits_s;
  void* residual;
  Strides4 residual_s;
  void* v;
  Strides4 v_s;
};

}  // namespace istd
