// Host launcher of the CUDA component statistics. CUDA runtime API only: the binding
// passes raw pointers and the stream and owns every allocation.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// labels: contiguous int32 [N, H, W], 0 = background, components 1..M; other values are
// ignored. Outputs, fully written, contiguous: area int64 [N, M], centroid float64 [N, M, 2]
// (row, col), bbox int64 [N, M, 4] (min_row, min_col, max_row + 1, max_col + 1); all zero
// for a label that no pixel carries. Workspace: sums int64 [N * M * 2], bounds int32
// [N * M * 4]; neither needs initialising. H * W < 2^31. Returns the launches'
// cudaError_t (cudaGetLastError), or cudaErrorInvalidValue for arguments it cannot handle.
cudaError_t istd_component_stats_cuda(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M,
                                      int64_t* area, double* centroid, int64_t* bbox, int64_t* sums,
                                      int32_t* bounds, cudaStream_t stream);
