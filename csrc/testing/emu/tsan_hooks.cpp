// The entry points gcc's -fsanitize=thread instrumentation calls. The emulation defines
// them itself instead of linking the TSan runtime: kernel code compiled with the flag
// reports every load and store here, and the shared-memory checker of shared_arena.cpp
// decides what is a race. Other addresses (stacks, global memory) are ignored.
#include <cstddef>

namespace istd_emu {
void checked_access(const void* p, size_t bytes, bool write);
}  // namespace istd_emu

#define ISTD_EMU_HOOKS(n)                                                                            \
  extern "C" void __tsan_read##n(void* p) { istd_emu::checked_access(p, n, false); }                 \
  extern "C" void __tsan_write##n(void* p) { istd_emu::checked_access(p, n, true); }                 \
  extern "C" void __tsan_unaligned_read##n(void* p) { istd_emu::checked_access(p, n, false); }       \
  extern "C" void __tsan_unaligned_write##n(void* p) { istd_emu::checked_access(p, n, true); }       \
  extern "C" void __tsan_volatile_read##n(void* p) { istd_emu::checked_access(p, n, false); }        \
  extern "C" void __tsan_volatile_write##n(void* p) { istd_emu::checked_access(p, n, true); }
ISTD_EMU_HOOKS(1)
ISTD_EMU_HOOKS(2)
ISTD_EMU_HOOKS(4)
ISTD_EMU_HOOKS(8)
ISTD_EMU_HOOKS(16)
#undef ISTD_EMU_HOOKS

extern "C" void __tsan_read_range(void* p, size_t n) { istd_emu::checked_access(p, n, false); }
extern "C" void __tsan_write_range(void* p, size_t n) { istd_emu::checked_access(p, n, true); }
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void*, void*) {}
extern "C" void __tsan_vptr_read(void*) {}
