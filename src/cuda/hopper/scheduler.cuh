/* Which tiles a persistent CTA computes, and which key blocks each visits.
 *
 * Tiles are numbered; CTA c of G starts with tile c. Non-causal tiles are all alike, so the CTA's
 * next tile is simply G on from its last, in (batch, head)-major order: CTAs that run together
 * share a head's K and V in L2. Causal tiles differ in length (query block m sees m+1 key blocks),
 * so the numbering runs longest first, and each CTA takes the next unclaimed number from a counter
 * in the workspace as it nears the end of a tile: the greedy assignment that keeps the CTAs'
 * totals level whatever the lengths. Longest first over all heads at once would have the CTAs
 * running together read every head's K and V (16k tokens, 16 heads of 128: 128 MB, the L2 holds
 * 50; ncu: 79% L2 hits against FA4's 95%), so the (batch, head) pairs go in sections of
 * a->section, whose K and V fit in L2 together (the host sizes them), longest first within each
 * section, one section after the other. A static deal of that order (round k gave CTA c tile
 * k*G + c) left the busiest CTA at 1.30x the mean at 16k, where rounds straddle two sections; the
 * counter's, 1.002x (a host simulation, docs/perf-notes.md v10). */
#ifndef FATTN_HOPPER_SCHEDULER_CUH
#define FATTN_HOPPER_SCHEDULER_CUH

#include "config.cuh"
#include "ptx.cuh"

typedef struct hopper_tile {
    int m0;       /* first query row of the tile */
    int head;     /* query head */
    int head_kv;  /* key/value head (GQA: head / group) */
    int batch;
    int n_blocks; /* key blocks to visit, from block j0; at least 1 */
    int j0;       /* the first key block: 0 but for a piece of a split tile */
    int piece;    /* a split tile's piece: its workspace slot (HOPPER_SPLIT_TAIL); -1: a whole tile */
} hopper_tile;

/* HOPPER_SPLIT_TAIL: the key blocks of the split tiles, numbered tile by tile, are dealt to the
 * CTAs in runs that differ by at most one block (the first split_units % ctas CTAs take one more);
 * CTA c's run is [lo, hi). The run is shorter than a tile (fewer split tiles than CTAs), so it
 * covers at most two pieces: from lo to the end of lo's tile (slot 2c), and the rest (slot
 * 2c + 1). 32-bit arithmetic throughout: a 64-bit division is a call in device code, whose saved
 * registers spilled the d256 kernels' accumulators. */
static __host__ __device__ __forceinline__ void split_run(const hopper_args *a, int c, int *lo, int *hi)
{
    const int q = a->split_units / a->ctas, r = a->split_units % a->ctas;
    *lo = c * q + min(c, r);
    *hi = *lo + q + (c < r);
}

/* Piece k (0 or 1) of CTA c's run, as key blocks [b0, b1) of that numbering; 0 when it has none. */
static __host__ __device__ __forceinline__ int split_piece(const hopper_args *a, int c, int k, int n, int *b0, int *b1)
{
    int lo, hi;
    split_run(a, c, &lo, &hi);
    const int cut = (lo / n + 1) * n; /* the end of the tile lo falls in */
    *b0 = k == 0 ? lo : cut;
    *b1 = k == 0 ? min(hi, cut) : hi;
    return k <= 1 && *b0 < *b1;
}

/* The pieces of split tile st lie in the runs of CTAs [c0, c1): from the run holding the tile's
 * first key block to the last that starts inside it; piece_in says which of a CTA's two pieces
 * do. */
static __host__ __device__ __forceinline__ void runs_into(const hopper_args *a, int st, int n_total, int *c0, int *c1)
{
    const int q = a->split_units / a->ctas, r = a->split_units % a->ctas, b = st * n_total, end = b + n_total;
    int c = b < r * (q + 1) ? b / (q + 1) : r + (b - r * (q + 1)) / q, lo, hi;
    *c0 = c;
    for (split_run(a, c, &lo, &hi); lo < end && ++c < a->ctas;) split_run(a, c, &lo, &hi);
    *c1 = c;
}

static __host__ __device__ __forceinline__ bool piece_in(const hopper_args *a, int c, int k, int st, int n_total)
{
    int b0, b1;
    return split_piece(a, c, k, n_total, &b0, &b1) && b0 / n_total == st;
}

/* Tile `number` (the CTA's first, G on from its last, or the counter's), or 0 past the last. With
 * HOPPER_SPLIT_TAIL, a non-causal number from split_from on is CTA c's piece k, c + k * G past it.
 * Host code too: tests/cpu/test_hopper_schedule.cu checks the numbering on the CPU. */
