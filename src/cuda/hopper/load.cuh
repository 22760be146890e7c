/* The producer: one thread of warpgroup 0 streams each tile's Q and its K, V blocks through the
 * stage ring with TMA, each stage guarded by a full barrier (TMA bytes landed) and an empty
 * barrier (every consumer warp is done reading it). K and V have separate barriers so that
 * Q K^T can start before V has landed. */
#ifndef FATTN_HOPPER_LOAD_CUH
#define FATTN_HOPPER_LOAD_CUH

#include "config.cuh"
#include "ptx.cuh"
#include "scheduler.cuh"

/* Loads a rows x D tile as D/64 boxes of 64 columns, one per swizzled chunk. */
template <int D, int ROWS>
static __device__ __forceinline__ void load_tile(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row,
                                                 int head, int batch)
{
    mbar_expect_tx(bar, HOPPER_TILE_BYTES(ROWS, D));
#pragma unroll
    for (int c = 0; c < D / 64; ++c)
        tma_load_4d(dst + c * ROWS * HOPPER_ROW_BYTES, map, bar, c * 64, row, head, batch);
}

/* Loads every consumer's Q tile of the CTA's tile k into Q buffer k % HOPPER_Q_BUFS once the
 * warpgroup has released that buffer: after its last Q K^T, or, when O is staged in the Q tile,
 * after the store of O has read it. */
template <int D, int NWG>
static __device__ __forceinline__ void load_q(const hopper_args *a, const hopper_tile *t, const hopper_smem *sm, int k)
{
    constexpr int B = HOPPER_Q_BUFS(D);
#pragma unroll
    for (int w = 0; w < NWG; ++w) {
        const int slot = (k % B) * NWG + w;
        mbar_wait(sm->q_empty + 8 * slot, ((k / B) & 1) ^ 1);
        load_tile<D, HOPPER_WG_ROWS>(sm->q_tiles + slot * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D), &a->q,
                                     sm->q_full + 8 * slot, t->m0 + w * HOPPER_WG_ROWS, t->head, t->batch);
    }
}

/* Walks the same tiles as the consumers. The stage ring runs on across tiles, so the next tile's
 * first K and V stream in while the consumers finish the current one. With two Q buffers the
 * tile's Q goes first (its buffer was released a whole tile ago); with one, Q waits for the
 * previous epilogue, so K_0 is issued before it. */
template <int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void produce(const hopper_args *a, const hopper_smem *sm)
{
    constexpr int QB = HOPPER_Q_BUFS(D);
    int it = 0;
    hopper_tile t;
    for (int k = 0; tile_of_round<NWG * HOPPER_WG_ROWS, BN, CAUSAL>(a, k, &t); ++k) {
        if (QB == 2) load_q<D, NWG>(a, &t, sm, k);
        for (int j = 0; j < t.n_blocks; ++j, ++it) {
            const int s = it % STAGES;
            const uint32_t empty_parity = ((it / STAGES) & 1) ^ 1; /* a fresh barrier counts as released */
            mbar_wait(sm->k_empty + 8 * s, empty_parity);
            load_tile<D, BN>(sm->k_tiles + s * HOPPER_TILE_BYTES(BN, D), &a->k, sm->k_full + 8 * s, j * BN,
                             t.head_kv, t.batch);
            if (QB == 1 && j == 0) load_q<D, NWG>(a, &t, sm, k);
            mbar_wait(sm->v_empty + 8 * s, empty_parity);
            load_tile<D, BN>(sm->v_tiles + s * HOPPER_TILE_BYTES(BN, D), &a->v, sm->v_full + 8 * s, j * BN,
                             t.head_kv, t.batch);
        }
    }
}

#endif
