// Shared memory of the emulated block and its checker. Every byte of the arena has a
// shadow: whether it belongs to a variable (the rest is red zone, so an index past a
// shared array is an error instead of a write into its neighbour), whether this block has
// written it, and the last writer and reader with the barrier epoch of their access.
// Accesses reach the checker only from kernel code compiled with -fsanitize=thread, whose
// __tsan_* calls the emulation defines itself (no TSan runtime is linked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace istd_emu {

// sm_86: 48 KiB per block without opt-in, 99 KiB with cudaFuncSetAttribute.
constexpr int64_t kDefaultSmemLimit = 48 * 1024;
constexpr int64_t kOptInSmemLimit = 99 * 1024;

namespace arena {

// Starts a block: dynamic shared memory of `dynamic_bytes`, total limit `limit`.
void begin_block(size_t dynamic_bytes, int64_t limit);
void* dynamic_base();
// Per-block storage of a `static __shared__` variable (same id -> same storage); null with
// *err set when the block's shared memory would exceed its limit.
void* static_var(int id, size_t bytes, size_t align, const char* name, std::string* err);
// Total shared bytes of the current block (dynamic plus static), for the launch report.
int64_t used_bytes();
// A __syncthreads() completed: accesses before it are ordered with accesses after it.
void barrier();
// Checks one access of the running thread `tid`; returns an error message, empty if fine.
std::string check(const void* p, size_t bytes, bool write, bool atomic, int tid);

}  // namespace arena
}  // namespace istd_emu
