/* gouache: exact fused attention, softmax(q·kᵀ·scale)·v, for bf16 on x86-64 CPUs with AVX512-BF16.
 *
 * Built on first use by gouache.speed.kernels (cc -O3 -mavx512f -mavx512bf16 -mavx512vl -fopenmp)
 * and called through ctypes (which releases the GIL): gouache_attention_bf16_heads takes all heads
 * of a call and spreads them over the OpenMP threads PyTorch itself uses (both load libgomp.so.1);
 * gouache_attention_bf16 does one head, or a range of its queries.
 *
 * Why: Stable Diffusion's self-attention at 512² is 4,096 queries by 4,096 keys with heads 40 wide.
 * Through separate matmuls the scores make a round trip to memory in bf16 and the narrow
 * reduction (40) keeps the matmul library far from peak. Here, for a block of QB queries:
 *   1. scores = q·kᵀ in fp32, with a 4-row × 64-key register tile (vdpbf16ps over pairs of dims);
 *   2. each row's exact softmax numerator exp(scale·(s - max)) in fp32, rounded to bf16 in place
 *      (two vectors at a time, one conversion);
 *   3. out = p·v with an R-row × C-vector register tile over pairs of keys, accumulated in fp32,
 *      divided by the row's fp32 sum and rounded to bf16 once.
 * Keys and values are packed once per call into the pair-interleaved layouts vdpbf16ps wants.
 * The arithmetic is the one PyTorch's bf16 SDPA does (bf16 products, fp32 sums, bf16 weights).
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

#define QB 32   /* queries per block */
#define KT 64   /* keys per score tile: 4 vectors of 16 */
#define KB 256  /* keys per block of the p·v product (its values stay in L1) */

static inline __m512bh bcast_pair(const bf16 *p) {
    int32_t x;
    memcpy(&x, p, sizeof x);
    return (__m512bh)_mm512_set1_epi32(x);
}

static inline __m512bh load_bh(const bf16 *p) { return (__m512bh)_mm512_loadu_si512((const void *)p); }

/* 2^x for x <= 0: 2^n · 2^f with f in [-0.5, 0.5] by a degree-3 minimax polynomial (relative error
 * below 7.5e-5, a 26th of bf16's rounding of the weights); very negative x gives 0 */
