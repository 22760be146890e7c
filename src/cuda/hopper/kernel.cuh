/* The Hopper forward kernel: persistent, warp-specialised, TMA-fed, wgmma-computed attention.
 *
 * Warpgroup 0 gives up registers and produces (load.cuh); warpgroups 1..NWG take them and each
 * computes 64 query rows: S = Q K^T (wgmma, SS), online softmax in registers, O += P V (wgmma,
 * RS with P in registers; SS from a P tile in shared memory with three consumers at 128-column
 * tiles, config.cuh's HOPPER_P_SMEM), then the epilogue. */
#ifndef FATTN_HOPPER_KERNEL_CUH
#define FATTN_HOPPER_KERNEL_CUH

#include "config.cuh"
#include "epilogue.cuh"
#include "load.cuh"
#include "mma.cuh"
#include "ptx.cuh"
#include "scheduler.cuh"
#include "softmax.cuh"

/* Registers per thread after reallocation: the producer keeps the minimum, the consumers share
 * the rest. setmaxnreg only moves registers within the CTA's launch allocation (384 threads x 168
 * for 2 consumers, 512 x 128 for 3), so 24 + 2 * 240 = 3 * 168 and 24 + 3 * 160 <= 4 * 128; asking
 * for more makes setmaxnreg.inc wait forever. */
#define HOPPER_PRODUCER_REGS 24
#define HOPPER_CONSUMER_REGS(NWG) ((NWG) == 2 ? 240 : 160)

/* Pingpong between consumer warpgroups: named barrier HOPPER_TURN_BAR + w opens warpgroup w's turn to
 * issue its matrix products; after issuing, it opens the next one's (round robin). While one
 * warpgroup's wgmmas run, the others do softmax, so the tensor cores see a steady stream. The turns
 * run on across tiles, so a warpgroup starts its next tile while the others finish this one. The
 * last warpgroup opens warpgroup 0's first turn, and warpgroup 0 takes one extra turn at the end
 * to consume the last warpgroup's final opening. Barriers 1..NWG are the epilogue's,
 * HOPPER_VOTE_BAR + w warpgroup w's rescale vote and HOPPER_P_BAR + w its P tile's. */
#define HOPPER_TURN_BAR 4
#define HOPPER_VOTE_BAR 7
#define HOPPER_P_BAR 10 /* + w: warpgroup w's P tile written (HOPPER_P_SMEM) */

/* A tuning knob: whether a warpgroup votes on each block's rescale (skipping its D/2 multiplies
 * when no row's max moved) at the cost of a warpgroup-wide barrier per block; 0 rescales always,
 * which measured within +-1% at d64/d128 bf16 and 1.7-2.4% slower at d256 and in FP8 (v15). */
#ifndef HOPPER_RESCALE_VOTE
#define HOPPER_RESCALE_VOTE 1
#endif

/* A tuning knob: the widest D that takes turns. FA4's Hopper forward takes them only up to head
 * dim 128 and lets the warpgroups of the wider kernels issue as they come; unmeasured here. */
#ifndef HOPPER_TURNS_MAX_D
#define HOPPER_TURNS_MAX_D 256
#endif

template <int D> static __device__ __forceinline__ void turn_wait(int wg)
{
    if constexpr (D <= HOPPER_TURNS_MAX_D) named_bar_sync(HOPPER_TURN_BAR + wg, 256);
}

template <int D> static __device__ __forceinline__ void turn_pass(int to)
{
    if constexpr (D <= HOPPER_TURNS_MAX_D) named_bar_arrive(HOPPER_TURN_BAR + to, 256);
}

/* The consumer's state between key blocks: O accumulator, running max and sum, the latest
 * softmax's rescale factors for O, the scores S (or the probabilities P, packed for P V), and the
 * tile's factors f: f[0] turns raw scores into base-2 logits, f[1] multiplies O in the epilogue. */
