// Block scheduler of the host emulation: each thread of a block is a fiber (ucontext) on
// the calling OS thread, run until it blocks at a barrier or a warp operation, exits, or
// yields after an atomic. Blocks of a grid run one after another.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_runtime_api.h"
#include "istd_emu/device.h"

namespace istd_emu {

// What the emulation saw of one launch, for the Python side's coverage report.
struct LaunchRecord {
  std::string name;       // as written at the launch site
  std::string signature;  // __PRETTY_FUNCTION__ of the kernel, with its template arguments
  dim3 grid, block;
  int64_t smem;
};

const std::vector<LaunchRecord>& launch_log();
void clear_launch_log();
// Seed of the pseudo-random switches after atomics (0: never switch).
void set_interleave_seed(uint64_t seed);

}  // namespace istd_emu
