// Statistics of label images: one OpenMP task per image, one raster pass over its labels.
//
// Infrared label images are almost entirely background, so the pass jumps over zeros eight
// labels (32 bytes) at a time, and folds each run of equal labels into one update, so that
// dense masks cost one update per run rather than per pixel.
#include "components_cpu.h"

#include <cstring>
#include <vector>

#include "istd/stats_core.h"

namespace istd {
namespace cpu {
namespace {

// First column >= c of row l (width W) with a non-zero label, or W; eight labels per test.
inline int64_t next_labelled(const int32_t* l, int64_t c, int64_t W) {
  for (; c + 8 <= W; c += 8) {
    uint64_t w[4];
    std::memcpy(w, l + c, sizeof(w));
    if ((w[0] | w[1] | w[2] | w[3]) != 0) break;
  }
  while (c < W && l[c] == 0) ++c;
  return c;
}

// First column >= c of row l (width W) whose label is not k, or W.
inline int64_t run_end(const int32_t* l, int64_t c, int64_t W, int32_t k) {
  while (c < W && l[c] == k) ++c;
  return c;
}

}  // namespace

void component_stats(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M, int64_t* area,
                     double* centroid, int64_t* bbox) {
  const int64_t plane = H * W;
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const int32_t* lab = labels + n * plane;
    int64_t* a = area + n * M;
    double* cen = centroid + n * M * 2;
    int64_t* box = bbox + n * M * 4;
    // The running bounds live in the bbox output itself; only the sums need a buffer.
    std::vector<int64_t> sums(static_cast<size_t>(2 * M), 0);
    for (int64_t k = 0; k < M; ++k) {
      a[k] = 0;
      stats_box_init<int64_t>(box + 4 * k, INT64_MAX);
    }
    for (int64_t r = 0; r < H; ++r) {
      const int32_t* l = lab + r * W;
      for (int64_t c = next_labelled(l, 0, W); c < W;) {
        const int32_t label = l[c];
        const int64_t e = run_end(l, c + 1, W, label);
        const int64_t k = static_cast<int64_t>(label) - 1;
        if (k >= 0 && k < M) stats_add_run<int64_t>(a[k], &sums[2 * k], box + 4 * k, r, c, e);
        c = next_labelled(l, e, W);
      }
    }
    for (int64_t k = 0; k < M; ++k) {
      int64_t* b = box + 4 * k;
      stats_finish(a[k], sums[2 * k], sums[2 * k + 1], b[0], b[1], b[2], b[3], cen + 2 * k, b);
    }
  }
}

}  // namespace cpu
}  // namespace istd