#define CONSUMER_STATE float *o, float *m, float *l, float *alpha, float *s, uint32_t *p, float *f
#define CONSUMER_STATE_ARGS o, m, l, alpha, s, p, f

/* P for the next P V: in registers, or (HOPPER_P_SMEM) in the warpgroup's P tile, ordered before
 * the async proxy's read and complete in all four warps, whose rows the SS wgmma reads together. */
template <int K, int D, int NWG, int BN>
static __device__ __forceinline__ void make_p(const hopper_smem *c, int wg, int tid, const float *s, uint32_t *p)
{
    if constexpr (HOPPER_P_SMEM(K, D, NWG)) {
        probs_to_tile<K, BN>(s, c->p_tiles + wg * HOPPER_P_TILE_BYTES(BN, K), tid);
        fence_proxy_async_smem();
        named_bar_sync(HOPPER_P_BAR + wg, 128);
    } else {
        probs_to_a<K, BN>(s, p);
    }
}

/* O += P V, with P wherever make_p put it. */
template <int K, int D, int NWG, int BN>
static __device__ __forceinline__ void issue_p_v(const hopper_smem *c, int wg, float *o, const uint32_t *p,
                                                 uint32_t v_tile)
{
    if constexpr (HOPPER_P_SMEM(K, D, NWG))
        issue_pv_ss<K, D, BN>(o, c->p_tiles + wg * HOPPER_P_TILE_BYTES(BN, K), v_tile, c->ones_tile);
    else issue_pv<K, D, BN>(o, p, v_tile, c->ones_tile);
}

/* The registers a completed P V read: P's, unless P went through shared memory. */
template <int K, int D, int NWG, int BN> static __device__ __forceinline__ void fence_p(uint32_t *p)
{
    if constexpr (!HOPPER_P_SMEM(K, D, NWG)) fence_regs<HOPPER_P_REGS(BN, K)>(p);
}

/* Once the softmax of S_j has run: wait for P_{j-1} V_{j-1} (the warpgroup's older wgmma group),
 * then rescale O by the softmax's alpha, after the product and outside the turn, so the multiplies
 * never delay the issue of P V and the other warpgroup's turn. The wait sits inside the branches of
 * the rescale vote, which needs the softmax's row maxima: with the wait in one basic block with the
 * softmax, ptxas scheduled it right after the softmax's first instruction (WARPGROUP.DEPBAR after
 * the first FMNMX in the SASS), so the softmax of S_j ran only once P_{j-1} V_{j-1} had completed
 * and the overlap of the two within a warpgroup was lost (docs/perf-notes.md, v8). */
template <int K, int D, int NWG, int BN>
static __device__ __forceinline__ void wait_pv_rescale(const hopper_args *a, int wg, float *o, uint32_t *p,
                                                       const float *alpha)
{
    /* Without the vote every block rescales (as FA4 does), and the branch is on a kernel parameter
     * (every launch has keys): uniform, never taken the other way, and opaque to ptxas, so the wait
     * keeps a basic block of its own and the warps of a warpgroup no longer meet at a barrier. */
    const bool rescale = HOPPER_RESCALE_VOTE ? rows_moved(HOPPER_VOTE_BAR + wg, alpha) : a->seqlen_kv > 0;
    if (rescale) {
        wgmma_wait<0>();
        fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
        fence_p<K, D, NWG, BN>(p);
        scale_rows<HOPPER_ACC_COLS(D, K)>(o, alpha);
    } else {
        wgmma_wait<0>();
        fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
        fence_p<K, D, NWG, BN>(p);
    }
}

/* Q of the CTA's tile k, for warpgroup wg. */
template <int K, int D, int NWG>
static __device__ __forceinline__ int q_slot(int k, int wg)
{
    return (k % HOPPER_Q_BUFS(D, K, NWG)) * NWG + wg;
}

