/* float64 FP8-mode references (fp8ref.h). */
#include "fp8ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/fp8.h"
#include "testutil.h"

#define Q_ROWS 64     /* query rows per Q scale */
#define KEY_BLOCK 128 /* keys per online-softmax step: P is rounded against this running max */
#define FATTN_HEAD_DIM_MAX_REF 256

static const uint64_t sign_words[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull,
                                       0xA4093822299F31D0ull, 0x082EFA98EC4E6C89ull};

static double e4m3(double x)
{
    return fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn((float)x));
}

/* The seed's cast: no saturation, so what would round beyond 448 is NaN. */
static double e4m3_bare(double x)
{
    return fabs(x) >= 464.0 ? NAN : e4m3(x);
}

static int exponent_of(double amax)
{
    int e;
    if (amax == 0.0 || !isfinite(amax))
        return 0;
    frexp(amax, &e);
    return e - 1;
}

static int64_t at(const fattn_tensor *t, int64_t b, int64_t s, int64_t h, int64_t d)
{
    return b * t->stride_batch + s * t->stride_seq + h * t->stride_head + d;
}

static double get(const fattn_params *p, const fattn_tensor *t, int64_t b, int64_t s, int64_t h,
                  int64_t d)
{
    return tu_get(t->data, at(t, b, s, h, d), p->dtype);
}

static int64_t chunk_of(int64_t D)
{
    int64_t n = 1;
    while (D % (2 * n) == 0)
        n *= 2;
    return n;
}

/* x = e4m3(R(x * 2^-e) * c). The transform runs in fp32, stage by stage, as the definition
 * says: a rotation in double would round a few values to the other e4m3 neighbour. */
static void quantise_rotated(double *x, int64_t D, int e)
{
    const int64_t n = chunk_of(D);
    const double c = pow(2.0, floor(log2(224.0 / (double)n)));
    float t[FATTN_HEAD_DIM_MAX_REF];
    for (int64_t d = 0; d < D; d++)
        t[d] = (float)ldexp(x[d], -e) * (((sign_words[d / 64] >> (d % 64)) & 1) ? -1.0f : 1.0f);
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t start = 0; start < D; start += 2 * h)
            for (int64_t j = start; j < start + h; j++) {
                const float lo = t[j], hi = t[j + h];
                t[j] = lo + hi;
                t[j + h] = lo - hi;
            }
    for (int64_t d = 0; d < D; d++)
        x[d] = e4m3((double)t[d] * c);
}

static int64_t visible_keys(const fattn_params *p, int64_t i)
{
    int64_t v = p->causal ? i + p->seqlen_kv - p->seqlen_q + 1 : p->seqlen_kv;
    return v > p->seqlen_kv ? p->seqlen_kv : v;
}

static double scale_of(const fattn_params *p)
{
    return p->scale != 0.0f ? (double)p->scale : 1.0 / sqrt((double)p->head_dim);
}

/* One (batch, kv head)'s K and V as e4m3 values, [key][D], and their exponents. */
typedef struct kv8 {
    double *k, *v;
    int ek, ev, k_inf, v_inf;
} kv8;

static void quantise_kv(const fattn_params *p, int64_t b, int64_t g, kv8 *kv)
{
    const int64_t D = p->head_dim, S = p->seqlen_kv;
    double ka = 0, va = 0;
    for (int64_t s = 0; s < S; s++)
        for (int64_t d = 0; d < D; d++) {
            double k = fabs(get(p, &p->k, b, s, g, d)), v = fabs(get(p, &p->v, b, s, g, d));
            ka = k > ka ? k : ka; /* NaN passed over */
            va = v > va ? v : va;
        }
    kv->ek = exponent_of(ka);
    kv->ev = exponent_of(va);
    kv->k_inf = isinf(ka);
    kv->v_inf = isinf(va);
    for (int64_t s = 0; s < S; s++) {
        double *k = kv->k + s * D, *v = kv->v + s * D;
        for (int64_t d = 0; d < D; d++) {
            k[d] = get(p, &p->k, b, s, g, d);
            v[d] = e4m3(ldexp(get(p, &p->v, b, s, g, d), 7 - kv->ev));
        }
        quantise_rotated(k, D, kv->ek);
    }
}

