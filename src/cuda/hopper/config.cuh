/* Kernel arguments and the shared-memory layout of the Hopper forward.
 *
 * A persistent CTA computes tiles of NWG*64 query rows of one (batch, head) in turn: warpgroup 0 is
 * the producer (TMA loads), warpgroups 1..NWG are consumers, each owning 64 query rows. K and V tiles of BN rows stream
 * through STAGES shared-memory stages. Every tile is stored as column chunks of rows x 128 bytes
 * (64 bf16/fp16, 128 e4m3 or 32 fp32 elements) with the 128-byte swizzle, the layout both TMA and
 * wgmma read. In FP8 mode Q, K and V come from the quantisation pass (hopper/quantize.cu) in e4m3,
 * and fp32 I/O from the staging pass (hopper/stage.cu) rounded to tf32; both have V transposed
 * (head_dim rows of keys), because e4m3 and tf32 wgmma read both operands K-major. */
#ifndef FATTN_HOPPER_CONFIG_CUH
#define FATTN_HOPPER_CONFIG_CUH

#include <cuda.h>
#include <stdint.h>

typedef struct hopper_args {
    CUtensorMap q, k, v, o; /* 4-D maps over (head_dim, seq, heads, batch); FP8's v: (keys, head_dim, heads, batch) */
    float *lse;             /* [batch, heads_q, seqlen_q] or NULL */
    /* FP8 only (hopper/quantize.cu): per (batch, head_q, 64-row block) the score factor that replaces
     * scale_log2, per (batch, head_kv) the factor that dequantises O; NULL in native mode */
    const float *q_factor, *v_factor;
    int seqlen_q;
    int seqlen_kv;
    int heads_q;
    int group; /* heads_q / heads_kv */
    int m_blocks;
    int tiles; /* m_blocks * heads_q * batch */
    int section;  /* causal: (batch, head) pairs per L2 section (scheduler.cuh), a multiple of group */
    int *tile_counter; /* causal: tiles claimed so far beyond the CTAs' first, 0 at launch (workspace) */
    float scale_log2; /* softmax scale * log2(e), so exp(x * scale) = exp2(x * scale_log2) */
    /* HOPPER_SPLIT_TAIL, non-causal (scheduler.cuh): the grid's CTAs, the first number past the
     * whole tiles (a multiple of ctas; tiles when nothing is split), the key blocks of the split
     * tiles, and the workspace their pieces go to: per piece slot, tile_rows x piece_cols fp32
     * outputs and tile_rows base-2 log-sum-exps */
    int ctas, split_from, split_units, tile_rows, piece_cols;
    float *piece_o, *piece_lse;
} hopper_args;

/* A tuning knob, off by default (docs/perf-notes.md, v16-v17: +2% at 16k keys, -1% at 1k-4k where
 * the threshold below leaves the split out but its code stays in the kernels): a non-causal native
 * call's last round of tiles, which leaves CTAs idle when the tile count is not a multiple of the
 * grid, is split along the keys over every CTA, each piece written to the workspace in fp32 with
 * its log-sum-exp, and a second launch (merge.cu) combines the pieces of each tile. */
#ifndef HOPPER_SPLIT_TAIL
#define HOPPER_SPLIT_TAIL 0
#endif
/* The most CTAs a split call may have, and the tallest tile: the workspace is sized for two pieces
 * a CTA before the device and the tile are known. */
#define HOPPER_SPLIT_MAX_CTAS 160
/* A split costs about the same whatever it saves (the pieces' second prologue and epilogue, the
 * merge's launch): it is taken where the last round loses at least this many multiply-adds a CTA
 * (rows x keys x columns; v17 in docs/perf-notes.md measured the threshold). */
#ifndef HOPPER_SPLIT_MIN_SAVED
#define HOPPER_SPLIT_MIN_SAVED (40ll << 20)
#endif
#define HOPPER_SPLIT_MAX_ROWS 192

/* A kernel's element kind (its template parameter K): what its Q, K and V tiles hold, which wgmma
 * multiplies them, and the dtype O is written in. */