/* The last visible key of the thread's two rows; returns the first key block with a column past
 * the warpgroup's earliest last visible key (from there on, scores are masked). Both count from
 * the tile's first block t->j0 (a piece of a split tile starts further on), so the key-block loop
 * holds no j0 of its own. */
template <int BN, bool CAUSAL>
static __device__ __forceinline__ int tile_limits(const hopper_args *a, const hopper_tile *t, int wg, int tid,
                                                  int *last)
{
    const int shift = a->seqlen_kv - a->seqlen_q, key0 = t->j0 * BN;
    const int row0 = t->m0 + wg * HOPPER_WG_ROWS + 16 * (tid / 32) + (tid % 32) / 4;
#pragma unroll
    for (int h = 0; h < 2; ++h)
        last[h] = (CAUSAL ? min(a->seqlen_kv - 1, row0 + 8 * h + shift) : a->seqlen_kv - 1) - key0;
    return (CAUSAL ? min(a->seqlen_kv, max(0, t->m0 + wg * HOPPER_WG_ROWS + shift + 1)) / BN : a->seqlen_kv / BN) -
           t->j0;
}

/* Once S_j = Q K_j^T (the j-th of tile t's key blocks, counted from t->j0, stage-ring position it)
 * has completed: K_j's stage goes back to the producer (and Q after the tile's last Q K^T, when O
 * has its own tile), then S_j is masked and folded into the running softmax. */
template <int K, int D, int NWG, int BN, int STAGES>
static __device__ __forceinline__ void scores_done(const hopper_smem *c, const hopper_tile *t, int tid, int it, int j,
                                                   int slot, int first_masked, const int *last, float *s, float *m,
                                                   float *l, float *alpha, const float *f)
{
    const int lane = tid % 32;
    fence_accum<BN / 2>(s);
    if (lane == 0) mbar_arrive(c->k_empty + 8 * (it % STAGES));
    if (HOPPER_O_SEPARATE(D, K, NWG) && j == t->n_blocks - 1 && lane == 0) mbar_arrive(c->q_empty + 8 * slot);
    if (j >= first_masked) mask_scores<BN>(s, j * BN + 2 * (lane % 4), last);
    online_softmax<BN, HK_FP8(K), !HOPPER_L_MMA(K)>(s, m, l, alpha, f[0]);
}

/* A fresh tile: O, max and sum reset (a new tile's first P V then only adds to zeros), and the
 * tile's factors: in FP8 mode its Q block's and K/V head's dequantisation (the 64 rows of a
 * warpgroup are one Q quantisation block), otherwise the softmax scale alone. */
template <int K, int D>
static __device__ __forceinline__ void reset_rows(const hopper_args *a, const hopper_tile *t, int wg, float *o,
                                                  float *m, float *l, float *f)
{
    if constexpr (HK_FP8(K)) {
        const int blocks = (a->seqlen_q + HOPPER_WG_ROWS - 1) / HOPPER_WG_ROWS;
        /* a warpgroup whose rows all lie past seqlen_q computes rows that are never stored; it
         * takes the last block's factor rather than reading past the head's */
        const int blk = min(t->m0 / HOPPER_WG_ROWS + wg, blocks - 1);
        f[0] = a->q_factor[((size_t)t->batch * a->heads_q + t->head) * blocks + blk];
        f[1] = a->v_factor[(size_t)t->batch * (a->heads_q / a->group) + t->head_kv];
    } else {
        f[0] = a->scale_log2;
        f[1] = 1.0f;
    }
#pragma unroll
    for (int i = 0; i < HOPPER_ACC_COLS(D, K) / 2; ++i) o[i] = 0.0f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.0f;
}

/* The CTA's tile k starts with S_0 issued in a turn of its own (the CTA's first tile, and every
 * tile when Q has a single buffer): nothing else is ready to overlap it with. */
