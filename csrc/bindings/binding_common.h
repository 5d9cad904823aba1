// Helpers shared by the PyTorch bindings (cpu.cpp, cuda.cpp): version string, strides, the
// output layout rule, and each op family's parameters, checked and turned into the kernels'
// geometry struct once for both bindings. Device and dtype checks stay in each binding.
// PyTorch headers are fine here; the kernels themselves never see them.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "istd/common.h"
#include "istd/hlk_core.h"
#include "istd/limits.h"

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

// The same rule as istd_kernels.layout.output_memory_format: the fake (meta) kernels
// allocate with it, so compiled graphs must see exactly these strides.
inline at::MemoryFormat output_memory_format(const at::Tensor& t) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    return at::MemoryFormat::ChannelsLast;
  }
  return at::MemoryFormat::Contiguous;
}

namespace lim = istd::limits;

// A depthwise convolution's hyper-parameters as the op layer passes them: one list
// [sh, sw, ph, pw, dh, dw], checked here once for every entry point of both bindings.
struct DwParams {
  int S[2], P[2], D[2];

  static DwParams from(const char* who, const std::vector<int64_t>& conv) {
    TORCH_CHECK(conv.size() == 6, who, ": conv must be [sh, sw, ph, pw, dh, dw], got ", conv.size(), " values");
    for (int i = 0; i < 6; ++i) {
      const int64_t low = i / 2 == 1 ? 0 : 1;
      const int64_t high = i / 2 == 2 ? lim::kDwMaxDilation : lim::kMaxHyperParam;
      TORCH_CHECK(conv[i] >= low && conv[i] <= high, who, ": ", (i < 2 ? "stride" : i < 4 ? "padding" : "dilation"),
                  " must be between ", low, " and ", high, ", got ", conv[i]);
    }
    DwParams p{};
    for (int a = 0; a < 2; ++a) {
      p.S[a] = static_cast<int>(conv[a]);
      p.P[a] = static_cast<int>(conv[2 + a]);
      p.D[a] = static_cast<int>(conv[4 + a]);
    }
    return p;
  }

  istd::DwGeometry geometry(const char* who, int64_t N, int64_t C, int64_t H, int64_t W, int64_t kh,
                            int64_t kw) const {
    TORCH_CHECK(kh >= 1 && kw >= 1 && kh <= lim::kDwMaxKernel && kw <= lim::kDwMaxKernel, who, ": kernel size (", kh,
                ", ", kw, ") must be between 1 and ", lim::kDwMaxKernel);
    TORCH_CHECK(H >= 0 && W >= 0, who, ": input size must be >= 0, got (", H, ", ", W, ")");
    istd::DwGeometry g{N, C, H, W, 0, 0, static_cast<int>(kh), static_cast<int>(kw), S[0], S[1], P[0], P[1], D[0], D[1]};
    g.Ho = istd::conv_out_size(H, g.KH, g.SH, g.PH, g.DH);
    g.Wo = istd::conv_out_size(W, g.KW, g.SW, g.PW, g.DW);
    return g;
  }
};

inline void check_dw_weight(const char* who, const at::Tensor& weight, int64_t C) {
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1, who,
              ": weight must have shape [C, 1, kh, kw] with C = ", C, ", got ", weight.sizes());
}

// Shapes of depthwise_fwd(x, weight, bias, conv).
inline istd::DwGeometry dw_fwd_geometry(const char* who, const at::Tensor& x, const at::Tensor& weight,
                                        const at::Tensor* bias, const std::vector<int64_t>& conv) {
  TORCH_CHECK(x.dim() == 4, who, ": x must be 4-D [N, C, H, W], got ", x.sizes());
  check_dw_weight(who, weight, x.size(1));
  if (bias != nullptr) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), who, ": bias must have shape [C], got ", bias->sizes());
  }
  return DwParams::from(who, conv).geometry(who, x.size(0), x.size(1), x.size(2), x.size(3), weight.size(2),
                                            weight.size(3));
}

// Shapes of depthwise_bwd_input(grad_y, weight, H, W, conv).
inline istd::DwGeometry dw_bwd_input_geometry(const char* who, const at::Tensor& grad_y, const at::Tensor& weight,
                                              int64_t H, int64_t W, const std::vector<int64_t>& conv) {
  TORCH_CHECK(grad_y.dim() == 4, who, ": grad_y must be 4-D [N, C, Ho, Wo], got ", grad_y.sizes());
  check_dw_weight(who, weight, grad_y.size(1));
  const istd::DwGeometry g =
      DwParams::from(who, conv).geometry(who, grad_y.size(0), grad_y.size(1), H, W, weight.size(2), weight.size(3));
  TORCH_CHECK(grad_y.size(2) == g.Ho && grad_y.size(3) == g.Wo, who, ": grad_y has spatial size (", grad_y.size(2),
              ", ", grad_y.size(3), ") but the convolution of (", H, ", ", W, ") gives (", g.Ho, ", ", g.Wo, ")");
  return g;
}

