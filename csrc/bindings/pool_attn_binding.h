// Argument checks, output allocation and descriptor filling of the multiscale_maxpool and
// split_attention bindings, shared by cpu.cpp and cuda.cpp. The Python op layer validates
// user input; these checks guard the contract between that layer and the kernels, so a
// wrong call fails with a message instead of reading out of bounds.
#pragma once

#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "binding_common.h"
#include "istd/pool_attn_core.h"

namespace istd_binding {

// Window offsets are uint8 while every window has at most 256 cells (the rule of
// istd_kernels.layout.index_dtype), int32 otherwise.
constexpr int64_t kMmpUint8MaxScale = istd::limits::kMmpUint8MaxScale;
constexpr int64_t kMmpMaxScale = istd::limits::kMmpMaxScale;
static_assert(istd::kSaMaxBranches == istd::limits::kSaMaxBranches,
              "pool_attn_core.h's branch arrays must match limits.h");

inline at::ScalarType mmp_index_type(const std::vector<int64_t>& scales) {
  return *std::max_element(scales.begin(), scales.end()) <= kMmpUint8MaxScale ? at::kByte : at::kInt;
}

inline istd::MmpGeometry mmp_geometry(const char* who, int64_t N, int64_t D, int64_t H, int64_t W, int64_t groups,
                                      int64_t radix, const std::vector<int64_t>& scales) {
  TORCH_CHECK(groups >= 1 && radix >= 1, who, ": groups and radix must be >= 1, got ", groups, " and ", radix);
  TORCH_CHECK(D > 0 && D % (groups * radix) == 0, who, ": D = ", D, " must be a positive multiple of groups*radix = ",
              groups * radix);
  TORCH_CHECK(static_cast<int64_t>(scales.size()) == radix, who, ": scales must have radix = ", radix,
              " entries, got ", scales.size());
  for (int64_t s : scales)
    TORCH_CHECK(s >= 1 && s <= kMmpMaxScale, who, ": scales must be between 1 and ", kMmpMaxScale, ", got ", s);
  TORCH_CHECK(H >= 0 && W >= 0 && N >= 0, who, ": sizes must be >= 0");
  return istd::MmpGeometry{N, D, H, W, groups, radix, D / (groups * radix)};
}

// The 2*radix outputs of the forward: levels in u's dtype, then offsets, both in
// output_memory_format(u) (what the fake kernel allocates).
inline std::vector<at::Tensor> mmp_alloc_fwd(const at::Tensor& u, const istd::MmpGeometry& g,
                                             const std::vector<int64_t>& scales) {
  const auto fmt = output_memory_format(u);
  const at::ScalarType idt = mmp_index_type(scales);
  std::vector<at::Tensor> ys, idx;
  for (int64_t s : scales) {
    const std::vector<int64_t> shape{g.N, g.groups * g.C, istd::ceil_div(g.H, s), istd::ceil_div(g.W, s)};
    ys.push_back(at::empty(shape, u.options().memory_format(fmt)));
    idx.push_back(at::empty(shape, u.options().dtype(idt).memory_format(fmt)));
  }
  ys.insert(ys.end(), idx.begin(), idx.end());
  return ys;
}

// Level descriptors from (data, idx) pairs: outs[j] and outs[radix + j] for the forward,
// grads[j] and indices[j] for the backward.
inline std::vector<istd::MmpLevel> mmp_levels(const std::vector<at::Tensor>& data, const std::vector<at::Tensor>& idx,
                                              const std::vector<int64_t>& scales) {
  std::vector<istd::MmpLevel> levels;
  for (size_t j = 0; j < scales.size(); ++j) {
    levels.push_back(istd::MmpLevel{static_cast<int>(scales[j]), data[j].size(2), data[j].size(3),
                                    data[j].data_ptr(), strides_of(data[j]), idx[j].data_ptr(),
                                    strides_of(idx[j])});
  }
  return levels;
}

inline void mmp_check_backward(const char* who, const std::vector<at::Tensor>& grads,
                               const std::vector<at::Tensor>& indices, const istd::MmpGeometry& g,
                               const std::vector<int64_t>& scales) {
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == g.radix && static_cast<int64_t>(indices.size()) == g.radix, who,
              ": expected radix = ", g.radix, " gradients and offset tensors, got ", grads.size(), " and ",
              indices.size());
  const at::ScalarType idt = mmp_index_type(scales);
  for (int64_t j = 0; j < g.radix; ++j) {
    const std::vector<int64_t> want{g.N, g.groups * g.C, istd::ceil_div(g.H, scales[j]),
                                    istd::ceil_div(g.W, scales[j])};
    TORCH_CHECK(grads[j].sizes() == at::IntArrayRef(want) && indices[j].sizes() == at::IntArrayRef(want), who,
                ": level ", j, " gradient and offsets must have shape ", at::IntArrayRef(want), ", got ",
                grads[j].sizes(), " and ", indices[j].sizes());
    TORCH_CHECK(grads[j].scalar_type() == grads[0].scalar_type(), who, ": level gradients differ in dtype");
    TORCH_CHECK(indices[j].scalar_type() == idt, who, ": offsets of level ", j, " must be ", idt, ", got ",
                indices[j].scalar_type());
    TORCH_CHECK(grads[j].device() == grads[0].device() && indices[j].device() == grads[0].device(), who,
                ": every tensor must be on ", grads[0].device());
  }
}