static inline __m512 exp2_neg(__m512 x) {
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(5.5175986e-2f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4261157e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9326019e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.9992800e-1f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 max4(__m512 a, __m512 b, __m512 c, __m512 d) {
    return _mm512_max_ps(_mm512_max_ps(a, b), _mm512_max_ps(c, d));
}

static inline __m512 mask_max4(__m512 m, int nv, __m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 v[4] = {a, b, c, d};
    for (int i = 0; i < 4 && nv > 16 * i; i++) {
        const int n = nv - 16 * i < 16 ? nv - 16 * i : 16;
        m = _mm512_mask_max_ps(m, (__mmask16)((1u << n) - 1), m, v[i]);
    }
    return m;
}

/* scores for 4 query rows (qb, row stride dk) against 64 packed keys (kp: 4 groups of dh pairs × 16
 * keys), of which the first nv are real; mx: the 4 rows' running maxima (over real keys only) */
static inline void qk_tile(const bf16 *qb, int dk, const bf16 *kp, int dh, float *s, long ss, int nv, __m512 *mx) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m512 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    __m512 a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    const long g = (long)dh * 32;
    for (int p = 0; p < dh; p++) {
        const bf16 *kk = kp + (long)p * 32;
        __m512bh k0 = load_bh(kk), k1 = load_bh(kk + g), k2 = load_bh(kk + 2 * g), k3 = load_bh(kk + 3 * g);
        __m512bh q;
        q = bcast_pair(qb + 2 * p);
        a00 = _mm512_dpbf16_ps(a00, q, k0); a01 = _mm512_dpbf16_ps(a01, q, k1);
        a02 = _mm512_dpbf16_ps(a02, q, k2); a03 = _mm512_dpbf16_ps(a03, q, k3);
        q = bcast_pair(qb + dk + 2 * p);
        a10 = _mm512_dpbf16_ps(a10, q, k0); a11 = _mm512_dpbf16_ps(a11, q, k1);
        a12 = _mm512_dpbf16_ps(a12, q, k2); a13 = _mm512_dpbf16_ps(a13, q, k3);
        q = bcast_pair(qb + 2 * dk + 2 * p);
        a20 = _mm512_dpbf16_ps(a20, q, k0); a21 = _mm512_dpbf16_ps(a21, q, k1);
        a22 = _mm512_dpbf16_ps(a22, q, k2); a23 = _mm512_dpbf16_ps(a23, q, k3);
        q = bcast_pair(qb + 3 * dk + 2 * p);
        a30 = _mm512_dpbf16_ps(a30, q, k0); a31 = _mm512_dpbf16_ps(a31, q, k1);
        a32 = _mm512_dpbf16_ps(a32, q, k2); a33 = _mm512_dpbf16_ps(a33, q, k3);
    }
    if (nv >= 64) {
        mx[0] = _mm512_max_ps(mx[0], max4(a00, a01, a02, a03));
        mx[1] = _mm512_max_ps(mx[1], max4(a10, a11, a12, a13));
        mx[2] = _mm512_max_ps(mx[2], max4(a20, a21, a22, a23));
        mx[3] = _mm512_max_ps(mx[3], max4(a30, a31, a32, a33));
    } else {
        mx[0] = mask_max4(mx[0], nv, a00, a01, a02, a03);
        mx[1] = mask_max4(mx[1], nv, a10, a11, a12, a13);
        mx[2] = mask_max4(mx[2], nv, a20, a21, a22, a23);
        mx[3] = mask_max4(mx[3], nv, a30, a31, a32, a33);
    }
    _mm512_storeu_ps(s, a00); _mm512_storeu_ps(s + 16, a01); _mm512_storeu_ps(s + 32, a02); _mm512_storeu_ps(s + 48, a03);
    s += ss;
    _mm512_storeu_ps(s, a10); _mm512_storeu_ps(s + 16, a11); _mm512_storeu_ps(s + 32, a12); _mm512_storeu_ps(s + 48, a13);
    s += ss;
    _mm512_storeu_ps(s, a20); _mm512_storeu_ps(s + 16, a21); _mm512_storeu_ps(s + 32, a22); _mm512_storeu_ps(s + 48, a23);
    s += ss;
    _mm512_storeu_ps(s, a30); _mm512_storeu_ps(s + 16, a31); _mm512_storeu_ps(s + 32, a32); _mm512_storeu_ps(s + 48, a33);
}

/* p·v for R rows × (C vectors of 16 + H half vectors of 8) output dims over pairs of keys [k0, k1)
 * (a register tile; the half vector spares SD 1.5's 40-wide heads a fifth of padding) */
#define PV_KERNEL(R, C, H)                                                                           \
    static void pv_##R##_##C##_##H(const bf16 *p, long ps, const bf16 *vp, long vs, int k0, int k1, \
                                   float *o, long os) {                                           \
        __m512 acc[R][C + 1];                                                                      \
        __m256 hac[R];                                                                             \
        for (int r = 0; r < R; r++) {                                                              \
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_loadu_ps(o + r * os + 16 * c);          \
            if (H) hac[r] = _mm256_loadu_ps(o + r * os + 16 * C);                                  \
        }                                                                                          \
        for (int kp = k0; kp < k1; kp++) {                                                         \
            const bf16 *vk = vp + (long)kp * vs;                                                   \
            __m512bh v[C + 1];                                                                     \
            __m256bh hv;                                                                           \
            for (int c = 0; c < C; c++) v[c] = load_bh(vk + 32 * c);                               \
            if (H) hv = (__m256bh)_mm256_loadu_si256((const __m256i *)(vk + 32 * C));              \
            for (int r = 0; r < R; r++) {                                                          \
                int32_t x;                                                                         \
                memcpy(&x, p + r * ps + 2 * kp, sizeof x);                                         \
                const __m512bh w = (__m512bh)_mm512_set1_epi32(x);                                 \
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], w, v[c]);      \
                if (H) hac[r] = _mm256_dpbf16_ps(hac[r], (__m256bh)_mm512_castsi512_si256((__m512i)w), hv); \
            }                                                                                      \
        }                                                                                          \
        for (int r = 0; r < R; r++) {                                                              \
            for (int c = 0; c < C; c++) _mm512_storeu_ps(o + r * os + 16 * c, acc[r][c]);          \
            if (H) _mm256_storeu_ps(o + r * os + 16 * C, hac[r]);                                  \
        }                                                                                          \
    }

#pragma GCC push_options
#pragma GCC optimize("unroll-loops")
PV_KERNEL(8, 1, 0)
PV_KERNEL(8, 2, 0)
PV_KERNEL(8, 3, 0)
PV_KERNEL(8, 0, 1)
PV_KERNEL(8, 1, 1)
PV_KERNEL(8, 2, 1)
PV_KERNEL(4, 1, 0)
PV_KERNEL(4, 2, 0)
PV_KERNEL(4, 3, 0)
PV_KERNEL(4, 4, 0)
PV_KERNEL(4, 5, 0)
PV_KERNEL(4, 0, 1)
PV_KERNEL(4, 1, 1)
PV_KERNEL(4, 2, 1)
PV_KERNEL(4, 3, 1)
PV_KERNEL(4, 4, 1)
#pragma GCC pop_options

