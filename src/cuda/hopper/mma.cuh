/* The two matrix products of the consumer warpgroups, as wgmma sequences:
 *   S  = Q K^T : A = Q tile, B = K tile, both from shared memory, K-major (head dim contiguous);
 *   O += P V   : A = P in registers (bf16/fp16), B = V tile from shared memory, MN-major; in FP8
 *                mode P is e4m3 and with fp32 I/O tf32, and B is the V^T tile, K-major (keys
 *                contiguous); with HOPPER_P_SMEM, A is the warpgroup's P tile in shared memory.
 * Each call issues the whole k-loop and commits one wgmma group; the caller waits. */
#ifndef FATTN_HOPPER_MMA_CUH
#define FATTN_HOPPER_MMA_CUH

#include "config.cuh"
#include "ptx.cuh"
#include "wgmma.cuh"

template <int K, int N>
static __device__ __forceinline__ void wgmma_ss(float *d, uint64_t da, uint64_t db, int scale_d)
{
    static_assert(N == 64 || N == 80 || N == 112 || N == 128 || N == 176, "no wgmma SS wrapper for this key block");
    static_assert(!HK_FP8(K) || N == 128, "no e4m3 wgmma SS wrapper for this key block");
    static_assert(K != HK_TF32 || N == 64 || N == 128, "no tf32 wgmma SS wrapper for this key block");
    if constexpr (HK_FP8(K)) {
        wgmma_ss_e4m3_n128(d, da, db, scale_d);
    } else if constexpr (K == HK_TF32) {
        if constexpr (N == 64) wgmma_ss_tf32_n64(d, da, db, scale_d);
        else wgmma_ss_tf32_n128(d, da, db, scale_d);
    } else if constexpr (K == HK_BF16) {
        if constexpr (N == 64) wgmma_ss_bf16_n64(d, da, db, scale_d);
        else if constexpr (N == 80) wgmma_ss_bf16_n80(d, da, db, scale_d);
        else if constexpr (N == 112) wgmma_ss_bf16_n112(d, da, db, scale_d);
        else if constexpr (N == 128) wgmma_ss_bf16_n128(d, da, db, scale_d);
        else wgmma_ss_bf16_n176(d, da, db, scale_d);
    } else {
        if constexpr (N == 64) wgmma_ss_f16_n64(d, da, db, scale_d);
        else if constexpr (N == 80) wgmma_ss_f16_n80(d, da, db, scale_d);
        else if constexpr (N == 112) wgmma_ss_f16_n112(d, da, db, scale_d);
        else if constexpr (N == 128) wgmma_ss_f16_n128(d, da, db, scale_d);
        else wgmma_ss_f16_n176(d, da, db, scale_d);
    }
}

template <int K, int N>
static __device__ __forceinline__ void wgmma_rs(float *d, const uint32_t *a, uint64_t db, int scale_d)
{
    static_assert(N == 64 || N == 128 || N == 192 || N == 256, "no wgmma RS wrapper for this tile width");
    static_assert(!HK_FP8(K) || N == 128 || N == 256, "no e4m3 wgmma RS wrapper for this head dim");
    static_assert(K != HK_TF32 || N == 64 || N == 128, "no tf32 wgmma RS wrapper for this head dim");
    if constexpr (HK_FP8(K)) {
        if constexpr (N == 128) wgmma_rs_e4m3_n128(d, a, db, scale_d);
        else wgmma_rs_e4m3_n256(d, a, db, scale_d);
    } else if constexpr (K == HK_TF32) {
        if constexpr (N == 64) wgmma_rs_tf32_n64(d, a, db, scale_d);
        else wgmma_rs_tf32_n128(d, a, db, scale_d);
    } else if constexpr (K == HK_BF16) {
        if constexpr (N == 64) wgmma_rs_bf16_n64(d, a, db, scale_d);
        else if constexpr (N == 128) wgmma_rs_bf16_n128(d, a, db, scale_d);
        else if constexpr (N == 192) wgmma_rs_bf16_n192(d, a, db, scale_d);
        else wgmma_rs_bf16_n256(d, a, db, scale_d);
    } else {
        if constexpr (N == 64) wgmma_rs_f16_n64(d, a, db, scale_d);
        else if constexpr (N == 128) wgmma_rs_f16_n128(d, a, db, scale_d);
        else if constexpr (N == 192) wgmma_rs_f16_n192(d, a, db, scale_d);
        else wgmma_rs_f16_n256(d, a, db, scale_d);
    }
}

/* P V with P from shared memory (HOPPER_P_SMEM, DT 128 only): A K-major like Q, B (V) MN-major as
 * for RS. */
template <int K, int N>
static __device__ __forceinline__ void wgmma_ss_mn(float *d, uint64_t da, uint64_t db, int scale_d)
{
    static_assert((K == HK_BF16 || K == HK_F16) && N == 128, "no wgmma SS MN-major wrapper for this kind or tile width");
    if constexpr (K == HK_BF16) wgmma_ss_mn_bf16_n128(d, da, db, scale_d);
    else wgmma_ss_mn_f16_n128(d, da, db, scale_d);
}

template <int N> static __device__ __forceinline__ void fence_accum(float *d)
{
#pragma unroll
    for (int i = 0; i < N; ++i) reg_fence(d[i]);
}