/* The Q block of rows i0 .. i0 + rows of (b, h) as e4m3 values into q8, and the factors that
 * turn its products with kv into base-2 logits and P V into the output. */
typedef struct q_block {
    double *q8;
    double factor, v_factor;
} q_block;

static void quantise_q(const fattn_params *p, const kv8 *kv, int64_t b, int64_t h, int64_t i0,
                       int64_t rows, q_block *qb)
{
    const int64_t D = p->head_dim, n = chunk_of(D);
    const double c = pow(2.0, floor(log2(224.0 / (double)n)));
    double qa = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t d = 0; d < D; d++) {
            qb->q8[r * D + d] = get(p, &p->q, b, i0 + r, h, d);
            qa = fabs(qb->q8[r * D + d]) > qa ? fabs(qb->q8[r * D + d]) : qa;
        }
    const int eq = exponent_of(qa);
    for (int64_t r = 0; r < rows; r++)
        quantise_rotated(qb->q8 + r * D, D, eq);
    /* an infinite amax has no scale and poisons what it reaches */
    qb->factor = isinf(qa) || kv->k_inf ? NAN
                                        : scale_of(p) / log(2.0) * ldexp(1.0, eq + kv->ek) /
                                              (c * c * (double)n);
    qb->v_factor = kv->v_inf ? NAN : ldexp(1.0, kv->ev - 7) / 256.0;
}

/* How far an fp32 implementation's 256 p may sit from double's, relative: its logits differ by
 * ~1e-7 (fp32 sums and exp2), and this leaves a hundredfold margin. */
#define P_TOLERANCE 1e-5

/* Query row i given its e4m3 values q8 and its Q block's factors. slack (NULL: not wanted) gets,
 * per output element, what the P values within P_TOLERANCE of an e4m3 rounding midpoint may
 * move it by: those an fp32 implementation may round to the other neighbour, legitimately. */
static void attend_row(const fattn_params *p, const kv8 *kv, int64_t i, const double *q8,
                       const q_block *qb, double *acc, double *out, double *lse, double *slack)
{
    const int64_t D = p->head_dim, visible = visible_keys(p, i);
    if (slack)
        for (int64_t d = 0; d < D; d++)
            slack[d] = 0.0;
    if (visible <= 0) {
        for (int64_t d = 0; d < D; d++)
            out[d] = 0.0;
        if (lse)
            *lse = -INFINITY;
        return;
    }
    double m = -INFINITY, l = 0;
    for (int64_t d = 0; d < D; d++)
        acc[d] = 0;
    for (int64_t j0 = 0; j0 < visible; j0 += KEY_BLOCK) {
        const int64_t j1 = j0 + KEY_BLOCK < visible ? j0 + KEY_BLOCK : visible;
        double s[KEY_BLOCK], mx = -INFINITY;
        for (int64_t t = j0; t < j1; t++) {
            const double *k = kv->k + t * D;
            double dot = 0;
            for (int64_t d = 0; d < D; d++)
                dot += q8[d] * k[d];
            s[t - j0] = dot * qb->factor;
            mx = fmax(mx, s[t - j0]);
        }
        const double m_new = fmax(m, mx);
        const double alpha = m == -INFINITY ? 0.0 : exp2(m - m_new);
        l *= alpha;
        for (int64_t d = 0; d < D; d++) {
            acc[d] *= alpha;
            if (slack)
                slack[d] *= alpha;
        }
        for (int64_t t = j0; t < j1; t++) {
            const double pr = exp2(s[t - j0] - m_new), p8 = e4m3(pr * 256.0);
            const double *v = kv->v + t * D;
            l += pr;
            for (int64_t d = 0; d < D; d++)
                acc[d] += p8 * v[d];
            const double flip = slack ? e4m3(pr * 256.0 * (1 + P_TOLERANCE)) - e4m3(pr * 256.0 * (1 - P_TOLERANCE)) : 0;
            for (int64_t d = 0; flip != 0 && d < D; d++)
                slack[d] += flip * fabs(v[d]);
        }
        m = m_new;
    }
    for (int64_t d = 0; d < D; d++) {
        out[d] = acc[d] * qb->v_factor / l;
        if (slack)
            slack[d] *= fabs(qb->v_factor) / l;
    }
    if (lse)
        *lse = (m + log2(l)) * log(2.0);
}

