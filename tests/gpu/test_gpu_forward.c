/*
 * GPU forward test: fattn_cuda_forward against a float64 reference computed here from the same
 * (dtype-rounded) inputs. Fresh random inputs every run (seed printed; --seed N repeats one),
 * outputs poisoned with NaN before each call and checked fully written, repeated runs compared
 * bit for bit. Exit 0 = all passed, 1 = a failure, 77 = no GPU (CTest reports it as skipped).
 *
 *   test_gpu_forward [--small] [--seed N] [--filter SUBSTRING[,SUBSTRING...]]
 *
 * --small runs only small shapes, for compute-sanitizer. FATTN_FORCE_PORTABLE=1 in the
 * environment sends Hopper work to the portable kernel, so one card tests both paths.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "fattn.h"
#include "gpu_util.h"

enum layout { L_BSHD, L_BHSD, L_QKV, L_PADDED };
static const char *layout_name[] = {"bshd", "bhsd", "qkv", "padded"};

typedef struct gcase {
    char name[96];
    int64_t B, Sq, Skv, Hq, Hkv, D;
    fattn_dtype dt;
    int causal, layout, lse;
    fattn_mode mode;
    float scale;
    float magnitude;  /* inputs ~ N(0, magnitude^2) */
    int rows_checked; /* query rows checked per (b, h) pair; 0 = all rows of all pairs */
    int pairs_checked;
    int hopper_only; /* a head dim only the Hopper kernel serves (its smallest D above, padded) */
    int skew;        /* Q, K and V start this many elements into their buffers (unaligned views) */
} gcase;

static int failures, passes, skips;
/* Whether calls run on the Hopper kernel where it serves them: an sm_90 device without
 * FATTN_FORCE_PORTABLE (read as libfattn reads it). Elsewhere a hopper_only case has no kernel. */
static int hopper_path;

#define CUDA_OK(call)                                                                              \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Element strides of one tensor of [B, S, H, D] in a layout; `total` is the allocation in
 * elements. For L_QKV, q/k/v share one (B, S, 3, H, D) buffer at offsets 0, H*D, 2*H*D. */
static void layout_strides(int layout, int64_t B, int64_t S, int64_t H, int64_t D,
                           fattn_tensor *t, int64_t *total)
{
    switch (layout) {
    case L_BHSD:
        t->stride_head = S * D, t->stride_seq = D, t->stride_batch = H * S * D;
        *total = B * H * S * D;
        break;
    case L_QKV:
        t->stride_head = D, t->stride_seq = 3 * H * D, t->stride_batch = S * 3 * H * D;
        *total = B * S * 3 * H * D;
        break;
    case L_PADDED: /* gaps between heads and rows: nothing may be read or written there */
        t->stride_head = D + 16, t->stride_seq = H * (D + 16) + 32;
        t->stride_batch = S * t->stride_seq + 64;
        *total = B * t->stride_batch;
        break;
    default:
        t->stride_head = D, t->stride_seq = H * D, t->stride_batch = S * H * D;
        *total = B * S * H * D;
    }
}

/* The largest cases need hundreds of MB on the host: a failed allocation ends the run with a
 * message rather than a crash in the memset or copy that follows. */
static void *host_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1); /* malloc(0) may return NULL */
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

typedef struct host_tensor {
    float *val; /* compact [B][S][H][D], values exactly representable in the dtype */
    int64_t S, H;
} host_tensor;

static void fill(host_tensor *t, const gcase *c, int64_t S, int64_t H, gpu_rng *rng)
{
    const int64_t n = c->B * S * H * c->D;
    t->S = S, t->H = H;
    t->val = (float *)host_alloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        t->val[i] = gpu_round(c->dt, c->magnitude * (float)gpu_rng_normal(rng));
}

/* Writes a compact host tensor into a strided host image of the device buffer. */
static void scatter(const host_tensor *t, const gcase *c, const fattn_tensor *view, size_t offset,
                    void *image)
{
    const size_t es = fattn_dtype_size(c->dt);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t s = 0; s < t->S; s++)
            for (int64_t h = 0; h < t->H; h++) {
                const float *src = t->val + ((b * t->S + s) * t->H + h) * c->D;
                char *dst = (char *)image +
                            (offset + (size_t)(b * view->stride_batch + s * view->stride_seq +
                                               h * view->stride_head)) * es;
                gpu_store(c->dt, dst, src, c->D);
            }
}

