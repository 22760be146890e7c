/* FP8 mode (mode 1) on the GPU against two float64 references, on sampled rows:
 *   - the FP8 semantics of src/core/fp8.h (the same e4m3 bytes of Q, K and V, scores, softmax and
 *     the P rounding in double): what the kernel must compute, up to its online-softmax order;
 *   - exact attention on the dtype-rounded inputs: the accuracy the issue bars (relative L2 on
 *     N(0, 1), RMSE on FA3's outlier test), with the seed's bare e4m3 cast measured beside it.
 * Outputs are NaN-poisoned before each call; every written element must be finite. Exits 77 (CTest:
 * skipped) without a CUDA device or where the device has no FP8 kernel. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/core/fp8.h"
#include "fattn.h"
#include "gpu_util.h"

typedef struct fp8_case {
    const char *name;
    int64_t b, sq, skv, hq, hkv, d;
    int causal, bhsd, outliers;
    fattn_dtype dtype;
    float q_mul, k_mul, v_mul;
    double max_vs_fp8, max_rel_l2, max_rmse; /* bounds (0: not checked) */
    int rows;                                 /* sampled query rows per (batch, head), 0: all */
} fp8_case;

static void fill(gpu_rng *r, float *x, int64_t n, int outliers, float mul)
{
    for (int64_t i = 0; i < n; i++) {
        float v = gpu_rng_normal(r);
        /* FA3's outlier test: 0.1% of the entries drawn from N(0, 10^2) */
        if (outliers && gpu_rng_next(r) % 1000 == 0) v = 10.0f * gpu_rng_normal(r);
        x[i] = v * mul;
    }
}

/* Element (b, s, h, 0) of a contiguous BSHD or BHSD tensor. */
static int64_t at(const fp8_case *c, int64_t s_len, int64_t heads, int64_t b, int64_t s, int64_t h)
{
    return c->bhsd ? ((b * heads + h) * s_len + s) * c->d : ((b * s_len + s) * heads + h) * c->d;
}

static void set_view(const fp8_case *c, fattn_tensor *t, void *data, int64_t s_len, int64_t heads)
{
    t->data = data;
    t->stride_batch = s_len * heads * c->d;
    t->stride_seq = c->bhsd ? c->d : heads * c->d;
    t->stride_head = c->bhsd ? s_len * c->d : c->d;
}

static float amax_rows(const fp8_case *c, const float *x, int64_t s_len, int64_t heads, int64_t b, int64_t h,
                       int64_t r0, int64_t rows)
{
    float m = 0.0f;
    for (int64_t s = r0; s < r0 + rows && s < s_len; s++)
        for (int64_t d = 0; d < c->d; d++) m = fmaxf(m, fabsf(x[at(c, s_len, heads, b, s, h) + d]));
    return m;
}

/* One row quantised as fp8.h defines: scaled by 2^-e, rotated when asked, times mul, to e4m3. */
static void quant_row(const float *src, int64_t D, int e, int rotate, float mul, double *out)
{
    float x[256];
    for (int64_t d = 0; d < D; d++) x[d] = fattn_fp8_scale2(src[d], -e);
    if (rotate) fattn_fp8_rotate(x, (int)D);
    for (int64_t d = 0; d < D; d++) out[d] = fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn(x[d] * mul));
}

typedef struct row_refs {
    double *fp8, *exact, *bare; /* [D] each */
    double lse;                 /* of the FP8 logits */
} row_refs;

