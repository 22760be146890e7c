/*
 * Every validation rule: the status, a message naming the field (and value), and untouched
 * outputs. Each rule is checked through fattn_validate, fattn_cpu_forward and the CUDA entry
 * points (which validate the same way in every build). Also the small API facts: status and
 * dtype names, version, last-error lifetime and thread-locality, FP8 on the CPU.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int failures, checks;

#define EXPECT(cond, ...)                                                                        \
    do {                                                                                         \
        checks++;                                                                                \
        if (!(cond)) {                                                                           \
            failures++;                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                          \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
        }                                                                                        \
    } while (0)

static tu_problem base;
static unsigned char *out_before, *lse_before;

static void snapshot(void)
{
    memcpy(out_before, base.out_buf, base.out_bytes);
    memcpy(lse_before, base.lse, (size_t)base.lse_count * sizeof(float));
}

static int untouched(void)
{
    return !memcmp(out_before, base.out_buf, base.out_bytes) &&
           !memcmp(lse_before, base.lse, (size_t)base.lse_count * sizeof(float));
}

/* Runs p through every entry point; each must fail with `want`, name `field` (and `value` when
 * given) in its message, and leave the output and LSE alone. */
static void expect_reject(const char *rule, const fattn_params *p, fattn_status want,
                          const char *field, const char *value)
{
    snapshot();
    fattn_status got[5] = {fattn_validate(p), FATTN_OK, FATTN_OK, FATTN_OK, FATTN_OK};
    char msg[5][512];
    snprintf(msg[0], sizeof msg[0], "%s", fattn_last_error());
    got[1] = fattn_cpu_forward(p, 2);
    snprintf(msg[1], sizeof msg[1], "%s", fattn_last_error());
    got[2] = fattn_cuda_forward(p, NULL, 0, NULL);
    snprintf(msg[2], sizeof msg[2], "%s", fattn_last_error());
    got[3] = fattn_cuda_supported(p);
    snprintf(msg[3], sizeof msg[3], "%s", fattn_last_error());
    got[4] = fattn_cuda_supported_any(p);
    snprintf(msg[4], sizeof msg[4], "%s", fattn_last_error());
    const char *entry[5] = {"fattn_validate", "fattn_cpu_forward", "fattn_cuda_forward",
                            "fattn_cuda_supported", "fattn_cuda_supported_any"};
    for (int i = 0; i < 5; i++) {
        EXPECT(got[i] == want, "%s via %s: status %s, want %s (%s)", rule, entry[i],
               fattn_status_name(got[i]), fattn_status_name(want), msg[i]);
        EXPECT(strstr(msg[i], field) != NULL, "%s via %s: message \"%s\" does not name %s", rule,
               entry[i], msg[i], field);
        EXPECT(!value || strstr(msg[i], value) != NULL,
               "%s via %s: message \"%s\" does not give the value %s", rule, entry[i], msg[i],
               value ? value : "");
    }
    EXPECT(untouched(), "%s: output or LSE was written", rule);
    printf("rejects %-40s -> %s\n", rule, msg[0]);
}

/* Rules that need no pointers must also be caught by the size-only queries. */
static void expect_reject_shape(const char *rule, const fattn_params *p, const char *field,
                                const char *value)
{
    expect_reject(rule, p, FATTN_ERR_INVALID_ARGUMENT, field, value);
    size_t bytes = 0;
    fattn_status ws = fattn_cuda_workspace_size(p, &bytes);
    EXPECT(ws == FATTN_ERR_INVALID_ARGUMENT && strstr(fattn_last_error(), field),
           "%s via fattn_cuda_workspace_size: %s (%s)", rule, fattn_status_name(ws),
           fattn_last_error());
    fattn_status sup = fattn_cuda_supported(p);
    EXPECT(sup == FATTN_ERR_INVALID_ARGUMENT && strstr(fattn_last_error(), field),
           "%s via fattn_cuda_supported: %s (%s)", rule, fattn_status_name(sup),
           fattn_last_error());
}

static void expect_accept(const char *rule, const fattn_params *p)
{
    fattn_status st = fattn_validate(p);
    EXPECT(st == FATTN_OK, "%s: rejected: %s", rule, fattn_last_error());
    EXPECT(fattn_last_error()[0] == '\0', "%s: success left a message", rule);
}

static void *other_thread(void *arg)
{
    (void)arg;
    fattn_params p = base.params;
    p.head_dim = 999;
    fattn_validate(&p);
    return strstr(fattn_last_error(), "head_dim") ? (void *)1 : NULL;
}