/* The same for P's registers, which a wgmma RS reads until it has completed. */
template <int N> static __device__ __forceinline__ void fence_regs(uint32_t *r)
{
#pragma unroll
    for (int i = 0; i < N; ++i) reg_fence_u32(r[i]);
}

/* Byte offset of the k step kk (k16 for 2-byte, k32 for 1-byte, k8 for 4-byte elements: 32 bytes
 * each way)
 * inside a K-major swizzled tile of `rows` rows: four steps per 128-byte row, then the next
 * 128-byte column chunk. */
static __device__ __forceinline__ uint32_t kmajor_step(int kk, int rows)
{
    return (uint32_t)((kk % 4) * 32 + (kk / 4) * rows * HOPPER_ROW_BYTES);
}

/* S[64 x BN] = Q[64 x D] . K[BN x D]^T: only the first D columns, the rest are zeros */
template <int K, int D, int BN>
static __device__ __forceinline__ void issue_qk(float *s, uint32_t q_tile, uint32_t k_tile)
{
    const uint64_t qd = wgmma_desc_sw128(q_tile, 16, 1024), kd = wgmma_desc_sw128(k_tile, 16, 1024);
    fence_accum<BN / 2>(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < D * HOPPER_IN_BYTES(K) / 32; ++kk)
        wgmma_ss<K, BN>(s, wgmma_desc_advance(qd, kmajor_step(kk, HOPPER_WG_ROWS)),
                           wgmma_desc_advance(kd, kmajor_step(kk, BN)), kk > 0);
    wgmma_commit();
    fence_accum<BN / 2>(s);
}

/* V's descriptor for bf16/fp16 P V: V is MN-major: 8 rows of a chunk form a 1024-byte swizzle atom
 * (the stride offset), chunks of 64 columns are BN*128 bytes apart (the leading offset), and each
 * k16 step is 16 rows = 2048 bytes. */
template <int BN> static __device__ __forceinline__ uint64_t v_desc_mn(uint32_t v_tile)
{
    return wgmma_desc_sw128(v_tile, BN * HOPPER_ROW_BYTES, 1024);
}

/* The ones tile's descriptor (HOPPER_L_MMA): 8 rows of keys, K-major like K. Every byte is a one,
 * so every k step reads the tile's first 32 bytes of each row rather than stepping (a tile of 8
 * rows steps past its 1 KB after 128 keys). */
static __device__ __forceinline__ uint64_t ones_desc(uint32_t ones_tile)
{
    return wgmma_desc_sw128(ones_tile, 16, 1024);
}

/* O[64 x DT] += P[64 x BN] . V[BN x DT] (DT = HOPPER_DT(D), config.cuh); bf16/fp16 V by v_desc_mn.
 * e4m3 and tf32: V^T is a K-major tile of D rows, stepped like K; each step's A is four registers
 * of P either way. With HOPPER_L_MMA the same A also meets the ones tile, into O's last column
 * group (the row sums). */
template <int K, int D, int BN>
static __device__ __forceinline__ void issue_pv(float *o, const uint32_t *p, uint32_t v_tile, uint32_t ones_tile)
{
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
    wgmma_fence();
    if constexpr (HK_VT(K)) {
        const uint64_t vd = wgmma_desc_sw128(v_tile, 16, 1024);
#pragma unroll
        for (int kk = 0; kk < BN * HOPPER_IN_BYTES(K) / 32; ++kk) {
            wgmma_rs<K, D>(o, p + 4 * kk, wgmma_desc_advance(vd, kmajor_step(kk, D)), 1);
            if constexpr (HOPPER_L_MMA(K)) wgmma_rs_e4m3_n8(o + HOPPER_DT(D) / 2, p + 4 * kk, ones_desc(ones_tile), 1);
        }
    } else {
        const uint64_t vd = v_desc_mn<BN>(v_tile);
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk)
            wgmma_rs<K, HOPPER_DT(D)>(o, p + 4 * kk, wgmma_desc_advance(vd, kk * 2048), 1);
    }
    wgmma_commit();
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
}

/* The same product with P from the warpgroup's P tile (HOPPER_P_SMEM), stepped like Q in Q K^T;
 * e4m3's V^T is K-major, stepped like K. */
template <int K, int D, int BN>
static __device__ __forceinline__ void issue_pv_ss(float *o, uint32_t p_tile, uint32_t v_tile, uint32_t ones_tile)
{
    const uint64_t pd = wgmma_desc_sw128(p_tile, 16, 1024);
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
    wgmma_fence();
    if constexpr (HK_FP8(K)) {
        const uint64_t vd = wgmma_desc_sw128(v_tile, 16, 1024);
#pragma unroll
        for (int kk = 0; kk < BN / 32; ++kk) {
            const uint64_t a = wgmma_desc_advance(pd, kmajor_step(kk, HOPPER_WG_ROWS));
            wgmma_ss<K, D>(o, a, wgmma_desc_advance(vd, kmajor_step(kk, D)), 1);
            if constexpr (HOPPER_L_MMA(K)) wgmma_ss_e4m3_n8(o + HOPPER_DT(D) / 2, a, ones_desc(ones_tile), 1);
        }
    } else {
        const uint64_t vd = v_desc_mn<BN>(v_tile);
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk)
            wgmma_ss_mn<K, HOPPER_DT(D)>(o, wgmma_desc_advance(pd, kmajor_step(kk, HOPPER_WG_ROWS)),
                                         wgmma_desc_advance(vd, kk * 2048), 1);
    }
    wgmma_commit();
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
}

#endif