template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void start_tile(const hopper_args *a, const hopper_smem *c, const hopper_tile *t,
                                                  int k, int it, int wg, int tid, CONSUMER_STATE)
{
    int last[2];
    const int slot = q_slot<K, D, NWG>(k, wg), st = it % STAGES;
    const int first_masked = tile_limits<BN, CAUSAL>(a, t, wg, tid, last);
    reset_rows<K, D>(a, t, wg, o, m, l, f);
    mbar_wait(c->q_full + 8 * slot, (k / HOPPER_Q_BUFS(D, K, NWG)) & 1);
    turn_wait<D>(wg);
    mbar_wait(c->k_full + 8 * st, (it / STAGES) & 1);
    issue_qk<K, D, BN>(s, c->q_tiles + slot * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D, K),
                          c->k_tiles + st * HOPPER_TILE_BYTES(BN, D, K));
    turn_pass<D>((wg + 1) % NWG);
    wgmma_wait<0>();
    scores_done<K, D, NWG, BN, STAGES>(c, t, tid, it, 0, slot, first_masked, last, s, m, l, alpha, f);
    make_p<K, D, NWG, BN>(c, wg, tid, s, p);
}

/* Key blocks 1..n-1 of the tile: each turn issues S_j together with P_{j-1} V_{j-1}, and the
 * softmax of S_j runs while P V is still on the tensor cores. A tile's first block needs no
 * rescale (O is zero), and its last P V needs none either (O was rescaled after the one before). */
template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void middle_blocks(const hopper_args *a, const hopper_smem *c, const hopper_tile *t,
                                                     int k, int it, int wg, int tid, CONSUMER_STATE)
{
    int last[2];
    const int n = t->n_blocks, slot = q_slot<K, D, NWG>(k, wg);
    /* recomputed rather than carried over from the tile's S_0: a few integer operations per tile
     * against three registers held through the previous tile's epilogue */
    const int first_masked = tile_limits<BN, CAUSAL>(a, t, wg, tid, last);
    const uint32_t q_tile = c->q_tiles + slot * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D, K);
    for (int j = 1; j < n; ++j) {
        const int jt = it + j, st = jt % STAGES, pst = (jt - 1) % STAGES;
        turn_wait<D>(wg);
        mbar_wait(c->k_full + 8 * st, (jt / STAGES) & 1);
        issue_qk<K, D, BN>(s, q_tile, c->k_tiles + st * HOPPER_TILE_BYTES(BN, D, K));
        mbar_wait(c->v_full + 8 * pst, ((jt - 1) / STAGES) & 1);
        issue_p_v<K, D, NWG, BN>(c, wg, o, p, c->v_tiles + pst * HOPPER_TILE_BYTES(BN, D, K));
        turn_pass<D>((wg + 1) % NWG);
        wgmma_wait<1>();
        scores_done<K, D, NWG, BN, STAGES>(c, t, tid, jt, j, slot, first_masked, last, s, m, l, alpha, f);
        wait_pv_rescale<K, D, NWG, BN>(a, wg, o, p, alpha);
        if (tid % 32 == 0) mbar_arrive(c->v_empty + 8 * pst);
        make_p<K, D, NWG, BN>(c, wg, tid, s, p);
    }
}

/* The tile's last P V, issued outside the turns (nothing is left to pair it with), then the
 * epilogue. */
template <int K, int D, int NWG, int BN, int STAGES>
static __device__ __forceinline__ void finish_tile(const hopper_args *a, const hopper_smem *c,
                                                   const hopper_tile *t, int k, int it, int wg, int tid,
                                                   CONSUMER_STATE)
{
    const int lt = it + t->n_blocks - 1, lst = lt % STAGES;
    mbar_wait(c->v_full + 8 * lst, (lt / STAGES) & 1);
    issue_p_v<K, D, NWG, BN>(c, wg, o, p, c->v_tiles + lst * HOPPER_TILE_BYTES(BN, D, K));
    wgmma_wait<0>();
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
    fence_p<K, D, NWG, BN>(p);
    if (tid % 32 == 0) mbar_arrive(c->v_empty + 8 * lst);
    const uint32_t o_tile = c->o_tiles + wg * HOPPER_O_TILE_BYTES(D, K);
    write_output<K, D, HOPPER_O_SEPARATE(D, K, NWG)>(a, t, wg, tid, o, m, l, f, o_tile,
                                                c->q_empty + 8 * q_slot<K, D, NWG>(k, wg));
}

