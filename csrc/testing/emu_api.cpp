// C entry points of the emulation library, called from Python through ctypes
// (tests/emulation_kernels.py). They take raw pointers and flat int64 arrays, build the
// launchers' descriptors and call the unchanged launchers of csrc/cuda. Return value: the
// launcher's cudaError_t, or -1 when the emulation stopped a kernel (message: emu_error()).
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "emu/scheduler.h"
#include "istd/component_stats_cuda.h"
#include "istd/components_cuda.h"
#include "istd/depthwise_cuda.h"
#include "istd/hlk_cuda.h"
#include "istd/pool_attn_cuda.h"

cudaError_t istd_component_stats_cuda_sm70(const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M,
                                           int64_t* area, double* centroid, int64_t* bbox, int64_t* sums,
                                           int32_t* bounds, cudaStream_t stream);
int istd_emu_fixture(const char* name, int* out, int n);

namespace {

using istd::DType;
using istd::Strides4;

std::string g_error, g_entry;

template <typename F>
int guarded(F&& f) {
  try {
    return static_cast<int>(f());
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

Strides4 st(const int64_t* s) { return Strides4{s[0], s[1], s[2], s[3]}; }
DType dt(int d) { return static_cast<DType>(d); }

istd::DwGeometry dw_geo(const int64_t* g) {
  return istd::DwGeometry{g[0], g[1], g[2], g[3], g[4], g[5],
                          static_cast<int>(g[6]), static_cast<int>(g[7]), static_cast<int>(g[8]), static_cast<int>(g[9]),
                          static_cast<int>(g[10]), static_cast<int>(g[11]), static_cast<int>(g[12]), static_cast<int>(g[13])};
}

istd::SaGeometry sa_geo(const int64_t* g) {
  istd::SaGeometry s{g[0], g[1], g[2], g[3], g[4], static_cast<int>(g[5]), {}, {}, {}};
  for (int j = 0; j < istd::kSaMaxBranches; ++j) {
    s.scales[j] = static_cast<int>(g[6 + j]);
    s.Hb[j] = g[10 + j];
    s.Wb[j] = g[14 + j];
  }
  return s;
}

// Level j's metadata: s, Ho, Wo, data strides (4), idx strides (4).
constexpr int kLevelMeta = 11;
std::vector<istd::MmpLevel> levels(void* const* data, void* const* idx, const int64_t* meta, int64_t radix) {
  std::vector<istd::MmpLevel> out(radix);
  for (int64_t j = 0; j < radix; ++j) {
    const int64_t* m = meta + j * kLevelMeta;
    out[j] = istd::MmpLevel{static_cast<int>(m[0]), m[1], m[2], data[j], st(m + 3), idx[j], st(m + 7)};
  }
  return out;
}

// Pointers: branch[0..3], logits, temperature, residual, v. Strides: branch[0..3], logits,
// residual, v (4 each).
istd::SaInputs sa_inputs(const void* const* p, const int64_t* s) {
  istd::SaInputs in{};
  for (int j = 0; j < istd::kSaMaxBranches; ++j) {
    in.branch[j] = p[j];
    in.branch_s[j] = st(s + 4 * j);
  }
  in.logits = p[4];
  in.logits_s = st(s + 16);
  in.temperature = p[5];
  in.residual = p[6];
  in.residual_s = st(s + 20);
  in.v = p[7];
  in.v_s = st(s + 24);
  return in;
}

// Pointers: branch[0..3], logits, residual, v; strides in the same order.
istd::SaGrads sa_grads(void* const* p, const int64_t* s) {
  istd::SaGrads out{};
  for (int j = 0; j < istd::kSaMaxBranches; ++j) {
    out.branch[j] = p[j];
    out.branch_s[j] = st(s + 4 * j);
  }
  out.logits = p[4];
  out.logits_s = st(s + 16);
  out.residual = p[5];
  out.residual_s = st(s + 20);
  out.v = p[6];
  out.v_s = st(s + 24);
  return out;
}

}  // namespace

extern "C" {

const char* emu_error() { return g_error.c_str(); }

int emu_dw_fwd(int dtype, const void* x, const int64_t* xs, const void* w, const void* b, void* y, const int64_t* ys,
               const int64_t* geo) {
  return guarded([&] { return istd_dw_fwd_cuda(dt(dtype), x, st(xs), w, b, y, st(ys), dw_geo(geo), nullptr); });
}

int emu_dw_bwd_input(int dtype, const void* gy, const int64_t* gys, const void* w, void* gx, const int64_t* gxs,
                     const int64_t* geo) {
  return guarded([&] { return istd_dw_bwd_input_cuda(dt(dtype), gy, st(gys), w, gx, st(gxs), dw_geo(geo), nullptr); });
}

size_t emu_dw_bwd_weight_workspace(const int64_t* geo, int dtype) {
  return istd_dw_bwd_weight_workspace_bytes(dw_geo(geo), dt(dtype));
}

int emu_dw_bwd_weight(int dtype, const void* gy, const int64_t* gys, const void* x, const int64_t* xs, void* gw,
                      void* gb, const int64_t* geo, void* ws, size_t bytes) {
  return guarded([&] {
    return istd_dw_bwd_weight_cuda(dt(dtype), gy, st(gys), x, st(xs), gw, gb, dw_geo(geo), ws, bytes, nullptr);
  });
}

// geo: N, C, H, W, Cout, groups, k1, k2, dilation. w: w0, b0, w1, b1, w_pw, b_pw.
int emu_hlk_fwd(int dtype, const void* x, const int64_t* xs, const void* const* w, void* y, const int64_t* ys,
                const int64_t* geo) {
  const istd::HlkGeometry g{geo[0], geo[1], geo[2], geo[3], geo[4], geo[5],
                            static_cast<int>(geo[6]), static_cast<int>(geo[7]), static_cast<int>(geo[8])};
  return guarded([&] { return istd_hlk_fwd_cuda(dt(dtype), x, st(xs), w[0], w[1], w[2], w[3], w[4], w[5], y, st(ys), g, nullptr); });
}

// geo: N, D, H, W, groups, radix, C.
int emu_mmp_fwd(int dtype, int idx_u8, const void* u, const int64_t* us, const int64_t* geo, void* const* data,
                void* const* idx, const int64_t* meta) {
  const istd::MmpGeometry g{geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]};
  const auto lv = levels(data, idx, meta, g.radix);
  return guarded([&] { return istd_mmp_fwd_cuda(dt(dtype), idx_u8 != 0, u, st(us), g, lv.data(), nullptr); });
}

int emu_mmp_bwd(int dtype, int idx_u8, void* const* data, void* const* idx, const int64_t* meta, const int64_t* geo,
                void* gu, const int64_t* gus) {
  const istd::MmpGeometry g{geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]};
  const auto lv = levels(data, idx, meta, g.radix);
  return guarded([&] { return istd_mmp_bwd_cuda(dt(dtype), idx_u8 != 0, lv.data(), g, gu, st(gus), nullptr); });
}

// geo: N, D, H, W, G, R, scales[4], Hb[4], Wb[4].
int emu_sa_fwd(int dtype, const void* const* in, const int64_t* in_s, void* z, const int64_t* zs, const int64_t* geo) {
  return guarded([&] { return istd_split_attn_fwd_cuda(dt(dtype), sa_inputs(in, in_s), z, st(zs), sa_geo(geo), nullptr); });
}

size_t emu_sa_bwd_workspace(const int64_t* geo) { return istd_split_attn_bwd_workspace_elems(sa_geo(geo)); }

int emu_sa_bwd(int dtype, const void* gz, const int64_t* gzs, const void* const* in, const int64_t* in_s,
               void* const* out, const int64_t* out_s, void* gt, const int64_t* geo, void* ws, size_t elems) {
  return guarded([&] {
    return istd_split_attn_bwd_cuda(dt(dtype), gz, st(gzs), sa_inputs(in, in_s), sa_grads(out, out_s), gt,
                                    sa_geo(geo), ws, elems, nullptr);
  });
}

int emu_connected_components(const uint8_t* mask, int32_t* labels, int64_t* counts, int32_t* ws, int64_t N,
                             int64_t H, int64_t W, int connectivity) {
  return guarded([&] { return istd_connected_components_cuda(mask, labels, counts, ws, N, H, W, connectivity, nullptr); });
}

int emu_component_stats(int sm70, const int32_t* labels, int64_t N, int64_t H, int64_t W, int64_t M, int64_t* area,
                        double* centroid, int64_t* bbox, int64_t* sums, int32_t* bounds) {
  return guarded([&] {
    return sm70 ? istd_component_stats_cuda_sm70(labels, N, H, W, M, area, centroid, bbox, sums, bounds, nullptr)
                : istd_component_stats_cuda(labels, N, H, W, M, area, centroid, bbox, sums, bounds, nullptr);
  });
}

int emu_fixture(const char* name, int* out, int n) {
  return guarded([&] { return istd_emu_fixture(name, out, n); });
}

void emu_clear_log() { istd_emu::clear_launch_log(); }
void emu_set_seed(uint64_t seed) { istd_emu::set_interleave_seed(seed); }
int emu_log_size() { return static_cast<int>(istd_emu::launch_log().size()); }

// "name|signature|grid x,y,z|block x,y,z|dynamic smem" of launch i.
const char* emu_log_entry(int i) {
  const istd_emu::LaunchRecord& r = istd_emu::launch_log().at(i);
  std::ostringstream os;
  os << r.name << "|" << r.signature << "|" << r.grid.x << "," << r.grid.y << "," << r.grid.z << "|" << r.block.x
     << "," << r.block.y << "," << r.block.z << "|" << r.smem;
  g_entry = os.str();
  return g_entry.c_str();
}

}  // extern "C"
