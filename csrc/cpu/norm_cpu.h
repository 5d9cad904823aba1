// CPU GroupNorm forward, optionally followed by SiLU, on raw pointers (no PyTorch types),
// instantiated for float and double, statistics in double.
#pragma once

#include <cstdint>

namespace istd {
namespace cpu {

// Sizes and options of one group_norm_forward call.
struct GroupNormArgs {
  int64_t N, C, HW, G;
  double eps;
  bool silu;    // y = SiLU(norm(x)) instead of norm(x)
  bool x_nhwc;  // x is [N, HW, C] in memory (channels_last) instead of [N, C, HW]
  bool y_nhwc;  // y likewise; an NHWC x needs an NHWC y (NHWC -> NCHW is not provided)
};

// x and y are contiguous in their layouts; gamma and beta are [C] or null (1 and 0). Per
// image n and group g (channels [g C/G, (g+1) C/G)): y = (x - mean) / sqrt(var + eps) *
// gamma[c] + beta[c] with the biased variance, then y * sigmoid(y) when silu; mean and rstd
// ([N, G]) receive each group's mean and 1 / sqrt(var + eps), as ATen's native_group_norm
// returns them for its backward. The statistics are reproducible for any OpenMP thread count:
// the reduction split depends on the shape and layout only.
template <typename T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, const GroupNormArgs& a);

}  // namespace cpu
}  // namespace istd