static void test_fields(void)
{
    const fattn_params good = base.params;
    fattn_params p;
    expect_reject_shape("params NULL", NULL, "params", NULL);

#define SET_AND_REJECT(rule, stmt, field, value)                                                \
    do {                                                                                         \
        p = good;                                                                                \
        stmt;                                                                                    \
        expect_reject_shape(rule, &p, field, value);                                             \
    } while (0)
    SET_AND_REJECT("batch 0", p.batch = 0, "batch", "(0)");
    SET_AND_REJECT("batch negative", p.batch = -3, "batch", "(-3)");
    SET_AND_REJECT("seqlen_q 0", p.seqlen_q = 0, "seqlen_q", "(0)");
    SET_AND_REJECT("seqlen_kv negative", p.seqlen_kv = -1, "seqlen_kv", "(-1)");
    SET_AND_REJECT("seqlen_q above int32", p.seqlen_q = 3000000000LL, "seqlen_q", "(3000000000)");
    SET_AND_REJECT("heads_q 0", p.heads_q = 0, "heads_q", "(0)");
    SET_AND_REJECT("heads_kv 0", p.heads_kv = 0, "heads_kv", "(0)");
    SET_AND_REJECT("head_dim 0", p.head_dim = 0, "head_dim", "(0)");
    SET_AND_REJECT("head_dim 257", p.head_dim = 257, "head_dim", "(257)");
    SET_AND_REJECT("dtype 7", p.dtype = (fattn_dtype)7, "dtype", "(7)");
    SET_AND_REJECT("mode 5", p.mode = (fattn_mode)5, "mode", "(5)");
    SET_AND_REJECT("causal 2", p.causal = 2, "causal", "(2)");
    SET_AND_REJECT("scale NaN", p.scale = NAN, "scale", "nan");
    SET_AND_REJECT("scale Inf", p.scale = INFINITY, "scale", "inf");
    SET_AND_REJECT("q.stride_batch negative", p.q.stride_batch = -1, "q.stride_batch", "(-1)");
    SET_AND_REJECT("k.stride_seq negative", p.k.stride_seq = -5, "k.stride_seq", "(-5)");
    SET_AND_REJECT("v.stride_head negative", p.v.stride_head = -2, "v.stride_head", "(-2)");
    SET_AND_REJECT("o.stride_seq negative", p.o.stride_seq = -7, "o.stride_seq", "(-7)");
    SET_AND_REJECT("q span overflows", p.q.stride_batch = INT64_MAX / 2, "q view", NULL);
    SET_AND_REJECT("o heads overlap", p.o.stride_head = p.head_dim - 1, "o.stride_head", NULL);
    SET_AND_REJECT("o rows overlap", p.o.stride_seq = p.head_dim / 2, "o.stride_seq", "(8)");
    SET_AND_REJECT("o batches overlap", p.o.stride_batch = 0, "o.stride_batch", "(0)");
#undef SET_AND_REJECT

    p = good;
    p.heads_q = 12;
    p.heads_kv = 5;
    expect_reject_shape("heads ratio", &p, "heads_q (12) is not a multiple of heads_kv (5)", NULL);

    /* Pointer rules: every entry point but the workspace query (sizes only) checks them. */
    const char *names[4] = {"q.data", "k.data", "v.data", "o.data"};
    for (int i = 0; i < 4; i++) {
        p = good;
        fattn_tensor *t = i == 0 ? &p.q : i == 1 ? &p.k : i == 2 ? &p.v : &p.o;
        t->data = NULL;
        char rule[64];
        snprintf(rule, sizeof rule, "%s NULL", names[i]);
        expect_reject(rule, &p, FATTN_ERR_INVALID_ARGUMENT, names[i], NULL);
        p = good;
        t = i == 0 ? &p.q : i == 1 ? &p.k : i == 2 ? &p.v : &p.o;
        t->data = (char *)t->data + 1;
        snprintf(rule, sizeof rule, "%s misaligned", names[i]);
        expect_reject(rule, &p, FATTN_ERR_INVALID_ARGUMENT, names[i], "aligned");
    }
    p = good;
    p.lse = (float *)((char *)p.lse + 2);
    expect_reject("lse misaligned", &p, FATTN_ERR_INVALID_ARGUMENT, "lse", "aligned");
    p = good;
    p.o.data = p.k.data;
    expect_reject("o overlaps k", &p, FATTN_ERR_INVALID_ARGUMENT, "o.data", "k.data");
    p = good;
    p.lse = (float *)base.in_buf;
    expect_reject("lse overlaps q", &p, FATTN_ERR_INVALID_ARGUMENT, "lse", "q.data");
    p = good;
    p.lse = (float *)base.out_buf;
    expect_reject("lse overlaps o", &p, FATTN_ERR_INVALID_ARGUMENT, "lse", "o.data");

    p = good;
    snapshot();
    fattn_status st = fattn_cpu_forward(&p, -1);
    EXPECT(st == FATTN_ERR_INVALID_ARGUMENT && strstr(fattn_last_error(), "num_threads (-1)"),
           "num_threads -1: %s (%s)", fattn_status_name(st), fattn_last_error());
    EXPECT(untouched(), "num_threads -1 wrote the output");

    p = good;
    p.mode = FATTN_MODE_FP8;
    EXPECT(fattn_validate(&p) == FATTN_OK, "FP8 mode is valid: %s", fattn_last_error());
    snapshot();
    st = fattn_cpu_forward(&p, -2);
    EXPECT(st == FATTN_ERR_INVALID_ARGUMENT && strstr(fattn_last_error(), "num_threads (-2)"),
           "FP8, num_threads -2: %s (%s)", fattn_status_name(st), fattn_last_error());
    EXPECT(untouched(), "FP8 with num_threads -2 wrote the output");
    printf("rejects %-40s -> %s\n", "FP8 with num_threads -2", fattn_last_error());
    /* The CPU serves FP8 mode (test_cpu_fp8_forward checks what it computes). */
    st = fattn_cpu_forward(&p, 0);
    EXPECT(st == FATTN_OK, "FP8 on the CPU: %s (%s)", fattn_status_name(st), fattn_last_error());

    size_t bytes = 0;
    EXPECT(fattn_cuda_workspace_size(&good, NULL) == FATTN_ERR_INVALID_ARGUMENT &&
               strstr(fattn_last_error(), "bytes"),
           "workspace_size with NULL bytes: %s", fattn_last_error());
    /* The workspace query takes sizes only: NULL data is fine there. */
    p = good;
    p.q.data = p.k.data = p.v.data = p.o.data = NULL;
    p.lse = NULL;
    st = fattn_cuda_workspace_size(&p, &bytes);
    EXPECT(st == FATTN_OK || st == FATTN_ERR_UNSUPPORTED,
           "workspace_size with NULL data: %s (%s)", fattn_status_name(st), fattn_last_error());
}

