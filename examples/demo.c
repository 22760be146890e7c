/*
 * fattn-demo: attention through libfattn on a demo problem, checked against a float64 reference.
 *
 * On a CUDA build with a device whose kernels take the problem, it runs there (default: the
 * seed-like 1x4096x32x128 bf16, BSHD); otherwise on the CPU (default 1x2048x16x128 bf16), with a
 * line saying why. Prints the median time, TFLOP/s, and the relative L2 error over checked rows
 * (all rows of small problems, a random sample of large ones) against docs/design.md's bound
 * (--mode fp8: FP8 mode's, 6e-2, e4m3 rounding being its error).
 * Exit status 0 when the result is within the bound.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fattn.h"
#include "testutil.h"

#ifdef FATTN_DEMO_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct demo_options {
    int64_t batch, seqlen, seqlen_kv, heads, heads_kv, dim;
    fattn_dtype dtype;
    int causal, threads, repeats;
    fattn_mode mode;
    const char *device; /* auto, cpu, cuda */
    int sizes_given;
} demo_options;

static void usage(void)
{
    printf("usage: fattn-demo [--device auto|cpu|cuda] [--batch B] [--seqlen S] [--seqlen-kv S]\n"
           "                  [--heads H] [--heads-kv H] [--dim D] [--dtype f32|f16|bf16]\n"
           "                  [--causal] [--mode native|fp8] [--threads N] [--repeats N]\n"
           "FATTN_TEST_SEED=n replays the inputs of an earlier run.\n");
}

/* The whole of `text` as a decimal integer; else a message naming the option and -1. */
static int parse_int(const char *option, const char *text, int64_t *value)
{
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (end == text || *end || errno == ERANGE) {
        fprintf(stderr, "fattn-demo: %s (%s) must be an integer\n", option, text);
        return -1;
    }
    *value = x;
    return 0;
}

