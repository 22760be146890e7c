/* Which tile a CTA computes, and which key blocks it visits.
 *
 * CTAs of one (batch, head) are adjacent in launch order so that they run together and share
 * K and V through L2. For causal attention the query blocks of a head run from the last (the
 * longest: it sees every key) to the first, so short tiles fill the tail of the launch. */
#ifndef FATTN_HOPPER_SCHEDULER_CUH
#define FATTN_HOPPER_SCHEDULER_CUH

#include "config.cuh"

typedef struct hopper_tile {
    int m0;       /* first query row of the CTA */
    int head;     /* query head */
    int head_kv;  /* key/value head (GQA: head / group) */
    int batch;
    int n_blocks; /* key blocks to visit, from block 0 */
} hopper_tile;

template <int M, int BN, bool CAUSAL>
static __device__ __forceinline__ hopper_tile tile_of_block(const hopper_args *a, int linear)
{
    hopper_tile t;
    int bh = linear / a->m_blocks;
    int mb = linear - bh * a->m_blocks;
    if (CAUSAL) mb = a->m_blocks - 1 - mb;
    t.m0 = mb * M;
    t.head = bh % a->heads_q;
    t.batch = bh / a->heads_q;
    t.head_kv = t.head / a->group;
    int n_total = (a->seqlen_kv + BN - 1) / BN;
    t.n_blocks = n_total;
    if (CAUSAL) {
        /* bottom-right alignment: row i sees keys up to i + seqlen_kv - seqlen_q */
        int last_key = t.m0 + M - 1 + a->seqlen_kv - a->seqlen_q;
        t.n_blocks = last_key < 0 ? 0 : min(n_total, last_key / BN + 1);
    }
    return t;
}

#endif