static void test_accepted_views(void)
{
    fattn_params p = base.params;
    expect_accept("the base problem", &p);
    /* Inputs may alias: k and v in one buffer, q reused as k, stride-0 broadcast over batch. */
    p.v = p.k;
    expect_accept("k and v the same view", &p);
    p = base.params;
    p.k.stride_batch = 0;
    p.v.stride_batch = 0;
    expect_accept("k/v broadcast over batch", &p);
    /* A dimension of extent 1 may have any stride, even one that would overlap. */
    p = base.params;
    p.batch = 1;
    p.o.stride_batch = 1;
    expect_accept("o.stride_batch irrelevant at batch 1", &p);
    p = base.params;
    p.scale = -0.5f;
    expect_accept("negative scale", &p);
    p = base.params;
    p.lse = NULL;
    expect_accept("no LSE", &p);
    /* BHSD output: head stride larger than batch stride's inner part is fine when ordered. */
    p = base.params;
    p.o.stride_seq = p.head_dim;
    p.o.stride_head = p.seqlen_q * p.head_dim;
    expect_accept("BHSD output view", &p);
}

static void test_api_facts(void)
{
    EXPECT(!strcmp(fattn_status_name(FATTN_OK), "FATTN_OK"), "status name of OK");
    EXPECT(!strcmp(fattn_status_name(FATTN_ERR_UNSUPPORTED), "FATTN_ERR_UNSUPPORTED"),
           "status name of UNSUPPORTED");
    EXPECT(!strcmp(fattn_status_name(FATTN_ERR_WORKSPACE), "FATTN_ERR_WORKSPACE"),
           "status name of WORKSPACE");
    EXPECT(!strcmp(fattn_status_name((fattn_status)42), "FATTN_STATUS_UNKNOWN"),
           "status name of 42");
    EXPECT(!strcmp(fattn_dtype_name(FATTN_DTYPE_BF16), "bf16"), "dtype name bf16");
    EXPECT(!strcmp(fattn_dtype_name((fattn_dtype)9), "unknown"), "dtype name 9");
    EXPECT(fattn_dtype_size(FATTN_DTYPE_F32) == 4 && fattn_dtype_size(FATTN_DTYPE_F16) == 2 &&
               fattn_dtype_size(FATTN_DTYPE_BF16) == 2 && fattn_dtype_size((fattn_dtype)9) == 0,
           "dtype sizes");
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FATTN_VERSION_MAJOR, FATTN_VERSION_MINOR,
             FATTN_VERSION_PATCH);
    EXPECT(!strcmp(fattn_version_string(), want), "version string %s", fattn_version_string());
    EXPECT(fattn_version() == FATTN_VERSION_MAJOR * 10000 + FATTN_VERSION_MINOR * 100 +
                                  FATTN_VERSION_PATCH,
           "version number %d", fattn_version());

    /* Messages are per thread, and a success clears this thread's. */
    fattn_params p = base.params;
    p.batch = 0;
    fattn_validate(&p);
    pthread_t t;
    void *other_ok = NULL;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &other_ok);
    EXPECT(other_ok != NULL, "the other thread did not get its own message");
    EXPECT(strstr(fattn_last_error(), "batch") != NULL,
           "another thread's failure replaced this thread's message: %s", fattn_last_error());
    EXPECT(fattn_validate(&base.params) == FATTN_OK && fattn_last_error()[0] == '\0',
           "success did not clear the message");
}

