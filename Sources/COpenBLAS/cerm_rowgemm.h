#ifndef CERM_ROWGEMM_H
#define CERM_ROWGEMM_H
/*
 * Batch-invariant matrix product for the inference engine:
 *     C[i, j] (+)= sum_p A[i, p] * B[j, p]      (A row-major [m, k], B row-major [n, k])
 *
 * OpenBLAS sgemm gives a row different bits depending on the number of rows in the call and on
 * the row's position in it, which would make generated tokens depend on batch composition. Here
 * every element is computed in ONE fixed order that depends only on k:
 *   - 16 lane partial sums, lane l accumulating p = l, l+16, l+32, ... < k16 (k16 = k - k % 16)
 *     with fused multiply-adds in increasing p;
 *   - lanes reduced by the fixed tree (l + l+8), then (l + l+4), then (l + l+2), then (0 + 1);
 *   - the tail p = k16..k-1 added with sequential fused multiply-adds;
 *   - with `accumulate`, the result is added to C[i, j] (one rounding).
 * The AVX-512, AVX2 and scalar variants implement exactly this arithmetic, so the bits do not
 * depend on m, on the tile an element falls in, on how columns are split across threads, or on
 * which variant runs.
 */
#include <stdint.h>
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#include <cpuid.h>
#endif

#define CERM_ROWGEMM_ROW_BLOCK 64

static inline float cerm_rowgemm_tail(const float *a, const float *b, int k16, int k, float s) {
    for (int p = k16; p < k; p++) s = fmaf(a[p], b[p], s);
    return s;
}

/* Portable variant: same arithmetic, one element at a time. */
static inline void cerm_rowgemm_scalar(int m, int n0, int n1, int k, const float *a, int lda,
                                       const float *b, int ldb, float *c, int ldc, int accumulate) {
    const int k16 = k - k % 16;
    for (int i = 0; i < m; i++) {
        for (int j = n0; j < n1; j++) {
            const float *x = a + (int64_t)i * lda, *y = b + (int64_t)j * ldb;
            float lanes[16] = {0};
            for (int p = 0; p < k16; p += 16)
                for (int l = 0; l < 16; l++) lanes[l] = fmaf(x[p + l], y[p + l], lanes[l]);
            for (int l = 0; l < 8; l++) lanes[l] = lanes[l] + lanes[l + 8];
            for (int l = 0; l < 4; l++) lanes[l] = lanes[l] + lanes[l + 4];
            for (int l = 0; l < 2; l++) lanes[l] = lanes[l] + lanes[l + 2];
            float s = cerm_rowgemm_tail(x, y, k16, k, lanes[0] + lanes[1]);
            float *out = c + (int64_t)i * ldc + j;
            *out = accumulate ? *out + s : s;
        }
    }
}

#if defined(__x86_64__)
#define CERM_AVX512 __attribute__((target("avx512f,avx2,fma"), always_inline))
#define CERM_AVX2 __attribute__((target("avx2,fma"), always_inline))

/* (l + l+8), (l + l+4), (l + l+2), (0 + 1) of 16 lanes given as two 8-lane halves. */
CERM_AVX2 static inline float cerm_reduce_halves(__m256 lo, __m256 hi) {
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

CERM_AVX512 static inline float cerm_reduce512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

/* R x C tile of rows i0.. and columns j0.. (R, C <= 4 are constants after inlining). */
CERM_AVX512 static inline void cerm_tile512(int R, int C, int k, const float *a, int lda, const float *b, int ldb,
                                            float *c, int ldc, int accumulate) {
    const int k16 = k - k % 16;
    __m512 acc[4][4];
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) acc[r][q] = _mm512_setzero_ps();
    for (int p = 0; p < k16; p += 16) {
        __m512 x[4], y[4];
        _Pragma("clang loop unroll(full)")
        for (int r = 0; r < R; r++) x[r] = _mm512_loadu_ps(a + (int64_t)r * lda + p);
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) y[q] = _mm512_loadu_ps(b + (int64_t)q * ldb + p);
        _Pragma("clang loop unroll(full)")
        for (int r = 0; r < R; r++)
            _Pragma("clang loop unroll(full)")
            for (int q = 0; q < C; q++) acc[r][q] = _mm512_fmadd_ps(x[r], y[q], acc[r][q]);
    }
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) {
            float s = cerm_rowgemm_tail(a + (int64_t)r * lda, b + (int64_t)q * ldb, k16, k, cerm_reduce512(acc[r][q]));
            float *out = c + (int64_t)r * ldc + q;
            *out = accumulate ? *out + s : s;
        }
}

