// Host emulation of <cuda_fp16.h>: __half as its bit pattern with round-to-nearest-even
// conversions (the same results as the device intrinsics).
#pragma once

#include "istd_emu/half_types.h"