static int parse(int argc, char **argv, demo_options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t *size = !strcmp(a, "--batch")       ? &o->batch
                        : !strcmp(a, "--seqlen")    ? &o->seqlen
                        : !strcmp(a, "--seqlen-kv") ? &o->seqlen_kv
                        : !strcmp(a, "--heads")     ? &o->heads
                        : !strcmp(a, "--heads-kv")  ? &o->heads_kv
                        : !strcmp(a, "--dim")       ? &o->dim
                                                    : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            exit(0);
        } else if (!strcmp(a, "--causal")) {
            o->causal = 1;
        } else if (!v) {
            fprintf(stderr, "fattn-demo: unknown option or missing value: %s\n", a);
            return -1;
        } else if (size) {
            if (parse_int(a, v, size) != 0)
                return -1;
            o->sizes_given = 1;
            i++;
        } else if (!strcmp(a, "--dtype")) {
            o->dtype = !strcmp(v, "f32") ? FATTN_DTYPE_F32
                       : !strcmp(v, "f16") ? FATTN_DTYPE_F16
                       : !strcmp(v, "bf16") ? FATTN_DTYPE_BF16
                                            : (fattn_dtype)-1;
            if ((int)o->dtype < 0) {
                fprintf(stderr, "fattn-demo: --dtype (%s) must be f32, f16 or bf16\n", v);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--mode")) {
            if (strcmp(v, "native") && strcmp(v, "fp8")) {
                fprintf(stderr, "fattn-demo: --mode (%s) must be native or fp8\n", v);
                return -1;
            }
            o->mode = !strcmp(v, "fp8") ? FATTN_MODE_FP8 : FATTN_MODE_NATIVE;
            i++;
        } else if (!strcmp(a, "--device")) {
            if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) {
                fprintf(stderr, "fattn-demo: --device (%s) must be auto, cpu or cuda\n", v);
                return -1;
            }
            o->device = v;
            i++;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "--repeats")) {
            int64_t n;
            if (parse_int(a, v, &n) != 0)
                return -1;
            if (n < 0 || n > INT32_MAX) {
                fprintf(stderr, "fattn-demo: %s (%s) must be 0..%d (0: the default)\n", a, v,
                        INT32_MAX);
                return -1;
            }
            *(!strcmp(a, "--threads") ? &o->threads : &o->repeats) = (int)n;
            i++;
        } else {
            fprintf(stderr, "fattn-demo: unknown option: %s\n", a);
            return -1;
        }
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Relative L2 error of `out` (a host copy of the problem's output buffer) over the checked rows:
 * every row when there are at most max_rows, else a random sample including the first and last. */
static double check_rows(const tu_problem *pr, const void *out, tu_rng *rng, int64_t max_rows,
                         int64_t *checked)
{
    const fattn_params *p = &pr->params;
    int64_t rows = p->batch * p->heads_q * p->seqlen_q;
    int64_t n = rows <= max_rows ? rows : max_rows;
    double *ref = malloc((size_t)p->head_dim * sizeof(double));
    double err2 = 0, ref2 = 0;
    int64_t base = ((const char *)p->o.data - (const char *)pr->out_buf) /
                   (int64_t)fattn_dtype_size(p->dtype);
    *checked = 0;
    for (int64_t k = 0; ref && k < n; k++) {
        int64_t row = rows == n ? k : k == 0 ? 0 : k == 1 ? rows - 1 : tu_randint(rng, 0, rows - 1);
        int64_t i = row % p->seqlen_q, h = row / p->seqlen_q % p->heads_q;
        int64_t b = row / p->seqlen_q / p->heads_q;
        if (tu_reference_row(p, b, h, i, ref, NULL) != 0)
            break;
        for (int64_t d = 0; d < p->head_dim; d++) {
            int64_t at = base + b * p->o.stride_batch + i * p->o.stride_seq + h * p->o.stride_head + d;
            double e = tu_get(out, at, p->dtype) - ref[d];
            err2 += e * e;
            ref2 += ref[d] * ref[d];
        }
        ++*checked;
    }
    free(ref);
    if (*checked < n)
        return NAN;
    return ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
}

#ifdef FATTN_DEMO_CUDA
/* 1 if the problem can run on the GPU, with device copies in *dev; else 0 and the reason in
 * `why` (the caller words it: a fall-back to the CPU, or the error of --device cuda). */
static int cuda_prepare(const tu_problem *pr, fattn_params *dev, void **bufs, size_t *ws_bytes,
                        char *why, size_t why_size)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        snprintf(why, why_size, "no CUDA device (%s)",
                 err != cudaSuccess ? cudaGetErrorString(err) : "none found");
        return 0;
    }
    if (cudaMalloc(&bufs[0], pr->in_bytes) != cudaSuccess ||
        cudaMalloc(&bufs[1], pr->out_bytes) != cudaSuccess) {
        snprintf(why, why_size, "cudaMalloc of %zu bytes failed", pr->in_bytes + pr->out_bytes);
        return 0;
    }
    tu_problem_rebase(pr, dev, bufs[0], bufs[1], NULL);
    fattn_status st = fattn_cuda_supported(dev);
    if (st == FATTN_OK)
        st = fattn_cuda_workspace_size(dev, ws_bytes);
    if (st == FATTN_OK && *ws_bytes && cudaMalloc(&bufs[2], *ws_bytes) != cudaSuccess)
        st = FATTN_ERR_CUDA;
    if (st != FATTN_OK) {
        snprintf(why, why_size, "the CUDA path does not take this problem (%s: %s)",
                 fattn_status_name(st), fattn_last_error());
        return 0;
    }
    cudaMemcpy(bufs[0], pr->in_buf, pr->in_bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(bufs[1], pr->out_buf, pr->out_bytes, cudaMemcpyHostToDevice);
    return 1;
}

