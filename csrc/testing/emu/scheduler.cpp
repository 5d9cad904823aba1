// Fiber scheduler, barriers and warp operations of the host emulation (see scheduler.h).
#include "scheduler.h"

#include <sys/mman.h>
#include <ucontext.h>

#include <cstring>
#include <deque>
#include <map>
#include <sstream>
#include <stdexcept>

#include "shared_arena.h"

namespace istd_emu {

uint3 cur_thread_idx{0, 0, 0}, cur_block_idx{0, 0, 0};
dim3 cur_block_dim, cur_grid_dim;

namespace {

// sm_86 launch limits.
constexpr unsigned kMaxThreads = 1024, kMaxBlockZ = 64;
constexpr unsigned kMaxGridX = 0x7fffffffu, kMaxGridYZ = 65535;
constexpr size_t kStackBytes = 256 * 1024, kGuardBytes = 4096;

enum class St { kReady, kBarrier, kWarp, kDone };

struct Fiber {
  ucontext_t ctx;
  St st = St::kDone;
  uint3 idx{0, 0, 0};
  const char* file = "";
  int line = 0;
  WarpOp op = WarpOp::kShfl;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
};

struct Block {
  std::vector<Fiber> fibers;
  std::deque<int> ready;
  ucontext_t sched;
  BlockBody* body = nullptr;
  std::string error;
};

Block g_block;
int g_cur = -1;
bool g_running = false;
cudaError_t g_last_error = cudaSuccess;
std::map<const void*, int> g_optin;
std::vector<LaunchRecord> g_log;
uint64_t g_seed = 0x9e3779b97f4a7c15ull, g_rng = 0;
std::vector<char*> g_stacks;

char* stack_of(int t) {
  while (static_cast<int>(g_stacks.size()) <= t) {
    void* p = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("emulation: cannot map a fiber stack");
    mprotect(p, kGuardBytes, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    g_stacks.push_back(static_cast<char*>(p) + kGuardBytes);
  }
  return g_stacks[t];
}

Fiber& cur() { return g_block.fibers[g_cur]; }

// Parks the running fiber in state s and returns to the scheduler.
void park(St s) {
  cur().st = s;
  swapcontext(&cur().ctx, &g_block.sched);
}

[[noreturn]] void fault(const std::string& msg) {
  if (g_block.error.empty()) g_block.error = msg;
  park(St::kDone);
  __builtin_unreachable();  // the scheduler never resumes a faulted fiber
}

std::string describe(int t) {
  const Fiber& f = g_block.fibers[t];
  std::ostringstream os;
  os << "thread (" << f.idx.x << "," << f.idx.y << "," << f.idx.z << ")";
  return os.str();
}

void trampoline() {
  g_block.body->run();
  park(St::kDone);
}

void resume(int t) {
  g_cur = t;
  cur_thread_idx = g_block.fibers[t].idx;
  swapcontext(&g_block.sched, &g_block.fibers[t].ctx);
  g_cur = -1;
}

}  // namespace

namespace {

const char* op_name(WarpOp op) {
  static const char* names[] = {"__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",  "__shfl_xor_sync",
                                "__ballot_sync",     "__any_sync",        "__all_sync",        "__match_any_sync",
                                "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync",
                                "__reduce_max_sync", "__syncwarp",        "__activemask"};
  return names[static_cast<int>(op)];
}

// Source lane of a shuffle, or -1 when the lane keeps its own value.
int shuffle_source(const Fiber& f, int lane) {
  const int w = f.width, seg = lane & ~(w - 1);
  switch (f.op) {
    case WarpOp::kShfl: return seg + (f.arg & (w - 1));
    case WarpOp::kShflUp: return lane - seg >= f.arg ? lane - f.arg : -1;
    case WarpOp::kShflDown: return lane - seg + f.arg < w ? lane + f.arg : -1;
    default: return seg + ((lane - seg) ^ f.arg) % w;
  }
}

uint64_t fold(const Fiber* lanes[32], unsigned mask, WarpOp op, int lane) {
  uint64_t acc = 0;
  bool first = true;
  for (int i = 0; i < 32; ++i) {
    if (!(mask >> i & 1)) continue;
    const uint32_t v = static_cast<uint32_t>(lanes[i]->value);
    switch (op) {
      case WarpOp::kBallot: acc |= (v != 0 ? 1ull : 0ull) << i; break;
      case WarpOp::kAny: acc |= v != 0; break;
      case WarpOp::kAll: acc = (first || acc) && v != 0; break;
      case WarpOp::kMatchAny: acc |= (lanes[i]->value == lanes[lane]->value ? 1ull : 0ull) << i; break;
      case WarpOp::kReduceAddU: acc = static_cast<uint32_t>(acc + v); break;
      case WarpOp::kReduceMinU: acc = first || v < acc ? v : acc; break;
      case WarpOp::kReduceMaxU: acc = first || v > acc ? v : acc; break;
      case WarpOp::kReduceMinS:
        acc = first || static_cast<int32_t>(v) < static_cast<int32_t>(acc) ? v : acc;
        break;
      case WarpOp::kReduceMaxS:
        acc = first || static_cast<int32_t>(v) > static_cast<int32_t>(acc) ? v : acc;
        break;
      default: break;
    }
    first = false;
  }
  return acc;
}

// Completes the collective lane `t` waits at if every lane of its mask waits at the same
// operation with the same mask; a lane that already exited makes it an error.
void try_complete(int t) {
  const Fiber& f = g_block.fibers[t];
  const int base = t & ~31;
  const Fiber* lanes[32] = {};
  for (int i = 0; i < 32; ++i) {
    if (!(f.mask >> i & 1)) continue;
    const Fiber& g = g_block.fibers[base + i];
    if (g.st == St::kDone) {
      std::ostringstream os;
      os << describe(base + i) << " is named in mask 0x" << std::hex << f.mask << std::dec << " of " << op_name(f.op)
         << " at " << f.file << ":" << f.line << " but has exited";
      g_block.error = os.str();
      return;
    }
    if (g.st != St::kWarp || g.op != f.op || g.mask != f.mask) return;
    lanes[i] = &g;
  }
  for (int i = 0; i < 32; ++i) {
    if (!(f.mask >> i & 1)) continue;
    Fiber& g = g_block.fibers[base + i];
    if (f.op <= WarpOp::kShflXor) {
      const int src = shuffle_source(g, i);
      if (src >= 0 && !(f.mask >> src & 1)) {
        std::ostringstream os;
        os << op_name(f.op) << " at " << f.file << ":" << f.line << ": lane " << i << " reads lane " << src
           << ", which is not in mask 0x" << std::hex << f.mask;
        g_block.error = os.str();
        return;
      }
      g.result = src < 0 ? g.value : lanes[src]->value;
    } else {
      g.result = fold(lanes, f.mask, f.op, i);
    }
  }
  for (int i = 0; i < 32; ++i)
    if (f.mask >> i & 1) {
      g_block.fibers[base + i].st = St::kReady;
      g_block.ready.push_back(base + i);
    }
}

}  // namespace

namespace {

int warp_lanes(int base) {
  const int n = static_cast<int>(g_block.fibers.size()) - base;
  return n < 32 ? n : 32;
}

// A lane exited: a collective of its warp that names it can never complete.
void check_exit(int t) {
  const int base = t & ~31;
  for (int i = 0; i < warp_lanes(base); ++i) {
    const Fiber& g = g_block.fibers[base + i];
    if (g.st == St::kWarp && g.op != WarpOp::kActiveMask && (g.mask >> (t - base) & 1)) {
      try_complete(base + i);
      return;
    }
  }
}

// __activemask(): once nothing can run, the lanes of a warp waiting at the same
// __activemask() call are the converged set.
bool resolve_activemask() {
  for (size_t base = 0; base < g_block.fibers.size(); base += 32) {
    int lead = -1;
    unsigned mask = 0;
    for (int i = 0; i < warp_lanes(static_cast<int>(base)); ++i) {
      const Fiber& g = g_block.fibers[base + i];
      if (g.st != St::kWarp || g.op != WarpOp::kActiveMask) continue;
      if (lead < 0) lead = static_cast<int>(base) + i;
      const Fiber& l = g_block.fibers[lead];
      if (g.file == l.file && g.line == l.line) mask |= 1u << i;
    }
    if (lead < 0) continue;
    for (int i = 0; i < 32; ++i)
      if (mask >> i & 1) {
        Fiber& g = g_block.fibers[base + i];
        g.result = mask;
        g.st = St::kReady;
        g_block.ready.push_back(static_cast<int>(base) + i);
      }
    return true;
  }
  return false;
}

std::string site(const Fiber& f) { return std::string(f.file) + ":" + std::to_string(f.line); }

// Everyone alive waits at a barrier: releases it, or reports exited threads or threads
// waiting at different barriers (a hang on the device).
bool release_barrier() {
  int first = -1, done = 0;
  for (size_t t = 0; t < g_block.fibers.size(); ++t) {
    const Fiber& f = g_block.fibers[t];
    if (f.st == St::kDone) {
      ++done;
    } else if (f.st != St::kBarrier) {
      return false;
    } else if (first < 0) {
      first = static_cast<int>(t);
    } else if (site(f) != site(g_block.fibers[first])) {
      g_block.error = "deadlock: " + describe(first) + " waits at __syncthreads() " + site(g_block.fibers[first]) +
                      " but " + describe(static_cast<int>(t)) + " at " + site(f);
      return false;
    }
  }
  if (first < 0) return false;
  if (done > 0) {
    g_block.error = "deadlock: " + std::to_string(done) + " thread(s) exited while " +
                    std::to_string(g_block.fibers.size() - done) + " wait at __syncthreads() " +
                    site(g_block.fibers[first]);
    return false;
  }
  arena::barrier();
  for (size_t t = 0; t < g_block.fibers.size(); ++t) {
    g_block.fibers[t].st = St::kReady;
    g_block.ready.push_back(static_cast<int>(t));
  }
  return true;
}

std::string deadlock_report() {
  std::ostringstream os;
  os << "deadlock: no thread can proceed;";
  int shown = 0;
  for (size_t t = 0; t < g_block.fibers.size() && shown < 4; ++t) {
    const Fiber& f = g_block.fibers[t];
    if (f.st == St::kDone) continue;
    os << " " << describe(static_cast<int>(t)) << " waits at "
       << (f.st == St::kBarrier ? "__syncthreads()" : op_name(f.op));
    if (f.st == St::kWarp) os << " (mask 0x" << std::hex << f.mask << std::dec << ")";
    os << " " << site(f) << ";";
    ++shown;
  }
  return os.str();
}

bool all_done() {
  for (const Fiber& f : g_block.fibers)
    if (f.st != St::kDone) return false;
  return true;
}

void run_block(unsigned nthreads, const dim3& bd) {
  g_block.fibers.assign(nthreads, Fiber{});
  g_block.ready.clear();
  for (unsigned t = 0; t < nthreads; ++t) {
    Fiber& f = g_block.fibers[t];
    f.idx = uint3{t % bd.x, (t / bd.x) % bd.y, t / (bd.x * bd.y)};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stack_of(static_cast<int>(t));
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &g_block.sched;
    makecontext(&f.ctx, trampoline, 0);
    f.st = St::kReady;
    g_block.ready.push_back(static_cast<int>(t));
  }
  while (g_block.error.empty()) {
    if (!g_block.ready.empty()) {
      const int t = g_block.ready.front();
      g_block.ready.pop_front();
      resume(t);
      const St st = g_block.fibers[t].st;
      if (st == St::kReady) g_block.ready.push_back(t);
      if (st == St::kWarp && g_block.fibers[t].op != WarpOp::kActiveMask) try_complete(t);
      if (st == St::kDone) check_exit(t);
      continue;
    }
    if (all_done() || resolve_activemask() || release_barrier()) {
      if (all_done()) break;
      continue;
    }
    if (g_block.error.empty()) g_block.error = deadlock_report();
  }
}

cudaError_t launch_error(const LaunchConfig& c) {
  const dim3 b = c.block, g = c.grid;
  const uint64_t threads = static_cast<uint64_t>(b.x) * b.y * b.z;
  if (threads == 0 || threads > kMaxThreads || b.z > kMaxBlockZ) return cudaErrorInvalidConfiguration;
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > kMaxGridX || g.y > kMaxGridYZ || g.z > kMaxGridYZ)
    return cudaErrorInvalidConfiguration;
  auto it = g_optin.find(c.key);
  const int64_t limit = it != g_optin.end() ? it->second : kDefaultSmemLimit;
  if (static_cast<int64_t>(c.smem) > limit) return cudaErrorInvalidValue;
  return cudaSuccess;
}

std::string where_block() {
  std::ostringstream os;
  os << " (block (" << cur_block_idx.x << "," << cur_block_idx.y << "," << cur_block_idx.z << "))";
  return os.str();
}

}  // namespace

void run_grid(const LaunchConfig& cfg, BlockBody& body) {
  if (g_running) throw std::runtime_error("emulation: kernel launched from a kernel");
  const cudaError_t err = launch_error(cfg);
  g_log.push_back(LaunchRecord{cfg.name, "", cfg.grid, cfg.block, static_cast<int64_t>(cfg.smem)});
  if (err != cudaSuccess) {
    g_last_error = err;
    return;
  }
  auto it = g_optin.find(cfg.key);
  const int64_t limit = it != g_optin.end() ? it->second : kDefaultSmemLimit;
  g_running = true;
  g_block.body = &body;
  g_block.error.clear();
  g_rng = g_seed;
  cur_grid_dim = cfg.grid;
  cur_block_dim = cfg.block;
  const unsigned nthreads = cfg.block.x * cfg.block.y * cfg.block.z;
  for (unsigned z = 0; z < cfg.grid.z && g_block.error.empty(); ++z)
    for (unsigned y = 0; y < cfg.grid.y && g_block.error.empty(); ++y)
      for (unsigned x = 0; x < cfg.grid.x && g_block.error.empty(); ++x) {
        cur_block_idx = uint3{x, y, z};
        arena::begin_block(cfg.smem, limit);
        run_block(nthreads, cfg.block);
      }
  g_running = false;
  if (!g_block.error.empty()) throw std::runtime_error(cfg.name + std::string(": ") + g_block.error + where_block());
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line) {
  const int t = g_cur, lane = t & 31, base = t & ~31;
  std::ostringstream os;
  if (op != WarpOp::kActiveMask) {
    if (!(mask >> lane & 1)) os << op_name(op) << ": the calling lane " << lane << " is not in its mask";
    const int lanes = warp_lanes(base);
    if (lanes < 32 && (mask >> lanes) != 0) os << op_name(op) << ": mask names lanes beyond the block's last thread";
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) os << op_name(op) << ": width must be a power of 2";
  }
  if (!os.str().empty()) fault(os.str() + " at " + file + ":" + std::to_string(line));
  Fiber& f = cur();
  f.op = op;
  f.mask = mask;
  f.value = value;
  f.arg = arg;
  f.width = width;
  f.file = file;
  f.line = line;
  park(St::kWarp);
  return cur().result;
}

