// The one source of the ops' limits. The C++ bindings check against these constants, the
// CPU extension exports them (istd_kernels._C.limits()), and istd_kernels/limits.py reads
// them from there, or parses this file when the extension is missing, so Python's argument
// checks and the kernels cannot disagree. Keep each value a plain decimal literal: that is
// what the Python parser reads (tests/test_limits.py checks both readings agree).
#pragma once

#include <cstdint>

namespace istd {
namespace limits {

// Depthwise kernel side (kh, kw, and HLKConv's k1, k2): the Triton tiles and the CPU tap
// lists are sized for it.
constexpr int64_t kDwMaxKernel = 31;
// Depthwise dilation (and HLKConv's): the tuned halos assume it.
constexpr int64_t kDwMaxDilation = 8;
// Stride and padding are stored as int in the geometry structs: INT32_MAX.
constexpr int64_t kMaxHyperParam = 2147483647;
// split_attention branches: per-branch state of the cpp and cuda kernels lives in arrays
// of this size.
constexpr int64_t kSaMaxBranches = 4;
// split_attention scales: a branch pixel covers at most kSaMaxScale^2 cells, which must
// stay an int.
constexpr int64_t kSaMaxScale = 1048576;
// The cuda split_attention backward tiles blocks whose sides are multiples of every
// scale: the scales' least common multiple must not exceed this.
constexpr int64_t kSaCudaMaxLcm = 32;
// multiscale_maxpool scales: window offsets are int32 at worst, so s*s stays far below 2^31.
constexpr int64_t kMmpMaxScale = 32768;
// multiscale_maxpool window offsets fit uint8 while s*s <= 256.
constexpr int64_t kMmpUint8MaxScale = 16;
// Pixels of one image for the labelling and run-scanning kernels: they keep parents and
// labels as int32 pixel indices (INT32_MAX - 1).
constexpr int64_t kMaxImagePixels = 2147483646;

}  // namespace limits
}  // namespace istd
