// istd_kernels._C: PyTorch entry points of the CPU kernels. The Python layer validates
// user input; the checks here guard the contract between that layer and the kernels.
#include <torch/extension.h>

#include "binding_common.h"

#include <string>
#include <tuple>
#include <utility>

#include "../cpu/components_cpu.h"
#include "../cpu/depthwise_cpu.h"
#include "../cpu/hlk_cpu.h"
#include "../cpu/overlap_cpu.h"


namespace {

using istd_binding::check_hparams;
using istd_binding::strides_of;
using istd_binding::torch_version;

using istd::DwGeometry;
using istd::Strides4;



void check_cpu_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "istd _C: ", name, " must be a CPU tensor, got ", t.device());
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, "istd _C: ", name,
              " must be float16, bfloat16, float32 or float64, got ", s);
}

// Half types run through the float32 kernels; everything else is used as is.
at::Tensor compute_view(const at::Tensor& t) {
  const auto s = t.scalar_type();
  return (s == at::kHalf || s == at::kBFloat16) ? t.to(at::kFloat) : t;
}



void check_weight(const at::Tensor& weight, const at::Tensor& like, int64_t C) {
  check_cpu_float(weight, "weight");
  TORCH_CHECK(weight.scalar_type() == like.scalar_type(), "istd _C: weight dtype ", weight.scalar_type(),
              " differs from ", like.scalar_type());
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1,
              "istd _C: weight must have shape [C, 1, kh, kw] with C = ", C, ", got ", weight.sizes());
}

at::Tensor depthwise_fwd(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  check_cpu_float(x, "x");
  TORCH_CHECK(x.dim() == 4, "istd _C: x must be 4-D [N, C, H, W], got ", x.sizes());
  check_weight(weight, x, x.size(1));
  check_hparams("istd _C", sh, sw, ph, pw, dh, dw);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_cpu_float(*bias, "bias");
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "istd _C: bias dtype ", bias->scalar_type(),
                " differs from x dtype ", x.scalar_type());
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), "istd _C: bias must have shape [C], got ",
                bias->sizes());
  }
  const DwGeometry g = istd_binding::make_geometry("istd _C", 1024, x.size(0), x.size(1), x.size(2), x.size(3), weight.size(2), weight.size(3), sh,
                                     sw, ph, pw, dh, dw);

  const at::Tensor xc = compute_view(x);
  const at::Tensor wc = compute_view(weight).contiguous();
  at::Tensor bc;
  if (has_bias) bc = compute_view(*bias).contiguous();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, xc.options().memory_format(istd_binding::output_memory_format(x)));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "istd_depthwise_fwd_cpu", [&] {
      istd::cpu::dw_forward<scalar_t>(xc.data_ptr<scalar_t>(), strides_of(xc), wc.data_ptr<scalar_t>(),
                                      has_bias ? bc.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(),
                                      strides_of(y), g);
    });
  }
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

at::Tensor depthwise_bwd_input(const at::Tensor& grad_y, const at::Tensor& weight, int64_t H, int64_t W, int64_t sh,
                               int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  check_cpu_float(grad_y, "grad_y");
  TORCH_CHECK(grad_y.dim() == 4, "istd _C: grad_y must be 4-D [N, C, Ho, Wo], got ", grad_y.sizes());
  check_weight(weight, grad_y, grad_y.size(1));
  check_hparams("istd _C", sh, sw, ph, pw, dh, dw);
  TORCH_CHECK(H >= 0 && W >= 0, "istd _C: input size must be >= 0, got (", H, ", ", W, ")");
  const DwGeometry g = istd_binding::make_geometry("istd _C", 1024, grad_y.size(0), grad_y.size(1), H, W, weight.size(2), weight.size(3), sh, sw, ph,
                                     pw, dh, dw);
  TORCH_CHECK(grad_y.size(2) == g.Ho && grad_y.size(3) == g.Wo, "istd _C: grad_y has spatial size (",
              grad_y.size(2), ", ", grad_y.size(3), ") but the convolution of (", H, ", ", W, ") gives (", g.Ho,
              ", ", g.Wo, ")");

  const at::Tensor gyc = compute_view(grad_y);
  const at::Tensor wc = compute_view(weight).contiguous();
  at::Tensor gx = at::empty({g.N, g.C, g.H, g.W}, gyc.options().memory_format(istd_binding::output_memory_format(grad_y)));
  if (gx.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(gyc.scalar_type(), "istd_depthwise_bwd_input_cpu", [&] {
      istd::cpu::dw_backward_input<scalar_t>(gyc.data_ptr<scalar_t>(), strides_of(gyc), wc.data_ptr<scalar_t>(),
                                             gx.data_ptr<scalar_t>(), strides_of(gx), g);
    });
  }
  return gx.scalar_type() == grad_y.scalar_type() ? gx : gx.to(grad_y.scalar_type());
}

