#ifndef CERM_COPENBLAS_SHIM_H
#define CERM_COPENBLAS_SHIM_H
#include <cblas.h>
#include <stddef.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* The fastest OPENBLAS_CORETYPE this x86-64 CPU can run, for when OpenBLAS's own detection does
   not know the CPU and falls back to its generic "Prescott" (SSE3) kernels: OpenBLAS 0.3.21
   (Debian 12) does that on Sapphire/Emerald Rapids, 4-5x slower at sgemm. "SkylakeX" needs
   AVX-512 F/DQ/BW/VL with the OS saving ZMM state, "Haswell" AVX2 and FMA with YMM state;
   NULL when neither holds or off x86-64. */
static inline const char *cerm_openblas_capable_coretype(void) {
#if defined(__x86_64__)
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return NULL;
    int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1;
    if (!fma || !osxsave) return NULL;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return NULL;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return NULL;
    int avx2 = (ebx >> 5) & 1;
    int avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);
    if (avx512 && (xcr0_lo & 0xE6) == 0xE6) return "SkylakeX";
    return avx2 ? "Haswell" : NULL;
#else
    return NULL;
#endif
}
#endif
