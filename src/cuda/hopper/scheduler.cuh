/* Which tiles a persistent CTA computes, and which key blocks each visits.
 *
 * CTA c of G takes one tile per round. Non-causal tiles are all alike, so round k gives CTA c tile
 * k*G + c in (batch, head)-major order: CTAs that run together share a head's K and V in L2.
 * Causal tiles differ in length (query block m sees m+1 key blocks), so tiles are ordered
 * longest first, and odd rounds are dealt in reverse (CTA G-1 first): a CTA that drew a long tile
 * in one round draws a short one in the next. Longest first over all heads at once would have the
 * CTAs running together read every head's K and V (16k tokens, 16 heads of 128: 128 MB, the L2
 * holds 50; ncu: 79% L2 hits against FA4's 95%), so the (batch, head) pairs go in sections of
 * a->section, whose K and V fit in L2 together (the host sizes them), longest first within each
 * section, one section after the other. The price: where a round straddles two sections some CTAs
 * draw two long tiles running, so the totals are no longer level (a host simulation: the busiest
 * CTA at 1.30x the mean at 16k, 1.15x at 4k; docs/perf-notes.md v10, where a dynamic assignment
 * is the next step). */
#ifndef FATTN_HOPPER_SCHEDULER_CUH
#define FATTN_HOPPER_SCHEDULER_CUH

#include "config.cuh"

typedef struct hopper_tile {
    int m0;       /* first query row of the tile */
    int head;     /* query head */
    int head_kv;  /* key/value head (GQA: head / group) */
    int batch;
    int n_blocks; /* key blocks to visit, from block 0; at least 1 */
} hopper_tile;

/* The CTA's tile of round k, or 0 when it has no more. */
template <int M, int BN, bool CAUSAL>
static __device__ __forceinline__ int tile_of_round(const hopper_args *a, int k, hopper_tile *t)
{
    const int g = gridDim.x, c = blockIdx.x;
    const int linear = k * g + (CAUSAL && (k & 1) ? g - 1 - c : c);
    if (linear >= a->tiles) return 0;
    const int heads = a->tiles / a->m_blocks; /* batch * heads_q */
    int bh, mb;
    if (CAUSAL) {
        const int per = a->section * a->m_blocks, sec = linear / per, in = linear % per;
        const int pairs = min(a->section, heads - sec * a->section); /* the last section may be short */
        mb = a->m_blocks - 1 - in / pairs;
        bh = sec * a->section + in % pairs;
    } else {
        bh = linear / a->m_blocks;
        mb = linear % a->m_blocks;
    }
    t->m0 = mb * M;
    t->head = bh % a->heads_q;
    t->batch = bh / a->heads_q;
    t->head_kv = t->head / a->group;
    const int n_total = (a->seqlen_kv + BN - 1) / BN;
    t->n_blocks = n_total;
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

#endif
