// istd_kernels._C: PyTorch entry points of the CPU kernels. The Python layer validates
// user input; the checks here guard the contract between that layer and the kernels.
#include <torch/extension.h>

#include "binding_common.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../cpu/components_cpu.h"
#include "../cpu/depthwise_cpu.h"
#include "../cpu/hlk_cpu.h"
#include "../cpu/nhwc_cpu.h"
#include "../cpu/norm_cpu.h"
#include "../cpu/overlap_cpu.h"
#include "../cpu/pool_attn_cpu.h"
#include "../cpu/run_components.h"
#include "istd/stats_core.h"
#include "pool_attn_binding.h"


namespace {

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



void check_same_cpu(const at::Tensor& t, const char* name, const at::Tensor& like) {
  check_cpu_float(t, name);
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "istd _C: ", name, " dtype ", t.scalar_type(), " differs from ",
              like.scalar_type());
}

// The kernels' result in the caller's dtype (half types were computed in float32).
at::Tensor as_dtype(const at::Tensor& t, at::ScalarType dtype) { return t.scalar_type() == dtype ? t : t.to(dtype); }

at::Tensor depthwise_fwd(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                         const std::vector<int64_t>& conv) {
  check_cpu_float(x, "x");
  check_same_cpu(weight, "weight", x);
  const bool has_bias = istd_binding::has_tensor(bias);
  if (has_bias) check_same_cpu(*bias, "bias", x);
  const DwGeometry g = istd_binding::dw_fwd_geometry("istd _C", x, weight, has_bias ? &*bias : nullptr, conv);
  const at::Tensor xc = compute_view(x);
  const at::Tensor wc = compute_view(weight).contiguous();
  const at::Tensor bc = has_bias ? compute_view(*bias).contiguous() : at::Tensor();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, xc.options().memory_format(istd_binding::output_memory_format(x)));
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "istd_depthwise_fwd_cpu", [&] {
      istd::cpu::dw_forward<scalar_t>(xc.data_ptr<scalar_t>(), strides_of(xc), wc.data_ptr<scalar_t>(),
                                      has_bias ? bc.data_ptr<scalar_t>() : nullptr, y.data_ptr<scalar_t>(),
                                      strides_of(y), g);
    });
  }
  return as_dtype(y, x.scalar_type());
}

at::Tensor depthwise_bwd_input(const at::Tensor& grad_y, const at::Tensor& weight, int64_t H, int64_t W,
                               const std::vector<int64_t>& conv) {
  check_cpu_float(grad_y, "grad_y");
  check_same_cpu(weight, "weight", grad_y);
  const DwGeometry g = istd_binding::dw_bwd_input_geometry("istd _C", grad_y, weight, H, W, conv);
  const at::Tensor gyc = compute_view(grad_y);
  const at::Tensor wc = compute_view(weight).contiguous();
  at::Tensor gx =
      at::empty({g.N, g.C, g.H, g.W}, gyc.options().memory_format(istd_binding::output_memory_format(grad_y)));
  if (gx.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(gyc.scalar_type(), "istd_depthwise_bwd_input_cpu", [&] {
      istd::cpu::dw_backward_input<scalar_t>(gyc.data_ptr<scalar_t>(), strides_of(gyc), wc.data_ptr<scalar_t>(),
                                             gx.data_ptr<scalar_t>(), strides_of(gx), g);
    });
  }
  return as_dtype(gx, grad_y.scalar_type());
}

std::tuple<at::Tensor, c10::optional<at::Tensor>> depthwise_bwd_weight(const at::Tensor& grad_y, const at::Tensor& x,
                                                                       int64_t kh, int64_t kw,
                                                                       const std::vector<int64_t>& conv,
                                                                       bool need_bias) {
  check_cpu_float(x, "x");
  check_same_cpu(grad_y, "grad_y", x);
  const DwGeometry g = istd_binding::dw_bwd_weight_geometry("istd _C", grad_y, x, kh, kw, conv);
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
  c10::optional<at::Tensor> gb_out;
  if (need_bias) gb_out = as_dtype(gb, x.scalar_type());
  return std::make_tuple(as_dtype(gw, x.scalar_type()), gb_out);
}

