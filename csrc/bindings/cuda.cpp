// istd_kernels._cuda: PyTorch entry points of the CUDA kernels. This file sees PyTorch and
// the CUDA runtime API but no CUDA kernels; depthwise.cu sees kernels but no PyTorch. The
// Python caller makes the tensors' device current and passes its current stream as an
// integer, so no c10/cuda headers are needed here.
#include <cuda_runtime_api.h>
#include <torch/extension.h>

#include "binding_common.h"

#include "istd/component_stats_cuda.h"
#include "istd/components_cuda.h"
#include "istd/depthwise_cuda.h"
#include "istd/hlk_cuda.h"
#include "istd/pool_attn_cuda.h"
#include "pool_attn_binding.h"


namespace {

using istd_binding::strides_of;
using istd_binding::torch_version;

using istd::DType;
using istd::DwGeometry;
using istd::Strides4;



cudaStream_t as_stream(int64_t stream) { return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(stream)); }

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK(false, "istd _cuda: unsupported dtype ", t.scalar_type(),
                  " (expected float16, bfloat16, float32 or float64)");
  }
  return DType::kFloat32;  // unreachable
}

void check_cuda(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  TORCH_CHECK(t.is_cuda(), "istd _cuda: ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == ref.device(), "istd _cuda: ", name, " is on ", t.device(), " but expected ",
              ref.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "istd _cuda: ", name, " dtype ", t.scalar_type(),
              " differs from ", ref.scalar_type());
  dtype_of(t);
}

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "istd _cuda: ", what, " failed: ", cudaGetErrorString(err));
}



at::Tensor depthwise_fwd(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const std::vector<int64_t>& conv, int64_t stream) {
  check_cuda(x, "x", x);
  check_cuda(weight, "weight", x);
  const bool has_bias = istd_binding::has_tensor(bias);
  if (has_bias) check_cuda(*bias, "bias", x);
  const DwGeometry g = istd_binding::dw_fwd_geometry("istd _cuda", x, weight, has_bias ? &*bias : nullptr, conv);
  const at::Tensor wc = weight.contiguous();
  const at::Tensor bc = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, x.options().memory_format(istd_binding::output_memory_format(x)));
  if (y.numel() == 0) return y;
  check_launch(istd_dw_fwd_cuda(dtype_of(x), x.data_ptr(), strides_of(x), wc.data_ptr(),
                                has_bias ? bc.data_ptr() : nullptr, y.data_ptr(), strides_of(y), g, as_stream(stream)),
               "depthwise forward");
  return y;
}

at::Tensor depthwise_bwd_input(const at::Tensor& grad_y, const at::Tensor& weight, int64_t H, int64_t W,
                               const std::vector<int64_t>& conv, int64_t stream) {
  check_cuda(grad_y, "grad_y", grad_y);
  check_cuda(weight, "weight", grad_y);
  const DwGeometry g = istd_binding::dw_bwd_input_geometry("istd _cuda", grad_y, weight, H, W, conv);
  const at::Tensor wc = weight.contiguous();
  at::Tensor gx =
      at::empty({g.N, g.C, g.H, g.W}, grad_y.options().memory_format(istd_binding::output_memory_format(grad_y)));
  if (gx.numel() == 0) return gx;
  check_launch(istd_dw_bwd_input_cuda(dtype_of(grad_y), grad_y.data_ptr(), strides_of(grad_y), wc.data_ptr(),
                                      gx.data_ptr(), strides_of(gx), g, as_stream(stream)),
               "depthwise grad-input");
  return gx;
}

std::tuple<at::Tensor, c10::optional<at::Tensor>> depthwise_bwd_weight(const at::Tensor& grad_y, const at::Tensor& x,
                                                                       int64_t kh, int64_t kw,
                                                                       const std::vector<int64_t>& conv,
                                                                       bool need_bias, int64_t stream) {
  check_cuda(x, "x", x);
  check_cuda(grad_y, "grad_y", x);
  const DwGeometry g = istd_binding::dw_bwd_weight_geometry("istd _cuda", grad_y, x, kh, kw, conv);
  at::Tensor gw = at::empty({g.C, 1, kh, kw}, x.options());
  at::Tensor gb;
  if (need_bias) gb = at::empty({g.C}, x.options());
  if (g.C > 0) {
    const DType dt = dtype_of(x);
    const size_t bytes = istd_dw_bwd_weight_workspace_bytes(g, dt);
    // Allocated through PyTorch so that it comes from (and returns to) the caching allocator.
    at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, x.options().dtype(at::kByte));
    check_launch(istd_dw_bwd_weight_cuda(dt, grad_y.data_ptr(), strides_of(grad_y), x.data_ptr(), strides_of(x),
                                         gw.data_ptr(), need_bias ? gb.data_ptr() : nullptr, g,
                                         workspace.data_ptr(), bytes, as_stream(stream)),
                 "depthwise grad-weight");
  }
  c10::optional<at::Tensor> gb_out;
  if (need_bias) gb_out = gb;
  return std::make_tuple(gw, gb_out);
}