/* float64 attention for one query row; returns the row's log-sum-exp (-inf when it sees no key). */
static double reference_row(const gcase *c, const host_tensor *q, const host_tensor *k,
                            const host_tensor *v, int64_t b, int64_t h, int64_t i, double *out,
                            double *scores)
{
    const int64_t D = c->D, hk = h / (c->Hq / c->Hkv);
    const double scale = c->scale != 0.f ? c->scale : 1.0 / sqrt((double)D);
    int64_t end = c->Skv;
    if (c->causal) {
        int64_t lim = i + c->Skv - c->Sq + 1;
        end = lim < end ? lim : end;
    }
    for (int64_t d = 0; d < D; d++) out[d] = 0;
    if (end <= 0)
        return -INFINITY;
    const float *qr = q->val + ((b * c->Sq + i) * c->Hq + h) * D;
    double mx = -INFINITY;
    for (int64_t t = 0; t < end; t++) {
        const float *kr = k->val + ((b * c->Skv + t) * c->Hkv + hk) * D;
        double s = 0;
        for (int64_t d = 0; d < D; d++) s += (double)qr[d] * kr[d];
        scores[t] = s * scale;
        if (scores[t] > mx) mx = scores[t];
    }
    double sum = 0;
    for (int64_t t = 0; t < end; t++) {
        double p = exp(scores[t] - mx);
        sum += p;
        const float *vr = v->val + ((b * c->Skv + t) * c->Hkv + hk) * D;
        for (int64_t d = 0; d < D; d++) out[d] += p * vr[d];
    }
    for (int64_t d = 0; d < D; d++) out[d] /= sum;
    return mx + log(sum);
}

/* fp32 on the Hopper path (head_dim <= 128) computes in tf32, rounded from fp32: held to the 1e-3
 * the docs promise. Elsewhere fp32 runs through bf16 tensor cores (the portable kernel). */
static int tf32_case(const gcase *c)
{
    return c->dt == FATTN_DTYPE_F32 && hopper_path && c->D <= 128;
}

static double tolerance(const gcase *c)
{
    if (tf32_case(c))
        return 1e-3;
    return c->dt == FATTN_DTYPE_F16 ? 5e-3 : 1e-2;
}

/* LSE error relative to 1 + |lse|. fp32 inputs staged as bf16 move the scores themselves by
 * ~2^-9 relative, hence the looser bound there; rounded to tf32 by 2^-11, which at a single key
 * (the LSE is that key's logit) was seen at 1.1e-3, hence 3e-3. bf16/fp16 inputs are exact. */
static double lse_tolerance(const gcase *c)
{
    if (c->dt != FATTN_DTYPE_F32)
        return 1e-3;
    return tf32_case(c) ? 3e-3 : 1e-2;
}

typedef struct device_case {
    fattn_params p;
    void *dq, *dk, *dv, *dqkv, *dout, *ws;
    float *dlse;
    size_t out_bytes, lse_bytes, ws_bytes;
} device_case;

static void fail(const gcase *c, const char *what)
{
    printf("FAIL %-58s %s\n", c->name, what);
    failures++;
}

/* Bytes of the output buffer outside O's elements that are no longer the 0xff poison: the gaps of
 * a padded layout, where a store past head_dim (a zero-padded kernel's extra columns) would land.
 * Only padded layouts have gaps. */
static int64_t stray_bytes(const gcase *c, const fattn_tensor *to, const unsigned char *out,
                           size_t out_bytes)
{
    if (c->layout != L_PADDED)
        return 0;
    const size_t es = fattn_dtype_size(c->dt);
    unsigned char *real = (unsigned char *)host_alloc(out_bytes);
    memset(real, 0, out_bytes);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t i = 0; i < c->Sq; i++)
            for (int64_t h = 0; h < c->Hq; h++) {
                const size_t off = (size_t)(b * to->stride_batch + i * to->stride_seq +
                                            h * to->stride_head) * es;
                memset(real + off, 1, (size_t)c->D * es);
            }
    int64_t stray = 0;
    for (size_t j = 0; j < out_bytes; j++)
        stray += !real[j] && out[j] != 0xff;
    free(real);
    return stray;
}

