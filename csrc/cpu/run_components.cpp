#include "run_components.h"

#include <algorithm>
#include <cstdint>

#include "istd/stats_core.h"
#include "istd/union_find.h"
#include "mask_scan.h"

namespace istd {
namespace cpu {
namespace {

struct Run {
  int32_t row, c0, c1;  // columns [c0, c1)
};

// Scratch of one thread, reused across the images it processes.
struct Scratch {
  std::vector<uint8_t> row;  // a float row thresholded to bytes
  std::vector<Run> runs;
  std::vector<int32_t> parent;
};

// Row r of a mask as foreground bytes: the mask's own bytes, or a thresholded copy.
inline const uint8_t* foreground_row(const MaskSource& m, int64_t offset, int64_t W, std::vector<uint8_t>& buf) {
  if (!m.is_float) return static_cast<const uint8_t*>(m.data) + offset;
  const float* v = static_cast<const float*>(m.data) + offset;
  const float t = m.threshold;
  uint8_t* out = buf.data();
  // Branch-free so that it vectorises: this loop is the one dense pass over a float mask.
  for (int64_t c = 0; c < W; ++c) out[c] = static_cast<uint8_t>(v[c] > t);
  return out;
}

// One image's labelling state: the runs of the current and previous rows, joined as rows
// arrive.
class RunLabeller {
 public:
  RunLabeller(Scratch& s, int connectivity) : s_(s), reach_(connectivity == 8 ? 1 : 0) {
    s_.runs.clear();
    s_.parent.clear();
  }

  // Appends the runs of row r and joins them to the touching runs of row r - 1. Returns
  // the index range [begin, end) of the new runs in runs().
  std::pair<int64_t, int64_t> add_row(const uint8_t* m, int32_t r, int64_t W) {
    const int64_t begin = static_cast<int64_t>(s_.runs.size());
    for (int64_t c = next_foreground(m, 0, W); c < W;) {
      const int64_t e = next_background(m, c + 1, W);
      s_.runs.push_back({r, static_cast<int32_t>(c), static_cast<int32_t>(e)});
      c = next_foreground(m, e, W);
    }
    const int64_t end = static_cast<int64_t>(s_.runs.size());
    s_.parent.resize(static_cast<size_t>(end));
    // Both rows' runs are sorted and disjoint, so one forward walk over the previous row
    // finds every touching pair. With 8-connectivity runs also touch across a corner,
    // hence the reach of one column.
    int64_t j = prev_begin_;
    int32_t* parent = s_.parent.data();
    for (int64_t i = begin; i < end; ++i) {
      const Run a = s_.runs[static_cast<size_t>(i)];
      while (j < prev_end_ && s_.runs[static_cast<size_t>(j)].c1 + reach_ <= a.c0) ++j;
      // The new run hangs under the root of the first run it touches and merges the others
      // into it; unions keep parent[x] <= x, so a component's root is its first run in
      // raster order, which holds its first pixel.
      int32_t root = -1;
      for (int64_t k = j; k < prev_end_ && s_.runs[static_cast<size_t>(k)].c0 < a.c1 + reach_; ++k) {
        const int32_t above = static_cast<int32_t>(k);
        root = root < 0 ? uf::find_root(parent, above) : uf::unite(parent, root, above);
      }
      parent[i] = root < 0 ? static_cast<int32_t>(i) : root;
    }
    prev_begin_ = begin;
    prev_end_ = end;
    return {begin, end};
  }

  const std::vector<Run>& runs() const { return s_.runs; }

  // Numbers the components in order of their roots and sums each one's runs.
  void finish(ImageComponents& out) { measure(number(), out); }

  // Numbers the components in order of their roots; returns how many there are.
  int32_t number() {
    const int64_t n_runs = static_cast<int64_t>(s_.runs.size());
    int32_t* comp = s_.parent.data();
    int32_t n = 0;
    // parent[i] <= i, so parent[i]'s number is known when i is reached; the parent array is
    // overwritten with component numbers as it goes.
    for (int64_t i = 0; i < n_runs; ++i) comp[i] = comp[i] == i ? n++ : comp[comp[i]];
    return n;
  }

  // After number(): the statistics of the n components, sums over their runs.
  void measure(int32_t n, ImageComponents& out) const {
    const int64_t n_runs = static_cast<int64_t>(s_.runs.size());
    const int32_t* comp = s_.parent.data();
    out.area.assign(static_cast<size_t>(n), 0);
    out.sums.assign(static_cast<size_t>(2 * n), 0);
    out.bounds.resize(static_cast<size_t>(4 * n));
    for (int32_t k = 0; k < n; ++k) stats_box_init<int64_t>(out.bounds.data() + 4 * k, INT64_MAX);
    for (int64_t i = 0; i < n_runs; ++i) {
      const Run& run = s_.runs[static_cast<size_t>(i)];
      const size_t k = static_cast<size_t>(comp[i]);
      stats_add_run<int64_t>(out.area[k], out.sums.data() + 2 * k, out.bounds.data() + 4 * k, run.row, run.c0,
                             run.c1);
    }
  }