/* Every row (rows NULL: out and lse in tu_reference's layout) or the n listed (b, h, i) rows
 * (out and lse in the list's order). One kv head at a time, so memory stays at one head's K/V. */
static int reference(const fattn_params *p, const int64_t *rows, int64_t n, double *out,
                     double *lse, double *slack)
{
    const int64_t D = p->head_dim, S = p->seqlen_kv, group = p->heads_q / p->heads_kv;
    kv8 kv = {malloc((size_t)(S * D) * sizeof(double)), malloc((size_t)(S * D) * sizeof(double)),
              0, 0, 0, 0};
    q_block qb = {malloc((size_t)(Q_ROWS * D) * sizeof(double)), 0, 0};
    double *acc = malloc((size_t)D * sizeof(double));
    int rc = -1;
    if (!kv.k || !kv.v || !qb.q8 || !acc)
        goto done;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t g = 0; g < p->heads_kv; g++) {
            quantise_kv(p, b, g, &kv);
            for (int64_t h = g * group; h < (g + 1) * group; h++)
                for (int64_t i0 = 0; i0 < p->seqlen_q; i0 += Q_ROWS) {
                    const int64_t len = p->seqlen_q - i0 < Q_ROWS ? p->seqlen_q - i0 : Q_ROWS;
                    int quantised = 0;
                    for (int64_t r = 0; r < (rows ? n : len); r++) {
                        int64_t i = i0 + r, o = (b * p->seqlen_q + i) * p->heads_q + h,
                                l = (b * p->heads_q + h) * p->seqlen_q + i;
                        if (rows) {
                            i = rows[3 * r + 2];
                            if (rows[3 * r] != b || rows[3 * r + 1] != h || i < i0 || i >= i0 + len)
                                continue;
                            o = l = r;
                        }
                        if (!quantised)
                            quantise_q(p, &kv, b, h, i0, len, &qb);
                        quantised = 1;
                        attend_row(p, &kv, i, qb.q8 + (i - i0) * D, &qb, acc, out + o * D,
                                   lse ? lse + l : NULL, slack ? slack + o * D : NULL);
                    }
                }
        }
    rc = 0;
done:
    free(kv.k);
    free(kv.v);
    free(qb.q8);
    free(acc);
    return rc;
}

int tu_fp8_reference(const fattn_params *p, double *out, double *lse)
{
    return reference(p, NULL, 0, out, lse, NULL);
}

int tu_fp8_reference_slack(const fattn_params *p, double *out, double *slack)
{
    return reference(p, NULL, 0, out, NULL, slack);
}

int tu_fp8_reference_rows(const fattn_params *p, const int64_t *rows, int64_t n, double *out,
                          double *lse)
{
    return reference(p, rows, n, out, lse, NULL);
}