static void run_case(const gcase *c, uint64_t seed)
{
    float *cpu_o = NULL, *cpu_lse = NULL; /* FP8 mode's CPU result */
    gpu_rng rng;
    gpu_rng_seed(&rng, seed);
    host_tensor q, k, v;
    fill(&q, c, c->Sq, c->Hq, &rng);
    fill(&k, c, c->Skv, c->Hkv, &rng);
    fill(&v, c, c->Skv, c->Hkv, &rng);
    const size_t es = fattn_dtype_size(c->dt);

    device_case g;
    memset(&g, 0, sizeof g);
    fattn_tensor tq, tk, tv, to;
    int64_t nq, nk, nv, no;
    layout_strides(c->layout, c->B, c->Sq, c->Hq, c->D, &tq, &nq);
    layout_strides(c->layout, c->B, c->Skv, c->Hkv, c->D, &tk, &nk);
    layout_strides(c->layout, c->B, c->Skv, c->Hkv, c->D, &tv, &nv);
    layout_strides(c->layout == L_QKV ? L_BSHD : c->layout, c->B, c->Sq, c->Hq, c->D, &to, &no);

    if (c->layout == L_QKV) {
        char *img = (char *)host_alloc((size_t)nq * es);
        memset(img, 0, (size_t)nq * es);
        scatter(&q, c, &tq, 0, img);
        scatter(&k, c, &tk, (size_t)(c->Hq * c->D), img);
        scatter(&v, c, &tv, (size_t)(2 * c->Hq * c->D), img);
        CUDA_OK(cudaMalloc(&g.dqkv, (size_t)nq * es));
        CUDA_OK(cudaMemcpy(g.dqkv, img, (size_t)nq * es, cudaMemcpyHostToDevice));
        free(img);
        tq.data = g.dqkv;
        tk.data = (char *)g.dqkv + (size_t)(c->Hq * c->D) * es;
        tv.data = (char *)g.dqkv + (size_t)(2 * c->Hq * c->D) * es;
    } else {
        const host_tensor *hs[3] = {&q, &k, &v};
        fattn_tensor *ts[3] = {&tq, &tk, &tv};
        int64_t ns[3] = {nq, nk, nv};
        void **ds[3] = {&g.dq, &g.dk, &g.dv};
        for (int i = 0; i < 3; i++) {
            /* Gaps of padded layouts (and a skew) hold NaN: a kernel that reads them shows it. */
            const size_t n = (size_t)(ns[i] + c->skew);
            char *img = (char *)host_alloc(n * es);
            memset(img, 0xff, n * es);
            scatter(hs[i], c, ts[i], (size_t)c->skew, img);
            CUDA_OK(cudaMalloc(ds[i], n * es));
            CUDA_OK(cudaMemcpy(*ds[i], img, n * es, cudaMemcpyHostToDevice));
            free(img);
            ts[i]->data = (char *)*ds[i] + (size_t)c->skew * es;
        }
    }
    g.out_bytes = (size_t)no * es;
    CUDA_OK(cudaMalloc(&g.dout, g.out_bytes));
    to.data = g.dout;
    g.lse_bytes = (size_t)(c->B * c->Hq * c->Sq) * sizeof(float);
    if (c->lse)
        CUDA_OK(cudaMalloc((void **)&g.dlse, g.lse_bytes));

    fattn_params *p = &g.p;
    memset(p, 0, sizeof *p);
    p->batch = c->B, p->seqlen_q = c->Sq, p->seqlen_kv = c->Skv;
    p->heads_q = c->Hq, p->heads_kv = c->Hkv, p->head_dim = c->D;
    p->dtype = c->dt, p->mode = c->mode, p->causal = c->causal, p->scale = c->scale;
    p->q = tq, p->k = tk, p->v = tv, p->o = to, p->lse = g.dlse;
    const int fp8 = c->mode == FATTN_MODE_FP8;
    if (fp8 && fattn_cuda_supported(p) == FATTN_ERR_UNSUPPORTED) {
        printf("skip %-58s no FP8 kernel for it on this device: %s\n", c->name, fattn_last_error());
        skips++;
        goto out;
    }
    /* On the Hopper path the case must be served (the forward below fails it otherwise). */
    if (c->hopper_only && !hopper_path && fattn_cuda_supported(p) == FATTN_ERR_UNSUPPORTED) {
        printf("skip %-58s only the sm_90 Hopper kernel serves this head dim: %s\n", c->name,
               fattn_last_error());
        skips++;
        goto out;
    }
    /* FP8 mode's reference is libfattn's CPU FP8 forward on the same values (fp32 I/O, which
     * quantises them identically); the GPU differs from it by exp2's rounding and sum order. */
    if (fp8) {
        fattn_params hp;
        cpu_o = (float *)host_alloc((size_t)(c->B * c->Sq * c->Hq * c->D) * sizeof(float));
        cpu_lse = (float *)host_alloc((size_t)(c->B * c->Hq * c->Sq) * sizeof(float));
        fattn_params_bshd(&hp, c->B, c->Sq, c->Skv, c->Hq, c->Hkv, c->D, FATTN_DTYPE_F32, q.val,
                          k.val, v.val, cpu_o);
        hp.mode = FATTN_MODE_FP8, hp.causal = c->causal, hp.scale = c->scale, hp.lse = cpu_lse;
        if (fattn_cpu_forward(&hp, 0) != FATTN_OK) {
            fail(c, fattn_last_error());
            goto out;
        }
    }

    fattn_status st = fattn_cuda_workspace_size(p, &g.ws_bytes);
    if (st != FATTN_OK) {
        fail(c, fattn_last_error());
        goto out;
    }
    if (g.ws_bytes)
        CUDA_OK(cudaMalloc(&g.ws, g.ws_bytes));

    unsigned char *first = (unsigned char *)host_alloc(g.out_bytes);
    unsigned char *again = (unsigned char *)host_alloc(g.out_bytes);
    float *lse_first = (float *)host_alloc(g.lse_bytes);
    float *lse_again = (float *)host_alloc(g.lse_bytes);
    const int runs = 3;
    int identical = 1;
    for (int r = 0; r < runs && st == FATTN_OK; r++) {
        CUDA_OK(cudaMemset(g.dout, 0xff, g.out_bytes));
        if (g.dlse)
            CUDA_OK(cudaMemset(g.dlse, 0xff, g.lse_bytes));
        st = fattn_cuda_forward(p, g.ws, g.ws_bytes, NULL);
        if (st != FATTN_OK)
            break;
        CUDA_OK(cudaDeviceSynchronize());
        CUDA_OK(cudaGetLastError());
        CUDA_OK(cudaMemcpy(r == 0 ? first : again, g.dout, g.out_bytes, cudaMemcpyDeviceToHost));
        if (g.dlse)
            CUDA_OK(cudaMemcpy(r == 0 ? lse_first : lse_again, g.dlse, g.lse_bytes,
                               cudaMemcpyDeviceToHost));
        if (r > 0) {
            if (memcmp(first, again, g.out_bytes) != 0)
                identical = 0;
            if (g.dlse && memcmp(lse_first, lse_again, g.lse_bytes) != 0)
                identical = 0;
        }
    }
    if (st != FATTN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "fattn_cuda_forward: %s: %s", fattn_status_name(st),
                 fattn_last_error());
        fail(c, msg);
    } else if (!identical) {
        fail(c, "repeated runs differ (a race)");
    } else {
        /* Every output element written (and no NaN), nothing written between them, then the
         * error on the checked rows. */
        int64_t unwritten = 0, lse_bad = 0, checked = 0;
        const int64_t stray = stray_bytes(c, &to, first, g.out_bytes);
        double err2 = 0, ref2 = 0, lse_err = 0, cpu_err2 = 0, cpu2 = 0;
        double *ref = (double *)host_alloc((size_t)c->D * sizeof(double));
        double *scores = (double *)host_alloc((size_t)c->Skv * sizeof(double));
        float *row = (float *)host_alloc((size_t)c->D * sizeof(float));
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->Hq; h++)
                for (int64_t i = 0; i < c->Sq; i++) {
                    const size_t off = (size_t)(b * to.stride_batch + i * to.stride_seq +
                                                h * to.stride_head);
                    gpu_load(c->dt, first + off * es, row, c->D);
                    for (int64_t d = 0; d < c->D; d++)
                        if (!isfinite(row[d]))
                            unwritten++;
                }
        gpu_rng pick;
        gpu_rng_seed(&pick, seed ^ 0x5eedu);
        const int64_t pairs = c->B * c->Hq;
        const int64_t npairs = c->pairs_checked && c->pairs_checked < pairs ? c->pairs_checked : pairs;
        for (int64_t pi = 0; pi < npairs; pi++) {
            /* The last pair is always checked (it holds the last head and batch). */
            const int64_t pair = npairs == pairs ? pi
                                 : pi == 0      ? pairs - 1
                                                : (int64_t)(gpu_rng_next(&pick) % (uint64_t)pairs);
            const int64_t b = pair / c->Hq, h = pair % c->Hq;
            const int64_t nrows = c->rows_checked && c->rows_checked < c->Sq ? c->rows_checked : c->Sq;
            for (int64_t ri = 0; ri < nrows; ri++) {
                /* Subsets always include the first and last rows (the tails). */
                const int64_t i = nrows == c->Sq ? ri
                                  : ri == 0      ? 0
                                  : ri == 1      ? c->Sq - 1
                                                 : (int64_t)(gpu_rng_next(&pick) % (uint64_t)c->Sq);
                const double lse_row = reference_row(c, &q, &k, &v, b, h, i, ref, scores);
                const size_t off = (size_t)(b * to.stride_batch + i * to.stride_seq +
                                            h * to.stride_head);
                gpu_load(c->dt, first + off * es, row, c->D);
                const float *cpu_row = fp8 ? cpu_o + ((b * c->Sq + i) * c->Hq + h) * c->D : NULL;
                for (int64_t d = 0; d < c->D; d++) {
                    double e = (double)row[d] - ref[d];
                    err2 += e * e;
                    ref2 += ref[d] * ref[d];
                    if (fp8) {
                        cpu_err2 += ((double)row[d] - cpu_row[d]) * ((double)row[d] - cpu_row[d]);
                        cpu2 += (double)cpu_row[d] * cpu_row[d];
                    }
                }
                if (c->lse) {
                    const float got = lse_first[(b * c->Hq + h) * c->Sq + i];
                    /* FP8's LSE carries e4m3's error in the logits: held to the CPU's */
                    const double lse_ref = fp8 ? (double)cpu_lse[(b * c->Hq + h) * c->Sq + i]
                                               : lse_row;
                    if (isinf(lse_ref)) {
                        if (!(isinf(got) && got < 0))
                            lse_bad++;
                    } else {
                        double e = fabs((double)got - lse_ref) / (1.0 + fabs(lse_ref));
                        if (!(e <= lse_tolerance(c)))
                            lse_bad++;
                        if (e > lse_err)
                            lse_err = e;
                    }
                }
                checked++;
            }
        }
        if (c->lse)
            for (int64_t i = 0; i < c->B * c->Hq * c->Sq; i++)
                if (isnan(lse_first[i]))
                    lse_bad++;
        const double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
        const double rel_cpu = cpu2 > 0 ? sqrt(cpu_err2 / cpu2) : sqrt(cpu_err2);
        /* FP8 vs float64: e4m3's own error (about 5.3e-2 on N(0, 1)) */
        const double tol = fp8 ? 6e-2 : tolerance(c);
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "rel_l2 %.2e (tol %.0e) rows %lld unwritten %lld stray %lld lse_bad %lld lse_err %.1e",
                         rel, tol, (long long)checked, (long long)unwritten, (long long)stray,
                         (long long)lse_bad, lse_err);
        if (fp8)
            snprintf(msg + n, sizeof msg - (size_t)n, "; vs CPU FP8 rel_l2 %.2e (tol 1e-2)", rel_cpu);
        if (unwritten || stray || lse_bad || !(rel <= tol) || (fp8 && !(rel_cpu <= 1e-2)))
            fail(c, msg);
        else {
            printf("ok   %-58s %s\n", c->name, msg);
            passes++;
        }
        free(ref);
        free(scores);
        free(row);
    }
    free(first);
    free(again);
    free(lse_first);
    free(lse_again);