// Shapes of split_attention's arguments (dtype and device are checked by each binding).
inline istd::SaGeometry sa_geometry(const char* who, const std::vector<at::Tensor>& branches, const at::Tensor& logits,
                                    const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v,
                                    int64_t groups, const std::vector<int64_t>& scales) {
  TORCH_CHECK(residual.dim() == 4, who, ": residual must be 4-D [N, D, H, W], got ", residual.sizes());
  const int64_t R = static_cast<int64_t>(branches.size());
  TORCH_CHECK(R >= 1 && R <= istd::kSaMaxBranches, who, ": split attention supports 1 to ", istd::kSaMaxBranches,
              " branches, got ", R);
  TORCH_CHECK(static_cast<int64_t>(scales.size()) == R, who, ": scales must have one entry per branch (", R,
              "), got ", scales.size());
  istd::SaGeometry g{};
  g.N = residual.size(0);
  g.D = residual.size(1);
  g.H = residual.size(2);
  g.W = residual.size(3);
  g.G = groups;
  g.R = static_cast<int>(R);
  TORCH_CHECK(groups >= 1 && g.D % groups == 0, who, ": groups = ", groups, " must divide D = ", g.D);
  TORCH_CHECK(v.sizes() == residual.sizes(), who, ": v must have residual's shape ", residual.sizes(), ", got ",
              v.sizes());
  TORCH_CHECK(logits.dim() == 4 && logits.size(0) == g.N && logits.size(1) == groups * R && logits.size(2) == g.H &&
                  logits.size(3) == g.W,
              who, ": logits must have shape [N, groups*r, H, W], got ", logits.sizes());
  TORCH_CHECK(temperature.numel() == 1, who, ": temperature must have one element, got ", temperature.sizes());
  for (int64_t j = 0; j < R; ++j) {
    const int64_t s = scales[j];
    TORCH_CHECK(s >= 1 && s <= istd::limits::kSaMaxScale, who, ": scales must be between 1 and ",
                istd::limits::kSaMaxScale, ", got ", s);
    g.scales[j] = static_cast<int>(s);
    g.Hb[j] = istd::ceil_div(g.H, s);
    g.Wb[j] = istd::ceil_div(g.W, s);
    const at::Tensor& b = branches[j];
    TORCH_CHECK(b.dim() == 4 && b.size(0) == g.N && b.size(1) == g.D && b.size(2) == g.Hb[j] && b.size(3) == g.Wb[j],
                who, ": branches[", j, "] must have shape [", g.N, ", ", g.D, ", ", g.Hb[j], ", ", g.Wb[j],
                "], got ", b.sizes());
  }
  return g;
}

inline istd::SaInputs sa_inputs(const std::vector<at::Tensor>& branches, const at::Tensor& logits,
                                const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v) {
  istd::SaInputs in{};
  for (size_t j = 0; j < branches.size(); ++j) {
    in.branch[j] = branches[j].data_ptr();
    in.branch_s[j] = strides_of(branches[j]);
  }
  in.logits = logits.data_ptr();
  in.logits_s = strides_of(logits);
  in.temperature = temperature.data_ptr();
  in.residual = residual.data_ptr();
  in.residual_s = strides_of(residual);
  in.v = v.data_ptr();
  in.v_s = strides_of(v);
  return in;
}

inline istd::SaGrads sa_grads(std::vector<at::Tensor>& gbs, at::Tensor& glg, at::Tensor& gres, at::Tensor& gv) {
  istd::SaGrads out{};
  for (size_t j = 0; j < gbs.size(); ++j) {
    out.branch[j] = gbs[j].data_ptr();
    out.branch_s[j] = strides_of(gbs[j]);
  }
  out.logits = glg.data_ptr();
  out.logits_s = strides_of(glg);
  out.residual = gres.data_ptr();
  out.residual_s = strides_of(gres);
  out.v = gv.data_ptr();
  out.v_s = strides_of(gv);
  return out;
}

}  // namespace istd_binding
