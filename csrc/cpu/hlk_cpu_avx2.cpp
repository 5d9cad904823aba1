// The AVX2 copy of the CPU HLKConv forward (see hlk_cpu.h). The target pragma comes after
// the standard headers and before the istd ones, so the istd cores and the kernel body are
// compiled for AVX2 while no out-of-line standard-library code is.
#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC target("avx2")

#include "hlk_cpu.h"
#include "istd/hlk_core.h"

namespace istd {
namespace cpu {

#define ISTD_HLK_ISA avx2
#include "hlk_cpu_impl.h"
#undef ISTD_HLK_ISA

template void avx2::hlk_forward_isa<float>(const float*, Strides4, const float*, const float*, const float*,
                                           const float*, const float*, const float*, float*, Strides4,
                                           const HlkGeometry&);
template void avx2::hlk_forward_isa<double>(const double*, Strides4, const double*, const double*, const double*,
                                            const double*, const double*, const double*, double*, Strides4,
                                            const HlkGeometry&);

}  // namespace cpu
}  // namespace istd
#endif
