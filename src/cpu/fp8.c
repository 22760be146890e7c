/*
 * FP8 mode (FATTN_MODE_FP8) on the CPU: src/core/fp8.h's quantisation followed by attention on
 * the e4m3 values, the reference the GPU's FP8 kernels are held to. Plain C written for clarity;
 * the loops are shaped so the compiler vectorises them (scores over keys, P V over the head dim).
 *
 * Two passes, each spread over threads:
 *   1. per (batch, kv head): amax of K and V over the whole sequence, then every K row scaled,
 *      rotated, rounded to e4m3 (stored decoded, as fp32, transposed: [D][keys]) and every V row
 *      scaled and rounded ([keys][D]);
 *   2. per (batch, query head, block of 64 query rows), the Q scale's granularity: the block's
 *      amax and e4m3 rows, then the online softmax over blocks of FP8_BLOCK_KV keys.
 * Every value the products read is an e4m3 value, so each product is exact in fp32 and the result
 * does not depend on FMA contraction or vector width; each work item is computed by one thread in
 * a fixed order, so it does not depend on the thread count either.
 */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "core/fp8.h"
#include "cpu.h"

/* Keys per online-softmax step: the Hopper FP8 kernel's block, so that P is rounded against the
 * same running maxima there and here. */
#define FP8_BLOCK_KV 128
#define FP8_ROWS FATTN_FP8_Q_BLOCK

typedef struct fp8_plan {
    const fattn_params *p;
    int64_t D, group, q_blocks, kv_shift;
    float scale_log2;
    float *k8t;     /* [batch * heads_kv][D][seqlen_kv] */
    float *v8;      /* [batch * heads_kv][seqlen_kv][D] */
    int *ek, *ev;   /* [batch * heads_kv] */
    int *kv_inf;    /* [batch * heads_kv]: bit 0 K's amax is Inf, bit 1 V's */
} fp8_plan;

/* One thread's scratch for pass 2. */
typedef struct fp8_scratch {
    float *q8;  /* [FP8_ROWS][D] */
    float *s;   /* [FP8_ROWS][FP8_BLOCK_KV]: scores, then probabilities */
    float *acc; /* [FP8_ROWS][D] */
    float *m, *l;
} fp8_scratch;

typedef void (*fp8_item_fn)(const fp8_plan *plan, fp8_scratch *ws, int64_t item);

typedef struct fp8_worker {
    const fp8_plan *plan;
    fp8_scratch ws;
    float *memory;
    fp8_item_fn fn;
    atomic_llong *next;
    int64_t items;
} fp8_worker;

static float decode_rn(float x)
{
    return fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn(x));
}

/* NaN elements are passed over (as fmaxf does): they reach the output through their own rows. */
static float amax_update(float amax, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > amax)
            amax = fabsf(x[i]);
    return amax;
}

/* q8/k8 = e4m3(R(x * 2^-e) * c), in place, as decoded fp32. */
static void quantise_rotated(float *x, int64_t D, int e)
{
    const float c = fattn_fp8_c((int)D);
    for (int64_t d = 0; d < D; d++)
        x[d] = fattn_fp8_scale2(x[d], -e);
    fattn_fp8_rotate(x, (int)D);
    for (int64_t d = 0; d < D; d++)
        x[d] = decode_rn(x[d] * c);
}

static void quantise_kv(const fp8_plan *plan, fp8_scratch *ws, int64_t slot)
{
    (void)ws;
    const fattn_params *p = plan->p;
    const int64_t D = plan->D, S = p->seqlen_kv, b = slot / p->heads_kv, g = slot % p->heads_kv;
    const int64_t k_at = b * p->k.stride_batch + g * p->k.stride_head;
    const int64_t v_at = b * p->v.stride_batch + g * p->v.stride_head;
    float row[FATTN_HEAD_DIM_MAX];
    float ka = 0.0f, va = 0.0f;
    for (int64_t s = 0; s < S; s++) {
        fattn_load_row(p->k.data, k_at + s * p->k.stride_seq, p->dtype, D, row);
        ka = amax_update(ka, row, D);
        fattn_load_row(p->v.data, v_at + s * p->v.stride_seq, p->dtype, D, row);
        va = amax_update(va, row, D);
    }
    const int ek = fattn_fp8_exponent(ka), ev = fattn_fp8_exponent(va);
    plan->ek[slot] = ek;
    plan->ev[slot] = ev;
    plan->kv_inf[slot] = (isinf(ka) ? 1 : 0) | (isinf(va) ? 2 : 0);
    float *kt = plan->k8t + slot * D * S, *v8 = plan->v8 + slot * S * D;
    for (int64_t s = 0; s < S; s++) {
        fattn_load_row(p->k.data, k_at + s * p->k.stride_seq, p->dtype, D, row);
        quantise_rotated(row, D, ek);
        for (int64_t d = 0; d < D; d++)
            kt[d * S + s] = row[d];
        fattn_load_row(p->v.data, v_at + s * p->v.stride_seq, p->dtype, D, row);
        for (int64_t d = 0; d < D; d++)
            v8[s * D + d] = decode_rn(fattn_fp8_scale2(row[d], FATTN_FP8_V_SHIFT - ev));
    }
}

