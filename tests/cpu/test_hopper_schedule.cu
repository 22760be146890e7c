/* The Hopper kernel's tile numbering (src/cuda/hopper/scheduler.cuh), checked on the CPU: the
 * numbers 0..tiles-1 name every (batch, head, query block) exactly once; each tile visits the key
 * blocks its rows need under bottom-right causal alignment; causal numbers run section by section,
 * each section whole GQA groups, longest tiles first within it. The kernel's CTAs take these numbers
 * from a counter (causal) or by a stride of the grid, so a hole or a repeat here is a tile of O never
 * written or written twice, and a wrong key count a wrong answer that only some shapes show. */
#include <stdio.h>
#include <string.h>

#include <map>
#include <set>
#include <tuple>
#include <vector>

/* HOPPER_SPLIT_TAIL is off in the library by default; its numbering is checked here all the same. */
#define HOPPER_SPLIT_TAIL 1
#include "scheduler.cuh"

static int failures = 0, split_checked = 0;

#define EXPECT(cond, ...)                                                                                      \
    do {                                                                                                       \
        if (!(cond)) {                                                                                         \
            ++failures;                                                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                        \
            printf(__VA_ARGS__);                                                                               \
            printf("\n");                                                                                      \
        }                                                                                                      \
    } while (0)

struct shape {
    int batch, heads_q, heads_kv, seqlen_q, seqlen_kv, section; /* section: causal pairs per L2 section */
};

/* Key blocks the stored rows of a tile need: every block holding a key that one of its rows (those
 * below seqlen_q) may see, at least one. Counted row by row, not from the scheduler's formula. */
static int blocks_needed(const shape &s, int m0, int m, int bn, bool causal)
{
    const int n_total = (s.seqlen_kv + bn - 1) / bn;
    if (!causal) return n_total;
    int need = 1;
    for (int i = m0; i < m0 + m && i < s.seqlen_q; ++i) {
        const int last = i + s.seqlen_kv - s.seqlen_q;
        if (last >= 0 && last / bn + 1 > need) need = last / bn + 1 < n_total ? last / bn + 1 : n_total;
    }
    return need;
}

/* The kernel arguments the numbering reads, as hopper.cu sets them for a grid of G CTAs with
 * nothing split (as plan_split leaves a causal call). */
static hopper_args args_for(const shape &s, int M, int G)
{
    hopper_args a;
    memset(&a, 0, sizeof a);
    a.seqlen_q = s.seqlen_q;
    a.seqlen_kv = s.seqlen_kv;
    a.heads_q = s.heads_q;
    a.group = s.heads_q / s.heads_kv;
    a.m_blocks = (s.seqlen_q + M - 1) / M;
    a.tiles = a.m_blocks * s.heads_q * s.batch;
    a.section = s.section;
    a.ctas = G;
    a.split_from = a.tiles;
    return a;
}

template <int M, int BN, bool CAUSAL> static void check(const shape &s)
{
    hopper_args a = args_for(s, M, 132);
    char what[160];
    snprintf(what, sizeof what, "M %d BN %d %s, %dx%dx%d (kv heads %d), keys %d, section %d", M, BN,
             CAUSAL ? "causal" : "non-causal", s.batch, s.seqlen_q, s.heads_q, s.heads_kv, s.seqlen_kv, s.section);

    std::set<std::tuple<int, int, int>> seen;
    int prev_section = -1, prev_blocks = 0, bad_blocks = 0, extra_blocks = 0, order = 0;
    std::set<int> section_kv_heads;
    for (int n = 0; n < a.tiles; ++n) {
        hopper_tile t;
        if (!tile_of_number<M, BN, CAUSAL>(&a, n, &t)) {
            EXPECT(0, "%s: number %d of %d names no tile", what, n, a.tiles);
            return;
        }
        EXPECT(t.batch >= 0 && t.batch < s.batch && t.head >= 0 && t.head < s.heads_q && t.m0 >= 0 &&
                   t.m0 < s.seqlen_q && t.m0 % M == 0 && t.head_kv == t.head / a.group,
               "%s: number %d -> batch %d head %d (kv %d) m0 %d", what, n, t.batch, t.head, t.head_kv, t.m0);
        EXPECT(seen.insert(std::make_tuple(t.batch, t.head, t.m0)).second, "%s: number %d repeats batch %d head %d m0 %d",
               what, n, t.batch, t.head, t.m0);
        const int need = blocks_needed(s, t.m0, M, BN, CAUSAL), n_total = (s.seqlen_kv + BN - 1) / BN;
        bad_blocks += t.n_blocks < need || t.n_blocks > n_total;
        /* rows past seqlen_q are computed, never stored: they may add a block, no more */
        extra_blocks += t.n_blocks > need + (M + BN - 1) / BN;
        if (CAUSAL) {
            const int bh = t.batch * s.heads_q + t.head, sec = bh / s.section;
            if (sec != prev_section) {
                EXPECT(sec == prev_section + 1, "%s: number %d starts section %d after %d", what, n, sec, prev_section);
                if (prev_section >= 0)
                    EXPECT((int)section_kv_heads.size() * a.group <= s.section,
                           "%s: section %d reads %zu kv heads for %d pairs", what, prev_section,
                           section_kv_heads.size(), s.section);
                section_kv_heads.clear();
                prev_section = sec;
            } else {
                order += t.n_blocks > prev_blocks;
            }
            section_kv_heads.insert(t.batch * s.heads_kv + t.head_kv);
            prev_blocks = t.n_blocks;
        }
    }
    EXPECT((int)seen.size() == a.tiles, "%s: %zu distinct tiles of %d", what, seen.size(), a.tiles);
    EXPECT(bad_blocks == 0, "%s: %d tiles visit fewer key blocks than their rows need, or more than exist", what,
           bad_blocks);
    EXPECT(extra_blocks == 0, "%s: %d tiles visit blocks no computed row needs", what, extra_blocks);
    EXPECT(order == 0, "%s: %d tiles longer than the one before them in their section", what, order);
    hopper_tile t;
    const int past = tile_of_number<M, BN, CAUSAL>(&a, a.tiles, &t) + tile_of_number<M, BN, CAUSAL>(&a, a.tiles + 131, &t);
    EXPECT(past == 0, "%s: a number past the last names a tile (the counter's last claims must end the CTAs)", what);
}

