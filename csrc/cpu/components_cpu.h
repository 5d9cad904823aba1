// Statistics of CPU label images on raw pointers (no PyTorch types). The labelling itself is
// run-based and lives in run_components.h.
#pragma once

#include <cstdint>

namespace istd {
namespace cpu {

// Statistics of labelled images in one pass: labels contiguous int32 [N, H, W] with values
// in [0, M] (others are ignored); outputs contiguous [N, M] area, [N, M, 2] centroid
// (row, col) and [N, M, 4] bbox (min_row, min_col, max_row + 1, max_col + 1), all fully
// written, zero for labels that do not occur. Centroids are int64 coordinate sums divided
// by the area in double, so they are exact to the last bit of the division.
void component_stats(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M, int64_t* area,
                     double* centroid, int64_t* bbox);

}  // namespace cpu
}  // namespace istd
