// CPU GroupNorm forward, optionally followed by SiLU, on raw pointers (no PyTorch types),
// instantiated for float and double, statistics in double.
#pragma once

#include <cstdint>

namespace istd {
namespace cpu {

// x and y are contiguous [N, C, HW]; gamma and beta are [C] or null (1 and 0). Per image n
// and group g (channels [g C/G, (g+1) C/G)): y = (x - mean) / sqrt(var + eps) * gamma[c] +
// beta[c] with the biased variance, then y * sigmoid(y) when silu; mean and rstd ([N, G])
// receive each group's mean and 1 / sqrt(var + eps), as ATen's native_group_norm returns them
// for its backward. The statistics are reproducible for any OpenMP thread count: the
// reduction split depends on the shape only.
template <typename T>
void group_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t N, int64_t C,
                        int64_t HW, int64_t G, double eps, bool silu);

// Whether this CPU runs group_norm_forward (on x86-64 it is compiled for AVX2 + FMA).
bool group_norm_runs_here();

}  // namespace cpu
}  // namespace istd
