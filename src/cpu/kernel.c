/*
 * One work item of the CPU forward: a block of query rows of one (batch, head), streamed over
 * blocks of keys with an online softmax in base 2 and fp32 accumulation.
 *
 * This file is compiled once per ISA (FATTN_CPU_ISA names the variant; the -m flags pick the
 * vector width) and forward.c dispatches at run time. The two block products run through one
 * register-blocked micro-kernel written with GCC/Clang vector types, so the accumulators stay in
 * registers whatever the auto-vectoriser decides:
 *   S^T[c][r] = sum_d K[c][d] * Q^T[d][r]        (keys as rows: no per-block transpose)
 *   O[r][d]  += sum_c P^T[c][r] * V[c][d]
 * Keeping S transposed makes the softmax's per-row max and sum vertical vector operations.
 */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "cpu.h"

#ifndef FATTN_CPU_ISA
#error "FATTN_CPU_ISA must name the variant (generic, avx2, avx512)"
#endif
#define FATTN_CAT2(a, b) a##_##b
#define FATTN_CAT(a, b) FATTN_CAT2(a, b)
#define ITEM_FN FATTN_CAT(fattn_cpu_item, FATTN_CPU_ISA)

/* VW lanes per vector; MR x (NV * VW) accumulators fill most of the register file. */
#if defined(__AVX512F__)
#define VW 16
#define MR 8
#elif defined(__AVX2__)
#define VW 8
#define MR 4
#else
#define VW 4
#define MR 4
#endif
#define NV 2
#define NR (NV * VW)
#define BKV FATTN_CPU_BLOCK_KV

_Static_assert(BKV % MR == 0, "key block must hold whole micro-tiles");
_Static_assert(FATTN_CPU_DIM_ALIGN % NR == 0, "padded head dim must hold whole micro-tiles");

typedef float fvec __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t ivec __attribute__((vector_size(VW * sizeof(int32_t))));

static inline fvec vload(const float *p)
{
    fvec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, fvec v)
{
    memcpy(p, &v, sizeof v);
}

static inline fvec vsplat(float x)
{
    return (fvec){0} + x;
}

/* Lanes of a where mask is all ones, else lanes of b. */
static inline fvec vselect(ivec mask, fvec a, fvec b)
{
    return (fvec)(((ivec)a & mask) | ((ivec)b & ~mask));
}

static inline fvec vmax(fvec a, fvec b)
{
    return vselect(a > b, a, b);
}

/* 2^x for x <= 0, to about 1 ulp; x below -126 (including -Inf) gives 0. Round to the nearest
 * integer n with the 1.5*2^23 trick, then 2^f for f in [-0.5, 0.5] by its degree-7 Taylor
 * polynomial (truncation error below 2^-27), times 2^n built in the exponent field. */
static inline fvec vexp2(fvec x)
{
    const float magic = 0x1.8p23f;
    ivec under = x < vsplat(-126.0f);
    x = vselect(under, vsplat(-126.0f), x);
    fvec t = x + magic;
    fvec n = t - magic;
    fvec f = x - n;
    fvec p = vsplat(1.525273380405984e-05f);
    p = p * f + 1.5403530393381606e-04f;
    p = p * f + 1.3333558146428443e-03f;
    p = p * f + 9.6181291076284772e-03f;
    p = p * f + 5.5504108664821580e-02f;
    p = p * f + 2.4022650695910071e-01f;
    p = p * f + 6.9314718055994531e-01f;
    p = p * f + 1.0f;
    ivec ni = (ivec)t - (ivec)vsplat(magic);
    fvec pow2n = (fvec)((ni + 127) << 23);
    return vselect(under, vsplat(0.0f), p * pow2n);
}

/*
 * C[r][0..NR) (+)= sum_k A(r, k) * B[k][0..NR) for r in 0..MR, where A(r, k) = a[r*a_rs + k*a_ks].
 * The MR x NV accumulators live in registers for the whole k loop.
 */
