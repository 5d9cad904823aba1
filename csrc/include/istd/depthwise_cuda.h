// Host launchers of the CUDA depthwise convolution kernels. Only the CUDA runtime API
// appears here (no PyTorch types): the binding passes raw pointers, element strides and
// the stream, and owns every allocation, including the grad-weight workspace.
//
// All launchers return the cudaError_t of the launch (cudaGetLastError), or
// cudaErrorInvalidValue for arguments they cannot handle. Tensors are addressed through
// their element strides; weight is contiguous [C, KH, KW], bias and grad_b contiguous [C].
// Float16 and bfloat16 accumulate in float32, float32 in float32, float64 in float64.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "istd/common.h"

// y = conv(x, weight) + bias; bias may be null.
cudaError_t istd_dw_fwd_cuda(istd::DType dtype, const void* x, istd::Strides4 x_strides, const void* weight,
                             const void* bias, void* y, istd::Strides4 y_strides, const istd::DwGeometry& geo,
                             cudaStream_t stream);

// grad_x ([N, C, H, W], every element written) from grad_y ([N, C, Ho, Wo]).
cudaError_t istd_dw_bwd_input_cuda(istd::DType dtype, const void* grad_y, istd::Strides4 gy_strides,
                                   const void* weight, void* grad_x, istd::Strides4 gx_strides,
                                   const istd::DwGeometry& geo, cudaStream_t stream);

// Bytes of device workspace istd_dw_bwd_weight_cuda needs for this shape (0 when C == 0).
size_t istd_dw_bwd_weight_workspace_bytes(const istd::DwGeometry& geo, istd::DType dtype);

// grad_w (contiguous [C, KH, KW]) and, when grad_b is not null, grad_b ([C]). Deterministic:
// per-chunk partial sums land in the workspace, then are combined in chunk order; the chunk
// split depends on the shape only. workspace must hold
// istd_dw_bwd_weight_workspace_bytes(geo, dtype) bytes, 16-byte aligned.
cudaError_t istd_dw_bwd_weight_cuda(istd::DType dtype, const void* grad_y, istd::Strides4 gy_strides,
                                    const void* x, istd::Strides4 x_strides, void* grad_w, void* grad_b,
                                    const istd::DwGeometry& geo, void* workspace, size_t workspace_bytes,
                                    cudaStream_t stream);
