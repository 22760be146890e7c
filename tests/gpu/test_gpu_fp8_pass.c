/* The Hopper FP8 quantisation pass (src/cuda/hopper/quantize.cu) byte for byte against a host
 * recomputation with src/core/fp8.h's functions: q8, k8 and V^T (its 32-key slot permutation, the
 * zero keys up to keys_pad and the zero columns/rows of the d64, d96 and d192 padding included) and the bits of
 * every Q block and K/V head factor. The workspace is filled with 0xAB first, so a byte the pass
 * should write and does not shows up. Cases: ragged seqlens, MHA/GQA/MQA, batch 2, d64/d96/d128/d192/d256,
 * bf16 and fp16, views read 16 bytes at a time and views that cannot be (odd strides), and inputs
 * holding Inf, NaN, an all-zero Q block and values 2^-100 below their block's amax. Links
 * libfattn statically for the pass's internal entry points. Exits 77 (CTest: skipped) without an
 * sm_90 device. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/internal.h"
#include "../../src/cuda/hopper/quantize.h"
#include "gpu_util.h"

typedef struct pass_case {
    const char *name;
    int64_t b, sq, skv, hq, hkv, d;
    fattn_dtype dtype;
    int bhsd;    /* else BSHD */
    int pad;     /* elements added to the head and seq strides: odd ones defeat 16-byte loads */
    int special; /* Inf, NaN, zero and tiny entries */
} pass_case;

/* One input tensor [b][s][h][d] on the host (dtype-rounded values) with its strides. */
typedef struct host_tensor {
    float *val;
    int64_t sb, ss, sh, total;
} host_tensor;

static void make_tensor(const pass_case *c, int64_t s_len, int64_t heads, host_tensor *t)
{
    if (c->bhsd) {
        t->ss = c->d + c->pad, t->sh = s_len * t->ss + c->pad, t->sb = heads * t->sh;
    } else {
        t->sh = c->d + c->pad, t->ss = heads * t->sh + c->pad, t->sb = s_len * t->ss;
    }
    t->total = c->b * t->sb;
    t->val = calloc((size_t)t->total, sizeof(float));
}

static float *at(const host_tensor *t, int64_t b, int64_t s, int64_t h)
{
    return t->val + b * t->sb + s * t->ss + h * t->sh;
}

static void fill(const pass_case *c, gpu_rng *r, host_tensor *t, int64_t s_len, int64_t heads, float mul)
{
    for (int64_t b = 0; b < c->b; b++)
        for (int64_t s = 0; s < s_len; s++)
            for (int64_t h = 0; h < heads; h++)
                for (int64_t d = 0; d < c->d; d++) at(t, b, s, h)[d] = gpu_rng_normal(r) * mul;
}

/* Special entries: an Inf (its Q block's or K/V head's factor must be NaN), a NaN (passed over by
 * amax, its own bytes 0x7F), an all-zero Q block (E = 0), a row 2^-100 below its block's amax
 * (fp16: as far as its subnormals go), and in bf16 a row of subnormals 2^149 below it. */
static void add_specials(const pass_case *c, host_tensor *q, host_tensor *k, host_tensor *v)
{
    const float tiny = c->dtype == FATTN_DTYPE_BF16 ? 0x1p-100f : 0x1p-20f;
    const int64_t last_q = c->sq - 1, last_k = c->skv - 1;
    at(q, 0, last_q, c->hq - 1)[c->d - 1] = INFINITY;
    if (c->sq > FATTN_FP8_Q_BLOCK) {
        at(q, 0, FATTN_FP8_Q_BLOCK, 0)[3] = NAN;
        for (int64_t d = 0; d < c->d; d++) at(q, 0, FATTN_FP8_Q_BLOCK + 1, 0)[d] *= tiny;
    }
    if (c->hq > 1)
        for (int64_t s = 0; s < c->sq && s < FATTN_FP8_Q_BLOCK; s++) memset(at(q, 0, s, 1), 0, sizeof(float) * c->d);
    at(k, c->b - 1, last_k, c->hkv - 1)[0] = -INFINITY;
    at(k, 0, last_k / 2, 0)[1] = NAN;
    for (int64_t d = 0; d < c->d; d++) at(k, 0, 0, 0)[d] *= tiny;
    at(v, 0, last_k, 0)[c->d / 2] = INFINITY;
    at(v, c->b - 1, 0, c->hkv - 1)[2] = NAN;
    if (c->dtype == FATTN_DTYPE_BF16 && c->sq > 2 && c->skv > 2) {
        /* bf16 subnormals under an amax of 2^20: x * 2^-20 is an inexact fp32 subnormal, which a
         * multiply contracted into the rotation's first add would round differently */
        host_tensor *t[2] = {q, k};
        for (int i = 0; i < 2; i++) {
            float *row = at(t[i], 0, 1, 0);
            for (int64_t d = 0; d < c->d; d++) row[d] = -0.0f;
            row[0] = 0x1.4p-129f, row[1] = -0x1p-129f;
            at(t[i], 0, 2, 0)[0] = 0x1p20f;
        }
    }
}

