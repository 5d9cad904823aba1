// CPU connected-component labelling: one OpenMP task per image, two raster passes.
//
// Pass 1 hangs every foreground pixel under the roots of its already-visited neighbours,
// using the label array itself as the union-find parent array (so no extra memory). Pass 2
// turns parents into consecutive labels. Infrared masks are almost entirely background, so
// both passes jump over background 8 bytes at a time and the cost of an almost empty image
// is little more than reading it once per pass.
#include "components_cpu.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "istd/stats_core.h"
#include "istd/union_find.h"
#include "mask_scan.h"

namespace istd {
namespace cpu {
namespace {

// Links pixel p (at row r, column c, foreground) to its foreground neighbours above and to
// the left. Sets parent[p] to the merged root, or to p if it has none.
template <int kConn>
inline void link_pixel(const uint8_t* m, int32_t* parent, int64_t r, int64_t c, int64_t W, int32_t p) {
  const uint8_t* up = m - W;
  const bool has_left = c > 0 && m[c - 1];
  const bool has_up = r > 0 && up[c];
  int32_t root = -1;
  auto link = [&](int32_t q) { root = root < 0 ? uf::find_root(parent, q) : uf::unite(parent, root, q); };
  if (kConn == 4) {
    if (has_up) link(p - static_cast<int32_t>(W));
    if (has_left) link(p - 1);
  } else if (has_up) {
    // Up touches up-left, up-right and left (diagonally), so those are already joined to it.
    link(p - static_cast<int32_t>(W));
  } else {
    // Left and up-left touch vertically: one of them suffices. Up-right touches neither.
    if (has_left) {
      link(p - 1);
    } else if (r > 0 && c > 0 && up[c - 1]) {
      link(p - static_cast<int32_t>(W) - 1);
    }
    if (r > 0 && c + 1 < W && up[c + 1]) link(p - static_cast<int32_t>(W) + 1);
  }
  parent[p] = root < 0 ? p : root;
}

template <int kConn>
int64_t label_image(const uint8_t* mask, int32_t* lab, int64_t H, int64_t W) {
  std::memset(lab, 0, static_cast<size_t>(H * W) * sizeof(int32_t));
  for (int64_t r = 0; r < H; ++r) {
    const uint8_t* m = mask + r * W;
    for (int64_t c = next_foreground(m, 0, W); c < W; c = next_foreground(m, c + 1, W)) {
      link_pixel<kConn>(m, lab, r, c, W, static_cast<int32_t>(r * W + c));
    }
  }
  // parent[p] <= p (see union_find.h), so by the time p is reached its parent already holds
  // the final label of the component: one read replaces a root search, and a pixel that is
  // its own parent is the first pixel of a new component.
  int32_t n = 0;
  for (int64_t r = 0; r < H; ++r) {
    const uint8_t* m = mask + r * W;
    for (int64_t c = next_foreground(m, 0, W); c < W; c = next_foreground(m, c + 1, W)) {
      const int32_t p = static_cast<int32_t>(r * W + c);
      const int32_t par = lab[p];
      lab[p] = par == p ? ++n : lab[par];
    }
  }
  return n;
}

// First column >= c of row l (width W) with a non-zero label, or W; four labels per test.
inline int64_t next_labelled(const int32_t* l, int64_t c, int64_t W) {
  for (; c + 4 <= W; c += 4) {
    uint64_t a, b;
    std::memcpy(&a, l + c, sizeof(a));
    std::memcpy(&b, l + c + 2, sizeof(b));
    if ((a | b) != 0) break;
  }
  while (c < W && l[c] == 0) ++c;
  return c;
}

}  // namespace

void connected_components(const uint8_t* mask, int32_t* labels, int64_t* counts, int64_t N, int64_t H, int64_t W,
                          int connectivity) {
  const int64_t plane = H * W;
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* m = mask + n * plane;
    int32_t* l = labels + n * plane;
    counts[n] = connectivity == 4 ? label_image<4>(m, l, H, W) : label_image<8>(m, l, H, W);
  }
}

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
      for (int64_t c = next_labelled(l, 0, W); c < W; c = next_labelled(l, c + 1, W)) {
        const int64_t k = static_cast<int64_t>(l[c]) - 1;
        if (k < 0 || k >= M) continue;
        stats_add_pixel<int64_t>(a[k], &sums[2 * k], box + 4 * k, r, c);
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
