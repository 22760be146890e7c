/*
 * FP8 mode (mode 1) of fattn_cpu_forward.
 *
 * Without arguments (CTest):
 *  1. the edge matrix (head dims 1..256, lengths off every block size, causal both ways with rows
 *     that see no key, GQA/MQA, BSHD/BHSD/packed-QKV views, padded outputs, scale, LSE, all three
 *     dtypes) against tests/common's float64 FP8 reference, tightly (what differs is fp32
 *     rounding and the order of sums, plus the output's rounding to the dtype);
 *  2. the same bytes whatever the thread count;
 *  3. non-finite inputs give NaN rows, finite ones finite outputs;
 *  4. issue #14's accuracy bars against exact float64 attention at 1x4096x4x128, the seed's
 *     bare e4m3 cast measured beside fattn: FA3's outlier test RMSE (<= 1.3e-2 on CI's small
 *     sample, see main), N(0,1) relative L2 <= 6e-2, Q, K, V x1000 all finite, V x1000 the
 *     same relative error as unscaled (within 10%).
 *
 * `test_cpu_fp8_forward --bars B S H D [rows] [threads]` runs only the bars, at that shape (e.g.
 * 1 4096 16 128, or the seed's 1 15708 32 128 on a many-core machine), exact attention on `rows`
 * sampled query rows (default 512), all CPUs unless threads is given; the outlier bar is 9e-3.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp8ref.h"
#include "testutil.h"

static int failures;

typedef struct fp8_case {
    int64_t batch, sq, skv, hq, hkv, d;
    int causal;
    tu_layout layout;
    int64_t gap;
    float scale;
} fp8_case;

static const fp8_case cases[] = {
    {1, 70, 90, 2, 1, 1, 0, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 2, 1, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 3, 0, TU_BHSD, 0, 0},
    {1, 70, 90, 2, 1, 8, 1, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 24, 0, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 64, 0, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 80, 1, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 96, 0, TU_BHSD, 0, 0},
    {1, 70, 90, 2, 1, 128, 1, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 192, 1, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 255, 0, TU_BSHD, 0, 0},
    {1, 70, 90, 2, 1, 256, 1, TU_BHSD, 0, 0},
    {2, 1, 1, 2, 2, 64, 0, TU_BSHD, 0, 0},
    {2, 1, 1, 2, 2, 64, 1, TU_PACKED_QKV, 0, 0},
    {1, 1, 300, 4, 4, 64, 1, TU_BSHD, 0, 0},
    {1, 300, 1, 2, 2, 32, 1, TU_BSHD, 0, 0},
    /* lengths off the 64-row Q blocks and 128-key softmax blocks */
    {2, 257, 191, 3, 3, 64, 0, TU_BSHD, 0, 0},
    {1, 129, 385, 2, 2, 128, 1, TU_BSHD, 0, 0},
    {1, 129, 129, 2, 2, 160, 1, TU_PACKED_QKV, 0, 0},
    /* causal with Sq > Skv (early rows see no key) and Sq < Skv */
    {1, 100, 37, 2, 2, 64, 1, TU_BSHD, 0, 0},
    {1, 37, 200, 2, 2, 64, 1, TU_BHSD, 0, 0},
    {2, 300, 70, 2, 1, 48, 1, TU_BSHD, 3, 0},
    /* GQA 4:1, 8:1, MQA */
    {2, 45, 77, 8, 2, 64, 0, TU_BSHD, 0, 0},
    {1, 45, 77, 16, 2, 32, 1, TU_BHSD, 0, 0},
    {2, 45, 77, 4, 1, 128, 1, TU_BSHD, 0, 0},
    /* packed QKV, padded outputs, custom and negative scale */
    {2, 96, 96, 3, 3, 64, 0, TU_PACKED_QKV, 5, 0},
    {1, 150, 150, 2, 2, 128, 1, TU_PACKED_QKV, 0, 0.3f},
    {1, 200, 333, 2, 2, 64, 0, TU_BSHD, 0, -2.0f},
};