at::Tensor hlk_fwd(const at::Tensor& x, const at::Tensor& w0, const c10::optional<at::Tensor>& b0,
                   const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w_pw,
                   const c10::optional<at::Tensor>& b_pw, int64_t dilation, int64_t groups, int64_t stream) {
  check_cuda(x, "x", x);
  for (const at::Tensor* w : {&w0, &w1, &w_pw}) check_cuda(*w, "hlk weight", x);
  for (const c10::optional<at::Tensor>* b : {&b0, &b1, &b_pw})
    if (istd_binding::has_tensor(*b)) check_cuda(**b, "hlk bias", x);
  const istd::HlkGeometry g =
      istd_binding::make_hlk_geometry("istd _cuda", x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups);
  const auto contiguous_or_none = [](const c10::optional<at::Tensor>& b) {
    return istd_binding::has_tensor(b) ? b->contiguous() : at::Tensor();
  };
  const at::Tensor b0c = contiguous_or_none(b0), b1c = contiguous_or_none(b1), bpc = contiguous_or_none(b_pw);
  const at::Tensor w0c = w0.contiguous(), w1c = w1.contiguous(), wpc = w_pw.contiguous();
  at::Tensor y = at::empty({g.N, g.Cout, g.H, g.W}, x.options().memory_format(istd_binding::output_memory_format(x)));
  if (y.numel() == 0) return y;
  const auto ptr = [](const at::Tensor& t) -> const void* { return t.defined() ? t.data_ptr() : nullptr; };
  check_launch(istd_hlk_fwd_cuda(dtype_of(x), x.data_ptr(), strides_of(x), w0c.data_ptr(), ptr(b0c), w1c.data_ptr(),
                                 ptr(b1c), wpc.data_ptr(), ptr(bpc), y.data_ptr(), strides_of(y), g,
                                 as_stream(stream)),
               "hlk forward");
  return y;
}