/* Median milliseconds of `repeats` launches (after one warm-up), output copied back to host. */
static int cuda_run(const tu_problem *pr, const fattn_params *dev, void **bufs, size_t ws_bytes,
                    int repeats, void *out_host, double *ms)
{
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    double *times = malloc((size_t)repeats * sizeof *times);
    if (!times) {
        fprintf(stderr, "fattn-demo: out of memory\n");
        return -1;
    }
    fattn_status st = fattn_cuda_forward(dev, bufs[2], ws_bytes, NULL);
    for (int r = 0; st == FATTN_OK && r < repeats; r++) {
        cudaEventRecord(start, NULL);
        st = fattn_cuda_forward(dev, bufs[2], ws_bytes, NULL);
        cudaEventRecord(stop, NULL);
        cudaEventSynchronize(stop);
        float t = 0;
        cudaEventElapsedTime(&t, start, stop);
        times[r] = t;
    }
    cudaError_t err = cudaDeviceSynchronize();
    if (st != FATTN_OK || err != cudaSuccess) {
        printf("fattn_cuda_forward failed: %s %s\n", fattn_status_name(st),
               st != FATTN_OK ? fattn_last_error() : cudaGetErrorString(err));
        free(times);
        return -1;
    }
    *ms = median(times, repeats);
    free(times);
    cudaMemcpy(out_host, bufs[1], pr->out_bytes, cudaMemcpyDeviceToHost);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 0;
}
#endif

/* The sizes through libfattn's own validation (the workspace query takes sizes only), so a bad
 * command line gets libfattn's message before anything is allocated. */
static int sizes_valid(const tu_shape *s, fattn_mode mode)
{
    fattn_params p;
    fattn_params_bshd(&p, s->batch, s->seqlen_q, s->seqlen_kv, s->heads_q, s->heads_kv,
                      s->head_dim, s->dtype, NULL, NULL, NULL, NULL);
    p.causal = s->causal;
    p.mode = mode;
    size_t bytes;
    if (fattn_cuda_workspace_size(&p, &bytes) == FATTN_ERR_INVALID_ARGUMENT) {
        fprintf(stderr, "fattn-demo: %s\n", fattn_last_error());
        return 0;
    }
    return 1;
}

static void set_default_sizes(demo_options *o, int gpu)
{
    o->batch = 1;
    o->seqlen = gpu ? 4096 : 2048;
    o->seqlen_kv = 0;
    o->heads = gpu ? 32 : 16;
    o->heads_kv = 0;
    o->dim = 128;
}

int main(int argc, char **argv)
{
    /* Line-buffered even into a pipe, so a log shows how far a run got. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    demo_options o = {0};
    o.dtype = FATTN_DTYPE_BF16;
    o.device = "auto";
    set_default_sizes(&o, 1);
    if (parse(argc, argv, &o) != 0) {
        usage();
        return 2;
    }
    int want_gpu = strcmp(o.device, "cpu") != 0;
#ifndef FATTN_DEMO_CUDA
    if (!strcmp(o.device, "cuda")) {
        fprintf(stderr, "fattn-demo: --device cuda, but this build of libfattn has no CUDA support\n");
        return 2;
    }
    if (want_gpu)
        printf("this build of libfattn has no CUDA support: running on the CPU\n");
    want_gpu = 0;
#endif
    if (!want_gpu && !o.sizes_given)
        set_default_sizes(&o, 0);

    tu_rng rng;
    tu_rng_init(&rng, tu_seed("fattn-demo"));
    tu_problem pr;
    int use_gpu = 0;
    void *out_host = NULL;
    double ms = 0;
#ifdef FATTN_DEMO_CUDA
    void *bufs[3] = {NULL, NULL, NULL};
    fattn_params dev;
    size_t ws_bytes = 0;
    char why[512];
#endif
    for (;;) {
        tu_shape s = {o.batch, o.seqlen, o.seqlen_kv ? o.seqlen_kv : o.seqlen, o.heads,
                      o.heads_kv ? o.heads_kv : o.heads, o.dim, o.dtype, o.causal, 0, TU_BSHD,
                      0, 0};
        if (!sizes_valid(&s, o.mode))
            return 2;
        if (tu_problem_init(&pr, &s, &rng, 1.0) != 0)
            return 2;
        pr.params.mode = o.mode;
#ifdef FATTN_DEMO_CUDA
        if (want_gpu) {
            use_gpu = cuda_prepare(&pr, &dev, bufs, &ws_bytes, why, sizeof why);
            /* Asked for the GPU explicitly: one error, no fall-back. */
            if (!use_gpu && !strcmp(o.device, "cuda")) {
                fprintf(stderr, "fattn-demo: --device cuda, but %s\n", why);
                for (int i = 0; i < 3; i++)
                    cudaFree(bufs[i]);
                tu_problem_free(&pr);
                return 2;
            }
            if (!use_gpu)
                printf("%s: running on the CPU\n", why);
        }
