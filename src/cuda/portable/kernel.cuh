/* The portable forward kernel (sm80 and newer), FlashAttention-2 style.
 *
 * One CTA owns BM query rows of one (batch, head); each of its NW warps owns BM/NW of those rows
 * and walks the key/value sequence in tiles of BN rows:
 *   S = Q K^T        mma.sync m16n8k16, Q and K fragments read from shared memory by ldmatrix
 *   online softmax   in registers, exp2 with scale*log2(e) folded into one FFMA per element
 *   O += P V         P re-packed from the S accumulators into A fragments, V by ldmatrix.trans
 * K/V tiles stream through shared memory by 16-byte cp.async. STAGES >= 2: that many K+V buffers,
 * the next tiles in flight while the current one is multiplied. STAGES == 1 (FA2's own scheme,
 * for the large head dims where two CTAs per SM matter more than depth): one K and one V
 * buffer, V_j loading under Q K_j^T and the softmax, K_j+1 loading under P V_j. Rows are padded by 16 bytes, which
 * makes every ldmatrix phase (8 rows of one 16-byte column) hit 8 distinct bank groups for all
 * supported head dims without a swizzle.
 */
#ifndef FATTN_PORTABLE_KERNEL_CUH
#define FATTN_PORTABLE_KERNEL_CUH

#include <math.h>
#include <stdint.h>

#include "../common/ptx.cuh"

typedef struct fattn_portable_args {
    const void *q, *k, *v;
    void *o;
    float *lse;
    int64_t q_sb, q_ss, q_sh;
    int64_t k_sb, k_ss, k_sh;
    int64_t v_sb, v_ss, v_sh;
    int64_t o_sb, o_ss, o_sh;
    int seqlen_q, seqlen_kv, heads_q, group; /* group = heads_q / heads_kv */
    int causal;
    int num_m_blocks;
    float scale_log2; /* softmax scale times log2(e) */
} fattn_portable_args;

/* Shared-memory bytes of one CTA of a configuration. */
#define FATTN_PORTABLE_SMEM(D, BM, BN, STAGES) ((size_t)((BM) + 2 * (STAGES) * (BN)) * ((D) + 8) * 2)

/* Issues the cp.async copies of ROWS x D elements starting at sequence row `row0` of a strided
 * tensor into a padded shared tile; rows at or past `nrows` are zero-filled. */
template <int D, int ROWS, int NTHREADS>
static __device__ __forceinline__ void fattn_load_tile(uint32_t smem, const uint16_t *base,
                                                       int64_t stride_seq, int row0, int nrows,
                                                       int tid)
{
    const int CPR = D / 8; /* 16-byte chunks per row */
    const int PITCH = D + 8;
    static_assert((ROWS * CPR) % NTHREADS == 0, "tile chunks must split evenly over the CTA");
    if (NTHREADS % CPR == 0) {
        /* Each pass covers whole rows, so a thread's chunks sit RSTEP rows apart: one pointer
         * and one step instead of a 64-bit offset per chunk kept live across the loop. */
        const int RSTEP = NTHREADS / CPR;
        const int r0 = tid / CPR, c0 = tid % CPR;
        const uint16_t *src = base + (int64_t)(row0 + r0) * stride_seq + c0 * 8;
        const int64_t step = (int64_t)RSTEP * stride_seq;
        const uint32_t dst = smem + (uint32_t)(r0 * PITCH + c0 * 8) * 2u;
#pragma unroll
        for (int i = 0; i < ROWS / RSTEP; i++) {
            int valid = row0 + r0 + i * RSTEP < nrows;
            fattn_cp_async16(dst + (uint32_t)(i * RSTEP * PITCH * 2), valid ? src : base,
                             valid ? 16 : 0);
            src += step;
        }
    } else {
#pragma unroll
        for (int i = 0; i < ROWS * CPR / NTHREADS; i++) {
            int idx = tid + i * NTHREADS;
            int r = idx / CPR, c = idx % CPR;
            int valid = row0 + r < nrows;
            const uint16_t *src = valid ? base + (int64_t)(row0 + r) * stride_seq + c * 8 : base;
            fattn_cp_async16(smem + (uint32_t)(r * PITCH + c * 8) * 2u, src, valid ? 16 : 0);
        }
    }
}

