/* The producer: one thread of warpgroup 0 streams each tile's Q and its K, V blocks through the
 * stage ring with TMA, each stage guarded by a full barrier (TMA bytes landed) and an empty
 * barrier (every consumer warp is done reading it). K and V have separate barriers so that
 * Q K^T can start before V has landed. */
#ifndef FATTN_HOPPER_LOAD_CUH
#define FATTN_HOPPER_LOAD_CUH

#include "config.cuh"
#include "ptx.cuh"
#include "scheduler.cuh"

/* Loads a ROWS x ROW_BYTES tile whose rows start at element col0 of row `row`, one box of 128
 * bytes (ELEMS elements) per swizzled chunk. */
template <int ROW_BYTES, int ROWS, int ELEMS>
static __device__ __forceinline__ void load_tile(uint32_t dst, const CUtensorMap *map, uint32_t bar, int col0,
                                                 int row, int head, int batch)
{
    mbar_expect_tx(bar, ROWS * ROW_BYTES);
#pragma unroll
    for (int c = 0; c < ROW_BYTES / HOPPER_ROW_BYTES; ++c)
        tma_load_4d(dst + c * ROWS * HOPPER_ROW_BYTES, map, bar, col0 + c * ELEMS, row, head, batch);
}

/* A rows x HOPPER_DT(D) tile of Q or K: head-dim columns, rows along the sequence. */
template <int K, int D, int ROWS>
static __device__ __forceinline__ void load_rows(uint32_t dst, const CUtensorMap *map, uint32_t bar, int row,
                                                 int head, int batch)
{
    load_tile<HOPPER_DT(D) * HOPPER_IN_BYTES(K), ROWS, HOPPER_ROW_BYTES / HOPPER_IN_BYTES(K)>(dst, map, bar, 0, row,
                                                                                          head, batch);
}

/* V's block of BN keys from key0: like K, or from V^T (FP8 mode, fp32 I/O), D rows of BN keys. */
template <int K, int D, int BN>
static __device__ __forceinline__ void load_v(uint32_t dst, const CUtensorMap *map, uint32_t bar, int key0,
                                              int head, int batch)
{
    if constexpr (HK_VT(K))
        load_tile<BN * HOPPER_IN_BYTES(K), D, HOPPER_ROW_BYTES / HOPPER_IN_BYTES(K)>(dst, map, bar, key0, 0, head,
                                                                                 batch);
    else load_rows<K, D, BN>(dst, map, bar, key0, head, batch);
}

/* Loads every consumer's Q tile of the CTA's tile k into Q buffer k % HOPPER_Q_BUFS once the
 * warpgroup has released that buffer: after its last Q K^T, or, when O is staged in the Q tile,
 * after the store of O has read it. */
template <int K, int D, int NWG>
static __device__ __forceinline__ void load_q(const hopper_args *a, const hopper_tile *t, const hopper_smem *sm, int k)
{
    constexpr int B = HOPPER_Q_BUFS(D, K, NWG);
#pragma unroll
    for (int w = 0; w < NWG; ++w) {
        const int slot = (k % B) * NWG + w;
        mbar_wait(sm->q_empty + 8 * slot, ((k / B) & 1) ^ 1);
        load_rows<K, D, HOPPER_WG_ROWS>(sm->q_tiles + slot * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D, K), &a->q,
                                          sm->q_full + 8 * slot, t->m0 + w * HOPPER_WG_ROWS, t->head, t->batch);
    }
}

/* A key block's place in the stage ring and in the tensors: ring position it (stage it % STAGES),
 * first key, kv head, batch. */
typedef struct hopper_block {
    int it, key0, head_kv, batch;
} hopper_block;

template <int K, int D, int BN, int STAGES>
static __device__ __forceinline__ void load_k_block(const hopper_args *a, const hopper_smem *sm, const hopper_block *b)
{
    const int s = b->it % STAGES;
    mbar_wait(sm->k_empty + 8 * s, ((b->it / STAGES) & 1) ^ 1); /* a fresh barrier counts as released */
    load_rows<K, D, BN>(sm->k_tiles + s * HOPPER_TILE_BYTES(BN, D, K), &a->k, sm->k_full + 8 * s, b->key0,
                          b->head_kv, b->batch);
}

template <int K, int D, int BN, int STAGES>
static __device__ __forceinline__ void load_v_block(const hopper_args *a, const hopper_smem *sm, const hopper_block *b)
{
    const int s = b->it % STAGES;
    mbar_wait(sm->v_empty + 8 * s, ((b->it / STAGES) & 1) ^ 1);
    load_v<K, D, BN>(sm->v_tiles + s * HOPPER_TILE_BYTES(BN, D, K), &a->v, sm->v_full + 8 * s, b->key0, b->head_kv,
                       b->batch);
}

/* Walks the same tiles as the consumers (choosing them when causal: scheduler.cuh), in the order
 * they consume: a turn issues Q K_{j+1}^T before P_j V_j, so K runs one block ahead of V (K_0, K_1,
 * V_0, K_2, V_1, ...), on across tiles (the next tile's K_0 before this tile's last V, as
 * chain_tiles issues them). Loading V_j before K_{j+1} made K wait behind V_j's stage, which frees
 * only when P_{j-2} V_{j-2} has completed in every consumer: K then landed late (ncu: the
 * consumers' waits for K took ~6% of their samples).
 * With two Q buffers the tile's Q goes first (its buffer was released a whole tile ago); with one,
 * Q waits for the previous epilogue, which needs the previous tile's last V, so Q follows it. */
template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void produce(const hopper_args *a, const hopper_smem *sm)
{
    constexpr int QB = HOPPER_Q_BUFS(D, K, NWG);
    hopper_block v = {-1, 0, 0, 0}; /* the V still to load after the next K; it < 0: none */
    int it = 0, number = blockIdx.x;
    hopper_tile t;
    for (int k = 0; tile_of_number<NWG * HOPPER_WG_ROWS, BN, CAUSAL>(a, number, &t); ++k) {
        int next = number + (int)gridDim.x;
        if (QB == 2) load_q<K, D, NWG>(a, &t, sm, k);
        for (int j = 0; j < t.n_blocks; ++j, ++it) {
            if (CAUSAL && j == max(0, t.n_blocks - HOPPER_CLAIM_AHEAD)) next = claim_tile(a);
            const hopper_block b = {it, (t.j0 + j) * BN, t.head_kv, t.batch};
            load_k_block<K, D, BN, STAGES>(a, sm, &b);
            if (v.it >= 0) load_v_block<K, D, BN, STAGES>(a, sm, &v);
            if (QB == 1 && j == 0) load_q<K, D, NWG>(a, &t, sm, k);
            v = b;
        }
        if (CAUSAL) publish_tile(sm, k, next);
        number = next;
    }
    if (v.it >= 0) load_v_block<K, D, BN, STAGES>(a, sm, &v);
}

#endif