std::tuple<at::Tensor, at::Tensor> connected_components(const at::Tensor& mask, int64_t connectivity, int64_t stream) {
  TORCH_CHECK(mask.is_cuda(), "istd _cuda: mask must be a CUDA tensor, got ", mask.device());
  istd_binding::check_label_mask("istd _cuda", mask, connectivity);
  const int64_t N = mask.size(0), H = mask.size(1), W = mask.size(2);
  TORCH_CHECK(N <= INT32_MAX, "istd _cuda: a batch of ", N, " images is too large (one block per image)");
  at::Tensor labels = at::empty({N, H, W}, mask.options().dtype(at::kInt));
  at::Tensor counts = at::empty({N}, mask.options().dtype(at::kLong));
  at::Tensor workspace = at::empty({N * H * W}, mask.options().dtype(at::kInt));
  check_launch(istd_connected_components_cuda(mask.data_ptr<uint8_t>(), labels.data_ptr<int32_t>(),
                                              counts.data_ptr<int64_t>(), workspace.data_ptr<int32_t>(), N, H, W,
                                              static_cast<int>(connectivity), as_stream(stream)),
               "connected components");
  return std::make_tuple(labels, counts);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> component_stats(const at::Tensor& labels, int64_t M, int64_t stream) {
  TORCH_CHECK(labels.is_cuda(), "istd _cuda: labels must be a CUDA tensor, got ", labels.device());
  TORCH_CHECK(labels.scalar_type() == at::kInt, "istd _cuda: labels must be int32, got ", labels.scalar_type());
  TORCH_CHECK(labels.dim() == 3, "istd _cuda: labels must be 3-D [N, H, W], got ", labels.sizes());
  TORCH_CHECK(labels.is_contiguous(), "istd _cuda: labels must be contiguous");
  TORCH_CHECK(M >= 0, "istd _cuda: the number of components must be >= 0, got ", M);
  const int64_t N = labels.size(0), H = labels.size(1), W = labels.size(2);
  TORCH_CHECK(H * W < INT32_MAX, "istd _cuda: an image of ", H, "x", W, " pixels is too large for int32 labels");
  const auto opts = labels.options();
  // Every output element is written by the finish kernel, and the workspace by the init
  // kernel, so nothing needs zeroing here.
  at::Tensor area = at::empty({N, M}, opts.dtype(at::kLong));
  at::Tensor centroid = at::empty({N, M, 2}, opts.dtype(at::kDouble));
  at::Tensor bbox = at::empty({N, M, 4}, opts.dtype(at::kLong));
  if (N * M == 0) return std::make_tuple(area, centroid, bbox);
  at::Tensor sums = at::empty({N * M * 2}, opts.dtype(at::kLong));
  at::Tensor bounds = at::empty({N * M * 4}, opts.dtype(at::kInt));
  check_launch(istd_component_stats_cuda(labels.data_ptr<int32_t>(), N, H, W, M, area.data_ptr<int64_t>(),
                                         centroid.data_ptr<double>(), bbox.data_ptr<int64_t>(),
                                         sums.data_ptr<int64_t>(), bounds.data_ptr<int32_t>(), as_stream(stream)),
               "component stats");
  return std::make_tuple(area, centroid, bbox);
}

// ---------------------------------------------------------------------------------------
// multiscale_maxpool and split_attention.

std::vector<at::Tensor> mmp_fwd(const at::Tensor& u, int64_t groups, int64_t radix, std::vector<int64_t> scales,
                                int64_t stream) {
  check_cuda(u, "u", u);
  TORCH_CHECK(u.dim() == 4, "istd _cuda: u must be 4-D [N, D, H, W], got ", u.sizes());
  const istd::MmpGeometry g =
      istd_binding::mmp_geometry("istd _cuda", u.size(0), u.size(1), u.size(2), u.size(3), groups, radix, scales);
  std::vector<at::Tensor> outs = istd_binding::mmp_alloc_fwd(u, g, scales);
  if (u.numel() == 0) return outs;
  const std::vector<at::Tensor> ys(outs.begin(), outs.begin() + radix), idx(outs.begin() + radix, outs.end());
  const std::vector<istd::MmpLevel> levels = istd_binding::mmp_levels(ys, idx, scales);
  check_launch(istd_mmp_fwd_cuda(dtype_of(u), istd_binding::mmp_index_type(scales) == at::kByte, u.data_ptr(),
                                 strides_of(u), g, levels.data(), as_stream(stream)),
               "multiscale_maxpool forward");
  return outs;
}

at::Tensor mmp_bwd(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& indices, int64_t D, int64_t H,
                   int64_t W, int64_t groups, int64_t radix, std::vector<int64_t> scales, bool channels_last,
                   int64_t stream) {
  TORCH_CHECK(!grads.empty(), "istd _cuda: mmp_bwd needs at least one level gradient");
  for (const at::Tensor& t : grads) check_cuda(t, "grads", grads[0]);
  const istd::MmpGeometry g =
      istd_binding::mmp_geometry("istd _cuda", grads[0].size(0), D, H, W, groups, radix, scales);
  istd_binding::mmp_check_backward("istd _cuda", grads, indices, g, scales);
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor gu = at::empty({g.N, D, H, W}, grads[0].options().memory_format(fmt));
  if (gu.numel() == 0) return gu;
  const std::vector<istd::MmpLevel> levels = istd_binding::mmp_levels(grads, indices, scales);
  check_launch(istd_mmp_bwd_cuda(dtype_of(gu), indices[0].scalar_type() == at::kByte, levels.data(), g,
                                 gu.data_ptr(), strides_of(gu), as_stream(stream)),
               "multiscale_maxpool backward");
  return gu;
}

void check_sa_cuda(const std::vector<at::Tensor>& branches, const at::Tensor& logits, const at::Tensor& temperature,
                   const at::Tensor& residual, const at::Tensor& v) {
  check_cuda(residual, "residual", residual);
  check_cuda(logits, "logits", residual);
  check_cuda(temperature, "temperature", residual);
  check_cuda(v, "v", residual);
  for (const at::Tensor& b : branches) check_cuda(b, "branches", residual);
}

at::Tensor split_attn_fwd(const std::vector<at::Tensor>& branches, const at::Tensor& logits,
                          const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v,
                          int64_t groups, std::vector<int64_t> scales, int64_t stream) {
  check_sa_cuda(branches, logits, temperature, residual, v);
  const istd::SaGeometry g =
      istd_binding::sa_geometry("istd _cuda", branches, logits, temperature, residual, v, groups, scales);
  at::Tensor z =
      at::empty(residual.sizes(), residual.options().memory_format(istd_binding::output_memory_format(residual)));
  if (z.numel() == 0) return z;
  const istd::SaInputs in = istd_binding::sa_inputs(branches, logits, temperature, residual, v);
  check_launch(istd_split_attn_fwd_cuda(dtype_of(residual), in, z.data_ptr(), strides_of(z), g, as_stream(stream)),
               "split attention forward");
  return z;
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor> split_attn_bwd(
    const at::Tensor& grad_z, const std::vector<at::Tensor>& branches, const at::Tensor& logits,
    const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v, int64_t groups,
    std::vector<int64_t> scales, int64_t stream) {
  check_sa_cuda(branches, logits, temperature, residual, v);
  check_cuda(grad_z, "grad_z", residual);
  TORCH_CHECK(grad_z.sizes() == residual.sizes(), "istd _cuda: grad_z must have residual's shape");
  const istd::SaGeometry g =
      istd_binding::sa_geometry("istd _cuda", branches, logits, temperature, residual, v, groups, scales);
  const auto opts = residual.options();
  std::vector<at::Tensor> gbs;
  for (const at::Tensor& b : branches) gbs.push_back(at::empty(b.sizes(), opts));
  at::Tensor glg = at::empty(logits.sizes(), opts), gres = at::empty(residual.sizes(), opts),
             gv = at::empty(v.sizes(), opts), gt = at::empty(temperature.sizes(), opts);
  if (residual.numel() == 0) {
    for (at::Tensor& b : gbs) b.zero_();
    glg.zero_();
    gt.zero_();
    return std::make_tuple(gbs, glg, gt, gres, gv);
  }
  const size_t elems = istd_split_attn_bwd_workspace_elems(g);
  TORCH_CHECK(elems > 0, "istd _cuda: split attention backward cannot tile scales ", at::IntArrayRef(scales),
              " (their least common multiple must be <= 32)");
  // Allocated through PyTorch so that it comes from (and returns to) the caching allocator.
  const auto acc = residual.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor ws = at::empty({static_cast<int64_t>(elems)}, opts.dtype(acc));
  const istd::SaInputs in = istd_binding::sa_inputs(branches, logits, temperature, residual, v);
  const istd::SaGrads out = istd_binding::sa_grads(gbs, glg, gres, gv);
  check_launch(istd_split_attn_bwd_cuda(dtype_of(residual), grad_z.data_ptr(), strides_of(grad_z), in, out,
                                        gt.data_ptr(), g, ws.data_ptr(), elems, as_stream(stream)),
               "split attention backward");
  return std::make_tuple(gbs, glg, gt, gres, gv);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "istd_kernels CUDA kernels (depthwise 2-D convolution, connected components)";
  m.def("torch_version", &torch_version, "The torch version this extension was compiled against.");
  m.def("depthwise_fwd", &depthwise_fwd, "Depthwise conv2d forward; conv = [sh, sw, ph, pw, dh, dw]", py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("conv"), py::arg("stream"));
  m.def("depthwise_bwd_input", &depthwise_bwd_input, "Depthwise conv2d grad w.r.t. the input", py::arg("grad_y"),
        py::arg("weight"), py::arg("H"), py::arg("W"), py::arg("conv"), py::arg("stream"));
  m.def("depthwise_bwd_weight", &depthwise_bwd_weight, "Depthwise conv2d grads w.r.t. weight and bias",
        py::arg("grad_y"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("conv"), py::arg("need_bias"),
        py::arg("stream"));
  m.def("hlk_fwd", &hlk_fwd, "Fused HLKConv forward: depthwise k1, dilated depthwise k2, split grouped 1x1",
        py::arg("x"), py::arg("w0"), py::arg("b0"), py::arg("w1"), py::arg("b1"), py::arg("w_pw"), py::arg("b_pw"),
        py::arg("dilation"), py::arg("groups"), py::arg("stream"));
  m.def("connected_components", &connected_components,
        "Connected-component labels (int32 [N, H, W]) and counts (int64 [N]) of a 0/1 uint8 mask",
        py::arg("mask"), py::arg("connectivity"), py::arg("stream"));
  m.def("component_stats", &component_stats,
        "Area (int64 [N, M]), centroid (float64 [N, M, 2]) and bbox (int64 [N, M, 4]) of int32 labels 1..M",
        py::arg("labels"), py::arg("M"), py::arg("stream"));
  m.def("mmp_fwd", &mmp_fwd, "multiscale_maxpool forward: radix levels, then their window offsets", py::arg("u"),
        py::arg("groups"), py::arg("radix"), py::arg("scales"), py::arg("stream"));
  m.def("mmp_bwd", &mmp_bwd, "multiscale_maxpool backward: grad_u from level grads and window offsets",
        py::arg("grads"), py::arg("indices"), py::arg("D"), py::arg("H"), py::arg("W"), py::arg("groups"),
        py::arg("radix"), py::arg("scales"), py::arg("channels_last"), py::arg("stream"));
  m.def("split_attn_fwd", &split_attn_fwd, "split attention + SiLU gate forward", py::arg("branches"),
        py::arg("logits"), py::arg("temperature"), py::arg("residual"), py::arg("v"), py::arg("groups"),
        py::arg("scales"), py::arg("stream"));
  m.def("split_attn_bwd", &split_attn_bwd,
        "split attention backward: (grad_branches, grad_logits, grad_temperature, grad_residual, grad_v)",
        py::arg("grad_z"), py::arg("branches"), py::arg("logits"), py::arg("temperature"), py::arg("residual"),
        py::arg("v"), py::arg("groups"), py::arg("scales"), py::arg("stream"));
}
