/*
 * fattn_cpu_forward against the float64 reference over the edge matrix: seqlen 1, lengths off
 * every tile size, Sq != Skv with causal both ways, GQA 4:1 and 8:1, MQA, head dims 1..256,
 * BSHD / BHSD / packed-QKV views, padded outputs, LSE, f32/f16/bf16. Every case starts from
 * fresh random inputs and a NaN-poisoned output. FATTN_CPU_ISA (set by CTest) picks the kernel
 * variant under test.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "testutil.h"

typedef struct fwd_case {
    int64_t batch, sq, skv, hq, hkv, d;
    int causal;
    tu_layout layout;
    int64_t gap;
    float scale;
    double input_scale;
} fwd_case;

static const fwd_case cases[] = {
    /* head dims, with GQA 2:1 and Sq != Skv */
    {1, 70, 90, 2, 1, 1, 0, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 8, 1, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 64, 0, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 80, 1, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 96, 0, TU_BHSD, 0, 0, 1},
    {1, 70, 90, 2, 1, 128, 1, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 256, 0, TU_BSHD, 0, 0, 1},
    {1, 70, 90, 2, 1, 256, 1, TU_BHSD, 0, 0, 1},
    {1, 33, 47, 1, 1, 3, 1, TU_BSHD, 0, 0, 1},
    {1, 33, 47, 1, 1, 200, 0, TU_BSHD, 0, 0, 1},
    /* seqlen 1 */
    {2, 1, 1, 2, 2, 64, 0, TU_BSHD, 0, 0, 1},
    {2, 1, 1, 2, 2, 64, 1, TU_PACKED_QKV, 0, 0, 1},
    {1, 1, 300, 4, 4, 64, 1, TU_BSHD, 0, 0, 1},
    {1, 1, 300, 4, 4, 64, 0, TU_BHSD, 0, 0, 1},
    {1, 300, 1, 2, 2, 32, 1, TU_BSHD, 0, 0, 1},
    {1, 300, 1, 2, 2, 32, 0, TU_BSHD, 0, 0, 1},
    /* lengths that are not a multiple of any tile (64 keys, 128/256 queries, micro-tiles) */
    {2, 257, 191, 3, 3, 64, 0, TU_BSHD, 0, 0, 1},
    {1, 513, 65, 2, 2, 128, 1, TU_BSHD, 0, 0, 1},
    {1, 129, 129, 2, 2, 160, 1, TU_PACKED_QKV, 0, 0, 1},
    /* causal with Sq > Skv (early rows see no key) and Sq < Skv */
    {1, 100, 37, 2, 2, 64, 1, TU_BSHD, 0, 0, 1},
    {1, 37, 100, 2, 2, 64, 1, TU_BHSD, 0, 0, 1},
    {2, 300, 70, 2, 1, 48, 1, TU_BSHD, 3, 0, 1},
    /* GQA 4:1, 8:1, MQA */
    {2, 45, 77, 8, 2, 64, 0, TU_BSHD, 0, 0, 1},
    {1, 45, 77, 16, 2, 32, 1, TU_BHSD, 0, 0, 1},
    {2, 45, 77, 4, 1, 64, 1, TU_BSHD, 0, 0, 1},
    /* packed QKV, padded outputs, custom scale, large scores that force rescaling */
    {2, 96, 96, 3, 3, 64, 0, TU_PACKED_QKV, 5, 0, 1},
    {1, 150, 150, 2, 2, 128, 1, TU_PACKED_QKV, 0, 0.3f, 1},
    {1, 200, 333, 2, 2, 64, 0, TU_BSHD, 0, 0, 4},
    {1, 200, 333, 2, 2, 64, 1, TU_BHSD, 7, 0, 4},
};

/* Tighter than docs/design.md's bounds: the reference sees the same rounded inputs, so what is
 * left is fp32 accumulation (f32) or the output's own rounding (f16, bf16). */
static double bound_for(fattn_dtype dtype)
{
    return dtype == FATTN_DTYPE_F32 ? 1e-5 : dtype == FATTN_DTYPE_F16 ? 1e-3 : 4e-3;
}

/* Rows with no visible key must be exact zeros with LSE -Inf, not just small. */
static int check_empty_rows(const tu_problem *pr)
{
    const fattn_params *p = &pr->params;
    if (!p->causal || p->seqlen_q <= p->seqlen_kv)
        return 1;
    int64_t empty = p->seqlen_q - p->seqlen_kv;
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t i = 0; i < empty; i++)
            for (int64_t h = 0; h < p->heads_q; h++) {
                for (int64_t k = 0; k < p->head_dim; k++) {
                    int64_t at = b * p->o.stride_batch + i * p->o.stride_seq +
                                 h * p->o.stride_head + k;
                    if (tu_get(p->o.data, at, p->dtype) != 0.0) {
                        printf("  row b=%lld i=%lld h=%lld sees no key but o[%lld] != 0\n",
                               (long long)b, (long long)i, (long long)h, (long long)k);
                        return 0;
                    }
                }
                if (p->lse && !(isinf(p->lse[(b * p->heads_q + h) * p->seqlen_q + i]) &&
                                p->lse[(b * p->heads_q + h) * p->seqlen_q + i] < 0)) {
                    printf("  row b=%lld i=%lld h=%lld sees no key but its LSE is not -Inf\n",
                           (long long)b, (long long)i, (long long)h);
                    return 0;
                }
            }
    return 1;
}