#define HK_BF16 0      /* bf16 I/O */
#define HK_F16 1       /* fp16 I/O */
#define HK_E4M3_BF16 2 /* FP8 mode, bf16 I/O: e4m3 copies */
#define HK_E4M3_F16 3  /* FP8 mode, fp16 I/O */
#define HK_TF32 4      /* fp32 I/O: tf32-rounded copies, fp32 O */
#define HK_FP8(K) ((K) == HK_E4M3_BF16 || (K) == HK_E4M3_F16)
/* V arrives transposed from a pre-pass, so P V's B operand is K-major (keys contiguous). */
#define HK_VT(K) (HK_FP8(K) || (K) == HK_TF32)
#define HK_BF16_OUT(K) ((K) == HK_BF16 || (K) == HK_E4M3_BF16)

#define HOPPER_ROW_BYTES 128 /* one swizzled row of a 128-byte column chunk */
#define HOPPER_WG_ROWS 64    /* query rows per consumer warpgroup (wgmma's M) */

/* Bytes per element of Q, K and V in shared memory (2 bf16/fp16, 1 e4m3, 4 tf32), and of O, which
 * is written in the I/O dtype. */
#define HOPPER_IN_BYTES(K) (HK_FP8(K) ? 1 : (K) == HK_TF32 ? 4 : 2)
#define HOPPER_OUT_BYTES(K) ((K) == HK_TF32 ? 4 : 2)
/* A kernel's D is the head-dim extent its Q K^T runs over (a multiple of 16); its tiles are DT
 * columns wide, D rounded up to whole 128-byte chunks. The columns past the call's head_dim are
 * TMA's zeros; P V computes all DT of them (wgmma's MN-major B under the 128-byte swizzle takes
 * N in multiples of 64), and the store of O clips them. */
#define HOPPER_DT(D) (((D) + 63) / 64 * 64)

/* Bytes of a rows x DT tile of Q or K (a V^T tile, D rows of BN keys, is the same size as K's). */
#define HOPPER_TILE_BYTES(rows, D, K) ((rows) * HOPPER_DT(D) * HOPPER_IN_BYTES(K))
#define HOPPER_O_TILE_BYTES(D, K) (HOPPER_WG_ROWS * HOPPER_DT(D) * HOPPER_OUT_BYTES(K))

/* Three consumers at DT 128 (FP8 d128 by default; D 80-128 with hopper.cu's CFG128_NWG=3) keep P in
 * a shared-memory tile per warpgroup and multiply P V as an SS wgmma, so P holds no registers while
 * S_{j+1} is computed (O 64 + S 64 of the 160 registers three consumers get; with P in registers
 * they spill). FA4's Hopper forward runs head dims 72-96 this way, on 192 x 144 tiles. */
#define HOPPER_P_SMEM(K, D, NWG) ((NWG) == 3 && HOPPER_DT(D) == 128 && (K) != HK_TF32)
#define HOPPER_P_TILE_BYTES(BN, K) (HOPPER_WG_ROWS * (BN) * HOPPER_IN_BYTES(K))

/* Whether O is staged in its own tiles (so the next tile's Q can load while this tile's epilogue
 * runs) or in the warpgroup's Q tile: no room for both in bf16 d256, in tf32, and beside the P tiles
 * of bf16/fp16 (48 KB of Q, 128 of K/V stages, 48 of P); an e4m3 Q tile is too small to hold O, a
 * tf32 one holds an fp32 O exactly. */
#ifndef HOPPER_O_OWN_MAX_D /* a tuning knob: the widest native D whose O has tiles of its own */
#define HOPPER_O_OWN_MAX_D 128
#endif
#define HOPPER_O_SEPARATE(D, K, NWG)                                                                  \
    (HK_FP8(K) || ((D) <= HOPPER_O_OWN_MAX_D && (K) != HK_TF32 && !HOPPER_P_SMEM(K, D, NWG)))