template <int D, int BM, int BN, int NW, int STAGES, int LAZY, int E, int OE>
__global__ void __launch_bounds__(NW * 32, (NW == 4) ? 2 : 1)
    fattn_portable_fwd(const fattn_portable_args a)
{
    const int NTHREADS = NW * 32;
    const int WR = BM / NW;  /* query rows per warp */
    const int MT = WR / 16;  /* 16-row mma tiles per warp */
    const int NT = BN / 8;   /* 8-column S tiles */
    const int KT = D / 16;   /* k-steps of Q K^T */
    const int DT = D / 8;    /* 8-column O tiles */
    const int PITCH = D + 8; /* padded smem row, elements */
    static_assert(WR % 16 == 0 && BN % 16 == 0 && D % 16 == 0, "tile shape");
    static_assert(STAGES >= 1, "the pipeline needs a buffer");

    extern __shared__ __align__(16) uint16_t smem[];
    const uint32_t sQ = fattn_smem_addr(smem);
    const uint32_t sK = sQ + (uint32_t)(BM * PITCH * 2);
    const uint32_t sV = sK + (uint32_t)(STAGES * BN * PITCH * 2);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    /* Causal work grows with the block index; hand out the heaviest blocks first so the last
     * wave is made of short ones. */
    const int m_block = a.causal ? a.num_m_blocks - 1 - (int)blockIdx.x : (int)blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / a.group;
    const int m0 = m_block * BM;
    const int Sq = a.seqlen_q, Skv = a.seqlen_kv;

    /* Bottom-right causal alignment: query i sees keys t <= i + diag. */
    const int diag = Skv - Sq;
    int n_end = Skv;
    if (a.causal) {
        int last = m0 + BM - 1 + diag + 1; /* one past the last key the block's last row sees */
        n_end = last < n_end ? last : n_end;
    }
    const int n_blocks = n_end > 0 ? (n_end + BN - 1) / BN : 0;

    const uint16_t *qg = (const uint16_t *)a.q + (int64_t)b * a.q_sb + (int64_t)h * a.q_sh;
    const uint16_t *kg = (const uint16_t *)a.k + (int64_t)b * a.k_sb + (int64_t)hk * a.k_sh;
    const uint16_t *vg = (const uint16_t *)a.v + (int64_t)b * a.v_sb + (int64_t)hk * a.v_sh;

    if (n_blocks > 0) {
        fattn_load_tile<D, BM, NTHREADS>(sQ, qg, a.q_ss, m0, Sq, tid);
        if (STAGES == 1) {
            fattn_load_tile<D, BN, NTHREADS>(sK, kg, a.k_ss, 0, Skv, tid);
            fattn_cp_async_commit();
        }
#pragma unroll
        for (int st = 0; st < STAGES - 1; st++) {
            if (st < n_blocks) {
                fattn_load_tile<D, BN, NTHREADS>(sK + st * BN * PITCH * 2, kg, a.k_ss, st * BN, Skv, tid);
                fattn_load_tile<D, BN, NTHREADS>(sV + st * BN * PITCH * 2, vg, a.v_ss, st * BN, Skv, tid);
            }
            fattn_cp_async_commit();
        }
    }

    float o[MT][DT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][dt][e] = 0.f;
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            row_max[mt][hf] = -INFINITY;
            row_sum[mt][hf] = 0.f;
        }

    /* Per-lane byte offsets of the ldmatrix row addresses (see the fragment layouts of
     * mma.m16n8k16: A rows from lanes 0-15, the second k-half from lanes 16-31). */
    const uint32_t q_lane = (uint32_t)(((warp * WR + (lane & 15)) * PITCH + (lane >> 4) * 8) * 2);
    const uint32_t k_lane = (uint32_t)((((lane & 7) + ((lane >> 4) << 3)) * PITCH + ((lane >> 3) & 1) * 8) * 2);
    const uint32_t v_lane = (uint32_t)((((lane & 7) + ((lane >> 3) & 1) * 8) * PITCH + (lane >> 4) * 8) * 2);
    const float sl2 = a.scale_log2;
    const int row_lane = m0 + warp * WR + (lane >> 2);
    const int col_lane = (lane & 3) * 2;

    for (int j = 0; j < n_blocks; j++) {
        uint32_t kbuf = sK, vbuf = sV;
        if (STAGES == 1) {
            fattn_cp_async_wait<0>(); /* K_j landed; every warp is past P V_j-1 */
            __syncthreads();
            fattn_load_tile<D, BN, NTHREADS>(sV, vg, a.v_ss, j * BN, Skv, tid);
            fattn_cp_async_commit();
        } else {
            fattn_cp_async_wait<(STAGES >= 2 ? STAGES - 2 : 0)>();
            __syncthreads();
            const int nj = j + STAGES - 1;
            if (nj < n_blocks) {
                const int sn = nj % STAGES;
                fattn_load_tile<D, BN, NTHREADS>(sK + sn * BN * PITCH * 2, kg, a.k_ss, nj * BN, Skv, tid);
                fattn_load_tile<D, BN, NTHREADS>(sV + sn * BN * PITCH * 2, vg, a.v_ss, nj * BN, Skv, tid);
            }
            fattn_cp_async_commit();
            const int st = j % STAGES;
            kbuf += (uint32_t)(st * BN * PITCH * 2);
            vbuf += (uint32_t)(st * BN * PITCH * 2);
        }
        const int n0 = j * BN;

        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mt][nt][e] = 0.f;