typedef void (*pv_fn)(const bf16 *, long, const bf16 *, long, int, int, float *, long);

static pv_fn pv_kernel(int rows, int c, int h) {
    static const pv_fn eight[2][4] = {{0, pv_8_1_0, pv_8_2_0, pv_8_3_0}, {pv_8_0_1, pv_8_1_1, pv_8_2_1, 0}};
    static const pv_fn four[2][6] = {{0, pv_4_1_0, pv_4_2_0, pv_4_3_0, pv_4_4_0, pv_4_5_0},
                                     {pv_4_0_1, pv_4_1_1, pv_4_2_1, pv_4_3_1, pv_4_4_1, 0}};
    return rows == 8 ? eight[h][c] : four[h][c];
}

static void *scratch(size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* One head: queries [q_begin, q_end) of q (row stride qs) against all s keys of k and v.
 * dk: width of q and k (even); dv: width of v and out. Rows are contiguous; strides in elements.
 * Returns 0, or -1 if dk is odd or memory ran out (nothing written then). */
int gouache_attention_bf16(const bf16 *q, long qs, const bf16 *k, long ks, const bf16 *v, long vs,
                           bf16 *out, long os, int q_begin, int q_end, int s, int dk, int dv, float scale) {
    if (dk % 2 || dk <= 0 || dv <= 0 || s <= 0) return -1;
    const int dh = dk / 2;
    const int sp = (s + KT - 1) / KT * KT;       /* keys padded to whole score tiles */
    const int dp = (dv + 7) / 8 * 8;             /* output dims padded to vectors of 16 and a half vector */
    const int full = dp / 16, half = (dp % 16) != 0;
    bf16 *kp = scratch((size_t)sp * dk * 2);
    bf16 *vpk = scratch((size_t)sp * dp * 2);
    float *sb = scratch((size_t)QB * sp * 4);
    bf16 *qb = scratch((size_t)QB * dk * 2);
    float *ob = scratch((size_t)QB * dp * 4);
    if (!kp || !vpk || !sb || !qb || !ob) {
        free(kp); free(vpk); free(sb); free(qb); free(ob);
        return -1;
    }

    /* keys: [sp/16 groups][dh pairs][16 keys × 2 dims]; values: [sp/2 pairs][dp dims × 2 keys]; zero padded */
    memset(kp, 0, (size_t)sp * dk * 2);
    for (int j = 0; j < s; j++) {
        const bf16 *kr = k + (long)j * ks;
        bf16 *dst = kp + (long)(j / 16) * dh * 32 + (j % 16) * 2;
        for (int p = 0; p < dh; p++) {
            dst[p * 32] = kr[2 * p];
            dst[p * 32 + 1] = kr[2 * p + 1];
        }
    }
    memset(vpk, 0, (size_t)sp * dp * 2);
    for (int j = 0; j < s; j++) {
        const bf16 *vr = v + (long)j * vs;
        bf16 *dst = vpk + (long)(j / 2) * dp * 2 + (j % 2);
        for (int d = 0; d < dv; d++) dst[2 * d] = vr[d];
    }

    const float c = scale * 1.44269504088896341f; /* exp(scale·x) = 2^(c·x) */
    const int rows = full + half <= 3 ? 8 : 4;
    const __m512 minus_inf = _mm512_set1_ps(-__builtin_inff());
    for (int q0 = q_begin; q0 < q_end; q0 += QB) {
        const int nq = q_end - q0 < QB ? q_end - q0 : QB;
        memset(qb, 0, (size_t)QB * dk * 2);
        for (int i = 0; i < nq; i++) memcpy(qb + (long)i * dk, q + (long)(q0 + i) * qs, (size_t)dk * 2);
        const int nr = (nq + rows - 1) / rows * rows; /* rows computed (a multiple of both tiles) */

        __m512 mx[QB];
        for (int i = 0; i < nr; i++) mx[i] = minus_inf;
        for (int t = 0; t < sp; t += KT)
            for (int i = 0; i < nr; i += 4)
                qk_tile(qb + (long)i * dk, dk, kp + (long)(t / 16) * dh * 32, dh, sb + (long)i * sp + t, sp,
                        s - t, mx + i);

        float inv[QB];
        for (int i = 0; i < nr; i++) {
            float *sr = sb + (long)i * sp;
            const __m512 mc = _mm512_set1_ps(_mm512_reduce_max_ps(mx[i]) * c), cc = _mm512_set1_ps(c);
            __m512 sum = _mm512_setzero_ps();
            bf16 *pr = (bf16 *)sr; /* the weights overwrite their own scores, row stride 2·sp */
            for (int j = 0; j < sp; j += 32) { /* sp is a multiple of 64 */
                __m512 x0, x1;
                if (j + 32 <= s) {
                    x0 = exp2_neg(_mm512_fmsub_ps(_mm512_loadu_ps(sr + j), cc, mc));
                    x1 = exp2_neg(_mm512_fmsub_ps(_mm512_loadu_ps(sr + j + 16), cc, mc));
                } else if (j >= s) {
                    x0 = x1 = _mm512_setzero_ps();
                } else {
                    const int n0 = s - j <= 0 ? 0 : (s - j >= 16 ? 16 : s - j);
                    const int n1 = s - j - 16 <= 0 ? 0 : (s - j - 16 >= 16 ? 16 : s - j - 16);
                    const __mmask16 m0 = (__mmask16)((1u << n0) - 1), m1 = (__mmask16)((1u << n1) - 1);
                    x0 = _mm512_maskz_mov_ps(m0, exp2_neg(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m0, sr + j), cc, mc)));
                    x1 = _mm512_maskz_mov_ps(m1, exp2_neg(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m1, sr + j + 16), cc, mc)));
                }
                sum = _mm512_add_ps(sum, _mm512_add_ps(x0, x1));
                _mm512_storeu_si512((void *)(pr + j), (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
            }
            inv[i] = 1.0f / _mm512_reduce_add_ps(sum);
        }

        memset(ob, 0, (size_t)QB * dp * 4);
        const bf16 *pw = (const bf16 *)sb;
        const long ps = 2L * sp;
        for (int kb = 0; kb < sp / 2; kb += KB / 2) {
            const int ke = kb + KB / 2 < sp / 2 ? kb + KB / 2 : sp / 2;
            for (int i = 0; i < nr; i += rows) {
                for (int c0 = 0; c0 < full || (c0 == full && half);) {
                    int cn = rows == 8 ? full - c0 : (full - c0 < 5 ? full - c0 : 5);
                    if (rows == 4 && cn == 5 && half && c0 + cn == full) cn = 4; /* at most 5 vectors a tile */
                    const int hn = half && c0 + cn == full;
                    pv_kernel(rows, cn, hn)(pw + (long)i * ps, ps, vpk + 32L * c0, 2L * dp, kb, ke,
                                            ob + (long)i * dp + 16 * c0, dp);
                    c0 += cn + hn;
                }
            }
        }

        const __mmask16 dtail = (__mmask16)(dv % 16 ? (1u << (dv % 16)) - 1 : 0xffff);
        for (int i = 0; i < nq; i++) {
            const __m512 r = _mm512_set1_ps(inv[i]);
            bf16 *dst = out + (long)(q0 + i) * os;
            for (int d = 0; d < dv; d += 16) {
                const __mmask16 m = d + 16 <= dv ? 0xffff : dtail;
                const __m512 x = _mm512_maskz_loadu_ps(m, ob + (long)i * dp + d);
                _mm256_mask_storeu_epi16(dst + d, m, (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(x, r)));
            }
        }
    }
    free(kp); free(vpk); free(sb); free(qb); free(ob);
    return 0;
}