at::Tensor hlk_fwd(const at::Tensor& x, const at::Tensor& w0, const c10::optional<at::Tensor>& b0,
                   const at::Tensor& w1, const c10::optional<at::Tensor>& b1, const at::Tensor& w_pw,
                   const c10::optional<at::Tensor>& b_pw, int64_t dilation, int64_t groups) {
  check_cpu_float(x, "x");
  for (const at::Tensor* w : {&w0, &w1, &w_pw}) check_same_cpu(*w, "hlk weight", x);
  for (const c10::optional<at::Tensor>* b : {&b0, &b1, &b_pw})
    if (istd_binding::has_tensor(*b)) check_same_cpu(**b, "hlk bias", x);
  const istd::HlkGeometry g = istd_binding::make_hlk_geometry("istd _C", x, w0, b0, w1, b1, w_pw, b_pw, dilation, groups);
  const auto opt_view = [](const c10::optional<at::Tensor>& b) {
    return istd_binding::has_tensor(b) ? compute_view(*b).contiguous() : at::Tensor();
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
  return as_dtype(y, x.scalar_type());
}

// The limits of csrc/include/istd/limits.h, for istd_kernels/limits.py.
py::dict limits() {
  namespace lim = istd::limits;
  py::dict d;
  d["kDwMaxKernel"] = lim::kDwMaxKernel;
  d["kDwMaxDilation"] = lim::kDwMaxDilation;
  d["kMaxHyperParam"] = lim::kMaxHyperParam;
  d["kSaMaxBranches"] = lim::kSaMaxBranches;
  d["kSaMaxScale"] = lim::kSaMaxScale;
  d["kSaCudaMaxLcm"] = lim::kSaCudaMaxLcm;
  d["kMmpMaxScale"] = lim::kMmpMaxScale;
  d["kMmpUint8MaxScale"] = lim::kMmpUint8MaxScale;
  d["kMaxImagePixels"] = lim::kMaxImagePixels;
  return d;
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

// (y, mean, rstd): y = GroupNorm(x) (then SiLU when silu) of a float32/float64 [N, C, *] CPU
// tensor, contiguous or channels_last, with [C] weight and bias (or none) of its dtype; y is
// channels_last when x is or when channels_last is set (4-D x only); mean and rstd are
// [N, groups] (native_group_norm's, for its backward).
std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_fwd(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                          const c10::optional<at::Tensor>& bias, int64_t groups, double eps, bool silu,
                          bool channels_last) {
  // An NHWC x: 4-D, channels_last-contiguous and not also NCHW-contiguous (C = 1 or H = W = 1
  // are both, and then the layouts coincide).
  const bool x_nhwc = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) &&
                  x.dim() >= 2 && (x.is_contiguous() || x_nhwc) && (!channels_last || x.dim() == 4),
              "istd _C: group_norm_fwd takes a float32/float64 [N, C, *] CPU tensor, contiguous or (4-D) "
              "channels_last, and channels_last output only for 4-D x; got ", x.sizes(), " ", x.scalar_type(),
              " strides ", x.strides());
  const int64_t N = x.size(0), C = x.size(1), HW = C ? x.numel() / std::max<int64_t>(N * C, 1) : 0;
  TORCH_CHECK(groups > 0 && C % groups == 0, "istd _C: groups must divide C=", C, ", got ", groups);
  for (const auto* t : {&weight, &bias}) {
    TORCH_CHECK(!t->has_value() || ((*t)->scalar_type() == x.scalar_type() && (*t)->dim() == 1 &&
                                    (*t)->size(0) == C && (*t)->is_contiguous() && (*t)->device().is_cpu()),
                "istd _C: group_norm_fwd's weight and bias must be contiguous [C] CPU tensors of x's dtype");
  }
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: group_norm_fwd needs a CPU with AVX2 and FMA");
  const bool y_nhwc = x_nhwc || channels_last;
  at::Tensor y = at::empty_like(x, y_nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  at::Tensor mean = at::empty({N, groups}, x.options()), rstd = at::empty({N, groups}, x.options());
  const istd::cpu::GroupNormArgs args{N, C, HW, groups, eps, silu, x_nhwc, y_nhwc};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_fwd", [&] {
    const auto ptr = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr<scalar_t>() : nullptr; };
    istd::cpu::group_norm_forward<scalar_t>(x.data_ptr<scalar_t>(), ptr(weight), ptr(bias), y.data_ptr<scalar_t>(),
                                            mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), args);
  });
  return std::make_tuple(y, mean, rstd);
}

