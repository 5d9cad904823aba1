// Statistics of label images: one OpenMP task per image, one raster pass over its labels.
//
// Infrared label images are almost entirely background, so the pass jumps over zeros eight
// labels (32 bytes) at a time and folds each run of equal labels into one update; rows that
// turn out dense finish pixel by pixel without branches (add_row).
#include "components_cpu.h"

#include <algorithm>
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

// A row with this many runs is dense: its remaining pixels are added one by one without
// branches, since on noise-like masks (runs of 1-3 pixels) the branches of the run walk
// mispredict at almost every run and cost more than the arithmetic.
constexpr int kDenseRuns = 16;

// Running statistics of one image, slot k for label k; slot 0 takes the background (and any
// label outside [1, M]) so that the per-pixel pass needs no branch.
struct Running {
  std::vector<int64_t> area, sums, box;
  explicit Running(int64_t M)
      : area(static_cast<size_t>(M + 1), 0), sums(static_cast<size_t>(2 * (M + 1)), 0),
        box(static_cast<size_t>(4 * (M + 1))) {
    for (int64_t k = 0; k <= M; ++k) stats_box_init<int64_t>(box.data() + 4 * k, INT64_MAX);
  }
};

inline uint32_t slot(int32_t label, uint32_t M) {
  const uint32_t k = static_cast<uint32_t>(label);
  return k <= M ? k : 0;
}

// Pixels [c, W) of row r one by one; rows arrive in order, so the current row is the
// maximum row of every component seen in it.
inline void add_pixels(const int32_t* l, int64_t c, int64_t W, int64_t r, uint32_t M, Running& s) {
  for (; c < W; ++c) {
    const uint32_t k = slot(l[c], M);
    s.area[k] += 1;
    s.sums[2 * k] += r;
    s.sums[2 * k + 1] += c;
    int64_t* b = s.box.data() + 4 * k;
    b[0] = std::min(b[0], r);
    b[1] = std::min(b[1], c);
    b[2] = r;
    b[3] = std::max(b[3], c);
  }
}

// Row r: runs of equal labels, jumping over background, until the row turns out dense.
inline void add_row(const int32_t* l, int64_t W, int64_t r, uint32_t M, Running& s) {
  int runs = 0;
  for (int64_t c = next_labelled(l, 0, W); c < W;) {
    if (++runs > kDenseRuns) return add_pixels(l, c, W, r, M, s);
    const int32_t label = l[c];
    const int64_t e = run_end(l, c + 1, W, label);
    const uint32_t k = slot(label, M);
    stats_add_run<int64_t>(s.area[k], &s.sums[2 * k], s.box.data() + 4 * k, r, c, e);
    c = next_labelled(l, e, W);
  }
}

}  // namespace

void component_stats(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M, int64_t* area,
                     double* centroid, int64_t* bbox) {
  const int64_t plane = H * W;
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const int32_t* lab = labels + n * plane;
    Running s(M);
    for (int64_t r = 0; r < H; ++r) add_row(lab + r * W, W, r, static_cast<uint32_t>(M), s);
    for (int64_t k = 0; k < M; ++k) {
      const int64_t* b = s.box.data() + 4 * (k + 1);
      area[n * M + k] = s.area[k + 1];
      stats_finish(s.area[k + 1], s.sums[2 * (k + 1)], s.sums[2 * (k + 1) + 1], b[0], b[1], b[2], b[3],
                   centroid + (n * M + k) * 2, bbox + (n * M + k) * 4);
    }
  }
}

}  // namespace cpu
}  // namespace istd
