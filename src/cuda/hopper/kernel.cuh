/* The Hopper forward kernel: persistent, warp-specialised, TMA-fed, wgmma-computed attention.
 *
 * Warpgroup 0 gives up registers and produces (load.cuh); warpgroups 1..NWG take them and each
 * computes 64 query rows: S = Q K^T (wgmma, SS), online softmax in registers, O += P V (wgmma,
 * RS, P never leaves registers), then the epilogue. */
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
 * to consume the last warpgroup's final opening. Barriers 1..NWG are the epilogue's. */
#define HOPPER_TURN_BAR 4

static __device__ __forceinline__ void turn_wait(int wg)
{
    named_bar_sync(HOPPER_TURN_BAR + wg, 256);
}

static __device__ __forceinline__ void turn_pass(int to)
{
    named_bar_arrive(HOPPER_TURN_BAR + to, 256);
}

template <bool BF16, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void consume_tile(const hopper_args *a, const hopper_tile *t, int wg, int tid,
                                                    uint8_t *smem, uint32_t smem_addr, uint32_t bars, int it0,
                                                    int tile_iter)
{
    const uint32_t q_full = bars, q_empty = bars + 8 * NWG, k_full = q_empty + 8 * NWG;
    const uint32_t k_empty = k_full + 8 * STAGES;
    const uint32_t v_full = k_empty + 8 * STAGES, v_empty = v_full + 8 * STAGES;
    const uint32_t q_tile = smem_addr + HOPPER_Q_OFF + wg * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D);
    const uint32_t k_base = smem_addr + HOPPER_K_OFF(D, NWG);
    const uint32_t v_base = k_base + STAGES * HOPPER_TILE_BYTES(BN, D);
    const int lane = tid % 32;
    const int row0 = t->m0 + wg * HOPPER_WG_ROWS + 16 * (tid / 32) + lane / 4;
    const int shift = a->seqlen_kv - a->seqlen_q;

    int last[2];
#pragma unroll
    for (int h = 0; h < 2; ++h)
        last[h] = CAUSAL ? min(a->seqlen_kv - 1, row0 + 8 * h + shift) : a->seqlen_kv - 1;
    /* first key block with a column past the warpgroup's earliest last-visible key */
    const int first_masked = CAUSAL ? min(a->seqlen_kv, max(0, t->m0 + wg * HOPPER_WG_ROWS + shift + 1)) / BN
                                    : a->seqlen_kv / BN;

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, alpha[2];
    float s[BN / 2];
    uint32_t p[BN / 4];

    constexpr bool SEPARATE = HOPPER_O_SEPARATE(D);
    mbar_wait(q_full + 8 * wg, tile_iter & 1);
    const int n = t->n_blocks;
    /* with O in its own tile, Q is free once the last Q K^T has completed: the producer may then
     * load the next tile's Q under this tile's last P V and epilogue */
    if (SEPARATE && n == 0 && lane == 0) mbar_arrive(q_empty + 8 * wg);
    if (n > 0) {
        /* block 0: S_0 alone */
        const int st0 = it0 % STAGES;
        turn_wait(wg);
        mbar_wait(k_full + 8 * st0, (it0 / STAGES) & 1);
        issue_qk<BF16, D, BN>(s, q_tile, k_base + st0 * HOPPER_TILE_BYTES(BN, D));
        turn_pass((wg + 1) % NWG);
        wgmma_wait<0>();
        fence_accum<BN / 2>(s);
        if (lane == 0) mbar_arrive(k_empty + 8 * st0);
        if (SEPARATE && n == 1 && lane == 0) mbar_arrive(q_empty + 8 * wg);
        if (0 >= first_masked) mask_scores<BN>(s, 2 * (lane % 4), last);
        online_softmax<BN>(s, m, l, alpha, a->scale_log2);
        probs_to_a<BF16, BN>(s, p);

        /* block j: S_j = Q K_j^T and O += P_{j-1} V_{j-1} in flight together; the softmax of S_j
         * runs while P V is still on the tensor cores. */
        for (int j = 1; j < n; ++j) {
            const int it = it0 + j, st = it % STAGES, pst = (it - 1) % STAGES;
            turn_wait(wg);
            mbar_wait(k_full + 8 * st, (it / STAGES) & 1);
            issue_qk<BF16, D, BN>(s, q_tile, k_base + st * HOPPER_TILE_BYTES(BN, D));
            rescale_rows<D>(o, alpha);
            mbar_wait(v_full + 8 * pst, ((it - 1) / STAGES) & 1);
            issue_pv<BF16, D, BN>(o, p, v_base + pst * HOPPER_TILE_BYTES(BN, D));
            turn_pass((wg + 1) % NWG);
            wgmma_wait<1>();
            fence_accum<BN / 2>(s);
            if (lane == 0) mbar_arrive(k_empty + 8 * st);
            if (SEPARATE && j == n - 1 && lane == 0) mbar_arrive(q_empty + 8 * wg);
            if (j >= first_masked) mask_scores<BN>(s, j * BN + 2 * (lane % 4), last);
            online_softmax<BN>(s, m, l, alpha, a->scale_log2);
            wgmma_wait<0>();
            fence_accum<D / 2>(o);
            fence_regs<BN / 4>(p);
            if (lane == 0) mbar_arrive(v_empty + 8 * pst);
            probs_to_a<BF16, BN>(s, p);
        }

        /* the last P V */
        const int lit = it0 + n - 1, lst = lit % STAGES;
        rescale_rows<D>(o, alpha);
        mbar_wait(v_full + 8 * lst, (lit / STAGES) & 1);
        issue_pv<BF16, D, BN>(o, p, v_base + lst * HOPPER_TILE_BYTES(BN, D));
        wgmma_wait<0>();
        fence_accum<D / 2>(o);
        fence_regs<BN / 4>(p);
        if (lane == 0) mbar_arrive(v_empty + 8 * lst);
    }
    const uint32_t o_off = (SEPARATE ? HOPPER_O_OFF(D, NWG, BN, STAGES) : HOPPER_Q_OFF) +
                           wg * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D);
    write_output<BF16, D, SEPARATE>(a, t, wg, tid, o, m, l, smem + o_off, smem_addr + o_off, q_empty + 8 * wg);
}