// x + gamma[c] * y: x a contiguous (NCHW) float32/float64 [N, C, H, W] CPU tensor, y the same
// shape, dtype and device, contiguous or channels_last; gamma [C] contiguous of their dtype.
// Returns NCHW: out (x, or an NCHW y) when given, else a new tensor.
at::Tensor scaled_residual(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gamma,
                           const c10::optional<at::Tensor>& out) {
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) &&
                  x.dim() == 4 && x.is_contiguous(),
              "istd _C: scaled_residual takes a contiguous float32/float64 [N, C, H, W] CPU x, got ", x.sizes(), " ",
              x.scalar_type());
  TORCH_CHECK(y.sizes() == x.sizes() && y.scalar_type() == x.scalar_type() && y.device().is_cpu() &&
                  (y.is_contiguous() || y.is_contiguous(at::MemoryFormat::ChannelsLast)),
              "istd _C: scaled_residual's y must be a contiguous or channels_last CPU tensor of x's shape and dtype, "
              "got ", y.sizes(), " ", y.scalar_type(), " strides ", y.strides());
  TORCH_CHECK(gamma.dim() == 1 && gamma.size(0) == x.size(1) && gamma.scalar_type() == x.scalar_type() &&
                  gamma.is_contiguous() && gamma.device().is_cpu(),
              "istd _C: scaled_residual's gamma must be a contiguous [C] CPU tensor of x's dtype");
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: scaled_residual needs a CPU with AVX2 and FMA");
  // out may be x itself, or y when y is NCHW: every element is read before its own position is
  // written (an NHWC y is read through tiles, so writing into it would clobber unread values).
  TORCH_CHECK(!out.has_value() || out->is_same(x) || (out->is_same(y) && y.is_contiguous()),
              "istd _C: scaled_residual's out must be x, or y when y is contiguous (NCHW)");
  at::Tensor result = out.has_value() ? *out : at::empty_like(x, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scaled_residual", [&] {
    istd::cpu::scaled_residual<scalar_t>(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
                                         result.data_ptr<scalar_t>(), x.size(0), x.size(1), x.size(2) * x.size(3),
                                         !y.is_contiguous());
  });
  return result;
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

// Component statistics without label images (run_components.h). A float32 mask comes with
// the threshold its foreground is above; a uint8 mask (bool viewed as bytes) is read as
// non-zero = foreground and takes no threshold.
istd::cpu::MaskSource mask_source(const at::Tensor& m, const c10::optional<double>& threshold, const char* name) {
  TORCH_CHECK(m.device().is_cpu() && m.dim() == 3 && m.is_contiguous(), "istd _C: ", name,
              " must be a contiguous 3-D [N, H, W] CPU tensor, got ", m.sizes(), " on ", m.device());
  TORCH_CHECK(m.size(1) * m.size(2) <= istd::limits::kMaxImagePixels, "istd _C: an image of ", m.size(1), "x",
              m.size(2), " pixels is too large");
  istd::cpu::MaskSource s;
  s.data = m.data_ptr();
  if (m.scalar_type() == at::kFloat) {
    TORCH_CHECK(threshold.has_value(), "istd _C: a float32 ", name, " needs a threshold");
    s.is_float = true;
    s.threshold = static_cast<float>(*threshold);
  } else {
    TORCH_CHECK(m.scalar_type() == at::kByte, "istd _C: ", name, " must be uint8 or float32, got ", m.scalar_type());
    TORCH_CHECK(!threshold.has_value(), "istd _C: a uint8 ", name, " takes no threshold");
  }
  return s;
}