/* fattn_cuda_supported_any asks no device, so its answers are the same on every machine: the
 * kernels' rules in a CUDA build, "no CUDA support" in one without. */
static void test_supported_any(void)
{
    void *fake[4];
    for (int i = 0; i < 4; i++)
        fake[i] = (void *)((uintptr_t)(i + 1) << 44);
    fattn_params p;
    fattn_params_bshd(&p, 1, 300, 300, 8, 2, 128, FATTN_DTYPE_BF16, fake[0], fake[1], fake[2],
                      fake[3]);
    size_t ws = 0;
    const int have_cuda = fattn_cuda_workspace_size(&p, &ws) == FATTN_OK;
    fattn_status st = fattn_cuda_supported_any(&p);
    if (!have_cuda) {
        EXPECT(st == FATTN_ERR_UNSUPPORTED && strstr(fattn_last_error(), "no CUDA support"),
               "supported_any without CUDA: %s (%s)", fattn_status_name(st), fattn_last_error());
        return;
    }
    EXPECT(st == FATTN_OK && fattn_last_error()[0] == '\0', "bf16 d128: %s (%s)",
           fattn_status_name(st), fattn_last_error());
    p.dtype = FATTN_DTYPE_F32;
    p.head_dim = 96;
    st = fattn_cuda_supported_any(&p);
    EXPECT(st == FATTN_OK, "fp32 d96 (portable kernel only): %s (%s)", fattn_status_name(st),
           fattn_last_error());
    /* fp32 d80: the Hopper kernel's tf32 path (head_dim up to 128) */
    p.head_dim = 80;
    st = fattn_cuda_supported_any(&p);
    EXPECT(st == FATTN_OK, "fp32 d80 (Hopper tf32 path): %s (%s)", fattn_status_name(st), fattn_last_error());
    /* fp32 d136: the Hopper kernel takes fp32 up to 128, the portable kernel no d136 */
    fattn_params_bshd(&p, 1, 300, 300, 8, 2, 136, FATTN_DTYPE_F32, fake[0], fake[1], fake[2], fake[3]);
    st = fattn_cuda_supported_any(&p);
    EXPECT(st == FATTN_ERR_UNSUPPORTED && strstr(fattn_last_error(), "head_dim (136)") &&
               strstr(fattn_last_error(), "fp32 at head_dim (136)"),
           "fp32 d136: %s (%s)", fattn_status_name(st), fattn_last_error());
    /* every multiple of 8 up to 256 runs on the Hopper kernel (the smallest that holds it, padded) */
    const int64_t hopper_dims[] = {8, 16, 40, 72, 80, 96, 104, 160, 192, 200, 248};
    for (size_t i = 0; i < sizeof hopper_dims / sizeof hopper_dims[0]; i++) {
        fattn_params_bshd(&p, 1, 300, 300, 8, 2, hopper_dims[i], FATTN_DTYPE_BF16, fake[0], fake[1],
                          fake[2], fake[3]);
        st = fattn_cuda_supported_any(&p);
        EXPECT(st == FATTN_OK, "bf16 d%lld: %s (%s)", (long long)p.head_dim, fattn_status_name(st),
               fattn_last_error());
    }
    /* d36: no multiple of 8 (72-byte rows break TMA's 16-byte rule), not a portable head dim */
    fattn_params_bshd(&p, 1, 300, 300, 8, 2, 36, FATTN_DTYPE_BF16, fake[0], fake[1], fake[2], fake[3]);
    st = fattn_cuda_supported_any(&p);
    EXPECT(st == FATTN_ERR_UNSUPPORTED && strstr(fattn_last_error(), "head_dim (36) is not a multiple of 8") &&
               strstr(fattn_last_error(), "head_dim (36) has no CUDA kernel"),
           "bf16 d36: %s (%s)", fattn_status_name(st), fattn_last_error());
    fattn_params_bshd(&p, 1, 300, 300, 8, 2, 64, FATTN_DTYPE_F16, fake[0], fake[1], fake[2],
                      fake[3]);
    p.q.data = (char *)fake[0] + 2;
    st = fattn_cuda_supported_any(&p);
    EXPECT(st == FATTN_ERR_UNSUPPORTED && strstr(fattn_last_error(), "q.data"),
           "q 2 bytes off 16-byte alignment: %s (%s)", fattn_status_name(st), fattn_last_error());
    printf("fattn_cuda_supported_any: bf16 d128, fp32 d96 and d80 and bf16 at every multiple of 8 tried served; "
           "fp32 d136, bf16 d36 and a misaligned q refused\n");
}