/* Callers (TensorRT, PyTorch) run forwards from several threads at once; the library keeps no
 * shared state, so each must come out right. Some ask for more threads than there are items. */
typedef struct concurrent_job {
    tu_problem pr;
    int threads;
    int ok;
} concurrent_job;

static void *run_job(void *arg)
{
    concurrent_job *job = arg;
    tu_check chk;
    job->ok = fattn_cpu_forward(&job->pr.params, job->threads) == FATTN_OK &&
              tu_check_output(&job->pr, NULL, NULL, &chk) == 0 &&
              tu_check_passes(&job->pr, &chk, bound_for(job->pr.shape.dtype), 1e-4);
    return NULL;
}

static int test_concurrent_calls(tu_rng *rng)
{
    enum { JOBS = 4 };
    concurrent_job jobs[JOBS];
    pthread_t threads[JOBS];
    int failures = 0;
    for (int j = 0; j < JOBS; j++) {
        tu_shape s = {1 + j % 2, 50 + 17 * j, 80 - 9 * j, 4, 2, 32 * (j + 1),
                      (fattn_dtype)(j % 3), j % 2, 0, (tu_layout)(j % 2), 0, 1};
        if (tu_problem_init(&jobs[j].pr, &s, rng, 1.0) != 0)
            return 1;
        jobs[j].threads = j == 0 ? 64 : 2;
    }
    int started[JOBS];
    for (int j = 0; j < JOBS; j++) {
        /* A job whose thread cannot start still runs, here. */
        started[j] = pthread_create(&threads[j], NULL, run_job, &jobs[j]) == 0;
        if (!started[j])
            run_job(&jobs[j]);
    }
    for (int j = 0; j < JOBS; j++) {
        if (started[j])
            pthread_join(threads[j], NULL);
        failures += !jobs[j].ok;
        tu_problem_free(&jobs[j].pr);
    }
    printf("%d of %d concurrent forwards passed\n", JOBS - failures, JOBS);
    return failures;
}

int main(void)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_forward"));
    const char *isa = getenv("FATTN_CPU_ISA");
    const char *ran = fattn_cpu_kernel_name();
    printf("kernel variant cap: %s; running: %s\n", isa ? isa : "(none: widest available)", ran);
    /* A suite named for a variant proves nothing when a narrower one runs in its place. */
    if (isa && strcmp(isa, ran) != 0) {
        printf("SKIPPED: the %s kernel cannot run here (this CPU or build lacks it; %s would run)\n",
               isa, ran);
        return 77;
    }
    const fattn_dtype dtypes[] = {FATTN_DTYPE_F32, FATTN_DTYPE_F16, FATTN_DTYPE_BF16};
    int failures = 0, count = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const fwd_case *c = &cases[ci];
        for (int di = 0; di < 3; di++) {
            tu_shape s = {c->batch, c->sq, c->skv, c->hq, c->hkv, c->d, dtypes[di], c->causal,
                          c->scale, c->layout, c->gap, (int)((ci + di) % 2 == 0)};
            /* Every empty-row case also checks the LSE. */
            if (c->causal && c->sq > c->skv)
                s.with_lse = 1;
            tu_problem pr;
            if (tu_problem_init(&pr, &s, &rng, c->input_scale) != 0)
                return 2;
            int threads = (int)tu_randint(&rng, 0, 3);
            fattn_status st = fattn_cpu_forward(&pr.params, threads);
            count++;
            if (st != FATTN_OK) {
                printf("case %zu: %s: %s\n", ci, fattn_status_name(st), fattn_last_error());
                failures++;
                tu_problem_free(&pr);
                continue;
            }
            tu_check chk;
            if (tu_check_output(&pr, NULL, NULL, &chk) != 0)
                return 2;
            int ok = tu_check_passes(&pr, &chk, bound_for(s.dtype), 1e-4) && check_empty_rows(&pr);

            /* Work is split by item, not by thread: any thread count gives identical bits. */
            void *first = malloc(pr.out_bytes);
            if (!first)
                return 2;
            memcpy(first, pr.out_buf, pr.out_bytes);
            tu_problem_poison(&pr);
            st = fattn_cpu_forward(&pr.params, threads == 1 ? 3 : 1);
            if (st != FATTN_OK || memcmp(first, pr.out_buf, pr.out_bytes) != 0) {
                printf("  thread count changed the result (status %s)\n", fattn_status_name(st));
                ok = 0;
            }
            free(first);
            failures += !ok;
            tu_problem_free(&pr);
        }
    }
    printf("%d of %d forward cases passed\n", count - failures, count);
    failures += test_concurrent_calls(&rng);
    return failures ? 1 : 0;
}