// (counts [N], area [N, M], centroid [N, M, 2], bbox [N, M, 4]), padded with zeros; M is the
// largest count.
std::vector<at::Tensor> pack_components(const std::vector<istd::cpu::ImageComponents>& comps,
                                        const at::TensorOptions& opts) {
  const int64_t N = static_cast<int64_t>(comps.size());
  int64_t M = 0;
  for (const auto& c : comps) M = std::max(M, c.count());
  at::Tensor counts = at::empty({N}, opts.dtype(at::kLong));
  at::Tensor area = at::zeros({N, M}, opts.dtype(at::kLong));
  at::Tensor centroid = at::zeros({N, M, 2}, opts.dtype(at::kDouble));
  at::Tensor bbox = at::zeros({N, M, 4}, opts.dtype(at::kLong));
  int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t* a = area.data_ptr<int64_t>();
  double* cen = centroid.data_ptr<double>();
  int64_t* box = bbox.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    const auto& c = comps[static_cast<size_t>(n)];
    cnt[n] = c.count();
    for (int64_t k = 0; k < c.count(); ++k) {
      const size_t kk = static_cast<size_t>(k);
      a[n * M + k] = c.area[kk];
      const int64_t* b = c.bounds.data() + 4 * kk;
      istd::stats_finish(c.area[kk], c.sums[2 * kk], c.sums[2 * kk + 1], b[0], b[1], b[2], b[3], cen + (n * M + k) * 2,
                         box + (n * M + k) * 4);
    }
  }
  return {counts, area, centroid, bbox};
}

// A zero-filled int32 [N, H, W] tensor whose memory comes from calloc: large blocks arrive
// as fresh zero pages that cost nothing until written, and the labelling writes only the
// foreground (at::zeros would touch every page, most of a labelling's time on sparse masks).
// The storage keeps torch's CPU allocator, so that the tensor still resizes like any other.
at::Tensor calloc_labels(int64_t N, int64_t H, int64_t W, const at::TensorOptions& opts) {
  const size_t count = static_cast<size_t>(N * H * W);
  void* data = std::calloc(std::max<size_t>(count, 1), sizeof(int32_t));
  if (data == nullptr) throw std::bad_alloc();
  c10::Storage storage(c10::Storage::use_byte_size_t(), count * sizeof(int32_t),
                       c10::DataPtr(data, data, &std::free, c10::Device(c10::kCPU)), c10::GetAllocator(c10::kCPU),
                       /*resizable=*/true);
  return at::empty({0}, opts.dtype(at::kInt)).set_(storage, 0, {N, H, W}, {H * W, W, 1});
}

