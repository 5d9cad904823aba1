// Scanning sparse binary rows. Infrared masks are more than 99.9 % background, so every
// scan over a mask row skips background eight bytes at a time and a nearly empty image
// costs about one read of its bytes.
#pragma once

#include <cstdint>
#include <cstring>

namespace istd {
namespace cpu {

// First column >= c of row m (width W) that is non-zero, or W.
inline int64_t next_foreground(const uint8_t* m, int64_t c, int64_t W) {
  for (; c + 8 <= W; c += 8) {
    uint64_t word;
    std::memcpy(&word, m + c, sizeof(word));  // memcpy: the row need not be 8-byte aligned
    if (word != 0) break;
  }
  while (c < W && m[c] == 0) ++c;
  return c;
}

// First column >= c of row m (width W) that is zero, or W.
inline int64_t next_background(const uint8_t* m, int64_t c, int64_t W) {
  while (c < W && m[c] != 0) ++c;
  return c;
}

}  // namespace cpu
}  // namespace istd