/* Q buffers per consumer; tile k of a CTA uses buffer k % HOPPER_Q_BUFS. At d128 there is room for
 * a second Q (bf16: 225 of 227 KB), so the next tile's Q is in place before this tile ends and its
 * first Q K^T can be issued in this tile's last turn. A second buffer needs O's own tiles. */
#define HOPPER_Q_BUFS(D, K, NWG) ((D) <= 128 && HOPPER_O_SEPARATE(D, K, NWG) ? 2 : 1)

/* A tuning knob, off by default: FP8 mode's row sums on the tensor cores. P V also multiplies P by
 * an 8-row tile of e4m3 ones (HOPPER_ONES_BYTES, written once per CTA), so O's accumulator gains a
 * column group whose every column is the row's sum of the rounded P, and the softmax drops its
 * FADD per score (13% of the FP8 loop's instructions). Measured +0.5-1.2% at the seed, +2-5% on
 * long causal shapes (docs/perf-notes.md, v15). l then sums the e4m3 P that P V multiplies rather
 * than the exact p that src/cpu/fp8.c sums, and the FP8 accumulator keeps too few bits for that
 * all-positive sum: with the rounded sum made the definition, LSE errors reached 3.3e-2 at 4096 and
 * 15708 keys (v16). */
#ifndef HOPPER_FP8_L_MMA
#define HOPPER_FP8_L_MMA 0
#endif
#define HOPPER_L_MMA(K) (HOPPER_FP8_L_MMA && HK_FP8(K))
#define HOPPER_ONES_BYTES(K) (HOPPER_L_MMA(K) ? 1024 : 0)
/* Columns of O's accumulator: the tile's, and the row sums' group with HOPPER_L_MMA. */
#define HOPPER_ACC_COLS(D, K) (HOPPER_DT(D) + (HOPPER_L_MMA(K) ? 8 : 0))

/* Offsets from the 1024-byte-aligned base: Q (HOPPER_Q_BUFS tiles per consumer, buffer-major), K
 * stages, V stages, O (one tile per consumer, when separate), P (one tile per consumer, with
 * HOPPER_P_SMEM), the ones tile (HOPPER_L_MMA), then the mbarriers: q_full[B][NWG],
 * q_empty[B][NWG], k_full[S], k_empty[S], v_full[S], v_empty[S], tile_full[2], tile_empty[2], and
 * the two tile numbers they guard (scheduler.cuh). */
#define HOPPER_Q_OFF 0
#define HOPPER_K_OFF(D, NWG, K) (HOPPER_Q_OFF + HOPPER_Q_BUFS(D, K, NWG) * (NWG) * HOPPER_TILE_BYTES(HOPPER_WG_ROWS, D, K))
#define HOPPER_V_OFF(D, NWG, BN, S, K) (HOPPER_K_OFF(D, NWG, K) + (S) * HOPPER_TILE_BYTES(BN, D, K))
#define HOPPER_O_OFF(D, NWG, BN, S, K) (HOPPER_V_OFF(D, NWG, BN, S, K) + (S) * HOPPER_TILE_BYTES(BN, D, K))
#define HOPPER_P_OFF(D, NWG, BN, S, K)                                                                \
    (HOPPER_O_OFF(D, NWG, BN, S, K) + (HOPPER_O_SEPARATE(D, K, NWG) ? (NWG) * HOPPER_O_TILE_BYTES(D, K) : 0))
#define HOPPER_ONES_OFF(D, NWG, BN, S, K)                                                             \
    (HOPPER_P_OFF(D, NWG, BN, S, K) + (HOPPER_P_SMEM(K, D, NWG) ? (NWG) * HOPPER_P_TILE_BYTES(BN, K) : 0))
