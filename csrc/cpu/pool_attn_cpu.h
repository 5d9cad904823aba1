// CPU multiscale_maxpool and split_attention on raw pointers (no PyTorch types), for float
// and double, each accumulating in its own type (the binding runs half types through the
// float instantiation). Every tensor is addressed through its element strides. Results do
// not depend on the OpenMP thread count.
#pragma once

#include <cstdint>

#include "istd/common.h"
#include "istd/pool_attn_core.h"

namespace istd {
namespace cpu {

// Pools every level: levels[j].data / .idx receive level j and its window offsets.
template <typename T, typename Idx>
void mmp_forward(const T* u, Strides4 us, const MmpGeometry& g, const MmpLevel* levels);

// grad_u (every element written) from the level gradients and offsets in levels[j].
template <typename T, typename Idx>
void mmp_backward(const MmpLevel* levels, const MmpGeometry& g, T* gu, Strides4 gus);

// Z = SiLU(A) * SiLU(v); g.R <= kSaMaxBranches, any integer scales.
template <typename T>
void sa_forward(const SaInputs& in, T* z, Strides4 zs, const SaGeometry& g);

// Writes every gradient in `out` and returns dL/dT. Deterministic: work is split into
// (n, group, band of rows) tasks whose bands start at multiples of every scale, so each
// low-resolution footprint is summed by one task; the per-task temperature partials are
// added in task order.
template <typename T>
T sa_backward(const T* gz, Strides4 gzs, const SaInputs& in, const SaGrads& out, const SaGeometry& g);

}  // namespace cpu
}  // namespace istd
