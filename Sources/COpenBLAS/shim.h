#ifndef CERM_COPENBLAS_SHIM_H
#define CERM_COPENBLAS_SHIM_H
#include <cblas.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* Whether this x86-64 CPU runs OpenBLAS's "Haswell" kernels: AVX2 and FMA with the OS saving
   YMM state. 0 off x86-64. */
static inline int cerm_cpu_runs_haswell_kernels(void) {
#if defined(__x86_64__)
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1;
    if (!fma || !osxsave) return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 5) & 1;
#else
    return 0;
#endif
}
#endif