/* The three references for query row i of (b, h). kq/vq: that head's quantised K and V rows. */
static void reference_row(const fp8_case *c, const float *q, const float *k, const float *v, const double *kq,
                          const double *vq, int ek, int ev, int64_t b, int64_t h, int64_t i, row_refs *out,
                          double *s_fp8, double *s_exact, double *s_bare)
{
    const int64_t D = c->d, g = h / (c->hq / c->hkv);
    const double scale = 1.0 / sqrt((double)D);
    const int64_t blk = i / FATTN_FP8_Q_BLOCK;
    const int eq = fattn_fp8_exponent(amax_rows(c, q, c->sq, c->hq, b, h, blk * FATTN_FP8_Q_BLOCK, FATTN_FP8_Q_BLOCK));
    double qq[256];
    quant_row(q + at(c, c->sq, c->hq, b, i, h), D, eq, 1, fattn_fp8_c((int)D), qq);
    const double cc = fattn_fp8_c((int)D), factor = ldexp(scale, eq + ek) / (cc * cc * fattn_fp8_hadamard_n((int)D));
    const int64_t last = c->causal ? i + c->skv - c->sq : c->skv - 1;
    double m8 = -INFINITY, me = -INFINITY, mb = -INFINITY;
    for (int64_t t = 0; t <= last && t < c->skv; t++) {
        const float *kr = k + at(c, c->skv, c->hkv, b, t, g), *qr = q + at(c, c->sq, c->hq, b, i, h);
        double a = 0, e = 0, bc = 0;
        for (int64_t d = 0; d < D; d++) {
            a += qq[d] * kq[t * D + d];
            e += (double)qr[d] * kr[d];
            bc += (double)fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn(qr[d])) *
                  fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn(kr[d]));
        }
        s_fp8[t] = a * factor;
        s_exact[t] = e * scale;
        s_bare[t] = bc * scale;
        m8 = fmax(m8, s_fp8[t]);
        me = fmax(me, s_exact[t]);
        mb = fmax(mb, s_bare[t]);
    }
    double l8 = 0, le = 0, lb = 0;
    memset(out->fp8, 0, sizeof(double) * D);
    memset(out->exact, 0, sizeof(double) * D);
    memset(out->bare, 0, sizeof(double) * D);
    for (int64_t t = 0; t <= last && t < c->skv; t++) {
        const double p8 = exp(s_fp8[t] - m8), pe = exp(s_exact[t] - me), pb = exp(s_bare[t] - mb);
        const double p8q = fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn((float)p8 * FATTN_FP8_P_SCALE));
        const double pbq = fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn((float)pb));
        l8 += p8;
        le += pe;
        lb += pb;
        const float *vr = v + at(c, c->skv, c->hkv, b, t, g);
        for (int64_t d = 0; d < D; d++) {
            out->fp8[d] += p8q * vq[t * D + d];
            out->exact[d] += pe * vr[d];
            out->bare[d] += pbq * fattn_fp8_e4m3_to_float(fattn_fp8_e4m3_rn(vr[d]));
        }
    }
    out->lse = l8 > 0 ? m8 + log(l8) : -INFINITY;
    for (int64_t d = 0; d < D; d++) {
        out->fp8[d] = l8 > 0 ? out->fp8[d] * ldexp(1.0, ev - FATTN_FP8_V_SHIFT) / FATTN_FP8_P_SCALE / l8 : 0;
        out->exact[d] = le > 0 ? out->exact[d] / le : 0;
        out->bare[d] = lb > 0 ? out->bare[d] / lb : 0;
    }
}

