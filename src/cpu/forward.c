/* fattn_cpu_forward: validation, planning, per-thread scratch, threads and ISA dispatch. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

static size_t scratch_floats(const fattn_cpu_plan *plan, size_t counts[9])
{
    size_t bq = (size_t)plan->block_q, dp = (size_t)plan->dim_padded;
    size_t d = (size_t)plan->p.head_dim;
    size_t sizes[9] = {d * bq, FATTN_CPU_BLOCK_KV * dp, FATTN_CPU_BLOCK_KV * dp,
                       FATTN_CPU_BLOCK_KV * bq, bq * dp, bq, bq, bq, dp};
    size_t total = 0;
    for (int i = 0; i < 9; i++) {
        /* Each tile starts on a 64-byte boundary. */
        counts[i] = (sizes[i] + 15) / 16 * 16;
        total += counts[i];
    }
    return total;
}

static float *scratch_alloc(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws)
{
    size_t counts[9];
    size_t total = scratch_floats(plan, counts);
    float *base = aligned_alloc(64, total * sizeof(float));
    if (!base)
        return NULL;
    /* Zero once: padding lanes of the tiles are read by the micro-kernels and must be finite. */
    memset(base, 0, total * sizeof(float));
    float **slots[9] = {&ws->q_t, &ws->k, &ws->v, &ws->s_t, &ws->acc,
                        &ws->m,   &ws->l, &ws->alpha, &ws->row};
    float *at = base;
    for (int i = 0; i < 9; i++) {
        *slots[i] = at;
        at += counts[i];
    }
    return base;
}

typedef struct worker {
    const fattn_cpu_plan *plan;
    fattn_cpu_scratch ws;
    float *memory;
    fattn_cpu_item_fn fn;
    atomic_llong *next;
    int64_t items;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    for (;;) {
        int64_t i = atomic_fetch_add(w->next, 1);
        if (i >= w->items)
            break;
        /* Hand out the latest query blocks first: under causal masking they are the longest. */
        int64_t qb = w->plan->q_blocks - 1 - i % w->plan->q_blocks;
        w->fn(w->plan, &w->ws, i - i % w->plan->q_blocks + qb);
    }
    return NULL;
}

static int cpu_has(const char *feature)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!strcmp(feature, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (!strcmp(feature, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    (void)feature;
    return 0;
}

/* The widest variant this build has and this CPU runs; FATTN_CPU_ISA=generic|avx2|avx512 caps it
 * (for tests that cover every variant on one machine). Any other value caps it at generic: a
 * mistyped cap must not select a wider kernel than asked for. */
static fattn_cpu_item_fn pick_kernel(void)
{
    const char *cap = getenv("FATTN_CPU_ISA");
    int allow_avx512 = !cap || !strcmp(cap, "avx512");
    int allow_avx2 = allow_avx512 || !strcmp(cap, "avx2");
#ifdef FATTN_CPU_HAVE_AVX512
    if (allow_avx512 && cpu_has("avx512"))
        return fattn_cpu_item_avx512;
#endif
#ifdef FATTN_CPU_HAVE_AVX2
    if (allow_avx2 && cpu_has("avx2"))
        return fattn_cpu_item_avx2;
#endif
    (void)allow_avx2;
    (void)cpu_has;
    return fattn_cpu_item_generic;
}

const char *fattn_cpu_kernel_name(void)
{
    fattn_cpu_item_fn fn = pick_kernel();
#ifdef FATTN_CPU_HAVE_AVX512
    if (fn == fattn_cpu_item_avx512)
        return "avx512";
#endif
#ifdef FATTN_CPU_HAVE_AVX2
    if (fn == fattn_cpu_item_avx2)
        return "avx2";
#endif
    (void)fn;
    return "generic";
}

void fattn_cpu_parallel(int64_t count, void *(*run)(void *), void *args, size_t arg_size)
{
    pthread_t *threads = count > 1 ? malloc((size_t)(count - 1) * sizeof *threads) : NULL;
    int64_t started = 0;
    /* A thread that cannot be started (or recorded) just leaves its share to the others. */
    while (threads && started < count - 1 &&
           pthread_create(&threads[started], NULL, run, (char *)args + (started + 1) * arg_size) == 0)
        started++;
    run(args);
    for (int64_t t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    free(threads);
}

/* CPUs this process may run on (its affinity mask, which containers and taskset narrow), else
 * the online count. */
static int64_t usable_cpus(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    return sysconf(_SC_NPROCESSORS_ONLN);
}

fattn_status fattn_cpu_forward(const fattn_params *params, int num_threads)
{
    fattn_status st = fattn_validate(params);
    if (st)
        return st;
    if (num_threads < 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "num_threads (%d) must not be negative",
                          num_threads);
    if (params->mode == FATTN_MODE_FP8)
        return fattn_cpu_forward_fp8(params, num_threads ? num_threads : usable_cpus());

    fattn_cpu_plan plan;
    plan.p = *params;
    plan.group = params->heads_q / params->heads_kv;
    plan.dim_padded = (params->head_dim + FATTN_CPU_DIM_ALIGN - 1) / FATTN_CPU_DIM_ALIGN *
                      FATTN_CPU_DIM_ALIGN;
    /* 256 query rows share each converted key/value block; halved for wide heads so one
     * thread's tiles stay within a typical 1-2 MiB L2. */
    plan.block_q = params->head_dim > 128 ? 128 : 256;
    plan.q_blocks = (params->seqlen_q + plan.block_q - 1) / plan.block_q;
    plan.kv_shift = params->seqlen_kv - params->seqlen_q;
    plan.scale_log2 = (float)((double)fattn_effective_scale(params) * 1.4426950408889634);

    int64_t items = params->batch * params->heads_q * plan.q_blocks;
    int64_t threads = num_threads ? num_threads : usable_cpus();
    if (threads < 1)
        threads = 1;
    if (threads > items)
        threads = items;

    worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers)
        return fattn_fail(FATTN_ERR_OUT_OF_MEMORY, "cannot allocate %" PRId64 " worker records",
                          threads);
    atomic_llong next = 0;
    fattn_cpu_item_fn fn = pick_kernel();
    for (int64_t t = 0; t < threads; t++) {
        worker *w = &workers[t];
        w->plan = &plan;
        w->fn = fn;
        w->next = &next;
        w->items = items;
        w->memory = scratch_alloc(&plan, &w->ws);
        if (!w->memory) {
            for (int64_t u = 0; u < t; u++)
                free(workers[u].memory);
            free(workers);
            return fattn_fail(FATTN_ERR_OUT_OF_MEMORY,
                              "cannot allocate CPU scratch for thread %" PRId64 " of %" PRId64,
                              t, threads);
        }
    }

    fattn_cpu_parallel(threads, worker_run, workers, sizeof *workers);
    for (int64_t t = 0; t < threads; t++)
        free(workers[t].memory);
    free(workers);
    fattn_clear_error();
    return FATTN_OK;
}