/* The tile's last P V and the next tile's S_0 in one turn (possible when the next Q has a buffer
 * of its own); the epilogue then runs while S_0 is on the tensor cores, so after the CTA's first
 * tile no turn issues a product alone. */
template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void chain_tiles(const hopper_args *a, const hopper_smem *c,
                                                   const hopper_tile *t, const hopper_tile *next, int k, int it,
                                                   int wg, int tid, CONSUMER_STATE)
{
    int last[2];
    const int lt = it + t->n_blocks - 1, lst = lt % STAGES, nit = it + t->n_blocks, nst = nit % STAGES;
    const int nslot = q_slot<K, D, NWG>(k + 1, wg);
    turn_wait<D>(wg);
    mbar_wait(c->v_full + 8 * lst, (lt / STAGES) & 1);
    issue_p_v<K, D, NWG, BN>(c, wg, o, p, c->v_tiles + lst * HOPPER_TILE_BYTES(BN, D, K));
    mbar_wait(c->q_full + 8 * nslot, ((k + 1) / HOPPER_Q_BUFS(D, K, NWG)) & 1);
    mbar_wait(c->k_full + 8 * nst, (nit / STAGES) & 1);
    issue_qk<K, D, BN>(s, c->q_tiles + nslot * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D, K),
                          c->k_tiles + nst * HOPPER_TILE_BYTES(BN, D, K));
    turn_pass<D>((wg + 1) % NWG);
    wgmma_wait<1>();
    fence_accum<HOPPER_ACC_COLS(D, K) / 2>(o);
    fence_p<K, D, NWG, BN>(p);
    if (tid % 32 == 0) mbar_arrive(c->v_empty + 8 * lst);
    const uint32_t o_tile = c->o_tiles + wg * HOPPER_O_TILE_BYTES(D, K);
    write_output<K, D, true>(a, t, wg, tid, o, m, l, f, o_tile,
                                c->q_empty + 8 * q_slot<K, D, NWG>(k, wg));
    reset_rows<K, D>(a, next, wg, o, m, l, f);
    const int first_masked = tile_limits<BN, CAUSAL>(a, next, wg, tid, last);
    wgmma_wait<0>();
    scores_done<K, D, NWG, BN, STAGES>(c, next, tid, nit, 0, nslot, first_masked, last, s, m, l, alpha, f);
    make_p<K, D, NWG, BN>(c, wg, tid, s, p);
}

/* The consumer side of the persistent loop: the same tiles as the producer, with the stage ring's
 * position carried from tile to tile. Every tile has at least one key block (scheduler.cuh), so
 * the sequence of turns is the same for every warpgroup and no wgmma sits behind a branch that
 * ptxas cannot prove warp-uniform (v6's first form, with such branches, built every descriptor in
 * vector registers and ran 5-15% slower). */