void syncthreads(const char* file, int line) {
  cur().file = file;
  cur().line = line;
  park(St::kBarrier);
}

void* static_shared(int id, size_t bytes, size_t align, const char* name) {
  std::string err;
  void* p = arena::static_var(id, bytes, align, name, &err);
  if (p == nullptr) fault(err);
  return p;
}

void* dynamic_shared() { return arena::dynamic_base(); }

void kernel_entry(const char* name, const char* signature, long long max_threads) {
  LaunchRecord& r = g_log.back();
  if (r.signature.empty()) r.signature = std::string(name) + " :: " + signature;
  const long long threads = static_cast<long long>(cur_block_dim.x) * cur_block_dim.y * cur_block_dim.z;
  if (max_threads > 0 && threads > max_threads)
    fault("launch of " + std::to_string(threads) + " threads exceeds __launch_bounds__(" +
          std::to_string(max_threads) + ") (too many resources requested for launch)");
}

void atomic_access(const void* p, size_t bytes) {
  if (g_cur < 0) return;
  const std::string err = arena::check(p, bytes, true, true, g_cur);
  if (!err.empty()) fault(err);
}

void atomic_done() {
  if (g_cur < 0 || g_seed == 0) return;
  g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
  if (g_rng >> 63) park(St::kReady);
}

cudaError_t set_max_dynamic_smem(const void* kernel, int bytes) {
  if (bytes < 0 || bytes > kOptInSmemLimit) return cudaErrorInvalidValue;
  g_optin[kernel] = bytes;
  return cudaSuccess;
}

const std::vector<LaunchRecord>& launch_log() { return g_log; }
void clear_launch_log() {
  g_log.clear();
  g_optin.clear();
  g_last_error = cudaSuccess;
}
void set_interleave_seed(uint64_t seed) { g_seed = seed; }

// Memory accesses of kernel code compiled with -fsanitize=thread.
void checked_access(const void* p, size_t bytes, bool write) {
  if (g_cur < 0) return;
  const std::string err = arena::check(p, bytes, write, false, g_cur);
  if (!err.empty()) fault(err);
}

}  // namespace istd_emu

cudaError_t cudaGetLastError() {
  const cudaError_t e = istd_emu::g_last_error;
  istd_emu::g_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    default: return "unknown error";
  }
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  if (attr != cudaDevAttrMaxSharedMemoryPerBlockOptin) return cudaErrorInvalidValue;
  *value = static_cast<int>(istd_emu::kOptInSmemLimit);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) {
  std::memset(ptr, value, count);
  return cudaSuccess;
}
