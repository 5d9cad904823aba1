// Helpers shared by the PyTorch bindings (cpu.cpp, cuda.cpp): version string, strides,
// hyper-parameter checks and the output layout rule. PyTorch headers are fine here; the
// kernels themselves never see them.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "istd/common.h"
#include "istd/hlk_core.h"

#ifndef ISTD_TORCH_VERSION
#define ISTD_TORCH_VERSION unknown
#endif
#define ISTD_STRINGIFY_(x) #x
#define ISTD_STRINGIFY(x) ISTD_STRINGIFY_(x)

namespace istd_binding {

// setup.py passes the version either as a string literal or as bare tokens, depending on how
// the flag is quoted; stringifying and then dropping surrounding quotes accepts both.
inline std::string torch_version() {
  std::string v = ISTD_STRINGIFY(ISTD_TORCH_VERSION);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return v;
}

inline istd::Strides4 strides_of(const at::Tensor& t) {
  return istd::Strides4{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

// The same rule as istd_kernels.ops._checks.output_memory_format: the fake (meta) kernels
// allocate with it, so compiled graphs must see exactly these strides.
inline at::MemoryFormat output_memory_format(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

inline void check_hparams(const char* who, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  TORCH_CHECK(sh >= 1 && sw >= 1, who, ": stride must be >= 1, got (", sh, ", ", sw, ")");
  TORCH_CHECK(ph >= 0 && pw >= 0, who, ": padding must be >= 0, got (", ph, ", ", pw, ")");
  TORCH_CHECK(dh >= 1 && dw >= 1, who, ": dilation must be >= 1, got (", dh, ", ", dw, ")");
  TORCH_CHECK(sh <= INT32_MAX && sw <= INT32_MAX && ph <= INT32_MAX && pw <= INT32_MAX && dh <= INT32_MAX &&
                  dw <= INT32_MAX,
              who, ": stride, padding and dilation must fit in 32 bits");
}

inline istd::DwGeometry make_geometry(const char* who, int64_t max_kernel, int64_t N, int64_t C, int64_t H, int64_t W,
                                      int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                                      int64_t dh, int64_t dw) {
  TORCH_CHECK(kh >= 1 && kw >= 1 && kh <= max_kernel && kw <= max_kernel, who, ": kernel size (", kh, ", ", kw,
              ") must be between 1 and ", max_kernel);
  istd::DwGeometry g{};
  g.N = N;
  g.C = C;
  g.H = H;
  g.W = W;
  g.KH = static_cast<int>(kh);
  g.KW = static_cast<int>(kw);
  g.SH = static_cast<int>(sh);
  g.SW = static_cast<int>(sw);
  g.PH = static_cast<int>(ph);
  g.PW = static_cast<int>(pw);
  g.DH = static_cast<int>(dh);
  g.DW = static_cast<int>(dw);
  g.Ho = istd::conv_out_size(H, g.KH, g.SH, g.PH, g.DH);
  g.Wo = istd::conv_out_size(W, g.KW, g.SW, g.PW, g.DW);
  return g;
}

// The labelling kernels take contiguous 0/1 uint8 masks [N, H, W] and keep parents and
// labels as int32 pixel indices within one image.
inline void check_label_mask(const char* who, const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.scalar_type() == at::kByte, who, ": mask must be uint8, got ", mask.scalar_type());
  TORCH_CHECK(mask.dim() == 3, who, ": mask must be 3-D [N, H, W], got ", mask.sizes());
  TORCH_CHECK(mask.is_contiguous(), who, ": mask must be contiguous");
  TORCH_CHECK(connectivity == 4 || connectivity == 8, who, ": connectivity must be 4 or 8, got ", connectivity);
  TORCH_CHECK(mask.size(1) * mask.size(2) < INT32_MAX, who, ": an image of ", mask.size(1), "x", mask.size(2),
              " pixels is too large for int32 labels");
}

// Shape contract of hlk_fwd (device and dtype are checked by each binding): odd square
// depthwise kernels [C, 1, k, k], a pointwise weight [Cout, 2*C/groups, 1, 1], biases of
// C, C and Cout elements.
inline istd::HlkGeometry make_hlk_geometry(const char* who, const at::Tensor& x, const at::Tensor& w0,
                                           const at::Tensor& w1, const at::Tensor& w_pw,
                                           std::initializer_list<std::pair<const at::Tensor*, bool>> biases,
                                           int64_t dilation, int64_t groups) {
  TORCH_CHECK(x.dim() == 4, who, ": x must be 4-D [N, C, H, W], got ", x.sizes());
  const int64_t C = x.size(1);
  TORCH_CHECK(groups >= 1, who, ": groups must be >= 1, got ", groups);
  TORCH_CHECK(C % groups == 0, who, ": C = ", C, " is not divisible by groups = ", groups);
  TORCH_CHECK(dilation >= 1 && dilation <= 1024, who, ": dilation must be between 1 and 1024, got ", dilation);
  for (const at::Tensor* w : {&w0, &w1}) {
    TORCH_CHECK(w->dim() == 4 && w->size(0) == C && w->size(1) == 1 && w->size(2) == w->size(3), who,
                ": depthwise weights must have shape [C, 1, k, k] with C = ", C, ", got ", w->sizes());
    TORCH_CHECK(w->size(2) % 2 == 1 && w->size(2) <= 31, who,
                ": depthwise kernel sizes must be odd and between 1 and 31, got ", w->size(2));
  }
  TORCH_CHECK(w_pw.dim() == 4 && w_pw.size(1) == 2 * (C / groups) && w_pw.size(2) == 1 && w_pw.size(3) == 1, who,
              ": w_pw must have shape [Cout, 2*C/groups, 1, 1] with 2*C/groups = ", 2 * (C / groups), ", got ",
              w_pw.sizes());
  const int64_t Cout = w_pw.size(0);
  TORCH_CHECK(Cout % groups == 0, who, ": Cout = ", Cout, " is not divisible by groups = ", groups);
  int i = 0;
  for (const auto& b : biases) {
    const int64_t len = i++ < 2 ? C : Cout;  // b0, b1, b_pw
    if (!b.second) continue;
    TORCH_CHECK(b.first->dim() == 1 && b.first->size(0) == len, who, ": bias must have shape [", len, "], got ",
                b.first->sizes());
  }
  istd::HlkGeometry g{};
  g.N = x.size(0);
  g.C = C;
  g.H = x.size(2);
  g.W = x.size(3);
  g.Cout = Cout;
  g.groups = groups;
  g.k1 = static_cast<int>(w0.size(2));
  g.k2 = static_cast<int>(w1.size(2));
  g.dilation = static_cast<int>(dilation);
  return g;
}

}  // namespace istd_binding