out:
    free(cpu_o);
    free(cpu_lse);
    cudaFree(g.dq);
    cudaFree(g.dk);
    cudaFree(g.dv);
    cudaFree(g.dqkv);
    cudaFree(g.dout);
    cudaFree(g.dlse);
    cudaFree(g.ws);
    free(q.val);
    free(k.val);
    free(v.val);
}

static gcase make(int64_t B, int64_t Sq, int64_t Skv, int64_t Hq, int64_t Hkv, int64_t D,
                  fattn_dtype dt, int causal, int layout, int lse)
{
    gcase c;
    memset(&c, 0, sizeof c);
    c.B = B, c.Sq = Sq, c.Skv = Skv, c.Hq = Hq, c.Hkv = Hkv, c.D = D, c.dt = dt;
    c.causal = causal, c.layout = layout, c.lse = lse, c.magnitude = 1.f;
    snprintf(c.name, sizeof c.name, "%s d%lld b%lld sq%lld skv%lld h%lld/%lld%s %s%s",
             fattn_dtype_name(dt), (long long)D, (long long)B, (long long)Sq, (long long)Skv,
             (long long)Hq, (long long)Hkv, causal ? " causal" : "", layout_name[layout],
             lse ? " lse" : "");
    return c;
}

/* Requests the CUDA path must refuse writing nothing: FATTN_ERR_UNSUPPORTED, or for fp32 (which
 * needs a workspace) FATTN_ERR_WORKSPACE without one and FATTN_ERR_INVALID_ARGUMENT for a NULL one
 * claimed to be large enough. The last two are supported requests, only the call is wrong. */