#pragma unroll
        for (int kk = 0; kk < KT; kk++) {
            uint32_t qa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                fattn_ldmatrix_x4(qa[mt], sQ + q_lane + (uint32_t)((mt * 16 * PITCH + kk * 16) * 2));
#pragma unroll
            for (int np = 0; np < NT / 2; np++) {
                uint32_t kb[4];
                fattn_ldmatrix_x4(kb, kbuf + k_lane + (uint32_t)((np * 16 * PITCH + kk * 16) * 2));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    fattn_mma16816<E>(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                    fattn_mma16816<E>(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                }
            }
        }

        /* Only the tile holding the end of the keys and the tiles crossing the causal diagonal
         * need per-element masks; the test is uniform across the CTA. */
        const bool tail = n0 + BN > Skv;
        const bool cross = a.causal && n0 + BN - 1 > m0 + diag;
        if (tail || cross) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int row = row_lane + mt * 16 + (e >> 1) * 8;
                        int col = n0 + nt * 8 + col_lane + (e & 1);
                        int limit = a.causal ? row + diag + 1 : Skv;
                        limit = limit < Skv ? limit : Skv;
                        if (col >= limit) s[mt][nt][e] = -INFINITY;
                    }
        }

        /* Online softmax. LAZY: against a lagging reference maximum (FA4's trick): the
         * reference moves only when a row's tile maximum exceeds it by more than 8 in log2
         * units, so P stays <= 256 and the fp32 sums stay far from overflow, while the O rescale
         * (a multiply per accumulator) runs only when some row of the warp moved, which on long
         * sequences is rare. The final division by the row sum makes the result independent of
         * the reference. Otherwise the classic exact running maximum, rescaling every tile.
         * row_max holds the reference in log2 units (scale folded in). */
        float alpha[MT][2];
        bool moved = false;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    mx = fmaxf(mx, s[mt][nt][2 * hf]);
                    mx = fmaxf(mx, s[mt][nt][2 * hf + 1]);
                }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float ref = row_max[mt][hf];
                const float cand = mx * sl2; /* -inf while the row has seen no key */
                alpha[mt][hf] = 1.f;
                if (cand > ref + (LAZY ? 8.f : 0.f)) {
                    alpha[mt][hf] = fattn_exp2(ref - cand); /* 0 on the first move */
                    row_max[mt][hf] = cand;
                    moved = true;
                }
                /* A row that has seen no key keeps -inf; subtracting 0 instead keeps its
                 * exponentials at exp2(-inf) = 0 rather than NaN. */
                const float ms = row_max[mt][hf] == -INFINITY ? 0.f : row_max[mt][hf];
                float sum = 0.f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    float p0 = fattn_exp2(fmaf(s[mt][nt][2 * hf], sl2, -ms));
                    float p1 = fattn_exp2(fmaf(s[mt][nt][2 * hf + 1], sl2, -ms));
                    s[mt][nt][2 * hf] = p0;
                    s[mt][nt][2 * hf + 1] = p1;
                    sum += p0 + p1;
                }
                row_sum[mt][hf] = row_sum[mt][hf] * alpha[mt][hf] + sum;
            }
        if (!LAZY || __any_sync(0xffffffffu, moved)) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    o[mt][dt][0] *= alpha[mt][0];
                    o[mt][dt][1] *= alpha[mt][0];
                    o[mt][dt][2] *= alpha[mt][1];
                    o[mt][dt][3] *= alpha[mt][1];
                }
        }

        if (STAGES == 1) {
            fattn_cp_async_wait<0>(); /* V_j landed; every warp is past Q K_j^T */
            __syncthreads();
            if (j + 1 < n_blocks)
                fattn_load_tile<D, BN, NTHREADS>(sK, kg, a.k_ss, (j + 1) * BN, Skv, tid);
            fattn_cp_async_commit();
        }