// Labels (int32 [N, H, W], written into `out` when given) and counts, then with `with_stats`
// the statistics of every component: (labels, counts[, area, centroid, bbox]) as
// pack_components lays them out.
std::vector<at::Tensor> connected_components(const at::Tensor& mask, int64_t connectivity,
                                             const c10::optional<at::Tensor>& out, bool with_stats) {
  TORCH_CHECK(mask.device().is_cpu(), "istd _C: mask must be a CPU tensor, got ", mask.device());
  istd_binding::check_label_mask("istd _C", mask, connectivity);
  const int64_t N = mask.size(0), H = mask.size(1), W = mask.size(2);
  at::Tensor labels;
  if (out.has_value()) {
    labels = *out;
    TORCH_CHECK(labels.device().is_cpu() && labels.scalar_type() == at::kInt && labels.sizes() == mask.sizes() &&
                    labels.is_contiguous(),
                "istd _C: out must be a contiguous int32 CPU tensor of the mask's shape ", mask.sizes());
  } else {
    labels = calloc_labels(N, H, W, mask.options());
  }
  at::Tensor counts = at::empty({N}, mask.options().dtype(at::kLong));
  std::vector<istd::cpu::ImageComponents> comps;
  istd::cpu::label_components(mask.data_ptr<uint8_t>(), N, H, W, static_cast<int>(connectivity),
                              labels.data_ptr<int32_t>(), !out.has_value(), counts.data_ptr<int64_t>(),
                              with_stats ? &comps : nullptr);
  if (!with_stats) return {labels, counts};
  std::vector<at::Tensor> result{labels};
  for (const at::Tensor& t : pack_components(comps, mask.options())) result.push_back(t);
  return result;
}

std::vector<at::Tensor> measure_components(const at::Tensor& mask, const c10::optional<double>& threshold,
                                           int64_t connectivity) {
  TORCH_CHECK(connectivity == 4 || connectivity == 8, "istd _C: connectivity must be 4 or 8, got ", connectivity);
  const istd::cpu::MaskSource src = mask_source(mask, threshold, "mask");
  std::vector<istd::cpu::ImageComponents> comps;
  istd::cpu::measure_components(src, mask.size(0), mask.size(1), mask.size(2), static_cast<int>(connectivity),
                                comps);
  return pack_components(comps, mask.options());
}