#endif
        if (use_gpu || !want_gpu || o.sizes_given)
            break;
        /* Falling back from the GPU: a CPU-sized problem unless the user chose one. */
        want_gpu = 0;
#ifdef FATTN_DEMO_CUDA
        for (int i = 0; i < 3; i++) {
            cudaFree(bufs[i]);
            bufs[i] = NULL;
        }
#endif
        tu_problem_free(&pr);
        set_default_sizes(&o, 0);
    }
    const fattn_params *p = &pr.params;
    printf("fattn %s on the %s: B=%lld Sq=%lld Skv=%lld Hq=%lld Hkv=%lld D=%lld %s%s%s, BSHD\n",
           fattn_version_string(), use_gpu ? "GPU" : "CPU", (long long)p->batch,
           (long long)p->seqlen_q, (long long)p->seqlen_kv, (long long)p->heads_q,
           (long long)p->heads_kv, (long long)p->head_dim, fattn_dtype_name(p->dtype),
           p->causal ? " causal" : "", p->mode == FATTN_MODE_FP8 ? " FP8 mode" : "");
    int repeats = o.repeats > 0 ? o.repeats : use_gpu ? 20 : 3;
    if (use_gpu) {
#ifdef FATTN_DEMO_CUDA
        out_host = malloc(pr.out_bytes);
        if (!out_host || cuda_run(&pr, &dev, bufs, ws_bytes, repeats, out_host, &ms) != 0)
            return 1;
#endif
    } else {
        double *times = malloc((size_t)repeats * sizeof *times);
        if (!times) {
            fprintf(stderr, "fattn-demo: out of memory\n");
            return 1;
        }
        for (int r = 0; r <= repeats; r++) {
            double t0 = now_seconds();
            fattn_status st = fattn_cpu_forward(p, o.threads);
            if (st != FATTN_OK) {
                printf("fattn_cpu_forward: %s: %s\n", fattn_status_name(st), fattn_last_error());
                free(times);
                return 1;
            }
            if (r > 0) /* the first run warms caches and page tables */
                times[r - 1] = 1e3 * (now_seconds() - t0);
        }
        ms = median(times, repeats);
        free(times);
        out_host = pr.out_buf;
    }
    double flops = 4.0 * (double)p->batch * (double)p->heads_q * (double)p->seqlen_q *
                   (double)p->seqlen_kv * (double)p->head_dim * (p->causal ? 0.5 : 1.0);
    printf("time: %.3f ms (median of %d), %.2f TFLOP/s\n", ms, repeats, flops / (ms * 1e-3) / 1e12);

    int64_t checked = 0;
    double rel = check_rows(&pr, out_host, &rng, 256, &checked);
    /* FP8 mode's error is e4m3's 3-bit mantissa (about 5.3e-2 on N(0, 1) inputs), not the dtype's. */
    double bound = p->mode == FATTN_MODE_FP8 ? 6e-2 : tu_design_bound(p->dtype);
    int pass = rel <= bound;
    printf("check: relative L2 error %.3g over %lld rows vs float64 reference (bound %.0e%s): %s\n",
           rel, (long long)checked, bound,
           p->mode == FATTN_MODE_FP8 ? ", FP8 mode's: e4m3 rounding of Q, K, V and P" : "",
           pass ? "PASS" : "FAIL");
    if (out_host != pr.out_buf)
        free(out_host);
#ifdef FATTN_DEMO_CUDA
    for (int i = 0; i < 3; i++)
        cudaFree(bufs[i]);
#endif
    tu_problem_free(&pr);
    return pass ? 0 : 1;
}