static float amax_of(const pass_case *c, const host_tensor *t, int64_t b, int64_t h, int64_t s0, int64_t s1)
{
    float m = 0.0f;
    for (int64_t s = s0; s < s1; s++)
        for (int64_t d = 0; d < c->d; d++) m = fmaxf(m, fabsf(at(t, b, s, h)[d]));
    return m;
}

static float factor_or_nan(int poisoned, float factor) { return poisoned ? gpu_bits_f32(0x7fc00000u) : factor; }

/* fp8.h's e4m3(R(x * 2^-e) * c) for one row of Q or K, then zeros up to the stored dim. */
static void rotated_row(const float *src, int D, int dim, int e, uint8_t *out)
{
    float x[256];
    for (int d = 0; d < D; d++) x[d] = fattn_fp8_scale2(src[d], -e);
    fattn_fp8_rotate(x, D);
    for (int d = 0; d < dim; d++) out[d] = d < D ? fattn_fp8_e4m3_rn(x[d] * fattn_fp8_c(D)) : 0;
}

/* The expected workspace regions, laid out as fp8_layout says. */
typedef struct expected {
    uint8_t *q8, *k8, *vt8;
    float *q_factor, *v_factor;
} expected;

static void recompute(const pass_case *c, const fattn_params *p, const fp8_layout *l, const host_tensor *q,
                      const host_tensor *k, const host_tensor *v, expected *x)
{
    const int D = (int)c->d, dim = l->dim;
    const float cc = fattn_fp8_c(D), scale_log2 = fattn_effective_scale(p) * 1.4426950408889634f;
    for (int64_t b = 0; b < c->b; b++)
        for (int64_t g = 0; g < c->hkv; g++) {
            const int64_t slot = b * c->hkv + g;
            const float ak = amax_of(c, k, b, g, 0, c->skv), av = amax_of(c, v, b, g, 0, c->skv);
            const int ek = fattn_fp8_exponent(ak), ev = fattn_fp8_exponent(av);
            for (int64_t t = 0; t < c->skv; t++)
                rotated_row(at(k, b, t, g), D, dim, ek, x->k8 + (slot * c->skv + t) * dim);
            x->v_factor[slot] =
                factor_or_nan(isinf(av), fattn_fp8_scale2(1.0f / FATTN_FP8_P_SCALE, ev - FATTN_FP8_V_SHIFT));
            for (int d = 0; d < dim; d++)
                for (int s = 0; s < l->keys_pad; s++) {
                    const int key = 32 * (s / 32) + fattn_fp8_key_of_slot(s % 32);
                    x->vt8[(slot * dim + d) * l->keys_pad + s] =
                        d < D && key < c->skv
                            ? fattn_fp8_e4m3_rn(fattn_fp8_scale2(at(v, b, key, g)[d], FATTN_FP8_V_SHIFT - ev))
                            : 0;
                }
            for (int64_t h = g * l->group; h < (g + 1) * l->group; h++)
                for (int blk = 0; blk < l->q_blocks; blk++) {
                    const int64_t r0 = (int64_t)blk * FATTN_FP8_Q_BLOCK,
                                  r1 = r0 + FATTN_FP8_Q_BLOCK < c->sq ? r0 + FATTN_FP8_Q_BLOCK : c->sq;
                    const float aq = amax_of(c, q, b, h, r0, r1);
                    const int eq = fattn_fp8_exponent(aq);
                    x->q_factor[(b * c->hq + h) * l->q_blocks + blk] =
                        factor_or_nan(isinf(aq) || isinf(ak),
                                      fattn_fp8_scale2(scale_log2 / (cc * cc * fattn_fp8_hadamard_n(D)), eq + ek));
                    for (int64_t s = r0; s < r1; s++)
                        rotated_row(at(q, b, s, h), D, dim, eq, x->q8 + ((b * c->hq + h) * c->sq + s) * dim);
                }
        }
}

