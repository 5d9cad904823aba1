// Compiles the rest of the including translation unit for AVX2 + FMA on x86-64 and defines
// ISTD_CPU_AVX2 there. Include it after the standard headers, so that no out-of-line library
// code is compiled for AVX2. Every kernel behind it is routed to only where the CPU has both
// (avx2_kernels_run_here, csrc/cpu/nhwc_cpu.h).
#pragma once

#if defined(__GNUC__) && defined(__x86_64__)
#pragma GCC target("avx2,fma")
#define ISTD_CPU_AVX2 1
#endif