  // After number(): writes component number + 1 over every run of the image (width W).
  void write_labels(int32_t* lab, int64_t W) const {
    const int32_t* comp = s_.parent.data();
    for (size_t i = 0; i < s_.runs.size(); ++i) {
      const Run& run = s_.runs[i];
      std::fill(lab + run.row * W + run.c0, lab + run.row * W + run.c1, comp[i] + 1);
    }
  }

 private:
  Scratch& s_;
  int32_t reach_;
  int64_t prev_begin_ = 0, prev_end_ = 0;
};

// Pixels in both of two sorted, disjoint run lists.
inline int64_t run_overlap(const Run* a, int64_t na, const Run* b, int64_t nb) {
  int64_t total = 0;
  for (int64_t i = 0, j = 0; i < na && j < nb;) {
    const int32_t lo = std::max(a[i].c0, b[j].c0), hi = std::min(a[i].c1, b[j].c1);
    if (hi > lo) total += hi - lo;
    if (a[i].c1 < b[j].c1) {
      ++i;
    } else {
      ++j;
    }
  }
  return total;
}

}  // namespace

void measure_components(const MaskSource& mask, int64_t N, int64_t H, int64_t W, int connectivity,
                        std::vector<ImageComponents>& out) {
  out.assign(static_cast<size_t>(N), ImageComponents());
  const int64_t plane = H * W;
#pragma omp parallel if (N > 1)
  {
    Scratch scratch;
    scratch.row.resize(static_cast<size_t>(W));
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      RunLabeller lab(scratch, connectivity);
      for (int64_t r = 0; r < H; ++r) {
        lab.add_row(foreground_row(mask, n * plane + r * W, W, scratch.row), static_cast<int32_t>(r), W);
      }
      lab.finish(out[static_cast<size_t>(n)]);
    }
  }
}

void label_components(const uint8_t* mask, int64_t N, int64_t H, int64_t W, int connectivity, int32_t* labels,
                      bool labels_zeroed, int64_t* counts, std::vector<ImageComponents>* stats) {
  if (stats != nullptr) stats->assign(static_cast<size_t>(N), ImageComponents());
  const int64_t plane = H * W;
#pragma omp parallel if (N > 1)
  {
    Scratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      RunLabeller lab(scratch, connectivity);
      for (int64_t r = 0; r < H; ++r) lab.add_row(mask + n * plane + r * W, static_cast<int32_t>(r), W);
      counts[n] = lab.number();
      if (stats != nullptr) lab.measure(static_cast<int32_t>(counts[n]), (*stats)[static_cast<size_t>(n)]);
      // Cleared by the thread that labels the image, right before its runs land there, so
      // the plane is still in cache when they do.
      if (!labels_zeroed) std::fill(labels + n * plane, labels + (n + 1) * plane, 0);
      lab.write_labels(labels + n * plane, W);
    }
  }
}

void measure_pair(const MaskSource& pred, const MaskSource& target, int64_t N, int64_t H, int64_t W,
                  int connectivity, std::vector<ImageComponents>& pred_out,
                  std::vector<ImageComponents>& target_out, int64_t* inter, int64_t* uni) {
  pred_out.assign(static_cast<size_t>(N), ImageComponents());
  target_out.assign(static_cast<size_t>(N), ImageComponents());
  const int64_t plane = H * W;
#pragma omp parallel if (N > 1)
  {
    Scratch ps, ts;
    ps.row.resize(static_cast<size_t>(W));
    ts.row.resize(static_cast<size_t>(W));
#pragma omp for schedule(dynamic, 1)
    for (int64_t n = 0; n < N; ++n) {
      RunLabeller pl(ps, connectivity), tl(ts, connectivity);
      int64_t both = 0, p_total = 0, t_total = 0;
      for (int64_t r = 0; r < H; ++r) {
        const int64_t offset = n * plane + r * W;
        const auto p = pl.add_row(foreground_row(pred, offset, W, ps.row), static_cast<int32_t>(r), W);
        const auto t = tl.add_row(foreground_row(target, offset, W, ts.row), static_cast<int32_t>(r), W);
        const Run* pr = pl.runs().data() + p.first;
        const Run* tr = tl.runs().data() + t.first;
        for (int64_t i = 0; i < p.second - p.first; ++i) p_total += pr[i].c1 - pr[i].c0;
        for (int64_t i = 0; i < t.second - t.first; ++i) t_total += tr[i].c1 - tr[i].c0;
        both += run_overlap(pr, p.second - p.first, tr, t.second - t.first);
      }
      pl.finish(pred_out[static_cast<size_t>(n)]);
      tl.finish(target_out[static_cast<size_t>(n)]);
      inter[n] = both;
      uni[n] = p_total + t_total - both;
    }
  }
}

}  // namespace cpu
}  // namespace istd