/* AVX2: 16 lanes as two ymm halves; R x C <= 2 x 4 keeps 16 accumulators in 16 registers... the
 * compiler spills a little, which changes speed, never the arithmetic. */
CERM_AVX2 static inline void cerm_tile256(int R, int C, int k, const float *a, int lda, const float *b, int ldb,
                                          float *c, int ldc, int accumulate) {
    const int k16 = k - k % 16;
    __m256 lo[4][4], hi[4][4];
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) { lo[r][q] = _mm256_setzero_ps(); hi[r][q] = _mm256_setzero_ps(); }
    for (int p = 0; p < k16; p += 16) {
        _Pragma("clang loop unroll(full)")
        for (int r = 0; r < R; r++) {
            __m256 xl = _mm256_loadu_ps(a + (int64_t)r * lda + p), xh = _mm256_loadu_ps(a + (int64_t)r * lda + p + 8);
            _Pragma("clang loop unroll(full)")
            for (int q = 0; q < C; q++) {
                lo[r][q] = _mm256_fmadd_ps(xl, _mm256_loadu_ps(b + (int64_t)q * ldb + p), lo[r][q]);
                hi[r][q] = _mm256_fmadd_ps(xh, _mm256_loadu_ps(b + (int64_t)q * ldb + p + 8), hi[r][q]);
            }
        }
    }
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) {
            float s = cerm_rowgemm_tail(a + (int64_t)r * lda, b + (int64_t)q * ldb, k16, k,
                                        cerm_reduce_halves(lo[r][q], hi[r][q]));
            float *out = c + (int64_t)r * ldc + q;
            *out = accumulate ? *out + s : s;
        }
}

#define CERM_TILE_DISPATCH(TILE, R, C, ...)                                  \
    switch ((R) * 8 + (C)) {                                                 \
    case 8 + 1: TILE(1, 1, __VA_ARGS__); break;                              \
    case 8 + 2: TILE(1, 2, __VA_ARGS__); break;                              \
    case 8 + 3: TILE(1, 3, __VA_ARGS__); break;                              \
    case 8 + 4: TILE(1, 4, __VA_ARGS__); break;                              \
    case 16 + 1: TILE(2, 1, __VA_ARGS__); break;                             \
    case 16 + 2: TILE(2, 2, __VA_ARGS__); break;                             \
    case 16 + 3: TILE(2, 3, __VA_ARGS__); break;                             \
    case 16 + 4: TILE(2, 4, __VA_ARGS__); break;                             \
    case 24 + 1: TILE(3, 1, __VA_ARGS__); break;                             \
    case 24 + 2: TILE(3, 2, __VA_ARGS__); break;                             \
    case 24 + 3: TILE(3, 3, __VA_ARGS__); break;                             \
    case 24 + 4: TILE(3, 4, __VA_ARGS__); break;                             \
    case 32 + 1: TILE(4, 1, __VA_ARGS__); break;                             \
    case 32 + 2: TILE(4, 2, __VA_ARGS__); break;                             \
    case 32 + 3: TILE(4, 3, __VA_ARGS__); break;                             \
    default: TILE(4, 4, __VA_ARGS__); break;                                 \
    }