static int run_case(const fp8_case *c, gpu_rng *rng)
{
    const int64_t D = c->d, nq = c->b * c->sq * c->hq * D, nk = c->b * c->skv * c->hkv * D;
    const size_t es = fattn_dtype_size(c->dtype);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o = malloc(nq * 4);
    void *hq = malloc(nq * es), *hk = malloc(nk * es), *hv = malloc(nk * es), *ho = malloc(nq * es);
    double *kq = malloc(sizeof(double) * c->skv * D), *vq = malloc(sizeof(double) * c->skv * D);
    double *s3 = malloc(sizeof(double) * 3 * c->skv), *refs = malloc(sizeof(double) * 3 * D);
    if (!q || !k || !v || !o || !hq || !hk || !hv || !ho || !kq || !vq || !s3 || !refs) {
        printf("FAIL %s: host allocation\n", c->name);
        return 1;
    }
    fill(rng, q, nq, c->outliers, c->q_mul);
    fill(rng, k, nk, c->outliers, c->k_mul);
    fill(rng, v, nk, c->outliers, c->v_mul);
    gpu_store(c->dtype, hq, q, nq);
    gpu_store(c->dtype, hk, k, nk);
    gpu_store(c->dtype, hv, v, nk);
    gpu_load(c->dtype, hq, q, nq); /* the references see the stored values */
    gpu_load(c->dtype, hk, k, nk);
    gpu_load(c->dtype, hv, v, nk);

    void *dq, *dk, *dv, *dout, *ws = NULL;
    float *dlse, *lse = malloc(sizeof(float) * c->b * c->hq * c->sq);
    fattn_params p;
    memset(&p, 0, sizeof p);
    p.batch = c->b, p.seqlen_q = c->sq, p.seqlen_kv = c->skv, p.heads_q = c->hq, p.heads_kv = c->hkv;
    p.head_dim = D, p.dtype = c->dtype, p.mode = FATTN_MODE_FP8, p.causal = c->causal;
    size_t wsb = 0;
    if (cudaMalloc(&dq, nq * es) || cudaMalloc(&dk, nk * es) || cudaMalloc(&dv, nk * es) ||
        cudaMalloc(&dout, nq * es) || cudaMalloc((void **)&dlse, sizeof(float) * c->b * c->hq * c->sq) || !lse) {
        printf("FAIL %s: cudaMalloc\n", c->name);
        return 1;
    }
    set_view(c, &p.q, dq, c->sq, c->hq);
    set_view(c, &p.k, dk, c->skv, c->hkv);
    set_view(c, &p.v, dv, c->skv, c->hkv);
    set_view(c, &p.o, dout, c->sq, c->hq);
    p.lse = dlse;
    cudaMemcpy(dq, hq, nq * es, cudaMemcpyHostToDevice);
    cudaMemcpy(dk, hk, nk * es, cudaMemcpyHostToDevice);
    cudaMemcpy(dv, hv, nk * es, cudaMemcpyHostToDevice);
    cudaMemset(dout, 0xFF, nq * es); /* NaN in fp16 and bf16 */
    fattn_status st = fattn_cuda_workspace_size(&p, &wsb);
    if (st == FATTN_OK && wsb > 0 && cudaMalloc(&ws, wsb)) st = FATTN_ERR_CUDA;
    if (st == FATTN_OK) st = fattn_cuda_forward(&p, ws, wsb, NULL);
    if (st == FATTN_ERR_UNSUPPORTED) {
        printf("SKIP %s: %s\n", c->name, fattn_last_error());
        return 77;
    }
    cudaError_t ce = cudaDeviceSynchronize();
    if (st != FATTN_OK || ce != cudaSuccess) {
        printf("FAIL %s: %s %s / %s\n", c->name, fattn_status_name(st), fattn_last_error(), cudaGetErrorString(ce));
        return 1;
    }
    cudaMemcpy(ho, dout, nq * es, cudaMemcpyDeviceToHost);
    gpu_load(c->dtype, ho, o, nq);
    cudaMemcpy(lse, dlse, sizeof(float) * c->b * c->hq * c->sq, cudaMemcpyDeviceToHost);
    double lse_err = 0;

    double e8 = 0, n8 = 0, ee = 0, ne = 0, eb = 0, cnt = 0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < nq; i++) nonfinite += !isfinite(o[i]);
    for (int64_t b = 0; b < c->b; b++)
        for (int64_t g = 0; g < c->hkv; g++) {
            const int ek = fattn_fp8_exponent(amax_rows(c, k, c->skv, c->hkv, b, g, 0, c->skv));
            const int ev = fattn_fp8_exponent(amax_rows(c, v, c->skv, c->hkv, b, g, 0, c->skv));
            for (int64_t t = 0; t < c->skv; t++) {
                quant_row(k + at(c, c->skv, c->hkv, b, t, g), D, ek, 1, fattn_fp8_c((int)D), kq + t * D);
                quant_row(v + at(c, c->skv, c->hkv, b, t, g), D, ev, 0, (float)(1 << FATTN_FP8_V_SHIFT), vq + t * D);
            }
            for (int64_t h = g * (c->hq / c->hkv); h < (g + 1) * (c->hq / c->hkv); h++) {
                const int64_t rows = c->rows ? c->rows : c->sq;
                for (int64_t r = 0; r < rows; r++) {
                    const int64_t i = c->rows ? (int64_t)(gpu_rng_next(rng) % (uint64_t)c->sq) : r;
                    row_refs rr = {refs, refs + D, refs + 2 * D, 0.0};
                    reference_row(c, q, k, v, kq, vq, ek, ev, b, h, i, &rr, s3, s3 + c->skv, s3 + 2 * c->skv);
                    const float *got = o + at(c, c->sq, c->hq, b, i, h);
                    const double lg = lse[(b * c->hq + h) * c->sq + i];
                    lse_err = fmax(lse_err, isinf(rr.lse) ? (lg == rr.lse ? 0 : INFINITY)
                                                          : fabs(lg - rr.lse) / fmax(1.0, fabs(rr.lse)));
                    for (int64_t d = 0; d < D; d++) {
                        e8 += (got[d] - rr.fp8[d]) * (got[d] - rr.fp8[d]);
                        n8 += rr.fp8[d] * rr.fp8[d];
                        ee += (got[d] - rr.exact[d]) * (got[d] - rr.exact[d]);
                        ne += rr.exact[d] * rr.exact[d];
                        eb += (rr.bare[d] - rr.exact[d]) * (rr.bare[d] - rr.exact[d]);
                        cnt += 1;
                    }
                }
            }
        }
    const double vs8 = sqrt(e8 / n8), rel = sqrt(ee / ne), rmse = sqrt(ee / cnt), rmse_bare = sqrt(eb / cnt);
    const int ok = nonfinite == 0 && lse_err <= 1e-2 && (c->max_vs_fp8 == 0 || vs8 <= c->max_vs_fp8) &&
                   (c->max_rel_l2 == 0 || rel <= c->max_rel_l2) && (c->max_rmse == 0 || rmse <= c->max_rmse);
    printf("%s %s: vs FP8 semantics rel L2 %.3e; vs exact rel L2 %.3e, RMSE %.3e (bare cast RMSE %.3e); "
           "LSE rel err %.1e; non-finite %lld\n",
           ok ? "PASS" : "FAIL", c->name, vs8, rel, rmse, rmse_bare, lse_err, (long long)nonfinite);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout), cudaFree(dlse), cudaFree(ws);
    free(lse);
    free(q), free(k), free(v), free(o), free(hq), free(hk), free(hv), free(ho), free(kq), free(vq), free(s3),
        free(refs);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    const int big = argc > 1 && strcmp(argv[1], "--big") == 0;
    const fattn_dtype BF = FATTN_DTYPE_BF16, F16 = FATTN_DTYPE_F16;
    const fp8_case small[] = {
        {"d128 bshd 1x256x2x128", 1, 256, 256, 2, 2, 128, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d128 causal odd 2x200x4:2x333", 2, 200, 333, 4, 2, 128, 1, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d128 causal Sq>Skv 1x300x2x100 fp16 bhsd", 1, 300, 100, 2, 2, 128, 1, 1, 0, F16, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d256 GQA 1x384x8:2 bhsd", 1, 384, 384, 8, 2, 256, 0, 1, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d256 causal 1x257x2x257", 1, 257, 257, 2, 2, 256, 1, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        /* logits of order 1e6: softmax is all but one-hot, so e4m3's rounding of the scores moves
         * the argmax; the bar is finiteness, and the semantics are still followed */
        {"d128 QKV x1000", 1, 512, 512, 2, 2, 128, 0, 0, 0, BF, 1000, 1000, 1000, 6e-2, 0, 0, 0},
        {"d128 V x1000", 1, 512, 512, 2, 2, 128, 0, 0, 0, BF, 1, 1, 1000, 3e-2, 6e-2, 0, 0},
        {"d128 outliers 1x1024x4x128", 1, 1024, 1024, 4, 4, 128, 0, 0, 1, BF, 1, 1, 1, 3e-2, 0, 9e-3, 0},
        /* d64 runs on the d128 kernel over copies padded to 128 columns (quantize.h) */
        {"d64 bshd 1x256x2x64", 1, 256, 256, 2, 2, 64, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d64 causal odd GQA 2x200x4:2x333", 2, 200, 333, 4, 2, 64, 1, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d64 causal Sq>Skv 1x300x2x100 fp16 bhsd", 1, 300, 100, 2, 2, 64, 1, 1, 0, F16, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d64 V x1000 MQA 1x512x4:1", 1, 512, 512, 4, 1, 64, 0, 0, 0, BF, 1, 1, 1000, 3e-2, 6e-2, 0, 0},
    };
    const fp8_case large[] = {
        {"outliers 1x4096x16x128", 1, 4096, 4096, 16, 16, 128, 0, 0, 1, BF, 1, 1, 1, 3e-2, 0, 9e-3, 64},
        {"normal 1x4096x16x128", 1, 4096, 4096, 16, 16, 128, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 64},
        {"normal 1x4096x16x64", 1, 4096, 4096, 16, 16, 64, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 64},
        {"outliers seed 1x15708x32x128", 1, 15708, 15708, 32, 32, 128, 0, 0, 1, BF, 1, 1, 1, 3e-2, 0, 9e-3, 8},
        {"normal seed 1x15708x32x128", 1, 15708, 15708, 32, 32, 128, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 8},
    };
    const fp8_case *cases = big ? large : small;
    const int count = big ? (int)(sizeof large / sizeof *large) : (int)(sizeof small / sizeof *small);
    gpu_rng rng;
    gpu_rng_seed(&rng, 20261202);
    int failed = 0, passed = 0;
    for (int i = 0; i < count; i++) {
        const int r = run_case(&cases[i], &rng);
        if (r == 77) return 77;
        failed += r != 0;
        passed += r == 0;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