/* Counts the bytes of got that differ from want and names the first (its index in the region). */
static int64_t compare(const char *cname, const char *what, const void *got, const void *want, size_t bytes)
{
    const uint8_t *g = got, *w = want;
    int64_t bad = 0;
    for (size_t i = 0; i < bytes; i++)
        if (g[i] != w[i] && bad++ == 0)
            printf("  %s: %s byte %zu is 0x%02x, want 0x%02x\n", cname, what, i, g[i], w[i]);
    if (bad) printf("  %s: %s: %lld of %zu bytes differ\n", cname, what, (long long)bad, bytes);
    return bad;
}

static void *upload(fattn_dtype dt, const host_tensor *t)
{
    const size_t bytes = (size_t)t->total * fattn_dtype_size(dt);
    void *host = malloc(bytes), *dev = NULL;
    gpu_store(dt, host, t->val, t->total);
    gpu_load(dt, host, t->val, t->total); /* the reference sees the stored values */
    if (host && cudaMalloc(&dev, bytes) == cudaSuccess) cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
    free(host);
    return dev;
}

static void set_view(fattn_tensor *t, void *data, const host_tensor *h)
{
    t->data = data, t->stride_batch = h->sb, t->stride_seq = h->ss, t->stride_head = h->sh;
}

static int run_case(const pass_case *c, gpu_rng *rng)
{
    host_tensor q, k, v;
    make_tensor(c, c->sq, c->hq, &q);
    make_tensor(c, c->skv, c->hkv, &k);
    make_tensor(c, c->skv, c->hkv, &v);
    fill(c, rng, &q, c->sq, c->hq, 3.0f);
    fill(c, rng, &k, c->skv, c->hkv, 0.5f);
    fill(c, rng, &v, c->skv, c->hkv, 40.0f);
    if (c->special) add_specials(c, &q, &k, &v);
    fattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = c->b, p.seqlen_q = c->sq, p.seqlen_kv = c->skv, p.heads_q = c->hq, p.heads_kv = c->hkv;
    p.head_dim = c->d, p.dtype = c->dtype, p.mode = FATTN_MODE_FP8;
    void *dq = upload(c->dtype, &q), *dk = upload(c->dtype, &k), *dv = upload(c->dtype, &v), *ws = NULL;
    set_view(&p.q, dq, &q);
    set_view(&p.k, dk, &k);
    set_view(&p.v, dv, &v);
    const fp8_layout l = fattn_fp8_layout(&p);
    uint8_t *got = malloc((size_t)l.bytes);
    expected x;
    x.q8 = calloc((size_t)(l.k8 - l.q8), 1), x.k8 = calloc((size_t)(l.vt8 - l.k8), 1);
    x.vt8 = calloc((size_t)(l.amax - l.vt8), 1);
    x.q_factor = calloc((size_t)(l.v_factor - l.q_factor), 1), x.v_factor = calloc((size_t)(l.bytes - l.v_factor), 1);
    if (!dq || !dk || !dv || !got || !x.q8 || !x.k8 || !x.vt8 || !x.q_factor || !x.v_factor ||
        cudaMalloc(&ws, (size_t)l.bytes) != cudaSuccess) {
        printf("FAIL %s: allocation\n", c->name);
        return 1;
    }
    cudaMemset(ws, 0xAB, (size_t)l.bytes);
    const fattn_status st = fattn_fp8_quantise(&p, &l, ws, NULL);
    const cudaError_t ce = cudaDeviceSynchronize();
    if (st != FATTN_OK || ce != cudaSuccess) {
        printf("FAIL %s: %s %s / %s\n", c->name, fattn_status_name(st), fattn_last_error(), cudaGetErrorString(ce));
        return 1;
    }
    cudaMemcpy(got, ws, (size_t)l.bytes, cudaMemcpyDeviceToHost);
    recompute(c, &p, &l, &q, &k, &v, &x);
    const int64_t q_bytes = c->b * c->hq * c->sq * l.dim, k_bytes = c->b * c->hkv * c->skv * l.dim;
    const int64_t bad =
        compare(c->name, "q8", got + l.q8, x.q8, (size_t)q_bytes) +
        compare(c->name, "k8", got + l.k8, x.k8, (size_t)k_bytes) +
        compare(c->name, "vt8", got + l.vt8, x.vt8, (size_t)(c->b * c->hkv * l.dim * l.keys_pad)) +
        compare(c->name, "q_factor", got + l.q_factor, x.q_factor,
                (size_t)(c->b * c->hq * l.q_blocks) * sizeof(float)) +
        compare(c->name, "v_factor", got + l.v_factor, x.v_factor, (size_t)(c->b * c->hkv) * sizeof(float));
    printf("%s %s: q8 %lld, k8 %lld, vt8 %lld bytes (stored dim %d, keys_pad %d)%s\n", bad ? "FAIL" : "PASS", c->name,
           (long long)q_bytes, (long long)k_bytes, (long long)(c->b * c->hkv * l.dim * l.keys_pad), l.dim, l.keys_pad,
           bad ? "" : ", every byte and factor as fp8.h gives them");
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(ws);
    free(q.val), free(k.val), free(v.val), free(got);
    free(x.q8), free(x.k8), free(x.vt8), free(x.q_factor), free(x.v_factor);
    return bad ? 1 : 0;
}