/* Against the FP8 reference: the output's rounding to the dtype. FP8's own error is 5e-2. A P
 * value that fp32 puts on the other side of an e4m3 rounding midpoint than double does is
 * allowed on top, by the reference's slack (flip_slack): it moved a small case's relative L2 to
 * 3.3e-3 in one seed of 231. */
static double fp8_bound(fattn_dtype dtype)
{
    return dtype == FATTN_DTYPE_BF16 ? 5e-3 : 2e-3;
}

/* ||slack|| / ||reference||: the relative L2 that P values at e4m3 rounding midpoints may add
 * (tu_fp8_reference_slack); -1 when memory runs out. */
static double flip_slack(const tu_problem *pr)
{
    const fattn_params *p = &pr->params;
    const size_t n = (size_t)(p->batch * p->seqlen_q * p->heads_q * p->head_dim);
    double *ref = malloc(n * sizeof(double)), *slack = malloc(n * sizeof(double)), r2 = 0, s2 = 0;
    int ok = ref && slack && tu_fp8_reference_slack(p, ref, slack) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        r2 += ref[i] * ref[i];
        s2 += slack[i] * slack[i];
    }
    free(ref);
    free(slack);
    return !ok ? -1.0 : r2 > 0 ? sqrt(s2 / r2) : 0.0;
}

static fattn_status run_fp8(tu_problem *pr, int threads)
{
    pr->params.mode = FATTN_MODE_FP8;
    fattn_status st = fattn_cpu_forward(&pr->params, threads);
    if (st)
        printf("fattn_cpu_forward: %s: %s\n", fattn_status_name(st), fattn_last_error());
    return st;
}

static void test_matrix(tu_rng *rng)
{
    const fattn_dtype dtypes[] = {FATTN_DTYPE_F32, FATTN_DTYPE_F16, FATTN_DTYPE_BF16};
    int n = 0, passed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++) {
            const fp8_case *fc = &cases[i];
            tu_shape s = {fc->batch, fc->sq, fc->skv, fc->hq, fc->hkv, fc->d, dtypes[t],
                          fc->causal, fc->scale, fc->layout, fc->gap, (int)((i + t) % 2)};
            tu_problem pr;
            tu_check c;
            n++;
            if (tu_problem_init(&pr, &s, rng, 1.0) != 0)
                continue;
            const double slack = flip_slack(&pr);
            if (slack >= 0 && run_fp8(&pr, (int)(i % 3)) == FATTN_OK &&
                tu_check_output_with(&pr, NULL, NULL, tu_fp8_reference, &c) == 0 &&
                tu_check_passes(&pr, &c, fp8_bound(s.dtype) + slack, 1e-4))
                passed++;
            tu_problem_free(&pr);
        }
    printf("edge matrix vs the float64 FP8 reference: %d of %d passed\n", passed, n);
    failures += n - passed;
}

static void test_threads(tu_rng *rng)
{
    tu_shape s = {2, 333, 300, 4, 2, 96, FATTN_DTYPE_BF16, 1, 0, TU_BSHD, 0, 1};
    tu_problem pr;
    if (tu_problem_init(&pr, &s, rng, 1.0) != 0) {
        failures++;
        return;
    }
    void *first = malloc(pr.out_bytes);
    float *first_lse = malloc((size_t)pr.lse_count * sizeof(float));
    int ok = first && first_lse && run_fp8(&pr, 1) == FATTN_OK;
    if (ok) {
        memcpy(first, pr.out_buf, pr.out_bytes);
        memcpy(first_lse, pr.lse, (size_t)pr.lse_count * sizeof(float));
    }
    const int counts[] = {2, 3, 7, 0};
    for (int i = 0; ok && i < 4; i++) {
        tu_problem_poison(&pr);
        ok = run_fp8(&pr, counts[i]) == FATTN_OK && !memcmp(first, pr.out_buf, pr.out_bytes) &&
             !memcmp(first_lse, pr.lse, (size_t)pr.lse_count * sizeof(float));
    }
    printf("same bytes with 1, 2, 3, 7 and all threads: %s\n", ok ? "ok" : "FAIL");
    failures += !ok;
    free(first);
    free(first_lse);
    tu_problem_free(&pr);
}

