#define _POSIX_C_SOURCE 200809L /* clock_gettime, getpid */

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_seed(const char *test_name)
{
    const char *env = getenv("FATTN_TEST_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    printf("%s: seed %llu (replay with FATTN_TEST_SEED=%llu)\n", test_name,
           (unsigned long long)seed, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

void tu_rng_init(tu_rng *rng, uint64_t seed)
{
    rng->state = seed;
}

/* splitmix64: tiny, fast, and every seed (0 included) gives a good stream. */
uint64_t tu_next_u64(tu_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_uniform(tu_rng *rng)
{
    return (double)(tu_next_u64(rng) >> 11) * 0x1p-53;
}

double tu_normal(tu_rng *rng)
{
    double u1 = 1.0 - tu_uniform(rng), u2 = tu_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t tu_randint(tu_rng *rng, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(tu_next_u64(rng) % (uint64_t)(hi - lo + 1));
}

/*
 * Rounds |x| (finite, non-negative) to a binary format with `mant_bits` stored mantissa bits and
 * exponent bias `bias`, returning the magnitude bits (exponent << mant_bits | mantissa) or the
 * Inf pattern on overflow. Exact in double: every float is a double, and nearbyint rounds to
 * nearest even in the default rounding mode.
 */
static uint32_t round_magnitude(double a, int mant_bits, int bias, int exp_all_ones)
{
    double min_normal = ldexp(1.0, 1 - bias);
    if (a < min_normal)
        return (uint32_t)nearbyint(a / ldexp(1.0, 1 - bias - mant_bits));
    int e;
    frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    int exponent = e - 1;
    double mant = nearbyint((a / ldexp(1.0, exponent) - 1.0) * ldexp(1.0, mant_bits));
    if (mant == ldexp(1.0, mant_bits)) {
        mant = 0;
        exponent++;
    }
    int field = exponent + bias;
    if (field >= exp_all_ones)
        return (uint32_t)exp_all_ones << mant_bits;
    return (uint32_t)field << mant_bits | (uint32_t)mant;
}

static double decode(uint32_t bits, int mant_bits, int exp_bits, int bias)
{
    uint32_t mant = bits & ((1u << mant_bits) - 1);
    uint32_t field = (bits >> mant_bits) & ((1u << exp_bits) - 1);
    double sign = bits >> (mant_bits + exp_bits) & 1 ? -1.0 : 1.0;
    if (field == (1u << exp_bits) - 1)
        return mant ? NAN : sign * INFINITY;
    if (field == 0)
        return sign * ldexp((double)mant, 1 - bias - mant_bits);
    return sign * ldexp(1.0 + ldexp((double)mant, -mant_bits), (int)field - bias);
}

static uint16_t encode(float x, int mant_bits, int exp_bits, int bias)
{
    uint16_t sign = signbit(x) ? (uint16_t)(1u << (mant_bits + exp_bits)) : 0;
    int all_ones = (1 << exp_bits) - 1;
    if (isnan(x))
        return (uint16_t)(sign | (uint32_t)all_ones << mant_bits | 1u << (mant_bits - 1));
    if (isinf(x))
        return (uint16_t)(sign | (uint32_t)all_ones << mant_bits);
    return (uint16_t)(sign | round_magnitude(fabs((double)x), mant_bits, bias, all_ones));
}

uint16_t tu_f32_to_f16(float x)
{
    return encode(x, 10, 5, 15);
}

float tu_f16_to_f32(uint16_t h)
{
    return (float)decode(h, 10, 5, 15);
}

uint16_t tu_f32_to_bf16(float x)
{
    return encode(x, 7, 8, 127);
}

float tu_bf16_to_f32(uint16_t h)
{
    return (float)decode(h, 7, 8, 127);
}

double tu_get(const void *buf, int64_t i, fattn_dtype dtype)
{
    switch (dtype) {
    case FATTN_DTYPE_F16:
        return tu_f16_to_f32(((const uint16_t *)buf)[i]);
    case FATTN_DTYPE_BF16:
        return tu_bf16_to_f32(((const uint16_t *)buf)[i]);
    default:
        return ((const float *)buf)[i];
    }
}

void tu_set(void *buf, int64_t i, fattn_dtype dtype, double value)
{
    switch (dtype) {
    case FATTN_DTYPE_F16:
        ((uint16_t *)buf)[i] = tu_f32_to_f16((float)value);
        break;
    case FATTN_DTYPE_BF16:
        ((uint16_t *)buf)[i] = tu_f32_to_bf16((float)value);
        break;
    default:
        ((float *)buf)[i] = (float)value;
    }
}

void tu_poison(void *buf, int64_t count, fattn_dtype dtype)
{
    for (int64_t i = 0; i < count; i++)
        tu_set(buf, i, dtype, NAN);
}

const char *tu_layout_name(tu_layout layout)
{
    switch (layout) {
    case TU_BSHD:
        return "BSHD";
    case TU_BHSD:
        return "BHSD";
    case TU_PACKED_QKV:
        return "packed-QKV";
    }
    return "unknown";
}

static fattn_tensor make_view(tu_layout layout, char *base, size_t elem, int64_t offset,
                              int64_t seqlen, int64_t heads, int64_t row)
{
    fattn_tensor t;
    t.data = base + (size_t)offset * elem;
    if (layout == TU_BHSD) {
        t.stride_seq = row;
        t.stride_head = seqlen * row;
        t.stride_batch = heads * seqlen * row;
    } else {
        t.stride_head = row;
        t.stride_seq = heads * row;
        t.stride_batch = seqlen * heads * row;
    }
    return t;
}

int tu_problem_init(tu_problem *pr, const tu_shape *s, tu_rng *rng, double input_scale)
{
    memset(pr, 0, sizeof *pr);
    pr->shape = *s;
    size_t elem = fattn_dtype_size(s->dtype);
    int64_t d = s->head_dim;
    int64_t nq = s->batch * s->seqlen_q * s->heads_q * d;
    int64_t nkv = s->batch * s->seqlen_kv * s->heads_kv * d;
    fattn_params *p = &pr->params;
    if (s->layout == TU_PACKED_QKV && (s->seqlen_q != s->seqlen_kv || s->heads_q != s->heads_kv)) {
        fprintf(stderr, "packed QKV needs seqlen_q == seqlen_kv and heads_q == heads_kv\n");
        return -1;
    }
    int64_t in_count = nq + 2 * nkv;
    pr->in_bytes = (size_t)in_count * elem;
    pr->out_count = s->batch * s->seqlen_q * s->heads_q * (d + s->out_gap);
    pr->out_bytes = (size_t)pr->out_count * elem;
    pr->in_buf = malloc(pr->in_bytes);
    pr->out_buf = malloc(pr->out_bytes);
    pr->lse_count = s->with_lse ? s->batch * s->heads_q * s->seqlen_q : 0;
    pr->lse = s->with_lse ? malloc((size_t)pr->lse_count * sizeof(float)) : NULL;
    if (!pr->in_buf || !pr->out_buf || (s->with_lse && !pr->lse)) {
        fprintf(stderr, "tu_problem_init: out of memory\n");
        tu_problem_free(pr);
        return -1;
    }
    for (int64_t i = 0; i < in_count; i++)
        tu_set(pr->in_buf, i, s->dtype, tu_normal(rng) * input_scale);

    fattn_params_bshd(p, s->batch, s->seqlen_q, s->seqlen_kv, s->heads_q, s->heads_kv, d,
                      s->dtype, NULL, NULL, NULL, NULL);
    p->causal = s->causal;
    p->scale = s->scale;
    char *in = pr->in_buf;
    if (s->layout == TU_PACKED_QKV) {
        int64_t h = s->heads_q, seq = s->seqlen_q;
        for (int i = 0; i < 3; i++) {
            fattn_tensor t = {in + (size_t)(i * h * d) * elem, seq * 3 * h * d, 3 * h * d, d};
            *(i == 0 ? &p->q : i == 1 ? &p->k : &p->v) = t;
        }
        p->o = make_view(TU_BSHD, pr->out_buf, elem, 0, s->seqlen_q, s->heads_q, d + s->out_gap);
    } else {
        p->q = make_view(s->layout, in, elem, 0, s->seqlen_q, s->heads_q, d);
        p->k = make_view(s->layout, in, elem, nq, s->seqlen_kv, s->heads_kv, d);
        p->v = make_view(s->layout, in, elem, nq + nkv, s->seqlen_kv, s->heads_kv, d);
        p->o = make_view(s->layout, pr->out_buf, elem, 0, s->seqlen_q, s->heads_q, d + s->out_gap);
    }
    p->lse = pr->lse;
    tu_problem_poison(pr);
    return 0;
}

void tu_problem_free(tu_problem *pr)
{
    free(pr->in_buf);
    free(pr->out_buf);
    free(pr->lse);
    memset(pr, 0, sizeof *pr);
}

static void *rebase(const void *ptr, const void *old_base, void *new_base)
{
    return (char *)new_base + ((const char *)ptr - (const char *)old_base);
}

void tu_problem_rebase(const tu_problem *pr, fattn_params *params, void *in_buf, void *out_buf,
                       float *lse)
{
    *params = pr->params;
    params->q.data = rebase(pr->params.q.data, pr->in_buf, in_buf);
    params->k.data = rebase(pr->params.k.data, pr->in_buf, in_buf);
    params->v.data = rebase(pr->params.v.data, pr->in_buf, in_buf);
    params->o.data = rebase(pr->params.o.data, pr->out_buf, out_buf);
    params->lse = pr->lse ? lse : NULL;
}

void tu_problem_poison(tu_problem *pr)
{
    tu_poison(pr->out_buf, pr->out_count, pr->shape.dtype);
    for (int64_t i = 0; i < pr->lse_count; i++)
        pr->lse[i] = NAN;
}

static int64_t elem_index(const fattn_tensor *t, int64_t b, int64_t s, int64_t h, int64_t d)
{
    return b * t->stride_batch + s * t->stride_seq + h * t->stride_head + d;
}

/* One query row; scores has seqlen_kv entries, qrow head_dim. */
static void reference_row(const fattn_params *p, int64_t b, int64_t h, int64_t i, double *scores,
                          double *qrow, double *o, double *lse)
{
    const int64_t d = p->head_dim, skv = p->seqlen_kv, g = h / (p->heads_q / p->heads_kv);
    double scale = p->scale != 0.0f ? (double)p->scale : 1.0 / sqrt((double)d);
    for (int64_t k = 0; k < d; k++)
        qrow[k] = tu_get(p->q.data, elem_index(&p->q, b, i, h, k), p->dtype);
    /* Bottom-right causal alignment: query i sees keys t <= i + skv - sq. */
    int64_t visible = p->causal ? i + skv - p->seqlen_q + 1 : skv;
    if (visible > skv)
        visible = skv;
    double mx = -INFINITY;
    for (int64_t t = 0; t < visible; t++) {
        double acc = 0;
        for (int64_t k = 0; k < d; k++)
            acc += qrow[k] * tu_get(p->k.data, elem_index(&p->k, b, t, g, k), p->dtype);
        scores[t] = acc * scale;
        mx = fmax(mx, scores[t]);
    }
    double sum = 0;
    for (int64_t t = 0; t < visible; t++) {
        scores[t] = exp(scores[t] - mx);
        sum += scores[t];
    }
    for (int64_t k = 0; k < d; k++) {
        double acc = 0;
        for (int64_t t = 0; t < visible; t++)
            acc += scores[t] * tu_get(p->v.data, elem_index(&p->v, b, t, g, k), p->dtype);
        o[k] = visible > 0 ? acc / sum : 0.0;
    }
    if (lse)
        *lse = visible > 0 ? mx + log(sum) : -INFINITY;
}

int tu_reference_row(const fattn_params *p, int64_t b, int64_t h, int64_t i, double *out,
                     double *lse)
{
    double *scores = malloc((size_t)p->seqlen_kv * sizeof(double));
    double *qrow = malloc((size_t)p->head_dim * sizeof(double));
    if (scores && qrow)
        reference_row(p, b, h, i, scores, qrow, out, lse);
    int rc = scores && qrow ? 0 : -1;
    free(scores);
    free(qrow);
    return rc;
}

int tu_reference(const fattn_params *p, double *out, double *lse)
{
    double *scores = malloc((size_t)p->seqlen_kv * sizeof(double));
    double *qrow = malloc((size_t)p->head_dim * sizeof(double));
    if (scores && qrow)
        for (int64_t b = 0; b < p->batch; b++)
            for (int64_t h = 0; h < p->heads_q; h++)
                for (int64_t i = 0; i < p->seqlen_q; i++)
                    reference_row(p, b, h, i, scores, qrow,
                                  out + ((b * p->seqlen_q + i) * p->heads_q + h) * p->head_dim,
                                  lse ? lse + (b * p->heads_q + h) * p->seqlen_q + i : NULL);
    int rc = scores && qrow ? 0 : -1;
    free(scores);
    free(qrow);
    return rc;
}

static int compare_output(const tu_problem *pr, const void *out_host, const float *lse_host,
                          const double *ref, const double *ref_lse, tu_check *c);

int tu_check_output(const tu_problem *pr, const void *out_host, const float *lse_host,
                    tu_check *c)
{
    return tu_check_output_with(pr, out_host, lse_host, tu_reference, c);
}

int tu_check_output_with(const tu_problem *pr, const void *out_host, const float *lse_host,
                         tu_reference_fn reference, tu_check *c)
{
    const fattn_params *p = &pr->params;
    int64_t n = p->batch * p->seqlen_q * p->heads_q * p->head_dim;
    double *ref = malloc((size_t)n * sizeof(double));
    double *ref_lse = pr->lse ? malloc((size_t)pr->lse_count * sizeof(double)) : NULL;
    int rc = -1;
    if (ref && (!pr->lse || ref_lse) && reference(p, ref, ref_lse) == 0)
        rc = compare_output(pr, out_host, lse_host, ref, ref_lse, c);
    free(ref);
    free(ref_lse);
    return rc;
}

static int compare_output(const tu_problem *pr, const void *out_host, const float *lse_host,
                          const double *ref, const double *ref_lse, tu_check *c)
{
    const fattn_params *p = &pr->params;
    const int64_t d = p->head_dim;
    const void *out = out_host ? out_host : pr->out_buf;
    const float *lse_got = lse_host ? lse_host : pr->lse;
    unsigned char *in_view = calloc((size_t)pr->out_count, 1);
    if (!in_view)
        return -1;
    memset(c, 0, sizeof *c);
    double err2 = 0, ref2 = 0;
    int64_t base = ((const char *)p->o.data - (const char *)pr->out_buf) /
                   (int64_t)fattn_dtype_size(p->dtype);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t i = 0; i < p->seqlen_q; i++)
            for (int64_t h = 0; h < p->heads_q; h++)
                for (int64_t k = 0; k < d; k++) {
                    int64_t at = base + elem_index(&p->o, b, i, h, k);
                    in_view[at] = 1;
                    double got = tu_get(out, at, p->dtype);
                    double want = ref[((b * p->seqlen_q + i) * p->heads_q + h) * d + k];
                    if (isnan(got)) {
                        c->unwritten++;
                        continue;
                    }
                    double e = fabs(got - want);
                    c->max_abs = fmax(c->max_abs, e);
                    err2 += e * e;
                    ref2 += want * want;
                }
    for (int64_t at = 0; at < pr->out_count; at++)
        if (!in_view[at] && !isnan(tu_get(out, at, p->dtype)))
            c->stray++;
    c->rel_l2 = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    for (int64_t i = 0; i < pr->lse_count; i++) {
        double want = ref_lse[i], got = lse_got[i];
        if (isnan(got) || (isinf(want) != isinf(got))) {
            c->lse_bad++;
            continue;
        }
        if (!isinf(want))
            c->lse_max_abs = fmax(c->lse_max_abs, fabs(got - want));
    }
    free(in_view);
    return 0;
}

int tu_check_passes(const tu_problem *pr, const tu_check *c, double bound, double lse_bound)
{
    const tu_shape *s = &pr->shape;
    int ok = c->rel_l2 <= bound && c->unwritten == 0 && c->stray == 0 && c->lse_bad == 0 &&
             c->lse_max_abs <= lse_bound;
    printf("%-4s %-10s B=%lld Sq=%lld Skv=%lld H=%lld/%lld D=%lld causal=%d gap=%lld lse=%d: "
           "rel_l2 %.3g (<= %.3g) max_abs %.3g lse_err %.3g unwritten %lld stray %lld "
           "lse_bad %lld %s\n",
           fattn_dtype_name(s->dtype), tu_layout_name(s->layout), (long long)s->batch,
           (long long)s->seqlen_q, (long long)s->seqlen_kv, (long long)s->heads_q,
           (long long)s->heads_kv, (long long)s->head_dim, s->causal, (long long)s->out_gap,
           s->with_lse, c->rel_l2, bound, c->max_abs, c->lse_max_abs, (long long)c->unwritten,
           (long long)c->stray, (long long)c->lse_bad, ok ? "ok" : "FAIL");
    fflush(stdout);
    return ok;
}

double tu_design_bound(fattn_dtype dtype)
{
    switch (dtype) {
    case FATTN_DTYPE_F16:
        return 5e-3;
    case FATTN_DTYPE_BF16:
        return 1e-2;
    default:
        return 1e-3;
    }
}