int main(void)
{
    int n = 0, major = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0 ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) != cudaSuccess || major != 9) {
        printf("SKIP: no sm_90 CUDA device (the pass is built for the Hopper kernel)\n");
        return 77;
    }
    const fattn_dtype BF = FATTN_DTYPE_BF16, F16 = FATTN_DTYPE_F16;
    const pass_case cases[] = {
        {"d128 bf16 bshd 1x1000x3:3", 1, 1000, 1000, 3, 3, 128, BF, 0, 0, 1},
        {"d128 fp16 bhsd 1x1000x3:1", 1, 1000, 1000, 3, 1, 128, F16, 1, 0, 1},
        {"d128 bf16 odd strides 1x1000x3:3", 1, 1000, 1000, 3, 3, 128, BF, 0, 1, 0},
        {"d64 bf16 bshd 2x1000x3:1", 2, 1000, 1000, 3, 1, 64, BF, 0, 0, 1},
        {"d64 fp16 odd strides 1x333x1000 3:3", 1, 333, 1000, 3, 3, 64, F16, 1, 3, 1},
        {"d64 bf16 bshd 1x1x77 2:1", 1, 1, 77, 2, 1, 64, BF, 0, 0, 0},
        {"d256 bf16 bshd 1x1000x3:1", 1, 1000, 1000, 3, 1, 256, BF, 0, 0, 1},
        {"d256 fp16 odd strides 2x200x77 4:2", 2, 200, 77, 4, 2, 256, F16, 0, 5, 1},
        {"d96 bf16 bshd 1x1000x3:1", 1, 1000, 1000, 3, 1, 96, BF, 0, 0, 1},
        {"d96 fp16 odd strides 1x333x300 2:2", 1, 333, 300, 2, 2, 96, F16, 1, 3, 1},
        {"d192 bf16 bshd 1x1000x3:3", 1, 1000, 1000, 3, 3, 192, BF, 0, 0, 1},
        {"d192 fp16 odd strides 2x200x77 4:2", 2, 200, 77, 4, 2, 192, F16, 0, 5, 1},
        {"d96 bf16 bhsd 2x129x200 4:2", 2, 129, 200, 4, 2, 96, BF, 1, 0, 0},
    };
    gpu_rng rng;
    gpu_rng_seed(&rng, 20261203);
    int failed = 0, passed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int r = run_case(&cases[i], &rng);
        failed += r != 0;
        passed += r == 0;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