__attribute__((target("avx512f,avx2,fma")))
static inline void cerm_rowgemm_avx512(int m, int n0, int n1, int k, const float *a, int lda,
                                       const float *b, int ldb, float *c, int ldc, int accumulate) {
    for (int ib = 0; ib < m; ib += CERM_ROWGEMM_ROW_BLOCK) {
        int ie = ib + CERM_ROWGEMM_ROW_BLOCK < m ? ib + CERM_ROWGEMM_ROW_BLOCK : m;
        for (int j = n0; j < n1; j += 4) {
            int C = n1 - j < 4 ? n1 - j : 4;
            for (int i = ib; i < ie; i += 4) {
                int R = ie - i < 4 ? ie - i : 4;
                const float *ta = a + (int64_t)i * lda, *tb = b + (int64_t)j * ldb;
                float *tc = c + (int64_t)i * ldc + j;
                CERM_TILE_DISPATCH(cerm_tile512, R, C, k, ta, lda, tb, ldb, tc, ldc, accumulate)
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static inline void cerm_rowgemm_avx2(int m, int n0, int n1, int k, const float *a, int lda,
                                     const float *b, int ldb, float *c, int ldc, int accumulate) {
    for (int ib = 0; ib < m; ib += CERM_ROWGEMM_ROW_BLOCK) {
        int ie = ib + CERM_ROWGEMM_ROW_BLOCK < m ? ib + CERM_ROWGEMM_ROW_BLOCK : m;
        for (int j = n0; j < n1; j += 4) {
            int C = n1 - j < 4 ? n1 - j : 4;
            for (int i = ib; i < ie; i += 2) {
                int R = ie - i < 2 ? ie - i : 2;
                const float *ta = a + (int64_t)i * lda, *tb = b + (int64_t)j * ldb;
                float *tc = c + (int64_t)i * ldc + j;
                CERM_TILE_DISPATCH(cerm_tile256, R, C, k, ta, lda, tb, ldb, tc, ldc, accumulate)
            }
        }
    }
}

/* 2 = AVX-512F, 1 = AVX2+FMA, 0 = scalar. */
static inline int cerm_rowgemm_detect(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1;
    if (!fma || !osxsave) return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6) != 0x6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int avx2 = (ebx >> 5) & 1, avx512f = (ebx >> 16) & 1;
    if (avx512f && (xcr0_lo & 0xE6) == 0xE6) return 2;
    return avx2 ? 1 : 0;
}
#endif

/* Which variant runs: 2 = AVX-512F, 1 = AVX2+FMA, 0 = portable scalar (same bits, slower). */
static inline int cerm_rowgemm_variant(void) {
#if defined(__x86_64__)
    static int variant = -1;
    if (variant < 0) variant = cerm_rowgemm_detect();
    return variant;
#else
    return 0;
#endif
}

/* Columns n0..<n1 of C[m, n] (+)= A[m, k] * B[n, k]^T (row-major, leading dimensions in floats).
 * Disjoint column ranges may run concurrently. `force_variant` < 0 picks the best available. */
static inline void cerm_rowgemm_columns(int m, int n0, int n1, int k, const float *a, int lda, const float *b,
                                        int ldb, float *c, int ldc, int accumulate, int force_variant) {
    int variant = force_variant >= 0 ? force_variant : cerm_rowgemm_variant();
#if defined(__x86_64__)
    if (variant >= 2 && cerm_rowgemm_variant() >= 2) { cerm_rowgemm_avx512(m, n0, n1, k, a, lda, b, ldb, c, ldc, accumulate); return; }
    if (variant >= 1 && cerm_rowgemm_variant() >= 1) { cerm_rowgemm_avx2(m, n0, n1, k, a, lda, b, ldb, c, ldc, accumulate); return; }
#endif
    cerm_rowgemm_scalar(m, n0, n1, k, a, lda, b, ldb, c, ldc, accumulate);
}
/*
 * Causal attention of one query row (all heads) over keyCount cached positions; positions below
 * prefixLen come from the prefix cache, the rest from the sequence's own cache (row t - prefixLen).
 * Arithmetic (identical in every variant, and the same for prefill and decode rows):
 *   s[j,t] = dot(q_j, k_t) * scale      (dot: the 16-lane order of cerm_rowgemm, over headDim)
 *   m = max_t s; e = expf(s - m); total = sequential sum over t; p = e * (1 / total)
 *   out_j[d] = fmaf(p[j,t], v_t[d], out_j[d]) for t = 0, 1, ... starting from 0.
 * `scores` holds group * scoreStride floats (group = heads / kvHeads).
 */
static inline float cerm_dot16_scalar(const float *x, const float *y, int k) {
    const int k16 = k - k % 16;
    float lanes[16] = {0};
    for (int p = 0; p < k16; p += 16)
        for (int l = 0; l < 16; l++) lanes[l] = fmaf(x[p + l], y[p + l], lanes[l]);
    for (int l = 0; l < 8; l++) lanes[l] = lanes[l] + lanes[l + 8];
    for (int l = 0; l < 4; l++) lanes[l] = lanes[l] + lanes[l + 4];
    for (int l = 0; l < 2; l++) lanes[l] = lanes[l] + lanes[l + 2];
    return cerm_rowgemm_tail(x, y, k16, k, lanes[0] + lanes[1]);
}

static inline void cerm_softmax_rows(float *scores, int group, int scoreStride, int keyCount) {
    for (int j = 0; j < group; j++) {
        float *row = scores + (int64_t)j * scoreStride;
        float maximum = -INFINITY;
        for (int t = 0; t < keyCount; t++) if (row[t] > maximum) maximum = row[t];
        float total = 0;
        for (int t = 0; t < keyCount; t++) { float e = expf(row[t] - maximum); row[t] = e; total = total + e; }
        float inverse = 1.0f / total;
        for (int t = 0; t < keyCount; t++) row[t] = row[t] * inverse;
    }
}

#define CERM_KEY_ROW(base_prefix, base_own, t) \
    ((t) < prefixLen ? (base_prefix) + (int64_t)(t) * kvDim : (base_own) + (int64_t)((t) - prefixLen) * kvDim)

static inline void cerm_attend_row_scalar(int heads, int kvHeads, int headDim, int keyCount, const float *q, float *out,
                                          const float *prefixK, const float *prefixV, int prefixLen, const float *ownK,
                                          const float *ownV, int kvDim, float scale, float *scores, int scoreStride) {
    const int group = heads / kvHeads;
    for (int g = 0; g < kvHeads; g++) {
        const int h0 = g * group;
        for (int t = 0; t < keyCount; t++) {
            const float *key = CERM_KEY_ROW(prefixK, ownK, t) + g * headDim;
            for (int j = 0; j < group; j++)
                scores[(int64_t)j * scoreStride + t] = cerm_dot16_scalar(q + (h0 + j) * headDim, key, headDim) * scale;
        }
        cerm_softmax_rows(scores, group, scoreStride, keyCount);
        for (int j = 0; j < group; j++)
            for (int d = 0; d < headDim; d++) out[(h0 + j) * headDim + d] = 0;
        for (int t = 0; t < keyCount; t++) {
            const float *value = CERM_KEY_ROW(prefixV, ownV, t) + g * headDim;
            for (int j = 0; j < group; j++) {
                float p = scores[(int64_t)j * scoreStride + t];
                float *o = out + (h0 + j) * headDim;
                for (int d = 0; d < headDim; d++) o[d] = fmaf(p, value[d], o[d]);
            }
        }
    }
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx2,fma")))
static inline void cerm_attend_row_avx512(int heads, int kvHeads, int headDim, int keyCount, const float *q, float *out,
                                          const float *prefixK, const float *prefixV, int prefixLen, const float *ownK,
                                          const float *ownV, int kvDim, float scale, float *scores, int scoreStride) {
    const int group = heads / kvHeads;
    const int k16 = headDim - headDim % 16;
    for (int g = 0; g < kvHeads; g++) {
        const int h0 = g * group;
        for (int t = 0; t < keyCount; t++) {
            const float *key = CERM_KEY_ROW(prefixK, ownK, t) + g * headDim;
            for (int j = 0; j < group; j++) {
                const float *qj = q + (h0 + j) * headDim;
                __m512 acc = _mm512_setzero_ps();
                for (int p = 0; p < k16; p += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qj + p), _mm512_loadu_ps(key + p), acc);
                float s = cerm_rowgemm_tail(qj, key, k16, headDim, cerm_reduce512(acc));
                scores[(int64_t)j * scoreStride + t] = s * scale;
            }
        }
        cerm_softmax_rows(scores, group, scoreStride, keyCount);
        for (int j = 0; j < group; j++)
            for (int d = 0; d < headDim; d++) out[(h0 + j) * headDim + d] = 0;
        for (int t = 0; t < keyCount; t++) {
            const float *value = CERM_KEY_ROW(prefixV, ownV, t) + g * headDim;
            for (int j = 0; j < group; j++) {
                __m512 p = _mm512_set1_ps(scores[(int64_t)j * scoreStride + t]);
                float *o = out + (h0 + j) * headDim;
                int d = 0;
                for (; d + 16 <= headDim; d += 16)
                    _mm512_storeu_ps(o + d, _mm512_fmadd_ps(p, _mm512_loadu_ps(value + d), _mm512_loadu_ps(o + d)));
                for (; d < headDim; d++) o[d] = fmaf(scores[(int64_t)j * scoreStride + t], value[d], o[d]);
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static inline void cerm_attend_row_avx2(int heads, int kvHeads, int headDim, int keyCount, const float *q, float *out,
                                        const float *prefixK, const float *prefixV, int prefixLen, const float *ownK,
                                        const float *ownV, int kvDim, float scale, float *scores, int scoreStride) {
    const int group = heads / kvHeads;
    const int k16 = headDim - headDim % 16;
    for (int g = 0; g < kvHeads; g++) {
        const int h0 = g * group;
        for (int t = 0; t < keyCount; t++) {
            const float *key = CERM_KEY_ROW(prefixK, ownK, t) + g * headDim;
            for (int j = 0; j < group; j++) {
                const float *qj = q + (h0 + j) * headDim;
                __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
                for (int p = 0; p < k16; p += 16) {
                    lo = _mm256_fmadd_ps(_mm256_loadu_ps(qj + p), _mm256_loadu_ps(key + p), lo);
                    hi = _mm256_fmadd_ps(_mm256_loadu_ps(qj + p + 8), _mm256_loadu_ps(key + p + 8), hi);
                }
                float s = cerm_rowgemm_tail(qj, key, k16, headDim, cerm_reduce_halves(lo, hi));
                scores[(int64_t)j * scoreStride + t] = s * scale;
            }
        }
        cerm_softmax_rows(scores, group, scoreStride, keyCount);
        for (int j = 0; j < group; j++)
            for (int d = 0; d < headDim; d++) out[(h0 + j) * headDim + d] = 0;
        for (int t = 0; t < keyCount; t++) {
            const float *value = CERM_KEY_ROW(prefixV, ownV, t) + g * headDim;
            for (int j = 0; j < group; j++) {
                __m256 p = _mm256_set1_ps(scores[(int64_t)j * scoreStride + t]);
                float *o = out + (h0 + j) * headDim;
                int d = 0;
                for (; d + 8 <= headDim; d += 8)
                    _mm256_storeu_ps(o + d, _mm256_fmadd_ps(p, _mm256_loadu_ps(value + d), _mm256_loadu_ps(o + d)));
                for (; d < headDim; d++) o[d] = fmaf(scores[(int64_t)j * scoreStride + t], value[d], o[d]);
            }
        }
    }
}
#endif

/* Dispatches like cerm_rowgemm_columns (`force_variant` < 0 = best available). */
static inline void cerm_attend_row(int heads, int kvHeads, int headDim, int keyCount, const float *q, float *out,
                                   const float *prefixK, const float *prefixV, int prefixLen, const float *ownK,
                                   const float *ownV, int kvDim, float scale, float *scores, int scoreStride,
                                   int force_variant) {
    int variant = force_variant >= 0 ? force_variant : cerm_rowgemm_variant();
#if defined(__x86_64__)
    if (variant >= 2 && cerm_rowgemm_variant() >= 2) {
        cerm_attend_row_avx512(heads, kvHeads, headDim, keyCount, q, out, prefixK, prefixV, prefixLen, ownK, ownV, kvDim,
                               scale, scores, scoreStride);
        return;
    }
    if (variant >= 1 && cerm_rowgemm_variant() >= 1) {
        cerm_attend_row_avx2(heads, kvHeads, headDim, keyCount, q, out, prefixK, prefixV, prefixLen, ownK, ownV, kvDim,
                             scale, scores, scoreStride);
        return;
    }
#endif
    cerm_attend_row_scalar(heads, kvHeads, headDim, keyCount, q, out, prefixK, prefixV, prefixLen, ownK, ownV, kvDim,
                           scale, scores, scoreStride);
}
#endif
