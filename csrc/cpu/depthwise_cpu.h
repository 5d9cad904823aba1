// CPU depthwise 2-D convolution on raw pointers (no PyTorch types), instantiated for
// float and double, each accumulating in its own type. Every tensor is addressed through
// its element strides; the weight is contiguous [C, KH, KW] and the bias contiguous [C].
#pragma once

#include "istd/common.h"

namespace istd {
namespace cpu {

// y[n,c,oh,ow] = bias[c] + sum_{i,j} w[c,i,j] * x[n,c,oh*SH-PH+i*DH, ow*SW-PW+j*DW].
// bias may be null.
template <typename T>
void dw_forward(const T* x, Strides4 xs, const T* w, const T* bias, T* y, Strides4 ys, const DwGeometry& g);

// grad_x (shape N,C,H,W, fully written) from grad_y (shape N,C,Ho,Wo).
template <typename T>
void dw_backward_input(const T* gy, Strides4 gys, const T* w, T* gx, Strides4 gxs, const DwGeometry& g);

// grad_w (contiguous [C, KH, KW]) and, when grad_b is not null, grad_b ([C]). The result
// is bitwise reproducible for any OpenMP thread count: the reduction split depends on the
// shape only.
template <typename T>
void dw_backward_weight(const T* gy, Strides4 gys, const T* x, Strides4 xs, T* gw, T* gb, const DwGeometry& g);

}  // namespace cpu
}  // namespace istd