static inline void micro_tile(int64_t kdim, const float *a, int64_t a_rs, int64_t a_ks,
                              const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate)
{
    fvec acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            acc[r][v] = accumulate ? vload(c + r * ldc + v * VW) : vsplat(0.0f);
    for (int64_t k = 0; k < kdim; k++) {
        fvec bv[NV];
        for (int v = 0; v < NV; v++)
            bv[v] = vload(b + k * ldb + v * VW);
        const float *ak = a + k * a_ks;
        for (int r = 0; r < MR; r++) {
            float s = ak[r * a_rs];
            for (int v = 0; v < NV; v++)
                acc[r][v] += s * bv[v];
        }
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++)
            vstore(c + r * ldc + v * VW, acc[r][v]);
}

static inline int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static inline int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

/*
 * Online-softmax update of one key block for query rows [r_lo, r_hi) (multiples of VW):
 * scales and masks S^T, takes the new running maxima, turns S^T into P^T and records each row's
 * rescale factor. `first_col` is the block's first key index; row r sees keys up to
 * r + diag (diag = i0 + kv_shift), all of them when not causal.
 */
static void softmax_block(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t cols,
                          int64_t r_lo, int64_t r_hi, int64_t first_col, int64_t diag)
{
    const int64_t ldq = plan->block_q;
    const int causal = plan->p.causal;
    const fvec scale = vsplat(plan->scale_log2);
    const fvec neg_inf = vsplat(-INFINITY);
    ivec lane;
    for (int i = 0; i < VW; i++)
        lane[i] = i;
    for (int64_t r = r_lo; r < r_hi; r += VW) {
        /* Row r + i keeps key column c when first_col + c <= r + i + diag. Clamped to the
         * block, the limit fits in int32 whatever the sequence lengths. */
        int64_t limit = r + diag - first_col;
        limit = limit < -VW ? -VW : limit > BKV ? BKV : limit;
        ivec row_limit = lane + (int32_t)limit;
        fvec mx = neg_inf;
        for (int64_t c = 0; c < cols; c++) {
            float *sp = ws->s_t + c * ldq + r;
            fvec x = vload(sp) * scale;
            if (causal)
                x = vselect((ivec){0} + (int32_t)c <= row_limit, x, neg_inf);
            vstore(sp, x);
            mx = vmax(mx, x);
        }
        fvec m_old = vload(ws->m + r);
        fvec m_new = vmax(m_old, mx);
        /* Rows that have seen no key keep max -Inf; subtract 0 instead so P stays 0, not NaN. */
        ivec empty = m_new == neg_inf;
        fvec shift = vselect(empty, vsplat(0.0f), m_new);
        fvec sum = vsplat(0.0f);
        for (int64_t c = 0; c < cols; c++) {
            float *sp = ws->s_t + c * ldq + r;
            fvec pr = vexp2(vload(sp) - shift);
            vstore(sp, pr);
            sum += pr;
        }
        fvec alpha = vexp2(m_old - shift);
        vstore(ws->alpha + r, alpha);
        vstore(ws->l + r, vload(ws->l + r) * alpha + sum);
        vstore(ws->m + r, m_new);
    }
}