// Shapes of depthwise_bwd_weight(grad_y, x, kh, kw, conv, need_bias).
inline istd::DwGeometry dw_bwd_weight_geometry(const char* who, const at::Tensor& grad_y, const at::Tensor& x,
                                               int64_t kh, int64_t kw, const std::vector<int64_t>& conv) {
  TORCH_CHECK(x.dim() == 4 && grad_y.dim() == 4, who, ": x and grad_y must be 4-D, got ", x.sizes(), " and ",
              grad_y.sizes());
  const istd::DwGeometry g = DwParams::from(who, conv).geometry(who, x.size(0), x.size(1), x.size(2), x.size(3), kh, kw);
  TORCH_CHECK(grad_y.size(0) == g.N && grad_y.size(1) == g.C && grad_y.size(2) == g.Ho && grad_y.size(3) == g.Wo, who,
              ": grad_y must have shape [", g.N, ", ", g.C, ", ", g.Ho, ", ", g.Wo, "], got ", grad_y.sizes());
  return g;
}

inline bool has_tensor(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// The labelling kernels take contiguous 0/1 uint8 masks [N, H, W] and keep parents and
// labels as int32 pixel indices within one image.
inline void check_label_mask(const char* who, const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.scalar_type() == at::kByte, who, ": mask must be uint8, got ", mask.scalar_type());
  TORCH_CHECK(mask.dim() == 3, who, ": mask must be 3-D [N, H, W], got ", mask.sizes());
  TORCH_CHECK(mask.is_contiguous(), who, ": mask must be contiguous");
  TORCH_CHECK(connectivity == 4 || connectivity == 8, who, ": connectivity must be 4 or 8, got ", connectivity);
  TORCH_CHECK(mask.size(1) * mask.size(2) <= lim::kMaxImagePixels, who, ": an image of ", mask.size(1), "x",
              mask.size(2), " pixels is too large for int32 labels");
}

// Shape contract of hlk_fwd (device and dtype are checked by each binding): odd square
// depthwise kernels [C, 1, k, k], a pointwise weight [Cout, 2*C/groups, 1, 1], biases of
// C, C and Cout elements.
inline istd::HlkGeometry make_hlk_geometry(const char* who, const at::Tensor& x, const at::Tensor& w0,
                                           const c10::optional<at::Tensor>& b0, const at::Tensor& w1,
                                           const c10::optional<at::Tensor>& b1, const at::Tensor& w_pw,
                                           const c10::optional<at::Tensor>& b_pw, int64_t dilation, int64_t groups) {
  TORCH_CHECK(x.dim() == 4, who, ": x must be 4-D [N, C, H, W], got ", x.sizes());
  const int64_t C = x.size(1);
  TORCH_CHECK(groups >= 1, who, ": groups must be >= 1, got ", groups);
  TORCH_CHECK(C % groups == 0, who, ": C = ", C, " is not divisible by groups = ", groups);
  TORCH_CHECK(dilation >= 1 && dilation <= lim::kDwMaxDilation, who, ": dilation must be between 1 and ",
              lim::kDwMaxDilation, ", got ", dilation);
  for (const at::Tensor* w : {&w0, &w1}) {
    TORCH_CHECK(w->dim() == 4 && w->size(0) == C && w->size(1) == 1 && w->size(2) == w->size(3), who,
                ": depthwise weights must have shape [C, 1, k, k] with C = ", C, ", got ", w->sizes());
    TORCH_CHECK(w->size(2) % 2 == 1 && w->size(2) <= lim::kDwMaxKernel, who,
                ": depthwise kernel sizes must be odd and between 1 and ", lim::kDwMaxKernel, ", got ", w->size(2));
  }
  TORCH_CHECK(w_pw.dim() == 4 && w_pw.size(1) == 2 * (C / groups) && w_pw.size(2) == 1 && w_pw.size(3) == 1, who,
              ": w_pw must have shape [Cout, 2*C/groups, 1, 1] with 2*C/groups = ", 2 * (C / groups), ", got ",
              w_pw.sizes());
  const int64_t Cout = w_pw.size(0);
  TORCH_CHECK(Cout % groups == 0, who, ": Cout = ", Cout, " is not divisible by groups = ", groups);
  const std::pair<const c10::optional<at::Tensor>*, int64_t> biases[] = {{&b0, C}, {&b1, C}, {&b_pw, Cout}};
  for (const auto& b : biases) {
    if (!has_tensor(*b.first)) continue;
    TORCH_CHECK((*b.first)->dim() == 1 && (*b.first)->size(0) == b.second, who, ": bias must have shape [", b.second,
                "], got ", (*b.first)->sizes());
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