static void run_refusals(void)
{
    const int64_t B = 1, S = 64, H = 2;
    struct {
        const char *what;
        int64_t D;
        fattn_mode mode;
        float scale;
        int64_t stride_pad;
        fattn_dtype dt;
        fattn_status want;
        int claim_workspace; /* pass the needed byte count with a NULL workspace */
    } cases[] = {
        /* 72-byte rows break TMA's 16-byte rule, and the portable kernel has no d36 */
        {"head_dim 36 unsupported", 36, FATTN_MODE_NATIVE, 0.f, 0, FATTN_DTYPE_BF16, FATTN_ERR_UNSUPPORTED, 0},
        /* the rule is head_dim's, not the strides': 80-byte strides do not make d36 served */
        {"head_dim 36 with 16-byte strides unsupported", 36, FATTN_MODE_NATIVE, 0.f, 4, FATTN_DTYPE_F16,
         FATTN_ERR_UNSUPPORTED, 0},
        {"head_dim 12 unsupported", 12, FATTN_MODE_NATIVE, 0.f, 0, FATTN_DTYPE_F16, FATTN_ERR_UNSUPPORTED, 0},
        {"fp8 mode at head_dim 80 unsupported", 80, FATTN_MODE_FP8, 0.f, 0, FATTN_DTYPE_BF16, FATTN_ERR_UNSUPPORTED, 0},
        {"fp8 mode without workspace", 128, FATTN_MODE_FP8, 0.f, 0, FATTN_DTYPE_BF16, FATTN_ERR_WORKSPACE, 0},
        {"negative scale unsupported", 64, FATTN_MODE_NATIVE, -0.5f, 0, FATTN_DTYPE_BF16, FATTN_ERR_UNSUPPORTED, 0},
        {"unaligned stride unsupported", 64, FATTN_MODE_NATIVE, 0.f, 1, FATTN_DTYPE_BF16, FATTN_ERR_UNSUPPORTED, 0},
        {"fp32 without workspace", 64, FATTN_MODE_NATIVE, 0.f, 0, FATTN_DTYPE_F32, FATTN_ERR_WORKSPACE, 0},
        {"fp32 with a NULL workspace", 64, FATTN_MODE_NATIVE, 0.f, 0, FATTN_DTYPE_F32,
         FATTN_ERR_INVALID_ARGUMENT, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int64_t D = cases[i].D, hs = D + cases[i].stride_pad;
        const size_t es = fattn_dtype_size(cases[i].dt);
        const size_t n = (size_t)(B * S * H * hs + 64);
        void *dq, *dk, *dv, *dout;
        CUDA_OK(cudaMalloc(&dq, n * es));
        CUDA_OK(cudaMalloc(&dk, n * es));
        CUDA_OK(cudaMalloc(&dv, n * es));
        CUDA_OK(cudaMalloc(&dout, n * es));
        CUDA_OK(cudaMemset(dq, 0, n * es));
        CUDA_OK(cudaMemset(dk, 0, n * es));
        CUDA_OK(cudaMemset(dv, 0, n * es));
        CUDA_OK(cudaMemset(dout, 0xff, n * es));
        fattn_params p;
        fattn_params_bshd(&p, B, S, S, H, H, D, cases[i].dt, dq, dk, dv, dout);
        p.mode = cases[i].mode;
        p.scale = cases[i].scale;
        fattn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
        for (int t = 0; t < 4; t++) {
            ts[t]->stride_head = hs;
            ts[t]->stride_seq = H * hs;
            ts[t]->stride_batch = S * H * hs;
        }
        const fattn_status sup = fattn_cuda_supported(&p);
        size_t claimed = 0; /* a failed query leaves 0: the forward then answers WORKSPACE */
        if (cases[i].claim_workspace)
            (void)fattn_cuda_workspace_size(&p, &claimed);
        const fattn_status st = fattn_cuda_forward(&p, NULL, claimed, NULL);
        CUDA_OK(cudaDeviceSynchronize());
        unsigned char *host = (unsigned char *)host_alloc(n * es);
        CUDA_OK(cudaMemcpy(host, dout, n * es, cudaMemcpyDeviceToHost));
        size_t touched = 0;
        for (size_t j = 0; j < n * es; j++)
            touched += host[j] != 0xff;
        /* a missing workspace is the forward's refusal; the call itself is supported */
        const int sup_ok = cases[i].want == FATTN_ERR_WORKSPACE || cases[i].dt == FATTN_DTYPE_F32
                               ? sup == FATTN_OK
                               : sup == cases[i].want;
        gcase c;
        memset(&c, 0, sizeof c);
        snprintf(c.name, sizeof c.name, "refuse: %s", cases[i].what);
        char msg[600];
        snprintf(msg, sizeof msg, "forward %s, supported %s, bytes touched %zu, message \"%s\"",
                 fattn_status_name(st), fattn_status_name(sup), touched, fattn_last_error());
        if (st != cases[i].want || !sup_ok || touched || fattn_last_error()[0] == '\0')
            fail(&c, msg);
        else {
            printf("ok   %-58s %s\n", c.name, msg);
            passes++;
        }
        free(host);
        cudaFree(dq);
        cudaFree(dk);
        cudaFree(dv);
        cudaFree(dout);
    }
}

#define MAX_CASES 512

/* The case in FP8 mode, named so. */
static gcase as_fp8(gcase c)
{
    c.mode = FATTN_MODE_FP8;
    strncat(c.name, " fp8", sizeof c.name - strlen(c.name) - 1);
    return c;
}

/* --filter's alternatives: a case runs when its name holds any of the comma-separated parts. */
static int name_matches(const char *name, const char *filter)
{
    char part[64];
    for (const char *at = filter; *at;) {
        const size_t len = strcspn(at, ",");
        if (len > 0 && len < sizeof part) {
            memcpy(part, at, len);
            part[len] = '\0';
            if (strstr(name, part))
                return 1;
        }
        at += len + (at[len] == ',');
    }
    return 0;
}

int main(int argc, char **argv)
{
    int small = 0;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small"))
            small = 1;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            filter = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--small] [--seed N] [--filter SUBSTRING[,SUBSTRING...]]\n", argv[0]);
            return 2;
        }
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device: skipping the GPU tests\n");
        return 77;
    }
    struct cudaDeviceProp prop;
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    const char *force = getenv("FATTN_FORCE_PORTABLE");
    hopper_path = prop.major == 9 && prop.minor == 0 &&
                  !(force != NULL && force[0] != '\0' && strcmp(force, "0") != 0);
    printf("device: %s (sm%d%d); FATTN_FORCE_PORTABLE=%s; seed %llu%s\n", prop.name, prop.major,
           prop.minor, force ? force : "(unset)", (unsigned long long)seed,
           small ? "; small shapes only" : "");

    static gcase cases[MAX_CASES];
    int n = 0;