void ITEM_FN(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t item)
{
    const fattn_params *p = &plan->p;
    const int64_t d = p->head_dim, dp = plan->dim_padded, ldq = plan->block_q;
    const int64_t qb = item % plan->q_blocks;
    const int64_t h = item / plan->q_blocks % p->heads_q;
    const int64_t b = item / plan->q_blocks / p->heads_q;
    const int64_t g = h / plan->group;
    const int64_t i0 = qb * plan->block_q;
    const int64_t rows = min64(plan->block_q, p->seqlen_q - i0);
    const int64_t rows_padded = round_up(rows, NR);
    const int64_t diag = i0 + plan->kv_shift;

    for (int64_t r = 0; r < rows; r++) {
        fattn_load_row(p->q.data, b * p->q.stride_batch + (i0 + r) * p->q.stride_seq + h * p->q.stride_head,
                 p->dtype, d, ws->row);
        for (int64_t k = 0; k < d; k++)
            ws->q_t[k * ldq + r] = ws->row[k];
    }
    for (int64_t k = 0; k < d; k++)
        for (int64_t r = rows; r < rows_padded; r++)
            ws->q_t[k * ldq + r] = 0.0f;
    for (int64_t r = 0; r < rows_padded; r++) {
        ws->m[r] = -INFINITY;
        ws->l[r] = 0.0f;
    }
    memset(ws->acc, 0, (size_t)(rows_padded * dp) * sizeof(float));

    /* The last row sees keys up to rows - 1 + diag. */
    int64_t kv_end = p->causal ? min64(p->seqlen_kv, rows + diag) : p->seqlen_kv;
    /* Head-dim columns the products cover: whole micro-tiles, zero-padded past head_dim. */
    const int64_t dn = round_up(d, NR);
    const int f32 = p->dtype == FATTN_DTYPE_F32;
    for (int64_t j0 = 0; j0 < kv_end; j0 += BKV) {
        const int64_t cols = min64(BKV, kv_end - j0);
        /* fp32 keys and values are read in place when the micro-tiles stay inside them: K is the
         * broadcast operand (any row stride) once the block holds whole micro-tiles of rows, V
         * the vector operand when head_dim is whole micro-tiles of columns. */
        const float *kb = ws->k, *vb = ws->v;
        int64_t ldk = dp, ldv = dp;
        const int64_t k_at = b * p->k.stride_batch + j0 * p->k.stride_seq + g * p->k.stride_head;
        const int64_t v_at = b * p->v.stride_batch + j0 * p->v.stride_seq + g * p->v.stride_head;
        if (f32 && cols % MR == 0) {
            kb = (const float *)p->k.data + k_at;
            ldk = p->k.stride_seq;
        } else {
            for (int64_t c = 0; c < cols; c++)
                fattn_load_row(p->k.data, k_at + c * p->k.stride_seq, p->dtype, d, ws->k + c * dp);
        }
        if (f32 && d == dn) {
            vb = (const float *)p->v.data + v_at;
            ldv = p->v.stride_seq;
        } else {
            for (int64_t c = 0; c < cols; c++)
                fattn_load_row(p->v.data, v_at + c * p->v.stride_seq, p->dtype, d, ws->v + c * dp);
        }
        /* Rows before j0 - diag see none of this block: they are skipped (P = 0, alpha = 1). */
        int64_t r_lo = p->causal ? max64(0, j0 - diag) : 0;
        r_lo = r_lo / NR * NR;
        const int64_t cols_padded = round_up(cols, MR);
        for (int64_t c = 0; c < cols_padded; c += MR)
            for (int64_t r = r_lo; r < rows_padded; r += NR)
                micro_tile(d, kb + c * ldk, ldk, 1, ws->q_t + r, ldq, ws->s_t + c * ldq + r,
                           ldq, 0);
        softmax_block(plan, ws, cols, r_lo, rows_padded, j0, diag);
        for (int64_t r = r_lo; r < rows_padded; r++) {
            float a = ws->alpha[r];
            if (a != 1.0f)
                for (int64_t k = 0; k < dn; k++)
                    ws->acc[r * dp + k] *= a;
        }
        for (int64_t r = r_lo; r < rows_padded; r += MR)
            for (int64_t k = 0; k < dn; k += NR)
                micro_tile(cols, ws->s_t + r, 1, ldq, vb + k, ldv, ws->acc + r * dp + k, dp, 1);
    }

    for (int64_t r = 0; r < rows; r++) {
        float l = ws->l[r];
        float *out = ws->row;
        if (l > 0.0f) {
            for (int64_t k = 0; k < d; k++)
                out[k] = ws->acc[r * dp + k] / l;
        } else {
            for (int64_t k = 0; k < d; k++)
                out[k] = 0.0f;
        }
        fattn_store_row(p->o.data, b * p->o.stride_batch + (i0 + r) * p->o.stride_seq + h * p->o.stride_head,
                  p->dtype, d, out);
        if (p->lse) {
            float lse = l > 0.0f ? (ws->m[r] + log2f(l)) * 0.6931471805599453f : -INFINITY;
            p->lse[(b * p->heads_q + h) * p->seqlen_q + i0 + r] = lse;
        }
    }
}
