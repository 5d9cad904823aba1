// Host emulation of <cuda_runtime.h>: the runtime API plus the device-side vocabulary
// (qualifiers, built-in indices, barriers, warp intrinsics, atomics) over the fiber
// scheduler of csrc/testing/emu. Only the kernel translation units see this header.
#pragma once

#include "cuda_runtime_api.h"
#include "istd_emu/device.h"