#pragma unroll
        for (int ks = 0; ks < BN / 16; ks++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = fattn_pack2<E>(s[mt][2 * ks][0], s[mt][2 * ks][1]);
                pa[mt][1] = fattn_pack2<E>(s[mt][2 * ks][2], s[mt][2 * ks][3]);
                pa[mt][2] = fattn_pack2<E>(s[mt][2 * ks + 1][0], s[mt][2 * ks + 1][1]);
                pa[mt][3] = fattn_pack2<E>(s[mt][2 * ks + 1][2], s[mt][2 * ks + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                uint32_t vb[4];
                fattn_ldmatrix_x4_trans(vb, vbuf + v_lane + (uint32_t)((ks * 16 * PITCH + dp * 16) * 2));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    fattn_mma16816<E>(o[mt][2 * dp], pa[mt], vb[0], vb[1]);
                    fattn_mma16816<E>(o[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
    }
    fattn_cp_async_wait<0>();

    /* Epilogue: finish the row sums across the quad, normalise, store straight from the
     * accumulator layout (each quad writes 8 contiguous elements of a row). */
    const int64_t o_base = (int64_t)b * a.o_sb + (int64_t)h * a.o_sh;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float l = row_sum[mt][hf];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.f ? 1.f / l : 0.f;
            const int row = row_lane + mt * 16 + hf * 8;
            if (row >= Sq) continue;
            const int64_t off = o_base + (int64_t)row * a.o_ss + col_lane;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) {
                float x0 = o[mt][dt][2 * hf] * inv, x1 = o[mt][dt][2 * hf + 1] * inv;
                if (OE == FATTN_ELEM_F32) {
                    *(float2 *)((float *)a.o + off + dt * 8) = make_float2(x0, x1);
                } else {
                    *(uint32_t *)((uint16_t *)a.o + off + dt * 8) = fattn_pack2<OE>(x0, x1);
                }
            }
            if (a.lse != NULL && (lane & 3) == 0) {
                float v = l > 0.f ? (row_max[mt][hf] + __log2f(l)) * 0.69314718055994531f
                                  : -INFINITY;
                a.lse[((int64_t)b * a.heads_q + h) * Sq + row] = v;
            }
        }
}

#endif
