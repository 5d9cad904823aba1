// Per-component statistics (area, centroid, bounding box) of a labelled image, as plain
// arithmetic shared by the CPU passes (components_cpu.cpp, run_components.cpp) and the CUDA kernels
// (component_stats.cu). Nothing here touches shared memory or atomics: the CPU feeds
// runs of pixels, the GPU folds a warp's pixels of one component into a single
// update and merges updates with atomics, and both end in the same finalisation.
//
// Coordinate sums are integers until the final division: summing doubles would make a
// centroid depend on the order the pixels arrive in (which differs between the CPU, the
// GPU and its atomics) and drift from skimage's and OpenCV's values.
#pragma once

#include "istd/common.h"

namespace istd {

// Bounds of a component that has no pixel yet: any first pixel replaces both ends.
// `far` is the largest value of the bounds' type.
template <typename T>
ISTD_HD ISTD_INLINE void stats_box_init(T* box, T far) {
  box[0] = far;
  box[1] = far;
  box[2] = -1;
  box[3] = -1;
}

// Adds the run of pixels (r, c0) .. (r, c1 - 1) of one row to a component's running area,
// coordinate sums (row, col) and inclusive bounds (min_row, min_col, max_row, max_col).
// Runs, not pixels: a row's foreground comes in runs, and one update per run is what makes
// dense masks cheap.
template <typename T>
ISTD_HD ISTD_INLINE void stats_add_run(int64_t& area, int64_t* sums, T* box, T r, T c0, T c1) {
  const int64_t len = static_cast<int64_t>(c1) - c0;
  area += len;
  sums[0] += static_cast<int64_t>(r) * len;
  // c0 + (c0 + 1) + ... + (c1 - 1); one of len and c0 + c1 - 1 is even.
  sums[1] += (static_cast<int64_t>(c0) + c1 - 1) * len / 2;
  if (r < box[0]) box[0] = r;
  if (c0 < box[1]) box[1] = c0;
  if (r > box[2]) box[2] = r;
  if (c1 - 1 > box[3]) box[3] = c1 - 1;
}

// Coordinate sums of `count` pixels of one image lying within 32 consecutive pixel indices,
// from the first of them (p0 at row r0, in an image of width W) and the sums of their
// offsets from it, packed as dp + (dr << 16) with dp = p - p0 and dr = r - r0 (both < 32,
// so neither half can carry into the other). Keeping offsets small lets a warp add them
// in 32 bits whatever the image size; the identity sum(p) = W * sum(r) + sum(c) recovers
// the column sum.
ISTD_HD ISTD_INLINE void stats_group_sums(int64_t count, int64_t p0, int64_t r0, uint32_t packed_offsets,
                                          int64_t W, int64_t* row_sum, int64_t* col_sum) {
  const int64_t dp = static_cast<int64_t>(packed_offsets & 0xffffu);
  const int64_t dr = static_cast<int64_t>(packed_offsets >> 16);
  const int64_t rows = count * r0 + dr;
  *row_sum = rows;
  *col_sum = count * p0 + dp - W * rows;
}

// Final statistics of one component: centroid (row, col) = sums / area in double, bbox =
// (min_row, min_col, max_row + 1, max_col + 1); all zero when the component has no pixel.
// The inputs are taken by value so that `bbox` may alias the running bounds.
ISTD_HD ISTD_INLINE void stats_finish(int64_t area, int64_t row_sum, int64_t col_sum, int64_t min_row,
                                      int64_t min_col, int64_t max_row, int64_t max_col, double* centroid,
                                      int64_t* bbox) {
  if (area == 0) {
    bbox[0] = bbox[1] = bbox[2] = bbox[3] = 0;
    centroid[0] = centroid[1] = 0.0;
    return;
  }
  bbox[0] = min_row;
  bbox[1] = min_col;
  bbox[2] = max_row + 1;
  bbox[3] = max_col + 1;
  centroid[0] = static_cast<double>(row_sum) / static_cast<double>(area);
  centroid[1] = static_cast<double>(col_sum) / static_cast<double>(area);
}

}  // namespace istd