/* A case past the array's end is a test bug, reported before anything runs. */
#define ADD_CASE(c)                                                                                \
    do {                                                                                           \
        if (n == MAX_CASES) {                                                                      \
            fprintf(stderr, "test_gpu_forward: more than MAX_CASES (%d) cases\n", MAX_CASES);     \
            return 1;                                                                              \
        }                                                                                          \
        cases[n++] = (c);                                                                          \
    } while (0)
    const int64_t dims[] = {64, 96, 128, 192, 256};
    const fattn_dtype dts[] = {FATTN_DTYPE_BF16, FATTN_DTYPE_F16, FATTN_DTYPE_F32};
    for (int di = 0; di < 5; di++)
        for (int ti = 0; ti < 3; ti++) {
            const int64_t D = dims[di];
            const fattn_dtype dt = dts[ti];
            /* The edge matrix: seqlen 1, tails off every tile size, Sq != Skv with causal both
             * ways, GQA 4:1 and 8:1, MQA, every layout, LSE. */
            ADD_CASE(make(2, 1, 1, 2, 2, D, dt, 0, L_BSHD, 1));
            ADD_CASE(make(1, 1, 77, 4, 1, D, dt, 1, L_BHSD, 1));
            ADD_CASE(make(2, 200, 200, 4, 4, D, dt, 1, L_QKV, 1));
            ADD_CASE(make(1, 77, 300, 8, 2, D, dt, 1, L_PADDED, 1));
            ADD_CASE(make(1, 300, 77, 8, 1, D, dt, 1, L_BSHD, 1));
            ADD_CASE(make(2, 129, 65, 8, 1, D, dt, 0, L_BHSD, 0));
            /* More tiles than a GPU has multiprocessors, so each persistent CTA runs several, and
             * causal Sq > Skv, so some of them see no key at all (their rows must come out zero). */
            ADD_CASE(make(4, 700, 100, 16, 4, D, dt, 1, L_BHSD, 1));
            if (!small) {
                ADD_CASE(make(1, 257, 513, 16, 2, D, dt, 0, L_PADDED, 1));
                ADD_CASE(make(1, 513, 257, 16, 2, D, dt, 1, L_BHSD, 0));
                ADD_CASE(make(1, 190, 190, 8, 8, D, dt, 0, L_QKV, 0));
                ADD_CASE(make(3, 130, 130, 2, 2, D, dt, 1, L_BSHD, 1));
            }
        }
    /* Head dims between the Hopper kernel's instantiations (48, 64, 80, 96, 128, 160, 192, 256;
     * 96 and 192 are in the matrix above), each at and between them: it runs them on the next one
     * up over zero-filled columns, which must neither change the result nor reach memory past
     * head_dim (the padded layout's gaps). Skipped with the reason
     * off the Hopper path. Seqlen 1, tails 65/257/1000, causal both ways, GQA and MQA, every
     * layout, LSE. */
    const int64_t padded_dims[] = {8, 16, 40, 48, 56, 72, 80, 88, 104, 136, 160, 176, 200, 248};
    for (size_t di = 0; di < sizeof padded_dims / sizeof padded_dims[0]; di++)
        for (int ti = 0; ti < (padded_dims[di] <= 128 ? 3 : 2); ti++) { /* fp32: tf32 up to 128 */
            const int64_t D = padded_dims[di];
            gcase f[] = {make(2, 1, 1, 2, 2, D, dts[ti], 0, L_BSHD, 1),
                         make(1, 65, 257, 8, 2, D, dts[ti], 1, L_PADDED, 1),
                         make(2, 257, 65, 4, 1, D, dts[ti], 1, L_BHSD, 1),
                         make(1, 1000, 1000, 2, 2, D, dts[ti], 0, L_QKV, 0)};
            const size_t nf = small ? 3 : sizeof f / sizeof f[0];
            for (size_t i = 0; i < nf; i++) {
                f[i].hopper_only = 1;
                ADD_CASE(f[i]);
            }
        }
    /* FP8 mode (where the device has an FP8 kernel; else each case is skipped with the reason):
     * head dims, causal both ways, GQA/MQA, odd lengths, every layout, LSE. */
    const int64_t fp8_dims[] = {64, 96, 128, 192, 256};
    for (int di = 0; di < 5; di++)
        for (int ti = 0; ti < 2; ti++) {
            const int64_t D = fp8_dims[di];
            gcase f[] = {make(2, 1, 1, 2, 2, D, dts[ti], 0, L_BSHD, 1),
                         make(2, 200, 200, 4, 4, D, dts[ti], 1, L_QKV, 1),
                         make(1, 77, 300, 8, 2, D, dts[ti], 1, L_PADDED, 1),
                         make(1, 300, 77, 8, 1, D, dts[ti], 1, L_BSHD, 1),
                         make(2, 129, 65, 8, 1, D, dts[ti], 0, L_BHSD, 0),
                         make(4, 700, 100, 16, 4, D, dts[ti], 1, L_BHSD, 1)};
            for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
                ADD_CASE(as_fp8(f[i]));
        }
    /* fp32 inputs 4 bytes off 16-byte alignment: the tf32 staging pass reads them element by
     * element (its 16-byte loads need aligned rows); TMA never reads them. */
    for (int di = 0; di < 2; di++) {
        gcase c = make(2, 129, 300, 4, 2, di ? 128 : 40, FATTN_DTYPE_F32, di, di ? L_PADDED : L_BHSD, 1);
        c.skew = 1;
        c.hopper_only = !di; /* the portable kernel has no d40 */
        strncat(c.name, " skew4B", sizeof c.name - strlen(c.name) - 1);
        ADD_CASE(c);
    }
    /* Larger magnitudes stress the running maximum and the rescaling. */
    {
        gcase c = make(1, 190, 333, 4, 2, 128, FATTN_DTYPE_BF16, 0, L_BSHD, 1);
        c.magnitude = 4.f;
        strncat(c.name, " x4", sizeof c.name - strlen(c.name) - 1);
        ADD_CASE(c);
        gcase e = make(1, 190, 333, 4, 2, 64, FATTN_DTYPE_F16, 1, L_BSHD, 1);
        e.scale = 0.3f;
        strncat(e.name, " scale0.3", sizeof e.name - strlen(e.name) - 1);
        ADD_CASE(e);
    }
    if (!small) {
        /* Tile counts past a round of 132 CTAs with a remainder, every row checked: on an H200 a
         * build with HOPPER_SPLIT_TAIL=1 and HOPPER_SPLIT_MIN_SAVED=0 (config.cuh) splits their
         * last round along the keys into runs of 2-3 key blocks, the last one masked (d128: O in
         * its own tiles; d256: O staged in Q's). The FP8 ones (192- and 128-row tiles) check that
         * FP8 mode, which never splits, is untouched by a split build. */
        ADD_CASE(make(2, 1000, 300, 24, 6, 128, FATTN_DTYPE_BF16, 0, L_BHSD, 1));
        ADD_CASE(make(1, 600, 300, 40, 8, 256, FATTN_DTYPE_F16, 0, L_BSHD, 1));
        gcase f8[] = {make(2, 1000, 1500, 24, 6, 128, FATTN_DTYPE_BF16, 0, L_BHSD, 1),
                      make(1, 600, 1500, 40, 8, 256, FATTN_DTYPE_F16, 0, L_BSHD, 1)};
        for (size_t i = 0; i < sizeof f8 / sizeof f8[0]; i++)
            ADD_CASE(as_fp8(f8[i]));
        /* Large shapes: float64 reference on a subset of rows (first, last, random). */
        gcase big[] = {
            make(1, 15708, 15708, 32, 32, 128, FATTN_DTYPE_BF16, 0, L_BSHD, 1),
            make(1, 15708, 15708, 8, 8, 128, FATTN_DTYPE_F16, 0, L_BHSD, 0),
            make(1, 8192, 8192, 32, 8, 128, FATTN_DTYPE_BF16, 1, L_BSHD, 1),
            /* causal K and V of 8 MB per kv head: the Hopper kernel's tiles go in several L2
             * sections of whole GQA groups (scheduler.cuh) */
            make(1, 16384, 16384, 32, 8, 128, FATTN_DTYPE_BF16, 1, L_BSHD, 1),
            make(2, 4096, 4096, 8, 8, 256, FATTN_DTYPE_BF16, 0, L_BSHD, 0),
            make(2, 4096, 4096, 16, 16, 64, FATTN_DTYPE_F16, 1, L_BHSD, 1),
            make(1, 3000, 5000, 8, 8, 96, FATTN_DTYPE_BF16, 1, L_BHSD, 0),
            make(1, 3000, 3000, 8, 8, 96, FATTN_DTYPE_F16, 1, L_QKV, 1),
            make(1, 5000, 3000, 8, 8, 192, FATTN_DTYPE_F16, 1, L_BSHD, 1),
            make(1, 4100, 4100, 8, 2, 128, FATTN_DTYPE_F32, 0, L_BSHD, 1),
            make(2, 3000, 3000, 8, 8, 64, FATTN_DTYPE_F32, 1, L_BHSD, 1),
        };
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
            big[i].rows_checked = 24;
            big[i].pairs_checked = 4;
            ADD_CASE(big[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        if (filter && !name_matches(cases[i].name, filter))
            continue;
        run_case(&cases[i], seed + (uint64_t)i * 0x9E3779B97F4A7C15ull);
        fflush(stdout);
    }
    /* The refusal cases are all named "refuse: ...": a filter that is part of "refuse" selects them. */
    if (!filter || strstr("refuse", filter))
        run_refusals();
    printf("summary: %d passed, %d failed, %d skipped (seed %llu)\n", passes, failures, skips,
           (unsigned long long)seed);
    return failures ? 1 : 0;
}
