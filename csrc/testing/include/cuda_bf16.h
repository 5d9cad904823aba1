// Host emulation of <cuda_bf16.h>: __nv_bfloat16 as its bit pattern with
// round-to-nearest-even conversions (the same results as the device intrinsics).
#pragma once

#include "istd_emu/half_types.h"