static int64_t at(const fattn_tensor *t, int64_t b, int64_t s, int64_t h, int64_t d)
{
    return b * t->stride_batch + s * t->stride_seq + h * t->stride_head + d;
}

/* Calls fn on every element index of a view of pr (q, k or v). */
typedef void (*elem_fn)(tu_problem *pr, const fattn_tensor *t, int64_t i, void *arg);
static void for_each(tu_problem *pr, const fattn_tensor *t, int64_t seq, int64_t heads,
                     elem_fn fn, void *arg)
{
    const fattn_params *p = &pr->params;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t s = 0; s < seq; s++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t d = 0; d < p->head_dim; d++)
                    fn(pr, t, at(t, b, s, h, d), arg);
}

static void set_outlier(tu_problem *pr, const fattn_tensor *t, int64_t i, void *arg)
{
    tu_rng *rng = arg;
    /* FA3's outlier test: 0.1% of the entries drawn from N(0, 10^2) */
    if (tu_uniform(rng) < 1e-3)
        tu_set(t->data, i, pr->params.dtype, 10.0 * tu_normal(rng));
}

static void multiply(tu_problem *pr, const fattn_tensor *t, int64_t i, void *arg)
{
    tu_set(t->data, i, pr->params.dtype, tu_get(t->data, i, pr->params.dtype) * *(double *)arg);
}

static void scale_views(tu_problem *pr, int q, int k, int v, double factor)
{
    fattn_params *p = &pr->params;
    if (q)
        for_each(pr, &p->q, p->seqlen_q, p->heads_q, multiply, &factor);
    if (k)
        for_each(pr, &p->k, p->seqlen_kv, p->heads_kv, multiply, &factor);
    if (v)
        for_each(pr, &p->v, p->seqlen_kv, p->heads_kv, multiply, &factor);
}

typedef struct accuracy {
    double rmse, rel_l2, bare_rmse, bare_rel_l2;
    int64_t nonfinite, bare_nonfinite; /* over the sampled rows */
    int64_t nonfinite_all;              /* over fattn's whole output */
    double seconds;
} accuracy;

/* fattn FP8 and the bare cast against exact attention on `rows` sampled query rows. */
static int measure(tu_problem *pr, tu_rng *rng, int64_t rows, int threads, accuracy *a)
{
    fattn_params *p = &pr->params;
    const int64_t D = p->head_dim;
    memset(a, 0, sizeof *a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (run_fp8(pr, threads) != FATTN_OK)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    a->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t i = 0; i < p->seqlen_q; i++)
            for (int64_t h = 0; h < p->heads_q; h++)
                for (int64_t d = 0; d < D; d++)
                    a->nonfinite_all += !isfinite(tu_get(p->o.data, at(&p->o, b, i, h, d), p->dtype));
    double *ref = malloc((size_t)D * sizeof(double)), *bare = malloc((size_t)(rows * D) * sizeof(double));
    int64_t *list = malloc((size_t)(3 * rows) * sizeof(int64_t));
    double e2 = 0, be2 = 0, r2 = 0;
    int64_t count = 0, bare_count = 0;
    for (int64_t n = 0; list && n < rows; n++) {
        list[3 * n] = tu_randint(rng, 0, p->batch - 1);
        list[3 * n + 1] = tu_randint(rng, 0, p->heads_q - 1);
        list[3 * n + 2] = tu_randint(rng, 0, p->seqlen_q - 1);
    }
    const int listed = ref && bare && list && tu_fp8_bare_rows(p, list, rows, bare) == 0;
    for (int64_t n = 0; listed && n < rows; n++) {
        const int64_t b = list[3 * n], h = list[3 * n + 1], i = list[3 * n + 2];
        if (tu_reference_row(p, b, h, i, ref, NULL))
            break;
        for (int64_t d = 0; d < D; d++) {
            double got = tu_get(p->o.data, at(&p->o, b, i, h, d), p->dtype);
            r2 += ref[d] * ref[d];
            if (!isfinite(got))
                a->nonfinite++;
            else
                e2 += (got - ref[d]) * (got - ref[d]), count++;
            const double bd = bare[n * D + d];
            if (!isfinite(bd))
                a->bare_nonfinite++;
            else
                be2 += (bd - ref[d]) * (bd - ref[d]), bare_count++;
        }
    }
    free(ref);
    free(bare);
    free(list);
    a->rmse = count ? sqrt(e2 / (double)count) : NAN;
    a->rel_l2 = r2 > 0 ? sqrt(e2 / r2) : NAN;
    a->bare_rmse = bare_count ? sqrt(be2 / (double)bare_count) : NAN;
    a->bare_rel_l2 = r2 > 0 && bare_count ? sqrt(be2 / r2) : NAN;
    return 0;
}