std::vector<at::Tensor> measure_pair(const at::Tensor& pred, const c10::optional<double>& pred_threshold,
                                     const at::Tensor& target, const c10::optional<double>& target_threshold,
                                     int64_t connectivity) {
  TORCH_CHECK(connectivity == 4 || connectivity == 8, "istd _C: connectivity must be 4 or 8, got ", connectivity);
  TORCH_CHECK(pred.sizes() == target.sizes(), "istd _C: pred ", pred.sizes(), " and target ", target.sizes(),
              " differ in shape");
  const istd::cpu::MaskSource ps = mask_source(pred, pred_threshold, "pred");
  const istd::cpu::MaskSource ts = mask_source(target, target_threshold, "target");
  const int64_t N = pred.size(0);
  at::Tensor inter = at::empty({N}, pred.options().dtype(at::kLong));
  at::Tensor uni = at::empty({N}, pred.options().dtype(at::kLong));
  std::vector<istd::cpu::ImageComponents> pc, tc;
  istd::cpu::measure_pair(ps, ts, N, pred.size(1), pred.size(2), static_cast<int>(connectivity), pc, tc,
                          inter.data_ptr<int64_t>(), uni.data_ptr<int64_t>());
  std::vector<at::Tensor> out{inter, uni};
  for (const auto& part : {pack_components(pc, pred.options()), pack_components(tc, pred.options())}) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// multiscale_maxpool and split_attention. Half types run through the float kernels: max
// pooling only selects values (exact either way) and split attention accumulates in float32
// and rounds once, like the other backends.

std::vector<at::Tensor> mmp_fwd(const at::Tensor& u, int64_t groups, int64_t radix, std::vector<int64_t> scales) {
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: mmp_fwd needs a CPU with AVX2 and FMA");
  check_cpu_float(u, "u");
  TORCH_CHECK(u.dim() == 4, "istd _C: u must be 4-D [N, D, H, W], got ", u.sizes());
  const istd::MmpGeometry g =
      istd_binding::mmp_geometry("istd _C", u.size(0), u.size(1), u.size(2), u.size(3), groups, radix, scales);
  const at::Tensor uc = compute_view(u);
  std::vector<at::Tensor> outs = istd_binding::mmp_alloc_fwd(uc, g, scales);
  if (u.numel() > 0) {
    const std::vector<at::Tensor> ys(outs.begin(), outs.begin() + radix), idx(outs.begin() + radix, outs.end());
    const std::vector<istd::MmpLevel> levels = istd_binding::mmp_levels(ys, idx, scales);
    const bool u8 = istd_binding::mmp_index_type(scales) == at::kByte;
    AT_DISPATCH_FLOATING_TYPES(uc.scalar_type(), "istd_mmp_fwd_cpu", [&] {
      if (u8)
        istd::cpu::mmp_forward<scalar_t, uint8_t>(uc.data_ptr<scalar_t>(), strides_of(uc), g, levels.data());
      else
        istd::cpu::mmp_forward<scalar_t, int32_t>(uc.data_ptr<scalar_t>(), strides_of(uc), g, levels.data());
    });
  }
  if (uc.scalar_type() != u.scalar_type())
    for (int64_t j = 0; j < radix; ++j) outs[j] = outs[j].to(u.scalar_type());
  return outs;
}

at::Tensor mmp_bwd(const std::vector<at::Tensor>& grads, const std::vector<at::Tensor>& indices, int64_t D, int64_t H,
                   int64_t W, int64_t groups, int64_t radix, std::vector<int64_t> scales, bool channels_last) {
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: mmp_bwd needs a CPU with AVX2 and FMA");
  TORCH_CHECK(!grads.empty(), "istd _C: mmp_bwd needs at least one level gradient");
  for (const at::Tensor& g : grads) check_cpu_float(g, "grads");
  const istd::MmpGeometry g =
      istd_binding::mmp_geometry("istd _C", grads[0].size(0), D, H, W, groups, radix, scales);
  istd_binding::mmp_check_backward("istd _C", grads, indices, g, scales);
  std::vector<at::Tensor> gc;
  for (const at::Tensor& t : grads) gc.push_back(compute_view(t));
  const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor gu = at::empty({g.N, D, H, W}, gc[0].options().memory_format(fmt));
  if (gu.numel() > 0) {
    const std::vector<istd::MmpLevel> levels = istd_binding::mmp_levels(gc, indices, scales);
    const bool u8 = indices[0].scalar_type() == at::kByte;
    AT_DISPATCH_FLOATING_TYPES(gu.scalar_type(), "istd_mmp_bwd_cpu", [&] {
      if (u8)
        istd::cpu::mmp_backward<scalar_t, uint8_t>(levels.data(), g, gu.data_ptr<scalar_t>(), strides_of(gu));
      else
        istd::cpu::mmp_backward<scalar_t, int32_t>(levels.data(), g, gu.data_ptr<scalar_t>(), strides_of(gu));
    });
  }
  return as_dtype(gu, grads[0].scalar_type());
}

void check_sa_cpu(const std::vector<at::Tensor>& branches, const at::Tensor& logits, const at::Tensor& temperature,
                  const at::Tensor& residual, const at::Tensor& v) {
  check_cpu_float(residual, "residual");
  for (const at::Tensor* t : {&logits, &temperature, &v}) {
    check_cpu_float(*t, "split attention input");
    TORCH_CHECK(t->scalar_type() == residual.scalar_type(), "istd _C: split attention inputs differ in dtype");
  }
  for (const at::Tensor& b : branches) {
    check_cpu_float(b, "branches");
    TORCH_CHECK(b.scalar_type() == residual.scalar_type(), "istd _C: split attention inputs differ in dtype");
  }
}

at::Tensor split_attn_fwd(const std::vector<at::Tensor>& branches, const at::Tensor& logits,
                          const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v,
                          int64_t groups, std::vector<int64_t> scales) {
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: split_attn_fwd needs a CPU with AVX2 and FMA");
  check_sa_cpu(branches, logits, temperature, residual, v);
  const istd::SaGeometry g =
      istd_binding::sa_geometry("istd _C", branches, logits, temperature, residual, v, groups, scales);
  std::vector<at::Tensor> bc;
  for (const at::Tensor& b : branches) bc.push_back(compute_view(b));
  const at::Tensor lc = compute_view(logits), tc = compute_view(temperature), rc = compute_view(residual),
                   vc = compute_view(v);
  at::Tensor z = at::empty(residual.sizes(), rc.options().memory_format(istd_binding::output_memory_format(residual)));
  if (z.numel() > 0) {
    const istd::SaInputs in = istd_binding::sa_inputs(bc, lc, tc, rc, vc);
    AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "istd_split_attn_fwd_cpu", [&] {
      istd::cpu::sa_forward<scalar_t>(in, z.data_ptr<scalar_t>(), strides_of(z), g);
    });
  }
  return as_dtype(z, residual.scalar_type());
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor> split_attn_bwd(
    const at::Tensor& grad_z, const std::vector<at::Tensor>& branches, const at::Tensor& logits,
    const at::Tensor& temperature, const at::Tensor& residual, const at::Tensor& v, int64_t groups,
    std::vector<int64_t> scales) {
  TORCH_CHECK(istd::cpu::avx2_kernels_run_here(), "istd _C: split_attn_bwd needs a CPU with AVX2 and FMA");
  check_sa_cpu(branches, logits, temperature, residual, v);
  check_cpu_float(grad_z, "grad_z");
  TORCH_CHECK(grad_z.scalar_type() == residual.scalar_type() && grad_z.sizes() == residual.sizes(),
              "istd _C: grad_z must match residual in shape and dtype");
  const istd::SaGeometry g =
      istd_binding::sa_geometry("istd _C", branches, logits, temperature, residual, v, groups, scales);
  std::vector<at::Tensor> bc;
  for (const at::Tensor& b : branches) bc.push_back(compute_view(b));
  const at::Tensor lc = compute_view(logits), tc = compute_view(temperature), rc = compute_view(residual),
                   vc = compute_view(v), gzc = compute_view(grad_z);
  const auto opts = rc.options();
  std::vector<at::Tensor> gbs;
  for (const at::Tensor& b : branches) gbs.push_back(at::empty(b.sizes(), opts));
  at::Tensor glg = at::empty(logits.sizes(), opts), gres = at::empty(residual.sizes(), opts),
             gv = at::empty(v.sizes(), opts), gt = at::zeros({}, opts);
  if (residual.numel() > 0) {
    const istd::SaInputs in = istd_binding::sa_inputs(bc, lc, tc, rc, vc);
    const istd::SaGrads out = istd_binding::sa_grads(gbs, glg, gres, gv);
    AT_DISPATCH_FLOATING_TYPES(gres.scalar_type(), "istd_split_attn_bwd_cpu", [&] {
      const scalar_t t = istd::cpu::sa_backward<scalar_t>(gzc.data_ptr<scalar_t>(), strides_of(gzc), in, out, g);
      gt.fill_(t);
    });
  } else {
    for (at::Tensor& b : gbs) b.zero_();
    glg.zero_();
  }
  const auto dt = residual.scalar_type();
  const auto back = [dt](const at::Tensor& t) { return as_dtype(t, dt); };
  for (at::Tensor& b : gbs) b = back(b);
  return std::make_tuple(gbs, back(glg), back(gt).reshape(temperature.sizes()), back(gres), back(gv));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "istd_kernels CPU kernels (depthwise 2-D convolution, connected components)";
  m.def("torch_version", &torch_version, "The torch version this extension was compiled against.");
  m.def("limits", &limits, "The ops' limits (csrc/include/istd/limits.h): {constant name: value}.");
  m.def("depthwise_fwd", &depthwise_fwd, "Depthwise conv2d forward; conv = [sh, sw, ph, pw, dh, dw]", py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("conv"));
  m.def("depthwise_bwd_input", &depthwise_bwd_input, "Depthwise conv2d grad w.r.t. the input", py::arg("grad_y"),
        py::arg("weight"), py::arg("H"), py::arg("W"), py::arg("conv"));
  m.def("depthwise_bwd_weight", &depthwise_bwd_weight, "Depthwise conv2d grads w.r.t. weight and bias",
        py::arg("grad_y"), py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("conv"), py::arg("need_bias"));
  m.def("hlk_fwd", &hlk_fwd, "Fused HLKConv forward: depthwise k1, dilated depthwise k2, split grouped 1x1",
        py::arg("x"), py::arg("w0"), py::arg("b0"), py::arg("w1"), py::arg("b1"), py::arg("w_pw"), py::arg("b_pw"),
        py::arg("dilation"), py::arg("groups"));
  m.def("group_norm_fwd", &group_norm_fwd,
        "(y, mean, rstd): GroupNorm forward of a contiguous or channels_last [N, C, *] tensor, then SiLU when silu; "
        "y channels_last when x is or channels_last is set",
        py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("groups"), py::arg("eps"), py::arg("silu"),
        py::arg("channels_last"));
  m.def("avx2_kernels_run_here", &istd::cpu::avx2_kernels_run_here,
        "Whether this CPU runs the kernels compiled for AVX2 + FMA (true off x86-64)");
  m.def("scaled_residual", &scaled_residual, "x + gamma[c] * y of an NCHW x and an NCHW or channels_last y, NCHW",
        py::arg("x"), py::arg("y"), py::arg("gamma"), py::arg("out") = py::none());
  m.def("mask_overlap", &mask_overlap, "Per-image |P and T| and |P or T| of 0/1 uint8 masks", py::arg("pred"),
        py::arg("target"));
  m.def("connected_components", &connected_components,
        "Labels (int32 [N, H, W], into out when given) and counts of a uint8 mask; with_stats adds area, "
        "centroid and bbox",
        py::arg("mask"), py::arg("connectivity"), py::arg("out") = py::none(), py::arg("with_stats") = false);
  m.def("component_stats", &component_stats,
        "Area, centroid and bbox ([N, M], [N, M, 2], [N, M, 4]) of int32 labels with values in [0, M]",
        py::arg("labels"), py::arg("M"));
  m.def("measure_components", &measure_components,
        "Components of a uint8 or thresholded float32 [N, H, W] mask without labels: counts, area, centroid, bbox",
        py::arg("mask"), py::arg("threshold"), py::arg("connectivity"));
  m.def("measure_pair", &measure_pair,
        "measure_components of pred and target in one pass, after their per-image intersection and union",
        py::arg("pred"), py::arg("pred_threshold"), py::arg("target"), py::arg("target_threshold"),
        py::arg("connectivity"));
  m.def("mmp_fwd", &mmp_fwd, "multiscale_maxpool forward: radix levels, then their window offsets", py::arg("u"),
        py::arg("groups"), py::arg("radix"), py::arg("scales"));
  m.def("mmp_bwd", &mmp_bwd, "multiscale_maxpool backward: grad_u from level grads and window offsets",
        py::arg("grads"), py::arg("indices"), py::arg("D"), py::arg("H"), py::arg("W"), py::arg("groups"),
        py::arg("radix"), py::arg("scales"), py::arg("channels_last"));
  m.def("split_attn_fwd", &split_attn_fwd, "split attention + SiLU gate forward", py::arg("branches"),
        py::arg("logits"), py::arg("temperature"), py::arg("residual"), py::arg("v"), py::arg("groups"),
        py::arg("scales"));
  m.def("split_attn_bwd", &split_attn_bwd,
        "split attention backward: (grad_branches, grad_logits, grad_temperature, grad_residual, grad_v)",
        py::arg("grad_z"), py::arg("branches"), py::arg("logits"), py::arg("temperature"), py::arg("residual"),
        py::arg("v"), py::arg("groups"), py::arg("scales"));
}
