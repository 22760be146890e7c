/* Online softmax on a consumer thread's slice of the S = Q K^T accumulator.
 *
 * wgmma's accumulator layout: thread t of the warpgroup holds rows r = 16*(t/32) + (t%32)/4 and
 * r + 8; for column group g (8 columns) it holds s[4g + 2h + e] = S[r + 8h][8g + 2*(t%4) + e].
 * A row is spread over the 4 threads of a quad, so row reductions need two shuffles.
 * Maxima are kept in raw score units and the scale enters through exp2 with scale*log2(e)
 * folded in, so each element costs one FMA and one EX2. Row sums stay per-thread partial
 * until the epilogue. */
#ifndef FATTN_HOPPER_SOFTMAX_CUH
#define FATTN_HOPPER_SOFTMAX_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>

#include "config.cuh"
#include "ptx.cuh"

/* Sets to -inf every score whose key column exceeds its row's last visible key.
 * col0: key index of this thread's first column; last[h]: last visible key of row half h. */
template <int BN>
static __device__ __forceinline__ void mask_scores(float *s, int col0, const int *last)
{
#pragma unroll
    for (int g = 0; g < BN / 8; ++g)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 2; ++e)
                if (col0 + 8 * g + e > last[h]) s[4 * g + 2 * h + e] = -INFINITY;
}

static __device__ __forceinline__ float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

static __device__ __forceinline__ float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

/* log2 of the factor the probabilities carry: FP8 mode quantises P as e4m3(256 p) (src/core/fp8.h),
 * and folding the 256 into exp2's argument saves a multiply per score; the row sums then hold
 * 256 * sum(p), which the epilogue takes back (epilogue.cuh). */
#define HOPPER_P_LOG2(F8) ((F8) ? 8 : 0)

/* Updates the running max m[2] and partial sums l[2] with block s, turns s into probabilities
 * (times 2^HOPPER_P_LOG2) in place, and returns the factors alpha[2] by which the O accumulator
 * rows must be rescaled: exactly 1 where the row's max did not move, so that rows_moved can skip
 * the rescale. Without SUM, l is left alone (config.cuh's HOPPER_L_MMA sums P on the tensor
 * cores). */
template <int BN, bool F8, bool SUM>
static __device__ __forceinline__ void online_softmax(float *s, float *m, float *l, float *alpha,
                                                      float scale_log2)
{
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        float mx = m[h];
#pragma unroll
        for (int g = 0; g < BN / 8; ++g) mx = fmaxf(mx, fmaxf(s[4 * g + 2 * h], s[4 * g + 2 * h + 1]));
        mx = quad_max(mx);
        /* A row that has seen only masked keys keeps max -inf; subtracting 0 then keeps its
         * probabilities at exp2(-inf) = 0 instead of NaN. */
        const float mf = mx == -INFINITY ? 0.0f : mx * scale_log2;
        alpha[h] = mx == m[h] ? 1.0f : ex2_approx(m[h] * scale_log2 - mf);
        const float ms = mf - (float)HOPPER_P_LOG2(F8);
        m[h] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int g = 0; g < BN / 8; ++g)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const float p = ex2_approx(fmaf(s[4 * g + 2 * h + e], scale_log2, -ms));
                s[4 * g + 2 * h + e] = p;
                if constexpr (SUM) sum += p;
            }
        if constexpr (SUM) l[h] = l[h] * alpha[h] + sum;
    }
}

/* After a few key blocks a row's max rarely moves, so most often all 64 rows of a warpgroup find
 * their alpha at exactly 1 and skip the D/2 multiplies (the result is bit-identical). The vote
 * spans the warpgroup (its barrier bar), so that the branches it picks between are warpgroup-
 * uniform: kernel.cuh waits for a wgmma inside them, which every warp of the warpgroup must do
 * at the same instruction (compute-sanitizer's synccheck flags a per-warp vote there). */
static __device__ __forceinline__ bool rows_moved(uint32_t bar, const float *alpha)
{
    return named_bar_any(bar, 128, alpha[0] != 1.0f || alpha[1] != 1.0f);
}

template <int D> static __device__ __forceinline__ void scale_rows(float *o, const float *alpha)
{
#pragma unroll
    for (int g = 0; g < D / 8; ++g)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            o[4 * g + 2 * h] *= alpha[h];
            o[4 * g + 2 * h + 1] *= alpha[h];
        }
}