/* Every head of a (B, H, L, D) problem in one call, on the calling thread's OpenMP team: PyTorch's
 * own threads when this library shares PyTorch's libgomp, so no thread waits spinning on a core
 * the kernel needs. Strides are in elements: batch, head, row for each of q, k, v and out. With
 * fewer heads than threads, each head's queries are split in `split` ranges. Returns 0, or -1 if
 * a head failed (see gouache_attention_bf16). */
int gouache_attention_bf16_heads(const bf16 *q, const long *qst, const bf16 *k, const long *kst,
                                 const bf16 *v, const long *vst, bf16 *out, const long *ost,
                                 int batch, int heads, int lq, int s, int dk, int dv, float scale,
                                 int split, int threads) {
    const int units = batch * heads * split;
    const int step = (lq + split - 1) / split;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(| : failed)
    for (int u = 0; u < units; u++) {
        const int bh = u / split, part = u % split, b = bh / heads, h = bh % heads;
        const int q0 = part * step, q1 = q0 + step < lq ? q0 + step : lq;
        if (q0 >= q1) continue;
        failed |= gouache_attention_bf16(q + b * qst[0] + h * qst[1], qst[2], k + b * kst[0] + h * kst[1], kst[2],
                                         v + b * vst[0] + h * vst[1], vst[2], out + b * ost[0] + h * ost[1],
                                         ost[2], q0, q1, s, dk, dv, scale) != 0;
    }
    return failed ? -1 : 0;
}