static void report(const char *name, const accuracy *a)
{
    printf("  %-22s fattn fp8: RMSE %.3e rel_l2 %.3e non-finite %lld (%.2f s) | bare cast: RMSE "
           "%.3e rel_l2 %.3e non-finite %lld\n",
           name, a->rmse, a->rel_l2, (long long)a->nonfinite_all, a->seconds, a->bare_rmse,
           a->bare_rel_l2, (long long)a->bare_nonfinite);
    fflush(stdout);
}

static void bar(int ok, const char *what)
{
    printf("  %s: %s\n", ok ? "ok  " : "FAIL", what);
    failures += !ok;
}

/* The four bars at one shape (bf16 I/O, BSHD). */
static void test_bars(tu_rng *rng, int64_t B, int64_t S, int64_t H, int64_t D, int64_t rows,
                      int threads, double outlier_bound)
{
    tu_shape s = {B, S, S, H, H, D, FATTN_DTYPE_BF16, 0, 0, TU_BSHD, 0, 0};
    printf("accuracy bars at %lldx%lldx%lldx%lld bf16, exact attention on %lld sampled rows\n",
           (long long)B, (long long)S, (long long)H, (long long)D, (long long)rows);
    tu_problem pr;
    accuracy outl, norm, big, vbig;
    if (tu_problem_init(&pr, &s, rng, 1.0) != 0) {
        failures++;
        return;
    }
    fattn_params *p = &pr.params;
    for_each(&pr, &p->q, S, H, set_outlier, rng);
    for_each(&pr, &p->k, S, H, set_outlier, rng);
    for_each(&pr, &p->v, S, H, set_outlier, rng);
    if (measure(&pr, rng, rows, threads, &outl) == 0)
        report("outliers (FA3 test)", &outl);
    tu_problem_free(&pr);

    if (tu_problem_init(&pr, &s, rng, 1.0) != 0) {
        failures++;
        return;
    }
    tu_rng same = *rng; /* the same rows for N(0,1) and V x1000 */
    int ok = measure(&pr, rng, rows, threads, &norm) == 0;
    report("N(0,1)", &norm);
    scale_views(&pr, 0, 0, 1, 1000.0);
    ok = ok && measure(&pr, &same, rows, threads, &vbig) == 0;
    report("N(0,1), V x1000", &vbig);
    scale_views(&pr, 1, 1, 0, 1000.0);
    ok = ok && measure(&pr, rng, rows, threads, &big) == 0;
    report("N(0,1), Q,K,V x1000", &big);
    tu_problem_free(&pr);

    char what[96];
    snprintf(what, sizeof what, "outlier test RMSE <= %.2g%s", outlier_bound,
             outlier_bound > 9e-3 ? " (CI's sample; the issue's bar, 9e-3, is --bars')" : "");
    bar(ok && outl.nonfinite_all == 0 && outl.rmse <= outlier_bound, what);
    bar(ok && norm.nonfinite_all == 0 && norm.rel_l2 <= 6e-2, "N(0,1) relative L2 <= 6e-2");
    bar(ok && big.nonfinite_all == 0, "Q, K, V x1000: every output finite");
    bar(ok && vbig.nonfinite_all == 0 && fabs(vbig.rel_l2 - norm.rel_l2) <= 0.1 * norm.rel_l2,
        "V x1000: relative L2 within 10% of unscaled");
}