std::tuple<at::Tensor, c10::optional<at::Tensor>> depthwise_bwd_weight(const at::Tensor& grad_y, const at::Tensor& x,
                                                                       int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                                                       int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                                                                       bool need_bias) {
  check_cpu_float(grad_y, "grad_y");
  check_cpu_float(x, "x");
  TORCH_CHECK(x.dim() == 4 && grad_y.dim() == 4, "istd _C: x and grad_y must be 4-D, got ", x.sizes(), " and ",
              grad_y.sizes());
  TORCH_CHECK(grad_y.scalar_type() == x.scalar_type(), "istd _C: grad_y dtype ", grad_y.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  check_hparams("istd _C", sh, sw, ph, pw, dh, dw);
  const DwGeometry g = istd_binding::make_geometry("istd _C", 1024, x.size(0), x.size(1), x.size(2), x.size(3), kh, kw, sh, sw, ph, pw, dh, dw);
  TORCH_CHECK(grad_y.size(0) == g.N && grad_y.size(1) == g.C && grad_y.size(2) == g.Ho && grad_y.size(3) == g.Wo,
              "istd _C: grad_y must have shape [", g.N, ", ", g.C, ", ", g.Ho, ", ", g.Wo, "], got ", grad_y.sizes());

  const at::Tensor gyc = compute_view(grad_y);
  const at::Tensor xc = compute_view(x);
  at::Tensor gw = at::empty({g.C, 1, kh, kw}, xc.options());
  at::Tensor gb;
  if (need_bias) gb = at::empty({g.C}, xc.options());
  if (g.C > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "istd_depthwise_bwd_weight_cpu", [&] {
      istd::cpu::dw_backward_weight<scalar_t>(gyc.data_ptr<scalar_t>(), strides_of(gyc), xc.data_ptr<scalar_t>(),
                                              strides_of(xc), gw.data_ptr<scalar_t>(),
                                              need_bias ? gb.data_ptr<scalar_t>() : nullptr, g);
    });
  }
  const auto out_type = x.scalar_type();
  if (gw.scalar_type() != out_type) gw = gw.to(out_type);
  c10::optional<at::Tensor> gb_out;
  if (need_bias) gb_out = gb.scalar_type() == out_type ? gb : gb.to(out_type);
  return std::make_tuple(gw, gb_out);
}

// Device and dtype checks of hlk_fwd's tensors; the shapes are checked by make_hlk_geometry.
istd::HlkGeometry hlk_geometry(const at::Tensor& x, const at::Tensor& w0, const c10::optional<at::Tensor>& b0,
                               const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w_pw,
                               const c10::optional<at::Tensor>& b_pw, int64_t dilation, int64_t groups) {
  const auto has = [](const c10::optional<at::Tensor>& b) { return b.has_value() && b->defined(); };
  const std::pair<const at::Tensor*, const char*> tensors[] = {{&w0, "w0"}, {&w1, "w1"}, {&w_pw, "w_pw"}};
  for (const auto& t : tensors) {
    check_cpu_float(*t.first, t.second);
    TORCH_CHECK(t.first->scalar_type() == x.scalar_type(), "istd _C: ", t.second, " dtype ", t.first->scalar_type(),
                " differs from x dtype ", x.scalar_type());
  }
  for (const c10::optional<at::Tensor>* b : {&b0, &b1, &b_pw}) {
    if (!has(*b)) continue;
    check_cpu_float(**b, "hlk bias");
    TORCH_CHECK((*b)->scalar_type() == x.scalar_type(), "istd _C: bias dtype ", (*b)->scalar_type(),
                " differs from x dtype ", x.scalar_type());
  }
  const at::Tensor none;
  return istd_binding::make_hlk_geometry("istd _C", x, w0, w1, w_pw,
                                         {{has(b0) ? &*b0 : &none, has(b0)}, {has(b1) ? &*b1 : &none, has(b1)},
                                          {has(b_pw) ? &*b_pw : &none, has(b_pw)}},
                                         dilation, groups);
}