/* HOPPER_SPLIT_TAIL over a grid of G CTAs, as hopper.cu's plan_split sets it up: each CTA walks its
 * numbers c, c + G, ... as the kernel does; together they must visit every key block of every
 * tile exactly once, whole tiles before pieces, at most two pieces a CTA in slots 2c and 2c + 1,
 * and merge.cu's lookup (runs_into, piece_in) must find exactly the pieces each split tile got. */
template <int M, int BN> static void check_split(const shape &s, int G)
{
    hopper_args a = args_for(s, M, G);
    const int n_total = (s.seqlen_kv + BN - 1) / BN, whole = a.tiles / G * G, left = a.tiles - whole;
    if (whole == 0 || left == 0 || (long long)left * n_total < 2LL * G) return; /* plan_split splits nothing */
    a.split_from = whole;
    a.split_units = left * n_total;
    char what[160];
    snprintf(what, sizeof what, "split M %d BN %d over %d CTAs, %dx%dx%d, keys %d", M, BN, G, s.batch, s.seqlen_q,
             s.heads_q, s.seqlen_kv);
    std::map<std::tuple<int, int, int>, std::vector<int>> visits; /* (batch, head, m0) -> times per key block */
    std::map<int, std::set<int>> slots_of;                         /* split tile index -> piece slots */
    int bad = 0;
    for (int c = 0; c < G; ++c) {
        int pieces = 0;
        hopper_tile t;
        for (int number = c; tile_of_number<M, BN, false>(&a, number, &t); number += G) {
            std::vector<int> &v = visits[std::make_tuple(t.batch, t.head, t.m0)];
            v.resize(n_total);
            bad += t.n_blocks < 1 || t.j0 < 0 || t.j0 + t.n_blocks > n_total;
            for (int j = t.j0; j < t.j0 + t.n_blocks && j < n_total; ++j) ++v[j];
            if (t.piece < 0) {
                bad += pieces > 0 || t.j0 != 0 || t.n_blocks != n_total;
            } else {
                bad += t.piece != 2 * c + pieces;
                ++pieces;
                const int tile = (t.batch * s.heads_q + t.head) * a.m_blocks + t.m0 / M;
                slots_of[tile - whole].insert(t.piece);
            }
        }
        bad += pieces > 2;
    }
    EXPECT(bad == 0, "%s: %d malformed tiles or pieces", what, bad);
    EXPECT((int)visits.size() == a.tiles, "%s: %zu of %d tiles visited", what, visits.size(), a.tiles);
    int twice = 0;
    for (const auto &kv : visits)
        for (int x : kv.second) twice += x != 1;
    EXPECT(twice == 0, "%s: %d key blocks visited other than once", what, twice);
    int lookups = 0;
    for (int st = 0; st < left; ++st) {
        int c0, c1;
        runs_into(&a, st, n_total, &c0, &c1);
        std::set<int> found;
        for (int c = c0; c < c1; ++c)
            for (int k = 0; k < 2; ++k)
                if (piece_in(&a, c, k, st, n_total)) found.insert(2 * c + k);
        lookups += found != slots_of[st];
    }
    EXPECT(lookups == 0, "%s: the merge's lookup misses or adds pieces for %d of %d split tiles", what, lookups, left);
    ++split_checked;
}

template <int M, int BN> static void check_both(const shape &s)
{
    check<M, BN, false>(s);
    check<M, BN, true>(s);
    for (int G : {132, 114, 7, 100}) check_split<M, BN>(s, G);
}

int main(void)
{
    /* sections as hopper.cu's l2_section makes them: whole GQA groups, the last one possibly short */
    const shape shapes[] = {
        {1, 16, 16, 16384, 16384, 4},  /* d128 16k causal on an H200: 4-head sections */
        {4, 16, 16, 4096, 4096, 18},   /* 64 pairs in sections of 18: the last holds 10 */
        {1, 32, 8, 8192, 8192, 8},     /* GQA 32:8, two groups per section */
        {2, 6, 2, 300, 1000, 6},       /* more keys than queries: the diagonal is shifted right */
        {2, 6, 2, 1000, 300, 12},      /* fewer: the first rows see no key, one masked block */
        {3, 5, 5, 129, 129, 5},        /* a last query block of one row */
        {64, 16, 16, 128, 128, 1024},  /* the short-sequence class: one key block per tile */
        {4, 9, 3, 512, 2000, 9},       /* a split tail of 12 tiles in runs of 2-3 key blocks */
    };
    for (const shape &s : shapes) {
        check_both<128, 128>(s);
        check_both<192, 128>(s);
        check_both<128, 80>(s);
        check_both<128, 64>(s);
    }
    printf("hopper tile numbering: %zu shapes x 4 tile sizes x causal/non-causal, %d split tails, %d failures\n",
           sizeof shapes / sizeof shapes[0], split_checked, failures);
    return failures ? 1 : 0;
}