static void test_nonfinite(tu_rng *rng)
{
    const char *names[] = {"Q", "K", "V"};
    int ok = 1;
    for (int which = 0; which < 3; which++)
        for (int inf = 0; inf < 2; inf++) {
            tu_shape s = {1, 70, 70, 2, 2, 64, FATTN_DTYPE_F16, 0, 0, TU_BSHD, 0, 0};
            tu_problem pr;
            if (tu_problem_init(&pr, &s, rng, 1.0) != 0) {
                ok = 0;
                continue;
            }
            fattn_params *p = &pr.params;
            const fattn_tensor *t = which == 0 ? &p->q : which == 1 ? &p->k : &p->v;
            /* row 5 of head 0 (for K and V a key every query sees) */
            tu_set(t->data, at(t, 0, 5, 0, 3), p->dtype, inf ? INFINITY : NAN);
            if (run_fp8(&pr, 0) != FATTN_OK) {
                ok = 0;
                tu_problem_free(&pr);
                continue;
            }
            int64_t nan_rows = 0, finite_other = 1;
            for (int64_t h = 0; h < 2; h++)
                for (int64_t i = 0; i < 70; i++) {
                    int any_nan = 0;
                    for (int64_t d = 0; d < 64; d++)
                        any_nan |= isnan(tu_get(p->o.data, at(&p->o, 0, i, h, d), p->dtype));
                    if (h == 0 && any_nan)
                        nan_rows++;
                    if (h == 1 && any_nan)
                        finite_other = 0;
                }
            /* a NaN stays in what it touches (its row of Q; every row through K or V), an Inf
             * poisons its whole Q block or K/V head; the other head is untouched */
            int64_t want = which == 0 && !inf ? 1 : 64 + (which != 0) * 6;
            int case_ok = nan_rows == want && finite_other;
            printf("  %s %s in head 0: %lld NaN rows of head 0 (want %lld), head 1 finite: %s\n",
                   inf ? "Inf" : "NaN", names[which], (long long)nan_rows, (long long)want,
                   case_ok ? "ok" : "FAIL");
            ok &= case_ok;
            tu_problem_free(&pr);
        }
    printf("non-finite inputs: %s\n", ok ? "ok" : "FAIL");
    failures += !ok;
}

int main(int argc, char **argv)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_fp8_forward"));
    if (argc > 1 && !strcmp(argv[1], "--bars")) {
        if (argc < 6) {
            fprintf(stderr, "usage: %s --bars B S H D [rows] [threads]\n", argv[0]);
            return 2;
        }
        int64_t v[6] = {0, 0, 0, 0, 512, 0};
        for (int i = 2; i < argc && i < 8; i++) {
            char *end;
            v[i - 2] = strtoll(argv[i], &end, 10);
            if (*end || v[i - 2] < (i == 7 ? 0 : 1)) {
                fprintf(stderr, "argument %d (%s) must be a positive integer\n", i, argv[i]);
                return 2;
            }
        }
        test_bars(&rng, v[0], v[1], v[2], v[3], v[4], (int)v[5], 9e-3);
        return failures ? 1 : 0;
    }
    test_matrix(&rng);
    test_threads(&rng);
    test_nonfinite(&rng);
    /* Four heads and 512 sampled rows keep CI quick. The outlier RMSE of a draw still varies,
     * with the inputs more than with the rows sampled: over 18 seeds it had mean 8.5e-3 and sd
     * 9e-4, up to 1.02e-2 (the bare cast 1.46e-2 .. 2.75e-2), so CI's bound 1.3e-2 sits 5 sd
     * out. One head and 128 rows spread twice as far (114 seeds: sd 1.75e-3, up to 1.34e-2,
     * which failed a 1.2e-2 bound one run in 28). The 9e-3 is --bars' at its shapes. */
    test_bars(&rng, 1, 4096, 4, 128, 512, 0, 1.3e-2);
    printf("%s\n", failures ? "FAIL" : "all FP8 checks passed");
    return failures ? 1 : 0;
}
