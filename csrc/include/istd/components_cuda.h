// Host launcher of the CUDA connected-component labelling. CUDA runtime API only: the
// binding passes raw pointers and the stream and owns every allocation.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

// mask: contiguous uint8 [N, H, W], non-zero = foreground. labels: contiguous int32
// [N, H, W], fully written (0 background, 1..counts[n] in raster order of each component's
// first pixel, as the CPU kernel). counts: int64 [N]. workspace: int32 [N * H * W].
// connectivity 4 or 8; H * W < 2^31. Returns the launch's cudaError_t (cudaGetLastError),
// or cudaErrorInvalidValue for arguments it cannot handle.
cudaError_t istd_connected_components_cuda(const uint8_t* mask, int32_t* labels, int64_t* counts,
                                           int32_t* workspace, int64_t N, int64_t H, int64_t W, int connectivity,
                                           cudaStream_t stream);