template <int M, int BN, bool CAUSAL>
static __host__ __device__ __forceinline__ int tile_of_number(const hopper_args *a, int number, hopper_tile *t)
{
    int j0 = 0, piece = -1, n_piece = 0;
    if constexpr (HOPPER_SPLIT_TAIL && !CAUSAL) {
        if (number >= a->split_from) {
            const int q = number - a->split_from, c = q % a->ctas, k = q / a->ctas, n = (a->seqlen_kv + BN - 1) / BN;
            int b0, b1;
            if (!split_piece(a, c, k, n, &b0, &b1)) return 0;
            number = a->split_from + b0 / n;
            j0 = b0 % n;
            n_piece = b1 - b0;
            piece = 2 * c + k;
        }
    }
    if (number >= a->tiles) return 0;
    const int heads = a->tiles / a->m_blocks; /* batch * heads_q */
    int bh, mb;
    if (CAUSAL) {
        const int per = a->section * a->m_blocks, sec = number / per, in = number % per;
        const int pairs = min(a->section, heads - sec * a->section); /* the last section may be short */
        mb = a->m_blocks - 1 - in / pairs;
        bh = sec * a->section + in % pairs;
    } else {
        bh = number / a->m_blocks;
        mb = number % a->m_blocks;
    }
    t->m0 = mb * M;
    t->head = bh % a->heads_q;
    t->batch = bh / a->heads_q;
    t->head_kv = t->head / a->group;
    const int n_total = (a->seqlen_kv + BN - 1) / BN;
    t->n_blocks = piece >= 0 ? n_piece : n_total;
    t->j0 = j0;
    t->piece = piece;
    if (CAUSAL) {
        /* Bottom-right alignment: row i sees keys up to i + seqlen_kv - seqlen_q. A tile whose rows
         * see no key at all (seqlen_q > seqlen_kv) still visits block 0, fully masked, which leaves
         * its rows at zero: every tile then has a first block, so the consumer's pipeline has one
         * shape and no branch around its matrix products. */
        int last_key = t->m0 + M - 1 + a->seqlen_kv - a->seqlen_q;
        t->n_blocks = last_key < 0 ? 1 : min(n_total, last_key / BN + 1);
    }
    return 1;
}

/* The producer's claim on the CTA's next causal tile. The counter starts at 0 for every call (the
 * host clears it) and the first G numbers are the CTAs' first tiles. */
static __device__ __forceinline__ int claim_tile(const hopper_args *a)
{
    return atomicAdd(a->tile_counter, 1) + (int)gridDim.x;
}

/* Key blocks before the end of its loads at which the producer claims the next tile: early enough
 * that the atomic's round trip is over when the number is needed, late enough that a CTA claims only
 * once it is close to free (the consumers run about STAGES blocks behind the producer). */
#define HOPPER_CLAIM_AHEAD 2

/* The producer hands the CTA's tile number r + 1 (its rounds after the first) to the consumers
 * through a two-slot ring in shared memory, each slot guarded by a full barrier (the producer's
 * arrival) and an empty one (every consumer warp has read it). */
static __device__ __forceinline__ void publish_tile(const hopper_smem *sm, int r, int number)
{
    const int slot = r % 2;
    mbar_wait(sm->tile_empty + 8 * slot, ((r / 2) & 1) ^ 1); /* a fresh barrier counts as released */
    st_shared_u32(sm->tile_numbers + 4 * slot, (uint32_t)number);
    mbar_arrive(sm->tile_full + 8 * slot); /* release: orders the store before the arrival */
}

/* Called by all 32 lanes of a consumer warp; lane 0 waits and reads, the warp shares the number. */
static __device__ __forceinline__ int receive_tile(const hopper_smem *sm, int r)
{
    const int slot = r % 2;
    uint32_t number = 0;
    if (threadIdx.x % 32 == 0) {
        mbar_wait(sm->tile_full + 8 * slot, (r / 2) & 1);
        number = ld_shared_u32(sm->tile_numbers + 4 * slot);
        mbar_arrive(sm->tile_empty + 8 * slot);
    }
    return (int)__shfl_sync(0xffffffffu, number, 0);
}

/* The CTA's tile after number `current` (its round r): the next G on, or, causal, the counter's. */
template <bool CAUSAL>
static __device__ __forceinline__ int consumer_next_tile(const hopper_smem *sm, int r, int current)
{
    return CAUSAL ? receive_tile(sm, r) : current + (int)gridDim.x;
}

#endif
