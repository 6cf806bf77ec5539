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
#include <stdlib.h>
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

/* Decode multiplies a few rows by every weight: the product then waits on memory, and the weight
 * rows of a tile (4 x k floats) are too short a stream for the hardware prefetcher to run ahead
 * of. So the first row tile of a block prefetches, line by line, the weight rows two tiles ahead
 * (`pf`, NULL at the end). Prefetches change no arithmetic. */
#define CERM_PREFETCH_DISTANCE 8
#define CERM_PREFETCH_ROWS(pf, ldb, p, rows)                                                       \
    if (pf) {                                                                                      \
        _Pragma("clang loop unroll(full)")                                                         \
        for (int q = 0; q < (rows); q++) _mm_prefetch((const char *)((pf) + (int64_t)q * (ldb) + (p)), _MM_HINT_T0); \
    }

/* R x C tile of rows i0.. and columns j0.. (R, C <= 4 are constants after inlining). */
CERM_AVX512 static inline void cerm_tile512(int R, int C, int k, const float *a, int lda, const float *b, int ldb,
                                            float *c, int ldc, int accumulate, const float *pf) {
    const int k16 = k - k % 16;
    __m512 acc[4][4];
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) acc[r][q] = _mm512_setzero_ps();
    for (int p = 0; p < k16; p += 16) {
        CERM_PREFETCH_ROWS(pf, ldb, p, 4);
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

/* AVX2: 16 lanes as two ymm halves, so an element takes two accumulators. With 16 ymm
 * registers a 2 x 4 tile (16 accumulators) spilled six of them to the stack in every iteration;
 * the driver uses 3 x 2 tiles (12 accumulators, the 4 weight halves, the row halves as memory
 * operands), which stay in registers. Tile shapes change speed, never the arithmetic. */
CERM_AVX2 static inline void cerm_tile256(int R, int C, int k, const float *a, int lda, const float *b, int ldb,
                                          float *c, int ldc, int accumulate, const float *pf) {
    const int k16 = k - k % 16;
    __m256 lo[4][4], hi[4][4];
    _Pragma("clang loop unroll(full)")
    for (int r = 0; r < R; r++)
        _Pragma("clang loop unroll(full)")
        for (int q = 0; q < C; q++) { lo[r][q] = _mm256_setzero_ps(); hi[r][q] = _mm256_setzero_ps(); }
    for (int p = 0; p < k16; p += 16) {
        CERM_PREFETCH_ROWS(pf, ldb, p, C);
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
            const float *ahead = j + CERM_PREFETCH_DISTANCE + 4 <= n1 ? b + (int64_t)(j + CERM_PREFETCH_DISTANCE) * ldb : 0;
            for (int i = ib; i < ie; i += 4) {
                int R = ie - i < 4 ? ie - i : 4;
                const float *ta = a + (int64_t)i * lda, *tb = b + (int64_t)j * ldb;
                float *tc = c + (int64_t)i * ldc + j;
                const float *pf = i == ib ? ahead : 0;
                CERM_TILE_DISPATCH(cerm_tile512, R, C, k, ta, lda, tb, ldb, tc, ldc, accumulate, pf)
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static inline void cerm_rowgemm_avx2(int m, int n0, int n1, int k, const float *a, int lda,
                                     const float *b, int ldb, float *c, int ldc, int accumulate) {
    for (int ib = 0; ib < m; ib += CERM_ROWGEMM_ROW_BLOCK) {
        int ie = ib + CERM_ROWGEMM_ROW_BLOCK < m ? ib + CERM_ROWGEMM_ROW_BLOCK : m;
        for (int j = n0; j < n1; j += 2) {
            int C = n1 - j < 2 ? n1 - j : 2;
            const float *ahead = j + CERM_PREFETCH_DISTANCE + 2 <= n1 ? b + (int64_t)(j + CERM_PREFETCH_DISTANCE) * ldb : 0;
            for (int i = ib; i < ie; i += 3) {
                int R = ie - i < 3 ? ie - i : 3;
                const float *ta = a + (int64_t)i * lda, *tb = b + (int64_t)j * ldb;
                float *tc = c + (int64_t)i * ldc + j;
                const float *pf = i == ib ? ahead : 0;
                CERM_TILE_DISPATCH(cerm_tile256, R, C, k, ta, lda, tb, ldb, tc, ldc, accumulate, pf)
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

/* Which variant runs: 2 = AVX-512F, 1 = AVX2+FMA, 0 = portable scalar (same bits, slower).
 * The environment variable CERM_KERNEL_VARIANT=0|1|2 caps it, so an AVX-512 machine can measure
 * the AVX2 kernels that most CPUs run (BENCHMARKS.md). */
static inline int cerm_rowgemm_variant(void) {
#if defined(__x86_64__)
    static int variant = -1;
    if (variant < 0) {
        int detected = cerm_rowgemm_detect();
        const char *cap = getenv("CERM_KERNEL_VARIANT");
        if (cap && cap[0] >= '0' && cap[0] <= '2' && cap[1] == 0 && cap[0] - '0' < detected) detected = cap[0] - '0';
        variant = detected;
    }
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
 * Causal attention of one query row (all heads) over keyCount cached positions.
 *
 * Cache layout: keys are stored TRANSPOSED, `kt[f * capacity + c]` for feature f = g*headDim + d
 * and cache column c, so the scores of consecutive positions are plain vertical multiply-adds;
 * values are row-major `v[c * kvDim + f]`. Positions t < prefixLen are column t of the prefix
 * cache; the others are column t - prefixLen of the sequence's own cache.
 *
 * Arithmetic (identical in every variant, and the same for prefill and decode rows):
 *   s[j,t] = (fmaf over d = 0, 1, ... of q_j[d] * k_t[d], starting from 0) * scale
 *   m = max_t s; e = expf(s - m); total = sequential sum over t; p = e * (1 / total)
 *   out_j[d] = fmaf(p[j,t], v_t[d], out_j[d]) for t = 0, 1, ... starting from 0.
 * `scores` holds group * scoreStride floats (group = heads / kvHeads).
 */
typedef struct {
    const float *kt, *v;
    int begin, end, capacity; /* positions [begin, end) live in columns [0, end - begin) */
} cerm_kv_segment;

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

/* Scores of positions [from, seg.end) for heads h0 .. h0+group-1, one position at a time. */
static inline void cerm_scores_scalar(const float *q, int h0, int group, int g, int headDim, cerm_kv_segment seg,
                                      int from, float scale, float *scores, int scoreStride) {
    for (int t = from; t < seg.end; t++) {
        const int col = t - seg.begin;
        for (int j = 0; j < group; j++) {
            const float *qj = q + (h0 + j) * headDim;
            float s = 0;
            for (int d = 0; d < headDim; d++) s = fmaf(qj[d], seg.kt[(int64_t)(g * headDim + d) * seg.capacity + col], s);
            scores[(int64_t)j * scoreStride + t] = s * scale;
        }
    }
}

/* out_j[d0 .. headDim) for one head over all segments, one element at a time. */
static inline void cerm_values_scalar(const float *p, float *o, int g, int headDim, int kvDim, int d0,
                                      const cerm_kv_segment *segs, int nsegs) {
    for (int d = d0; d < headDim; d++) {
        float acc = 0;
        for (int s = 0; s < nsegs; s++)
            for (int t = segs[s].begin; t < segs[s].end; t++)
                acc = fmaf(p[t], segs[s].v[(int64_t)(t - segs[s].begin) * kvDim + g * headDim + d], acc);
        o[d] = acc;
    }
}

static inline void cerm_attend_row_scalar(int heads, int kvHeads, int headDim, const float *q, float *out,
                                          const cerm_kv_segment *segs, int nsegs, int keyCount, int kvDim,
                                          float scale, float *scores, int scoreStride) {
    const int group = heads / kvHeads;
    for (int g = 0; g < kvHeads; g++) {
        const int h0 = g * group;
        for (int s = 0; s < nsegs; s++)
            cerm_scores_scalar(q, h0, group, g, headDim, segs[s], segs[s].begin, scale, scores, scoreStride);
        cerm_softmax_rows(scores, group, scoreStride, keyCount);
        for (int j = 0; j < group; j++)
            cerm_values_scalar(scores + (int64_t)j * scoreStride, out + (h0 + j) * headDim, g, headDim, kvDim, 0, segs, nsegs);
    }
}

#if defined(__x86_64__)
#define CERM_ATTN_VARIANT(NAME, TARGET, VEC, LANES, ZERO, SET1, LOAD, STORE, FMADD, MUL)                               \
__attribute__((target(TARGET)))                                                                                       \
static inline void NAME(int heads, int kvHeads, int headDim, const float *q, float *out,                              \
                        const cerm_kv_segment *segs, int nsegs, int keyCount, int kvDim,                              \
                        float scale, float *scores, int scoreStride) {                                                \
    const int group = heads / kvHeads;                                                                                \
    const VEC vscale = SET1(scale);                                                                                   \
    for (int g = 0; g < kvHeads; g++) {                                                                               \
        const int h0 = g * group;                                                                                     \
        for (int s = 0; s < nsegs; s++) {                                                                             \
            const cerm_kv_segment seg = segs[s];                                                                      \
            int t = seg.begin;                                                                                        \
            /* Four key blocks per pass: four independent multiply-add chains per head. */                            \
            for (; t + 4 * LANES <= seg.end; t += 4 * LANES) {                                                        \
                const float *kcol = seg.kt + (int64_t)(g * headDim) * seg.capacity + (t - seg.begin);                 \
                for (int j = 0; j < group; j++) {                                                                     \
                    const float *qj = q + (h0 + j) * headDim;                                                         \
                    VEC acc0 = ZERO(), acc1 = ZERO(), acc2 = ZERO(), acc3 = ZERO();                                   \
                    for (int d = 0; d < headDim; d++) {                                                               \
                        const float *kd = kcol + (int64_t)d * seg.capacity;                                           \
                        const VEC qd = SET1(qj[d]);                                                                   \
                        acc0 = FMADD(qd, LOAD(kd), acc0);                                                             \
                        acc1 = FMADD(qd, LOAD(kd + LANES), acc1);                                                     \
                        acc2 = FMADD(qd, LOAD(kd + 2 * LANES), acc2);                                                 \
                        acc3 = FMADD(qd, LOAD(kd + 3 * LANES), acc3);                                                 \
                    }                                                                                                 \
                    float *row = scores + (int64_t)j * scoreStride + t;                                               \
                    STORE(row, MUL(acc0, vscale));                                                                    \
                    STORE(row + LANES, MUL(acc1, vscale));                                                            \
                    STORE(row + 2 * LANES, MUL(acc2, vscale));                                                        \
                    STORE(row + 3 * LANES, MUL(acc3, vscale));                                                        \
                }                                                                                                     \
            }                                                                                                         \
            for (; t + LANES <= seg.end; t += LANES) {                                                                \
                const float *kcol = seg.kt + (int64_t)(g * headDim) * seg.capacity + (t - seg.begin);                 \
                for (int j = 0; j < group; j++) {                                                                     \
                    const float *qj = q + (h0 + j) * headDim;                                                         \
                    VEC acc0 = ZERO();                                                                                \
                    for (int d = 0; d < headDim; d++)                                                                 \
                        acc0 = FMADD(SET1(qj[d]), LOAD(kcol + (int64_t)d * seg.capacity), acc0);                      \
                    STORE(scores + (int64_t)j * scoreStride + t, MUL(acc0, vscale));                                  \
                }                                                                                                     \
            }                                                                                                         \
            cerm_scores_scalar(q, h0, group, g, headDim, seg, t, scale, scores, scoreStride);                         \
        }                                                                                                             \
        cerm_softmax_rows(scores, group, scoreStride, keyCount);                                                      \
        for (int j = 0; j < group; j++) {                                                                             \
            const float *p = scores + (int64_t)j * scoreStride;                                                       \
            float *o = out + (h0 + j) * headDim;                                                                      \
            int d0 = 0;                                                                                               \
            for (; d0 + 4 * LANES <= headDim; d0 += 4 * LANES) {                                                      \
                VEC a0 = ZERO(), a1 = ZERO(), a2 = ZERO(), a3 = ZERO();                                               \
                for (int s = 0; s < nsegs; s++) {                                                                     \
                    const float *vrow = segs[s].v + g * headDim + d0;                                                 \
                    for (int t = segs[s].begin; t < segs[s].end; t++, vrow += kvDim) {                                \
                        const VEC pt = SET1(p[t]);                                                                    \
                        a0 = FMADD(pt, LOAD(vrow), a0);                                                               \
                        a1 = FMADD(pt, LOAD(vrow + LANES), a1);                                                       \
                        a2 = FMADD(pt, LOAD(vrow + 2 * LANES), a2);                                                   \
                        a3 = FMADD(pt, LOAD(vrow + 3 * LANES), a3);                                                   \
                    }                                                                                                 \
                }                                                                                                     \
                STORE(o + d0, a0); STORE(o + d0 + LANES, a1);                                                         \
                STORE(o + d0 + 2 * LANES, a2); STORE(o + d0 + 3 * LANES, a3);                                         \
            }                                                                                                         \
            for (; d0 + LANES <= headDim; d0 += LANES) {                                                              \
                VEC a0 = ZERO();                                                                                      \
                for (int s = 0; s < nsegs; s++) {                                                                     \
                    const float *vrow = segs[s].v + g * headDim + d0;                                                 \
                    for (int t = segs[s].begin; t < segs[s].end; t++, vrow += kvDim) a0 = FMADD(SET1(p[t]), LOAD(vrow), a0); \
                }                                                                                                     \
                STORE(o + d0, a0);                                                                                    \
            }                                                                                                         \
            cerm_values_scalar(p, o, g, headDim, kvDim, d0, segs, nsegs);                                             \
        }                                                                                                             \
    }                                                                                                                 \
}

CERM_ATTN_VARIANT(cerm_attend_row_avx512, "avx512f,avx2,fma", __m512, 16, _mm512_setzero_ps, _mm512_set1_ps,
                  _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps)
CERM_ATTN_VARIANT(cerm_attend_row_avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_set1_ps,
                  _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps)
#endif

/* Attention of one query row; see the layout and arithmetic above. `prefixKT`/`prefixV` may be
 * NULL when prefixLen is 0. Dispatches like cerm_rowgemm_columns (`force_variant` < 0 = best). */
static inline void cerm_attend_row(int heads, int kvHeads, int headDim, int keyCount, const float *q, float *out,
                                   const float *prefixKT, const float *prefixV, int prefixLen, int prefixCapacity,
                                   const float *ownKT, const float *ownV, int ownCapacity, int kvDim, float scale,
                                   float *scores, int scoreStride, int force_variant) {
    cerm_kv_segment segs[2];
    int nsegs = 0;
    const int shared = prefixLen < keyCount ? prefixLen : keyCount;
    if (shared > 0) {
        segs[nsegs].kt = prefixKT; segs[nsegs].v = prefixV; segs[nsegs].begin = 0; segs[nsegs].end = shared;
        segs[nsegs].capacity = prefixCapacity; nsegs++;
    }
    if (keyCount > prefixLen) {
        segs[nsegs].kt = ownKT; segs[nsegs].v = ownV; segs[nsegs].begin = prefixLen; segs[nsegs].end = keyCount;
        segs[nsegs].capacity = ownCapacity; nsegs++;
    }
    int variant = force_variant >= 0 ? force_variant : cerm_rowgemm_variant();
#if defined(__x86_64__)
    if (variant >= 2 && cerm_rowgemm_variant() >= 2) {
        cerm_attend_row_avx512(heads, kvHeads, headDim, q, out, segs, nsegs, keyCount, kvDim, scale, scores, scoreStride);
        return;
    }
    if (variant >= 1 && cerm_rowgemm_variant() >= 1) {
        cerm_attend_row_avx2(heads, kvHeads, headDim, q, out, segs, nsegs, keyCount, kvDim, scale, scores, scoreStride);
        return;
    }
#endif
    cerm_attend_row_scalar(heads, kvHeads, headDim, q, out, segs, nsegs, keyCount, kvDim, scale, scores, scoreStride);
}
#endif