template <bool BF16> static __device__ __forceinline__ uint32_t pack2(float lo, float hi)
{
    if constexpr (BF16) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *(uint32_t *)&v;
    } else {
        __half2 v = __floats2half2_rn(lo, hi);
        return *(uint32_t *)&v;
    }
}

/* Four probabilities, already times 256 (online_softmax), as e4m3 bytes (the first in the low
 * byte): 256 p for p <= 1 uses e4m3's top binades (the FP8 spec, src/core/fp8.h). */
static __device__ __forceinline__ uint32_t pack4_e4m3(float a, float b, float c, float d)
{
    const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
    const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
    return lo | hi << 16;
}

/* P's registers: two bf16/fp16, four e4m3 or one tf32 probability each. */
#define HOPPER_P_REGS(BN, K) (HK_FP8(K) ? (BN) / 8 : (K) == HK_TF32 ? (BN) / 2 : (BN) / 4)

/* bf16/fp16: the accumulator layout of two adjacent column groups is exactly wgmma's register
 * layout of a 64x16 A fragment, so P converts in place: p[4kk..4kk+3] feed the k16 step kk of P.V.
 * e4m3: a k32 A fragment holds, per row, 4 consecutive k in each of two registers, where the
 * accumulator holds pairs 8 apart; the thread's values are packed in accumulator order and the
 * quantisation pass permutes V^T's keys to match (hopper/quantize.cu, fp8_key_of_slot).
 * tf32: a k8 A fragment holds k = q and q + 4 of rows r and r + 8 (quad position q), the
 * accumulator columns 2q and 2q + 1; the staging pass stores V^T's keys permuted to match
 * (hopper/stage.h), so each value only needs its rounding to tf32. */
template <int K, int BN> static __device__ __forceinline__ void probs_to_a(const float *s, uint32_t *p)
{
    if constexpr (HK_FP8(K)) {
#pragma unroll
        for (int kk = 0; kk < BN / 32; ++kk) {
            const float *x = s + 16 * kk;
            p[4 * kk + 0] = pack4_e4m3(x[0], x[1], x[4], x[5]);
            p[4 * kk + 1] = pack4_e4m3(x[2], x[3], x[6], x[7]);
            p[4 * kk + 2] = pack4_e4m3(x[8], x[9], x[12], x[13]);
            p[4 * kk + 3] = pack4_e4m3(x[10], x[11], x[14], x[15]);
        }
    } else if constexpr (K == HK_TF32) {
#pragma unroll
        for (int g = 0; g < BN / 8; ++g) {
            p[4 * g + 0] = tf32_round(s[4 * g + 0]);
            p[4 * g + 1] = tf32_round(s[4 * g + 2]);
            p[4 * g + 2] = tf32_round(s[4 * g + 1]);
            p[4 * g + 3] = tf32_round(s[4 * g + 3]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < BN / 4; ++i) p[i] = pack2<K == HK_BF16>(s[2 * i], s[2 * i + 1]);
    }
}

/* P into the warpgroup's P tile (HOPPER_P_SMEM, config.cuh), in the K-major swizzled layout of a
 * Q tile, for P V's SS wgmma: each register of probs_to_a goes where that A-fragment register
 * reads. bf16/fp16: register 2g + h holds row r + 8h, columns 8g + 2q and the next (accumulator
 * pair (g, h)). e4m3: register 4kk + i holds row r + 8 (i % 2), k 4q..4q+3 of 32-key step kk, 16
 * further for i >= 2, so V^T's permuted keys (hopper/quantize.cu) match as for P in registers. */
template <int K, int BN> static __device__ __forceinline__ void probs_to_tile(const float *s, uint32_t p_tile, int tid)
{
    static_assert(K != HK_TF32, "no P tile for tf32");
    uint32_t w[HOPPER_P_REGS(BN, K)];
    probs_to_a<K, BN>(s, w);
    const int lane = tid % 32, r = 16 * (tid / 32) + lane / 4;
#pragma unroll
    for (int n = 0; n < HOPPER_P_REGS(BN, K); ++n) {
        const uint32_t at = HK_FP8(K) ? swizzled_offset<1>(r + 8 * (n % 2), 32 * (n / 4) + 16 * (n % 4 / 2) + 4 * (lane % 4))
                                      : accum_pair_offset<2>(tid, n / 2, n % 2);
        st_shared_u32(p_tile + at, w[n]);
    }
}

#endif
