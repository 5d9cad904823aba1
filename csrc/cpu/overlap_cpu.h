// Per-image pixel overlap of two binary masks, for the IoU metrics.
#pragma once

#include <cstdint>

namespace istd {
namespace cpu {

// pred and target are [N, HW] bytes holding 0 or 1, contiguous. Writes |P and T| and
// |P or T| per image.
void mask_overlap(const uint8_t* pred, const uint8_t* target, int64_t N, int64_t HW, int64_t* inter,
                  int64_t* uni);

}  // namespace cpu
}  // namespace istd