/* Row i of (b, h) by the bare cast, K and V of its kv head already cast (k8, v8: [key][D]). */
static void bare_row(const fattn_params *p, const double *k8, const double *v8, int64_t b, int64_t h,
                     int64_t i, double *s, double *q8, double *acc, double *out)
{
    const int64_t D = p->head_dim, visible = visible_keys(p, i);
    for (int64_t d = 0; d < D; d++) {
        q8[d] = e4m3_bare(get(p, &p->q, b, i, h, d));
        acc[d] = 0;
    }
    double mx = -INFINITY, sum = 0;
    for (int64_t t = 0; t < visible; t++) {
        double dot = 0;
        for (int64_t d = 0; d < D; d++)
            dot += q8[d] * k8[t * D + d];
        s[t] = dot * scale_of(p);
        mx = fmax(mx, s[t]);
    }
    for (int64_t t = 0; t < visible; t++) {
        const double pr = exp(s[t] - mx), p8 = e4m3_bare(pr);
        sum += pr;
        for (int64_t d = 0; d < D; d++)
            acc[d] += p8 * v8[t * D + d];
    }
    for (int64_t d = 0; d < D; d++)
        out[d] = visible > 0 ? acc[d] / sum : 0.0;
}

int tu_fp8_bare_rows(const fattn_params *p, const int64_t *rows, int64_t n, double *out)
{
    const int64_t D = p->head_dim, S = p->seqlen_kv, group = p->heads_q / p->heads_kv;
    double *k8 = malloc((size_t)(S * D + 1) * sizeof(double)), *v8 = malloc((size_t)(S * D + 1) * sizeof(double));
    double *s = malloc((size_t)(S + 1) * sizeof(double)), *acc = malloc((size_t)D * sizeof(double));
    double *q8 = malloc((size_t)D * sizeof(double));
    int rc = k8 && v8 && s && acc && q8 ? 0 : -1;
    for (int64_t b = 0; rc == 0 && b < p->batch; b++)
        for (int64_t g = 0; g < p->heads_kv; g++) {
            int cast = 0; /* K and V of (b, g), once some listed row needs them */
            for (int64_t r = 0; r < n; r++) {
                if (rows[3 * r] != b || rows[3 * r + 1] / group != g)
                    continue;
                for (int64_t t = 0; !cast && t < S; t++)
                    for (int64_t d = 0; d < D; d++) {
                        k8[t * D + d] = e4m3_bare(get(p, &p->k, b, t, g, d));
                        v8[t * D + d] = e4m3_bare(get(p, &p->v, b, t, g, d));
                    }
                cast = 1;
                bare_row(p, k8, v8, b, rows[3 * r + 1], rows[3 * r + 2], s, q8, acc, out + r * D);
            }
        }
    free(k8);
    free(v8);
    free(s);
    free(q8);
    free(acc);
    return rc;
}

int tu_cpu_forward_reference(const fattn_params *params, double *out, double *lse)
{
    fattn_params p = *params;
    const int64_t n = p.batch * p.seqlen_q * p.heads_q * p.head_dim;
    const int64_t rows = p.batch * p.heads_q * p.seqlen_q;
    void *o = malloc((size_t)n * fattn_dtype_size(p.dtype));
    float *l = lse ? malloc((size_t)rows * sizeof(float)) : NULL;
    fattn_status st = FATTN_ERR_OUT_OF_MEMORY;
    if (o && (!lse || l)) {
        /* contiguous BSHD, tu_reference's layout */
        p.o = (fattn_tensor){o, p.seqlen_q * p.heads_q * p.head_dim, p.heads_q * p.head_dim,
                             p.head_dim};
        p.lse = l;
        st = fattn_cpu_forward(&p, 0);
    }
    if (st == FATTN_OK) {
        for (int64_t i = 0; i < n; i++)
            out[i] = tu_get(o, i, p.dtype);
        for (int64_t i = 0; lse && i < rows; i++)
            lse[i] = l[i];
    } else {
        fprintf(stderr, "tu_cpu_forward_reference: %s: %s\n", fattn_status_name(st),
                fattn_last_error());
    }
    free(o);
    free(l);
    return st == FATTN_OK ? 0 : -1;
}