template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void consume(const hopper_args *a, int wg, int tid, const hopper_smem *c)
{
    constexpr int QB = HOPPER_Q_BUFS(D, K, NWG);
    float o[HOPPER_ACC_COLS(D, K) / 2], m[2], l[2], alpha[2], s[BN / 2], f[2];
    uint32_t p[HOPPER_P_REGS(BN, K)];
    hopper_tile t, next;
    int number = blockIdx.x;
    if (wg == NWG - 1) turn_pass<D>(0); /* warpgroup 0 issues first */
    if (tile_of_number<NWG * HOPPER_WG_ROWS, BN, CAUSAL>(a, number, &t)) {
        int it = 0, k = 0; /* stage-ring position of the tile's key block 0; the tile's round */
        start_tile<K, D, NWG, BN, STAGES, CAUSAL>(a, c, &t, 0, it, wg, tid, CONSUMER_STATE_ARGS);
        for (;; ++k) {
            middle_blocks<K, D, NWG, BN, STAGES, CAUSAL>(a, c, &t, k, it, wg, tid, CONSUMER_STATE_ARGS);
            number = consumer_next_tile<CAUSAL>(c, k, number);
            if (!tile_of_number<NWG * HOPPER_WG_ROWS, BN, CAUSAL>(a, number, &next)) break;
            if constexpr (QB == 2) {
                chain_tiles<K, D, NWG, BN, STAGES, CAUSAL>(a, c, &t, &next, k, it, wg, tid,
                                                              CONSUMER_STATE_ARGS);
            } else {
                finish_tile<K, D, NWG, BN, STAGES>(a, c, &t, k, it, wg, tid, CONSUMER_STATE_ARGS);
                start_tile<K, D, NWG, BN, STAGES, CAUSAL>(a, c, &next, k + 1, it + t.n_blocks, wg, tid,
                                                             CONSUMER_STATE_ARGS);
            }
            it += t.n_blocks;
            t = next;
        }
        finish_tile<K, D, NWG, BN, STAGES>(a, c, &t, k, it, wg, tid, CONSUMER_STATE_ARGS);
    }
    if (wg == 0) turn_wait<D>(0);
    if (tid == 0) tma_store_wait_all();
}

template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
__global__ void __launch_bounds__((NWG + 1) * 128, 1) hopper_fwd_kernel(const __grid_constant__ hopper_args args)
{
#if FATTN_HOPPER_ARCH
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const hopper_smem sm = hopper_smem_map<K, D, NWG, BN, STAGES>(smem_u32(smem));
    /* the shuffle tells ptxas that wg is warp-uniform, so the tile addresses derived from it, and
     * the wgmma descriptors, stay in uniform registers */
    const int wg = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0), tid = threadIdx.x % 128;

    if (threadIdx.x == 0) {
        for (int w = 0; w < HOPPER_Q_BUFS(D, K, NWG) * NWG; ++w) {
            mbar_init(sm.q_full + 8 * w, 1); /* the producer's expect_tx */
            /* every warp of the consumer after its last Q K^T, or the epilogue's store */
            mbar_init(sm.q_empty + 8 * w, HOPPER_O_SEPARATE(D, K, NWG) ? 4 : 1);
        }
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(sm.k_full + 8 * s, 1);
            mbar_init(sm.k_empty + 8 * s, 4 * NWG); /* every consumer warp */
            mbar_init(sm.v_full + 8 * s, 1);
            mbar_init(sm.v_empty + 8 * s, 4 * NWG);
        }
        for (int r = 0; r < 2; ++r) {
            mbar_init(sm.tile_full + 8 * r, 1);
            mbar_init(sm.tile_empty + 8 * r, 4 * NWG);
        }
        mbar_fence_init();
    }
    if constexpr (HOPPER_L_MMA(K)) { /* e4m3 1.0 in every byte of the ones tile */
        if (threadIdx.x < HOPPER_ONES_BYTES(K) / 4) st_shared_u32(sm.ones_tile + 4 * threadIdx.x, 0x38383838u);
        fence_proxy_async_smem();
    }
    __syncthreads();

    if (wg == 0) {
        regs_decrease<HOPPER_PRODUCER_REGS>();
        if (tid == 0) {
            tma_prefetch_map(&args.q);
            tma_prefetch_map(&args.k);
            tma_prefetch_map(&args.v);
            produce<K, D, NWG, BN, STAGES, CAUSAL>(&args, &sm);
        }
    } else {
        regs_increase<HOPPER_CONSUMER_REGS(NWG)>();
        consume<K, D, NWG, BN, STAGES, CAUSAL>(&args, wg - 1, tid, &sm);
    }
#endif
}

#endif