at::Tensor hlk_fwd(const at::Tensor& x, const at::Tensor& w0, const c10::optional<at::Tensor>& b0,
                   const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w_pw,
                   const c10::optional<at::Tensor>& b_pw, int64_t dilation, int64_t groups) {
  check_cpu_float(x, "x");
  const istd::HlkGeometry g = hlk_geometry(x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups);
  const auto opt_view = [](const c10::optional<at::Tensor>& b) {
    return (b.has_value() && b->defined()) ? compute_view(*b).contiguous() : at::Tensor();
  };
  const at::Tensor xc = compute_view(x);
  const at::Tensor w0c = compute_view(w0).contiguous(), w1c = compute_view(w1).contiguous();
  const at::Tensor wpc = compute_view(w_pw).contiguous();
  const at::Tensor b0c = opt_view(b0), b1c = opt_view(b1), bpc = opt_view(b_pw);
  at::Tensor y = at::empty({g.N, g.Cout, g.H, g.W}, xc.options().memory_format(istd_binding::output_memory_format(x)));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "istd_hlk_fwd_cpu", [&] {
      const auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
      istd::cpu::hlk_forward<scalar_t>(xc.data_ptr<scalar_t>(), strides_of(xc), w0c.data_ptr<scalar_t>(), ptr(b0c),
                                       w1c.data_ptr<scalar_t>(), ptr(b1c), wpc.data_ptr<scalar_t>(), ptr(bpc),
                                       y.data_ptr<scalar_t>(), strides_of(y), g);
    });
  }
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> connected_components(const at::Tensor& mask, int64_t connectivity) {
  TORCH_CHECK(mask.device().is_cpu(), "istd _C: mask must be a CPU tensor, got ", mask.device());
  istd_binding::check_label_mask("istd _C", mask, connectivity);
  const int64_t N = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor labels = at::empty({N, H, W}, mask.options().dtype(at::kInt));
  at::Tensor counts = at::zeros({N}, mask.options().dtype(at::kLong));
  if (H * W > 0) {
    istd::cpu::connected_components(mask.data_ptr<uint8_t>(), labels.data_ptr<int32_t>(), counts.data_ptr<int64_t>(),
                                    N, H, W, static_cast<int>(connectivity));
  }
  return std::make_tuple(labels, counts);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> component_stats(const at::Tensor& labels, int64_t M) {
  TORCH_CHECK(labels.device().is_cpu(), "istd _C: labels must be a CPU tensor, got ", labels.device());
  TORCH_CHECK(labels.scalar_type() == at::kInt, "istd _C: labels must be int32, got ", labels.scalar_type());
  TORCH_CHECK(labels.dim() == 3, "istd _C: labels must be 3-D [N, H, W], got ", labels.sizes());
  TORCH_CHECK(labels.is_contiguous(), "istd _C: labels must be contiguous");
  TORCH_CHECK(M >= 0, "istd _C: the number of components must be >= 0, got ", M);
  const int64_t N = labels.size(0), H = labels.size(1), W = labels.size(2);
  const auto opts = labels.options();
  at::Tensor area = at::empty({N, M}, opts.dtype(at::kLong));
  at::Tensor centroid = at::empty({N, M, 2}, opts.dtype(at::kDouble));
  at::Tensor bbox = at::empty({N, M, 4}, opts.dtype(at::kLong));
  istd::cpu::component_stats(labels.data_ptr<int32_t>(), N, H, W, M, area.data_ptr<int64_t>(),
                             centroid.data_ptr<double>(), bbox.data_ptr<int64_t>());
  return std::make_tuple(area, centroid, bbox);
}

std::tuple<at::Tensor, at::Tensor> mask_overlap(const at::Tensor& pred, const at::Tensor& target) {
  for (const at::Tensor* t : {&pred, &target}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kByte && t->dim() == 3 && t->is_contiguous(),
                "istd _C: mask_overlap takes contiguous uint8 [N, H, W] CPU masks, got ", t->sizes(), " ",
                t->scalar_type());
  }
  TORCH_CHECK(pred.sizes() == target.sizes(), "istd _C: pred ", pred.sizes(), " and target ", target.sizes(),
              " differ in shape");
  const int64_t N = pred.size(0), HW = pred.size(1) * pred.size(2);
  at::Tensor inter = at::empty({N}, pred.options().dtype(at::kLong));
  at::Tensor uni = at::empty({N}, pred.options().dtype(at::kLong));
  istd::cpu::mask_overlap(pred.data_ptr<uint8_t>(), target.data_ptr<uint8_t>(), N, HW, inter.data_ptr<int64_t>(),
                          uni.data_ptr<int64_t>());
  return std::make_tuple(inter, uni);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "istd_kernels CPU kernels (depthwise 2-D convolution, connected components)";
  m.def("torch_version", &torch_version, "The torch version this extension was compiled against.");
  m.def("depthwise_fwd", &depthwise_fwd, "Depthwise conv2d forward", py::arg("x"), py::arg("weight"),
        py::arg("bias"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"));
  m.def("depthwise_bwd_input", &depthwise_bwd_input, "Depthwise conv2d grad w.r.t. the input", py::arg("grad_y"),
        py::arg("weight"), py::arg("H"), py::arg("W"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
        py::arg("dh"), py::arg("dw"));
  m.def("depthwise_bwd_weight", &depthwise_bwd_weight, "Depthwise conv2d grads w.r.t. weight and bias",
        py::arg("grad_y"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
        py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("need_bias"));
  m.def("hlk_fwd", &hlk_fwd, "Fused HLKConv forward: depthwise k1, dilated depthwise k2, split grouped 1x1",
        py::arg("x"), py::arg("w0"), py::arg("b0"), py::arg("w1"), py::arg("b1"), py::arg("w_pw"), py::arg("b_pw"),
        py::arg("dilation"), py::arg("groups"));
  m.def("mask_overlap", &mask_overlap, "Per-image |P and T| and |P or T| of 0/1 uint8 masks", py::arg("pred"),
        py::arg("target"));
  m.def("connected_components", &connected_components,
        "Connected-component labels (int32 [N, H, W]) and counts (int64 [N]) of a 0/1 uint8 mask",
        py::arg("mask"), py::arg("connectivity"));
  m.def("component_stats", &component_stats,
        "Area, centroid and bbox ([N, M], [N, M, 2], [N, M, 4]) of int32 labels with values in [0, M]",
        py::arg("labels"), py::arg("M"));
}
