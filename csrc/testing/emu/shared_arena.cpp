// Shared-memory arena of the emulated block with its shadow (see shared_arena.h).
#include "shared_arena.h"

#include <cstring>
#include <sstream>
#include <vector>

namespace istd_emu {
namespace arena {
namespace {

constexpr size_t kCapacity = 512 * 1024;
constexpr size_t kRedZone = 64;
// Fill of fresh shared memory: uninitialised reads yield garbage, as on the device.
constexpr unsigned char kPoison = 0xA5;
constexpr int kNobody = -1;

struct Var {
  int id;
  size_t off, bytes;
  const char* name;
};

struct Shadow {
  int32_t writer = kNobody, reader = kNobody;
  uint32_t write_epoch = 0, read_epoch = 0;
  bool mapped = false, written = false, many_readers = false, atomic = false;
};

alignas(256) unsigned char g_mem[kCapacity];
std::vector<Shadow> g_shadow(kCapacity);
std::vector<Var> g_vars;
size_t g_top = 0;
int64_t g_limit = 0, g_used = 0;
uint32_t g_epoch = 1;

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

std::string fail_alloc(const char* name, size_t bytes) {
  std::ostringstream os;
  os << "shared memory of the block exceeds " << g_limit << " bytes when allocating " << name << " (" << bytes
     << " bytes; " << g_used << " already in use)";
  return os.str();
}

size_t map(size_t bytes, size_t align) {
  const size_t off = align_up(g_top + kRedZone, align < 16 ? 16 : align);
  for (size_t b = off; b < off + bytes; ++b) g_shadow[b] = Shadow{kNobody, kNobody, 0, 0, true, false, false, false};
  g_top = off + bytes;
  return off;
}

// The variable an arena offset belongs to, or the nearest one before it (for messages).
std::string where(size_t off) {
  const Var* best = nullptr;
  for (const Var& v : g_vars)
    if (v.off <= off && (best == nullptr || v.off > best->off)) best = &v;
  std::ostringstream os;
  if (best == nullptr) {
    os << "before every shared variable";
  } else if (off < best->off + best->bytes) {
    os << "byte " << off - best->off << " of " << best->name;
  } else {
    os << "byte " << off - best->off << " of " << best->name << " (" << best->bytes << " bytes): out of bounds";
  }
  return os.str();
}

}  // namespace

void begin_block(size_t dynamic_bytes, int64_t limit) {
  const size_t old_top = g_top + kRedZone;
  std::memset(g_mem, kPoison, old_top < kCapacity ? old_top : kCapacity);
  for (size_t b = 0; b < old_top && b < kCapacity; ++b) g_shadow[b] = Shadow{};
  g_vars.clear();
  g_top = 0;
  g_limit = limit;
  g_used = static_cast<int64_t>(dynamic_bytes);
  g_epoch = 1;
  g_vars.push_back(Var{-1, map(dynamic_bytes, 16), dynamic_bytes, "extern __shared__ (dynamic)"});
}

void* dynamic_base() { return g_mem + g_vars.front().off; }

void* static_var(int id, size_t bytes, size_t align, const char* name, std::string* err) {
  for (const Var& v : g_vars)
    if (v.id == id) return g_mem + v.off;
  if (g_used + static_cast<int64_t>(bytes) > g_limit || g_top + bytes + 2 * kRedZone + align > kCapacity) {
    *err = fail_alloc(name, bytes);
    return nullptr;
  }
  g_used += static_cast<int64_t>(bytes);
  g_vars.push_back(Var{id, map(bytes, align), bytes, name});
  return g_mem + g_vars.back().off;
}

int64_t used_bytes() { return g_used; }

void barrier() { ++g_epoch; }

std::string check(const void* p, size_t bytes, bool write, bool atomic, int tid) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(g_mem);
  if (a < base || a >= base + kCapacity) return {};
  const size_t off = a - base;
  for (size_t b = off; b < off + bytes && b < kCapacity; ++b) {
    Shadow& s = g_shadow[b];
    std::ostringstream os;
    if (!s.mapped) {
      os << "out-of-bounds shared-memory " << (write ? "write" : "read") << " by thread " << tid << " at "
         << where(b);
      return os.str();
    }
    const bool same_epoch_write = s.writer != kNobody && s.writer != tid && s.write_epoch == g_epoch;
    const bool mixed = !(atomic && s.atomic);
    if (same_epoch_write && mixed) {
      os << "shared-memory race: thread " << tid << " " << (write ? "writes" : "reads") << " " << where(b)
         << " written by thread " << s.writer << " since the last __syncthreads()";
      return os.str();
    }
    if (write && s.read_epoch == g_epoch && (s.many_readers || (s.reader != kNobody && s.reader != tid)) && mixed) {
      os << "shared-memory race: thread " << tid << " writes " << where(b) << " read by thread " << s.reader
         << (s.many_readers ? " and others" : "") << " since the last __syncthreads()";
      return os.str();
    }
    if (!write && !s.written) {
      os << "thread " << tid << " reads " << where(b) << ", which no thread of the block has written";
      return os.str();
    }
    if (write) {
      s.writer = tid;
      s.write_epoch = g_epoch;
      s.written = true;
      s.atomic = atomic;
    } else if (s.read_epoch != g_epoch) {
      s.reader = tid;
      s.read_epoch = g_epoch;
      s.many_readers = false;
    } else if (s.reader != tid) {
      s.many_readers = true;
    }
  }
  return {};
}

}  // namespace arena
}  // namespace istd_emu