/* Scores of the block's rows against keys j0 .. j0 + cols, base-2 logits, causal mask applied. */
static void scores(const fp8_plan *plan, fp8_scratch *ws, const float *kt, int64_t rows,
                   int64_t cols, int64_t j0, int64_t diag, float factor)
{
    const int64_t D = plan->D, S = plan->p->seqlen_kv;
    for (int64_t r = 0; r < rows; r++) {
        float *s = ws->s + r * FP8_BLOCK_KV;
        for (int64_t j = 0; j < cols; j++)
            s[j] = 0.0f;
        for (int64_t d = 0; d < D; d++) {
            const float q = ws->q8[r * D + d];
            const float *k = kt + d * S + j0;
            for (int64_t j = 0; j < cols; j++)
                s[j] += q * k[j];
        }
        /* Query row r sees keys t <= r + diag. */
        const int64_t visible = plan->p->causal ? r + diag + 1 - j0 : cols;
        for (int64_t j = 0; j < cols; j++)
            s[j] = j < visible ? s[j] * factor : -INFINITY;
    }
}

/* The online softmax's step for one row: new running max, P in place, rounded P for P V. */
static void softmax_step(fp8_scratch *ws, const float *v8, int64_t r, int64_t cols, int64_t D)
{
    float *s = ws->s + r * FP8_BLOCK_KV, *acc = ws->acc + r * D;
    float mx = -INFINITY;
    for (int64_t j = 0; j < cols; j++)
        mx = s[j] > mx ? s[j] : mx;
    const float m_old = ws->m[r], m_new = mx > m_old ? mx : m_old;
    /* While a row has seen only masked keys its maximum is -Inf; 0 keeps -Inf - -Inf out. */
    const float shift = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m_old - shift);
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; j++) {
        s[j] = exp2f(s[j] - shift);
        sum += s[j];
    }
    ws->l[r] = ws->l[r] * alpha + sum;
    ws->m[r] = m_new;
    if (alpha != 1.0f)
        for (int64_t d = 0; d < D; d++)
            acc[d] *= alpha;
    for (int64_t j = 0; j < cols; j++) {
        const float p8 = decode_rn(s[j] * FATTN_FP8_P_SCALE);
        if (p8 == 0.0f)
            continue;
        const float *v = v8 + j * D;
        for (int64_t d = 0; d < D; d++)
            acc[d] += p8 * v[d];
    }
}

static void attend(const fp8_plan *plan, fp8_scratch *ws, int64_t item)
{
    const fattn_params *p = plan->p;
    const int64_t D = plan->D, S = p->seqlen_kv;
    const int64_t qb = item % plan->q_blocks, h = item / plan->q_blocks % p->heads_q;
    const int64_t b = item / plan->q_blocks / p->heads_q;
    const int64_t slot = b * p->heads_kv + h / plan->group;
    const int64_t i0 = qb * FP8_ROWS;
    const int64_t rows = p->seqlen_q - i0 < FP8_ROWS ? p->seqlen_q - i0 : FP8_ROWS;
    const int64_t diag = i0 + plan->kv_shift;

    float qa = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        float *q = ws->q8 + r * D;
        fattn_load_row(p->q.data,
                       b * p->q.stride_batch + (i0 + r) * p->q.stride_seq + h * p->q.stride_head,
                       p->dtype, D, q);
        qa = amax_update(qa, q, D);
    }
    const int eq = fattn_fp8_exponent(qa), ek = plan->ek[slot], ev = plan->ev[slot];
    for (int64_t r = 0; r < rows; r++)
        quantise_rotated(ws->q8 + r * D, D, eq);
    const float c = fattn_fp8_c((int)D);
    const float n = (float)fattn_fp8_hadamard_n((int)D);
    /* An infinite amax has no scale; NaN factors make the rows it reaches NaN, as in native
     * mode (e4m3 has no Inf, so the rounded values alone would be finite). */
    float factor = fattn_fp8_scale2(plan->scale_log2 / (c * c * n), eq + ek);
    float v_factor = fattn_fp8_scale2(1.0f / FATTN_FP8_P_SCALE, ev - FATTN_FP8_V_SHIFT);
    if (isinf(qa) || (plan->kv_inf[slot] & 1))
        factor = NAN;
    if (plan->kv_inf[slot] & 2)
        v_factor = NAN;

    for (int64_t r = 0; r < rows; r++) {
        ws->m[r] = -INFINITY;
        ws->l[r] = 0.0f;
    }
    memset(ws->acc, 0, (size_t)(rows * D) * sizeof(float));
    const int64_t kv_end = p->causal ? (rows + diag < S ? rows + diag : S) : S;
    const float *kt = plan->k8t + slot * D * S, *v8 = plan->v8 + slot * S * D;
    for (int64_t j0 = 0; j0 < kv_end; j0 += FP8_BLOCK_KV) {
        const int64_t cols = kv_end - j0 < FP8_BLOCK_KV ? kv_end - j0 : FP8_BLOCK_KV;
        scores(plan, ws, kt, rows, cols, j0, diag, factor);
        for (int64_t r = 0; r < rows; r++)
            softmax_step(ws, v8 + j0 * D, r, cols, D);
    }

    float out[FATTN_HEAD_DIM_MAX];
    for (int64_t r = 0; r < rows; r++) {
        const int sees_keys = !p->causal || r + diag >= 0;
        const float l = ws->l[r];
        for (int64_t d = 0; d < D; d++)
            out[d] = sees_keys ? ws->acc[r * D + d] * v_factor / l : 0.0f;
        fattn_store_row(p->o.data,
                        b * p->o.stride_batch + (i0 + r) * p->o.stride_seq + h * p->o.stride_head,
                        p->dtype, D, out);
        if (p->lse)
            p->lse[(b * p->heads_q + h) * p->seqlen_q + i0 + r] =
                sees_keys ? (ws->m[r] + log2f(l)) * 0.6931471805599453f : -INFINITY;
    }
}

