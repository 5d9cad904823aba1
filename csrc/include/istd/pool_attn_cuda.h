// Host launchers of the CUDA multiscale_maxpool and split_attention kernels. Only the CUDA
// runtime API appears here (no PyTorch types): the binding passes raw pointers, element
// strides (inside the descriptors of istd/pool_attn_core.h) and the stream, and owns every
// allocation, including the split-attention temperature workspace.
//
// All launchers return the cudaError_t of the launch (cudaGetLastError), or
// cudaErrorInvalidValue for arguments they cannot handle. Float16 and bfloat16 accumulate
// in float32, float32 in float32, float64 in float64.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "istd/common.h"
#include "istd/pool_attn_core.h"

// Pools u ([N, D, H, W], any strides) into levels[j].data with offsets in levels[j].idx
// (uint8 when idx_u8, else int32), j < geo.radix. Reads u once.
cudaError_t istd_mmp_fwd_cuda(istd::DType dtype, bool idx_u8, const void* u, istd::Strides4 u_strides,
                              const istd::MmpGeometry& geo, const istd::MmpLevel* levels, cudaStream_t stream);

// grad_u ([N, D, H, W], every element written once, no atomics) from the level gradients
// levels[j].data and the offsets levels[j].idx the forward stored.
cudaError_t istd_mmp_bwd_cuda(istd::DType dtype, bool idx_u8, const istd::MmpLevel* levels,
                              const istd::MmpGeometry& geo, void* grad_u, istd::Strides4 gu_strides,
                              cudaStream_t stream);

// Z = SiLU(A) * SiLU(v) ([N, D, H, W] through z_strides).
cudaError_t istd_split_attn_fwd_cuda(istd::DType dtype, const istd::SaInputs& in, void* z, istd::Strides4 z_strides,
                                     const istd::SaGeometry& geo, cudaStream_t stream);

// Elements of the backward's temperature workspace, in the accumulation type (float64 for
// float64 inputs, float32 otherwise); 0 when the scales do not fit the tiling (the backward
// then refuses the call) or there is nothing to compute.
size_t istd_split_attn_bwd_workspace_elems(const istd::SaGeometry& geo);

// Every gradient in `out` plus grad_temperature (one element of the input dtype). Blocks
// own (n, group, tile) with tile sides multiple of every scale, so each low-resolution
// footprint is summed inside one block in a fixed order; each block writes its temperature
// partial to the workspace and a second kernel adds them in index order. Bitwise
// deterministic. workspace must hold istd_split_attn_bwd_workspace_elems(geo) elements.
cudaError_t istd_split_attn_bwd_cuda(istd::DType dtype, const void* grad_z, istd::Strides4 gz_strides,
                                     const istd::SaInputs& in, const istd::SaGrads& out, void* grad_temperature,
                                     const istd::SaGeometry& geo, void* workspace, size_t workspace_elems,
                                     cudaStream_t stream);
