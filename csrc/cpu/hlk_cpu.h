// CPU fused HLKConv forward on raw pointers (no PyTorch types), instantiated for float and
// double, each accumulating in its own type. x and y are addressed through their element
// strides; weights are contiguous (w0 [C, k1, k1], w1 [C, k2, k2], w_pw [Cout, 2*C/groups])
// and biases contiguous or null.
#pragma once

#include "istd/common.h"
#include "istd/hlk_core.h"

namespace istd {
namespace cpu {

// y[:, g*Og + o] = b_pw + sum_c w_pw[., c] a[:, g*Cg + c] + sum_c w_pw[., Cg + c] d[:, g*Cg + c]
// with a = dw_k1(x) + b0 (zero outside the image) and d = dw_k2,dilation(a) + b1.
// The result does not depend on the OpenMP thread count.
template <typename T>
void hlk_forward(const T* x, Strides4 xs, const T* w0, const T* b0, const T* w1, const T* b1, const T* w_pw,
                 const T* b_pw, T* y, Strides4 ys, const HlkGeometry& g);

// The build targets the baseline x86-64 ISA (SSE2, 16-byte vectors), where one Lanes
// operation takes two registers; PyTorch's oneDNN convolutions pick AVX2/AVX-512 at run time,
// which made this kernel lose to F.conv2d at LCRNet's C64 levels. hlk_cpu_avx2.cpp compiles
// the same body (hlk_cpu_impl.h) for AVX2, and hlk_forward runs it on CPUs that have it.
// No FMA: both copies round identically.
#if defined(__GNUC__) && defined(__x86_64__)
#define ISTD_HLK_AVX2 1
namespace avx2 {
template <typename T>
void hlk_forward_isa(const T* x, Strides4 xs, const T* w0, const T* b0, const T* w1, const T* b1, const T* w_pw,
                     const T* b_pw, T* y, Strides4 ys, const HlkGeometry& g);
}  // namespace avx2
#else
#define ISTD_HLK_AVX2 0
#endif

}  // namespace cpu
}  // namespace istd