static void *worker_run(void *arg)
{
    fp8_worker *w = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(w->next, 1);
        if (i >= w->items)
            break;
        w->fn(w->plan, &w->ws, i);
    }
    return NULL;
}

/* Items 0 .. items of fn over up to `threads` workers. */
static void run_items(fp8_worker *workers, int64_t threads, fp8_item_fn fn, int64_t items)
{
    atomic_llong next = 0;
    if (threads > items)
        threads = items;
    for (int64_t t = 0; t < threads; t++) {
        workers[t].fn = fn;
        workers[t].next = &next;
        workers[t].items = items;
    }
    fattn_cpu_parallel(threads, worker_run, workers, sizeof *workers);
}

fattn_status fattn_cpu_forward_fp8(const fattn_params *params, int64_t threads)
{
    fp8_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.p = params;
    plan.D = params->head_dim;
    plan.group = params->heads_q / params->heads_kv;
    plan.q_blocks = (params->seqlen_q + FP8_ROWS - 1) / FP8_ROWS;
    plan.kv_shift = params->seqlen_kv - params->seqlen_q;
    plan.scale_log2 = (float)((double)fattn_effective_scale(params) * 1.4426950408889634);

    const int64_t slots = params->batch * params->heads_kv;
    const size_t kv_floats = (size_t)slots * (size_t)params->seqlen_kv * (size_t)plan.D;
    const size_t per_thread = 2 * FP8_ROWS * (size_t)plan.D + FP8_ROWS * FP8_BLOCK_KV + 2 * FP8_ROWS;
    if (threads < 1)
        threads = 1;
    fattn_status st = FATTN_OK;
    fp8_worker *workers = calloc((size_t)threads, sizeof *workers);
    plan.k8t = malloc(kv_floats * sizeof(float));
    plan.v8 = malloc(kv_floats * sizeof(float));
    plan.ek = malloc((size_t)slots * sizeof(int));
    plan.ev = malloc((size_t)slots * sizeof(int));
    plan.kv_inf = malloc((size_t)slots * sizeof(int));
    if (!workers || !plan.k8t || !plan.v8 || !plan.ek || !plan.ev || !plan.kv_inf) {
        st = fattn_fail(FATTN_ERR_OUT_OF_MEMORY,
                        "cannot allocate FP8 copies of K and V (2 x %zu floats)", kv_floats);
        goto done;
    }
    for (int64_t t = 0; t < threads; t++) {
        fp8_worker *w = &workers[t];
        w->plan = &plan;
        w->memory = malloc(per_thread * sizeof(float));
        if (!w->memory) {
            st = fattn_fail(FATTN_ERR_OUT_OF_MEMORY,
                            "cannot allocate FP8 scratch for thread %" PRId64 " of %" PRId64, t,
                            threads);
            goto done;
        }
        w->ws.q8 = w->memory;
        w->ws.acc = w->ws.q8 + FP8_ROWS * plan.D;
        w->ws.s = w->ws.acc + FP8_ROWS * plan.D;
        w->ws.m = w->ws.s + FP8_ROWS * FP8_BLOCK_KV;
        w->ws.l = w->ws.m + FP8_ROWS;
    }
    run_items(workers, threads, quantise_kv, slots);
    run_items(workers, threads, attend, params->batch * params->heads_q * plan.q_blocks);
    fattn_clear_error();
done:
    if (workers)
        for (int64_t t = 0; t < threads; t++)
            free(workers[t].memory);
    free(workers);
    free(plan.k8t);
    free(plan.v8);
    free(plan.ek);
    free(plan.ev);
    free(plan.kv_inf);
    return st;
}