#define HOPPER_BAR_OFF(D, NWG, BN, S, K) (HOPPER_ONES_OFF(D, NWG, BN, S, K) + HOPPER_ONES_BYTES(K))
/* The extra 1024 lets the kernel align the dynamic shared-memory base for the swizzle. */
#define HOPPER_SMEM_BYTES(D, NWG, BN, S, K)                                                           \
    (HOPPER_BAR_OFF(D, NWG, BN, S, K) + 8 * (2 * HOPPER_Q_BUFS(D, K, NWG) * (NWG) + 4 * (S) + 4) + 2 * 4 + 1024)

/* Byte offset of element (row, col) of ELEM bytes in a swizzled 64-row tile (O's, and P's with
 * HOPPER_P_SMEM; TMA and wgmma see the same layout): the 16-byte unit index inside a 128-byte row
 * is XORed with row % 8. */
template <int ELEM> static __device__ __forceinline__ uint32_t swizzled_offset(int row, int col)
{
    constexpr int per_chunk = HOPPER_ROW_BYTES / ELEM;
    int chunk = col / per_chunk, byte = (col % per_chunk) * ELEM;
    return (uint32_t)(chunk * HOPPER_WG_ROWS * HOPPER_ROW_BYTES + row * HOPPER_ROW_BYTES +
                      (((byte >> 4) ^ (row & 7)) << 4) + (byte & 15));
}

/* Where the accumulator pair (column group g, row half h) of warpgroup thread tid sits in such a
 * tile: rows 16 * (tid / 32) + (tid % 32) / 4 + 8h, columns 8g + 2 (tid % 4) and the one after
 * (wgmma's accumulator layout, softmax.cuh). */
template <int ELEM> static __device__ __forceinline__ uint32_t accum_pair_offset(int tid, int g, int h)
{
    const int lane = tid % 32;
    return swizzled_offset<ELEM>(16 * (tid / 32) + lane / 4 + 8 * h, 8 * g + 2 * (lane % 4));
}

/* The layout above as shared-memory addresses, for the producer, the consumers and the barriers'
 * initialisation alike. Each mbarrier takes 8 bytes; q_full/q_empty slot b * NWG + w belongs to Q
 * buffer b of consumer w. */
typedef struct hopper_smem {
    uint32_t q_full, q_empty, k_full, k_empty, v_full, v_empty, tile_full, tile_empty, tile_numbers;
    uint32_t q_tiles, k_tiles, v_tiles, o_tiles; /* o_tiles: the Q tiles when O has none of its own */
    uint32_t p_tiles;                            /* with HOPPER_P_SMEM only */
    uint32_t ones_tile;                          /* with HOPPER_L_MMA only */
} hopper_smem;

template <int K, int D, int NWG, int BN, int STAGES>
static __device__ __forceinline__ hopper_smem hopper_smem_map(uint32_t base)
{
    hopper_smem m;
    m.q_full = base + HOPPER_BAR_OFF(D, NWG, BN, STAGES, K);
    m.q_empty = m.q_full + 8 * HOPPER_Q_BUFS(D, K, NWG) * NWG;
    m.k_full = m.q_empty + 8 * HOPPER_Q_BUFS(D, K, NWG) * NWG;
    m.k_empty = m.k_full + 8 * STAGES;
    m.v_full = m.k_empty + 8 * STAGES;
    m.v_empty = m.v_full + 8 * STAGES;
    m.tile_full = m.v_empty + 8 * STAGES;
    m.tile_empty = m.tile_full + 8 * 2;
    m.tile_numbers = m.tile_empty + 8 * 2;
    m.q_tiles = base + HOPPER_Q_OFF;
    m.k_tiles = base + HOPPER_K_OFF(D, NWG, K);
    m.v_tiles = base + HOPPER_V_OFF(D, NWG, BN, STAGES, K);
    m.o_tiles = base + (HOPPER_O_SEPARATE(D, K, NWG) ? HOPPER_O_OFF(D, NWG, BN, STAGES, K) : HOPPER_Q_OFF);
    m.p_tiles = base + HOPPER_P_OFF(D, NWG, BN, STAGES, K);
    m.ones_tile = base + HOPPER_ONES_OFF(D, NWG, BN, STAGES, K);
    return m;
}

#endif
