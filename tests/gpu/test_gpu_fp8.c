/* FP8 mode (mode 1) on the GPU against two float64 references of tests/common, on sampled rows:
 *   - the FP8 semantics (tu_fp8_reference_rows: the same e4m3 bytes of Q, K and V, scores, online
 *     softmax and the P rounding in double): what the kernel must compute, up to its order of sums;
 *   - exact attention on the dtype-rounded inputs (tu_reference_row): the accuracy the issue bars
 *     (relative L2 on N(0, 1), RMSE on FA3's outlier test), with the seed's bare e4m3 cast
 *     (tu_fp8_bare_rows) measured beside it.
 * Outputs are NaN-poisoned before each call; every written element must be finite. Exits 77 (CTest:
 * skipped) without a CUDA device or where the device has no FP8 kernel. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn.h"
#include "fp8ref.h"
#include "gpu_util.h"
#include "testutil.h"

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

static int run_case(const fp8_case *c, gpu_rng *rng)
{
    const int64_t D = c->d, nq = c->b * c->sq * c->hq * D, nk = c->b * c->skv * c->hkv * D;
    const size_t es = fattn_dtype_size(c->dtype);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o = malloc(nq * 4);
    void *hq = malloc(nq * es), *hk = malloc(nk * es), *hv = malloc(nk * es), *ho = malloc(nq * es);
    const int64_t per_head = c->rows ? c->rows : c->sq, n_rows = c->b * c->hq * per_head;
    int64_t *rows = malloc(sizeof(int64_t) * 3 * n_rows);
    double *ref8 = malloc(sizeof(double) * n_rows * D), *lse8 = malloc(sizeof(double) * n_rows);
    double *exact = malloc(sizeof(double) * D), *bare = malloc(sizeof(double) * n_rows * D);
    if (!q || !k || !v || !o || !hq || !hk || !hv || !ho || !rows || !ref8 || !lse8 || !exact || !bare) {
        printf("FAIL %s: host allocation\n", c->name);
        return 1;
    }
    fill(rng, q, nq, c->outliers, c->q_mul);
    fill(rng, k, nk, c->outliers, c->k_mul);
    fill(rng, v, nk, c->outliers, c->v_mul);
    gpu_store(c->dtype, hq, q, nq);
    gpu_store(c->dtype, hk, k, nk);
    gpu_store(c->dtype, hv, v, nk);

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
    /* The references read the stored inputs through the same views on the host. */
    fattn_params hp = p;
    set_view(c, &hp.q, hq, c->sq, c->hq);
    set_view(c, &hp.k, hk, c->skv, c->hkv);
    set_view(c, &hp.v, hv, c->skv, c->hkv);
    for (int64_t b = 0, r = 0; b < c->b; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t j = 0; j < per_head; j++, r++) {
                rows[3 * r] = b;
                rows[3 * r + 1] = h;
                rows[3 * r + 2] = c->rows ? (int64_t)(gpu_rng_next(rng) % (uint64_t)c->sq) : j;
            }
    if (tu_fp8_reference_rows(&hp, rows, n_rows, ref8, lse8) || tu_fp8_bare_rows(&hp, rows, n_rows, bare)) {
        printf("FAIL %s: host allocation\n", c->name);
        return 1;
    }
    for (int64_t r = 0; r < n_rows; r++) {
        const int64_t b = rows[3 * r], h = rows[3 * r + 1], i = rows[3 * r + 2];
        if (tu_reference_row(&hp, b, h, i, exact, NULL)) {
            printf("FAIL %s: host allocation\n", c->name);
            return 1;
        }
        const double *fp8 = ref8 + r * D, *br = bare + r * D;
        const float *got = o + at(c, c->sq, c->hq, b, i, h);
        const double lg = lse[(b * c->hq + h) * c->sq + i];
        lse_err = fmax(lse_err, isinf(lse8[r]) ? (lg == lse8[r] ? 0 : INFINITY)
                                                : fabs(lg - lse8[r]) / fmax(1.0, fabs(lse8[r])));
        for (int64_t d = 0; d < D; d++) {
            e8 += (got[d] - fp8[d]) * (got[d] - fp8[d]);
            n8 += fp8[d] * fp8[d];
            ee += (got[d] - exact[d]) * (got[d] - exact[d]);
            ne += exact[d] * exact[d];
            eb += (br[d] - exact[d]) * (br[d] - exact[d]);
            cnt += 1;
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
    free(q), free(k), free(v), free(o), free(hq), free(hk), free(hv), free(ho), free(rows), free(ref8), free(lse8),
        free(exact), free(bare);
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
        /* d96 and d192 run on the d128 and d256 kernels over padded copies, rotated in chunks of
         * 32 and 64 (fattn_fp8_hadamard_n): the outlier RMSE is reported, the issue bars it at d128 */
        {"d96 bshd 2x256x2x96", 2, 256, 256, 2, 2, 96, 0, 0, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d96 causal odd GQA 1x200x4:2x333 fp16 bhsd", 1, 200, 333, 4, 2, 96, 1, 1, 0, F16, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d96 outliers 1x1024x4x96", 1, 1024, 1024, 4, 4, 96, 0, 0, 1, BF, 1, 1, 1, 3e-2, 0, 0, 0},
        {"d192 GQA 1x384x8:2 bhsd", 1, 384, 384, 8, 2, 192, 0, 1, 0, BF, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d192 causal Sq>Skv 1x300x2x100 fp16", 1, 300, 100, 2, 2, 192, 1, 0, 0, F16, 1, 1, 1, 3e-2, 6e-2, 0, 0},
        {"d192 outliers 1x1024x4x192", 1, 1024, 1024, 4, 4, 192, 0, 0, 1, BF, 1, 1, 1, 3e-2, 0, 0, 0},
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
