// Component statistics straight from binary masks, without a label image (raw pointers, no
// PyTorch types).
//
// The object-level metrics need only each component's area and centroid, in the order of
// the components' first pixels. Writing an int32 label image for that costs four bytes of
// fresh memory per pixel (64 MB for 64 images of 512 x 512, most of the time of a
// batched evaluation goes into faulting those pages in). Here each row is reduced to its
// runs of foreground pixels, runs are joined to touching runs of the row above with the
// union-find of istd/union_find.h, and the statistics are sums over runs: the memory is
// proportional to the number of runs, which is tiny for infrared masks.
#pragma once

#include <cstdint>
#include <vector>

namespace istd {
namespace cpu {

// How the pixels of a mask are read: bytes where non-zero is foreground, or float32
// values where `value > threshold` is foreground (NaN is background).
struct MaskSource {
  const void* data = nullptr;
  bool is_float = false;
  float threshold = 0.5f;
};

// The components of one image, in raster order of their first pixel (component k is what
// a scikit-image style labelling numbers k + 1).
struct ImageComponents {
  std::vector<int64_t> area;
  std::vector<int64_t> sums;     // 2 per component, exact (row, col) sums; centroid = sum / area
  std::vector<int64_t> bounds;   // 4 per component, inclusive: min_row, min_col, max_row, max_col
  int64_t count() const { return static_cast<int64_t>(area.size()); }
};

// Components of every image of a contiguous [N, H, W] mask; `out` is resized to N.
// connectivity is 4 or 8; H * W must be below 2^31.
void measure_components(const MaskSource& mask, int64_t N, int64_t H, int64_t W, int connectivity,
                        std::vector<ImageComponents>& out);

// The label image of every image of a uint8 mask written into `labels` (contiguous int32
// [N, H, W]): 0 for background, component k of image n as k + 1; counts[n] (int64 [N]) the
// number of components, and with `stats` non-null their statistics as measure_components
// gives them. With `labels_zeroed` the buffer holds zeros already (fresh calloc pages) and
// only foreground pixels are written, so a page without foreground is never touched, which
// is almost every page of an infrared mask; otherwise each image is cleared first.
void label_components(const uint8_t* mask, int64_t N, int64_t H, int64_t W, int connectivity, int32_t* labels,
                      bool labels_zeroed, int64_t* counts, std::vector<ImageComponents>* stats);

// The same for a prediction and a target of equal shape in one pass over both, plus the
// per-image pixel overlap: inter[n] = |P and T|, uni[n] = |P or T| (int64 [N]).
void measure_pair(const MaskSource& pred, const MaskSource& target, int64_t N, int64_t H, int64_t W,
                  int connectivity, std::vector<ImageComponents>& pred_out,
                  std::vector<ImageComponents>& target_out, int64_t* inter, int64_t* uni);

}  // namespace cpu
}  // namespace istd