/* FP8 mode in a CUDA build: the Hopper kernel serves head_dim 64 and 96 (on its d128 kernel, over
 * copies padded to 128 columns), 128, 192 (on the d256 kernel) and 256; nothing serves 80. */
static void test_supported_any_fp8(void)
{
    void *fake[4];
    for (int i = 0; i < 4; i++)
        fake[i] = (void *)((uintptr_t)(i + 1) << 44);
    const int64_t dims[] = {64, 96, 128, 192, 256, 80};
    for (int i = 0; i < 6; i++) {
        fattn_params p;
        fattn_params_bshd(&p, 1, 300, 300, 8, 2, dims[i], FATTN_DTYPE_BF16, fake[0], fake[1],
                          fake[2], fake[3]);
        p.mode = FATTN_MODE_FP8;
        size_t ws = 0;
        if (fattn_cuda_workspace_size(&p, &ws) != FATTN_OK)
            return; /* no CUDA: test_supported_any checks the answer */
        const fattn_status st = fattn_cuda_supported_any(&p);
        if (dims[i] == 80)
            EXPECT(st == FATTN_ERR_UNSUPPORTED &&
                       strstr(fattn_last_error(), "FP8 mode at head_dim (80)"),
                   "FP8 d80: %s (%s)", fattn_status_name(st), fattn_last_error());
        else
            EXPECT(st == FATTN_OK && ws > 0, "FP8 d%lld: %s (%s), workspace %zu bytes",
                   (long long)dims[i], fattn_status_name(st), fattn_last_error(), ws);
    }
    printf("fattn_cuda_supported_any: FP8 mode served at d64, d96, d128, d192, d256, refused at d80\n");
}

int main(void)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_validate"));
    tu_shape s = {2, 5, 7, 4, 2, 16, FATTN_DTYPE_F16, 1, 0, TU_BSHD, 0, 1};
    if (tu_problem_init(&base, &s, &rng, 1.0) != 0)
        return 2;
    out_before = malloc(base.out_bytes);
    lse_before = malloc((size_t)base.lse_count * sizeof(float));
    test_api_facts();
    test_fields();
    test_accepted_views();
    test_supported_any();
    test_supported_any_fp8();
    /* The base problem itself runs and writes everything. */
    EXPECT(fattn_cpu_forward(&base.params, 0) == FATTN_OK, "base problem: %s", fattn_last_error());
    tu_check c;
    EXPECT(tu_check_output(&base, NULL, NULL, &c) == 0 && tu_check_passes(&base, &c, 1e-3, 1e-4),
           "base problem result");
    free(out_before);
    free(lse_before);
    tu_problem_free(&base);
    printf("%d of %d validation checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