/* The consumer side of the persistent loop: the same tiles as the producer, with the stage ring's
 * position carried from tile to tile. */
template <bool BF16, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static __device__ __forceinline__ void consume(const hopper_args *a, int wg, int tid, uint8_t *smem,
                                               uint32_t smem_addr, uint32_t bars)
{
    int it = 0;
    hopper_tile t;
    if (wg == NWG - 1) turn_pass(0); /* warpgroup 0 issues first */
    for (int tile_iter = 0; tile_of_round<NWG * HOPPER_WG_ROWS, BN, CAUSAL>(a, tile_iter, &t); ++tile_iter) {
        consume_tile<BF16, D, NWG, BN, STAGES, CAUSAL>(a, &t, wg, tid, smem, smem_addr, bars, it, tile_iter);
        it += t.n_blocks;
    }
    if (wg == 0) turn_wait(0);
    if (tid == 0) tma_store_wait_all();
}

template <bool BF16, int D, int NWG, int BN, int STAGES, bool CAUSAL>
__global__ void __launch_bounds__((NWG + 1) * 128, 1) hopper_fwd_kernel(const __grid_constant__ hopper_args args)
{
#if FATTN_HOPPER_ARCH
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t smem_addr = smem_u32(smem);
    const uint32_t bars = smem_addr + HOPPER_BAR_OFF(D, NWG, BN, STAGES);
    const int wg = threadIdx.x / 128, tid = threadIdx.x % 128;

    if (threadIdx.x == 0) {
        for (int w = 0; w < NWG; ++w) {
            mbar_init(bars + 8 * w, 1); /* q_full */
            /* q_empty: every warp of the consumer after its last Q K^T, or the epilogue's store */
            mbar_init(bars + 8 * (NWG + w), HOPPER_O_SEPARATE(D) ? 4 : 1);
        }
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(bars + 8 * (2 * NWG + s), 1);               /* k_full: the producer's expect_tx */
            mbar_init(bars + 8 * (2 * NWG + STAGES + s), 4 * NWG); /* k_empty: every consumer warp */
            mbar_init(bars + 8 * (2 * NWG + 2 * STAGES + s), 1);
            mbar_init(bars + 8 * (2 * NWG + 3 * STAGES + s), 4 * NWG);
        }
        mbar_fence_init();
    }
    __syncthreads();

    if (wg == 0) {
        regs_decrease<HOPPER_PRODUCER_REGS>();
        if (tid == 0) {
            tma_prefetch_map(&args.q);
            tma_prefetch_map(&args.k);
            tma_prefetch_map(&args.v);
            produce<D, NWG, BN, STAGES, CAUSAL>(&args, smem_addr, bars);
        }
    } else {
        regs_increase<HOPPER_CONSUMER_REGS(NWG)>();
        consume<BF16, D, NWG, BN, STAGES, CAUSAL>(&args, wg - 1, tid, smem, smem_addr, bars);
    }
#endif
}

#endif
