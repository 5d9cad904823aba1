// Host launcher of the fused CUDA HLKConv forward. Only the CUDA runtime API appears here
// (no PyTorch types): the binding passes raw pointers, element strides and the stream.
//
// x and y are addressed through their element strides. Weights are contiguous: w0
// [C, k1, k1], w1 [C, k2, k2], w_pw [Cout, 2 * C / groups] (the a-half of each row first,
// then the d-half); biases contiguous [C] / [Cout] or null. Float16 and bfloat16 accumulate
// in float32, float32 in float32, float64 in float64; the intermediates a and d stay in the
// accumulation type.
//
// Returns the cudaError_t of the launch (cudaGetLastError), or cudaErrorInvalidValue for
// arguments it cannot handle (bad geometry, coordinates beyond 32 bits, or a group whose
// per-output state alone does not fit in shared memory).
#pragma once

#include <cuda_runtime_api.h>

#include "istd/common.h"
#include "istd/hlk_core.h"

// y = pw(concat(a, d)) + b_pw with a = dw_k1(x) + b0 and d = dw_k2,dil(a) + b1, per group.
cudaError_t istd_hlk_fwd_cuda(istd::DType dtype, const void* x, istd::Strides4 x_strides, const void* w0,
                              const void* b0, const void* w1, const void* b1, const void* w_pw, const void* b_pw,
                              void* y, istd::Strides4 y_strides, const istd::HlkGeometry& geo, cudaStream_t stream);
