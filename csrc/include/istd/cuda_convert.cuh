// Convert specialisations for the CUDA half types. PyTorch compiles extensions with
// __CUDA_NO_HALF_CONVERSIONS__ and friends, which remove the implicit float conversions a
// static_cast relies on; the intrinsics are always there. Every .cu file that instantiates
// the shared cores with __half or __nv_bfloat16 includes this before doing so.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "istd/depthwise_core.h"

namespace istd {

template <>
struct Convert<float, __half> {
  ISTD_HD static ISTD_INLINE float apply(__half v) { return __half2float(v); }
};
template <>
struct Convert<__half, float> {
  ISTD_HD static ISTD_INLINE __half apply(float v) { return __float2half_rn(v); }
};
template <>
struct Convert<float, __nv_bfloat16> {
  ISTD_HD static ISTD_INLINE float apply(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <>
struct Convert<__nv_bfloat16, float> {
  ISTD_HD static ISTD_INLINE __nv_bfloat16 apply(float v) { return __float2bfloat16_rn(v); }
};

}  // namespace istd
