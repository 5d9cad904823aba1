#include "overlap_cpu.h"

#include <omp.h>

namespace istd {
namespace cpu {

void mask_overlap(const uint8_t* pred, const uint8_t* target, int64_t N, int64_t HW, int64_t* inter,
                  int64_t* uni) {
  // One pass over both masks. Byte sums go into 32-bit counters over blocks short enough
  // that they cannot overflow, which keeps the inner loop a plain vectorisable add.
  constexpr int64_t kBlock = int64_t(1) << 20;
#pragma omp parallel for schedule(static) if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* p = pred + n * HW;
    const uint8_t* t = target + n * HW;
    int64_t both = 0, either = 0;
    for (int64_t start = 0; start < HW; start += kBlock) {
      const int64_t end = start + kBlock < HW ? start + kBlock : HW;
      uint32_t b = 0, e = 0;
      for (int64_t i = start; i < end; ++i) {
        b += static_cast<uint32_t>(p[i] & t[i]);
        e += static_cast<uint32_t>(p[i] | t[i]);
      }
      both += b;
      either += e;
    }
    inter[n] = both;
    uni[n] = either;
  }
}

}  // namespace cpu
}  // namespace istd
