/* Consumer epilogue: normalise O by the row sums, write it in the swizzled layout into the
 * warpgroup's O tile (or its Q tile, free by now, when O has no tile of its own), and store it with
 * TMA, which clips rows past seqlen_q. The log-sum-exp goes straight from registers. */
#ifndef FATTN_HOPPER_EPILOGUE_CUH
#define FATTN_HOPPER_EPILOGUE_CUH

#include <math.h>

#include "config.cuh"
#include "ptx.cuh"
#include "scheduler.cuh"
#include "softmax.cuh"

/* A piece of a split tile (HOPPER_SPLIT_TAIL): its rows of O, normalised by their own sums, and
 * their base-2 log-sum-exps, into the piece's workspace slot for merge.cu. Nothing goes through the
 * O tile. */
template <int K, int D>
static __device__ __forceinline__ void write_piece(const hopper_args *a, const hopper_tile *t, int wg, int tid,
                                                   const float *o, const float *m, const float *l, const float *f,
                                                   const float *inv)
{
    const int lane = tid % 32, row0 = wg * HOPPER_WG_ROWS + 16 * (tid / 32) + lane / 4;
    float *po = a->piece_o + (size_t)t->piece * a->tile_rows * a->piece_cols;
#pragma unroll
    for (int g = 0; g < HOPPER_DT(D) / 8; ++g)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            *(float2 *)(po + (size_t)(row0 + 8 * h) * a->piece_cols + 8 * g + 2 * (lane % 4)) =
                make_float2(o[4 * g + 2 * h] * inv[h], o[4 * g + 2 * h + 1] * inv[h]);
    if (lane % 4 == 0)
#pragma unroll
        for (int h = 0; h < 2; ++h)
            a->piece_lse[(size_t)t->piece * a->tile_rows + row0 + 8 * h] =
                l[h] > 0.0f ? m[h] * f[0] + log2f(l[h]) - (float)HOPPER_P_LOG2(HK_FP8(K)) : -INFINITY;
}

/* wg: consumer index; tid: thread in the warpgroup; f: the tile's factors (kernel.cuh). With
 * SEPARATE, o_tile is the warpgroup's own O tile, reused once the previous tile's store has read
 * it; otherwise it is the Q tile, handed back to the producer through q_empty once this store has
 * read it. The row sums l hold 2^HOPPER_P_LOG2 times the sums of probabilities (softmax.cuh), a
 * quarter of each row's in each thread of its quad; with HOPPER_L_MMA they are O's last column
 * group, whole in every thread. */
template <int K, int D, bool SEPARATE>
static __device__ __forceinline__ void write_output(const hopper_args *a, const hopper_tile *t, int wg, int tid,
                                                    float *o, const float *m, float *l, const float *f,
                                                    uint32_t o_tile, uint32_t q_empty)
{
    const int lane = tid % 32, r0 = 16 * (tid / 32) + lane / 4;
    float inv[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if constexpr (HOPPER_L_MMA(K)) l[h] = o[HOPPER_DT(D) / 2 + 2 * h];
        else l[h] = quad_sum(l[h]);
        inv[h] = l[h] > 0.0f ? f[1] * (float)(1 << HOPPER_P_LOG2(HK_FP8(K))) / l[h] : 0.0f;
    }
    if (HOPPER_SPLIT_TAIL && t->piece >= 0) { /* tile-uniform */
        write_piece<K, D>(a, t, wg, tid, o, m, l, f, inv);
        if (!SEPARATE) {
            /* the Q tile goes back once all four warps are past their last wait, as the store's
             * barrier ensures on a whole tile */
            named_bar_sync(1 + wg, 128);
            if (tid == 0) mbar_arrive(q_empty);
        }
        return;
    }
    if (SEPARATE) {
        if (tid == 0) tma_store_wait_read();
        named_bar_sync(1 + wg, 128);
    }
#pragma unroll
    for (int g = 0; g < HOPPER_DT(D) / 8; ++g)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float lo = o[4 * g + 2 * h] * inv[h], hi = o[4 * g + 2 * h + 1] * inv[h];
            const uint32_t dst = o_tile + accum_pair_offset<HOPPER_OUT_BYTES(K)>(tid, g, h);
            if constexpr (HOPPER_OUT_BYTES(K) == 4) st_shared_f32x2(dst, lo, hi);
            else st_shared_u32(dst, pack2<HK_BF16_OUT(K)>(lo, hi));
        }
    fence_proxy_async_smem();
    named_bar_sync(1 + wg, 128);
    const int row0 = t->m0 + wg * HOPPER_WG_ROWS;
    if (tid == 0) {
#pragma unroll
        for (int c = 0; c < HOPPER_DT(D) * HOPPER_OUT_BYTES(K) / HOPPER_ROW_BYTES; ++c)
            tma_store_4d(&a->o, o_tile + c * HOPPER_WG_ROWS * HOPPER_ROW_BYTES,
                         c * (HOPPER_ROW_BYTES / HOPPER_OUT_BYTES(K)), row0, t->head, t->batch);
        tma_store_commit();
    }
    if (a->lse != NULL && lane % 4 == 0) {
        const float ln2 = 0.69314718055994531f;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            int row = row0 + r0 + 8 * h;
            if (row < a->seqlen_q) {
                float v = l[h] > 0.0f ? (m[h] * f[0] + log2f(l[h]) - (float)HOPPER_P_LOG2(HK_FP8(K))) * ln2 : -INFINITY;
                a->lse[((size_t)t->batch * a->heads_q + t->head) * a->seqlen_q + row] = v;
            }
        }
    }
    if (!SEPARATE && tid == 0) {
        tma_store_wait_read();
        mbar_arrive(q_empty); /* the tile may take the next Q */
    }
}

#endif
