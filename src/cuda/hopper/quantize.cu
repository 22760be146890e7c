/* FP8 mode's quantisation pass (the definition is src/core/fp8.h's): Q, K and V in the I/O dtype
 * become e4m3 copies in the workspace, laid out as the Hopper kernel's TMA maps read them, plus the
 * factors that undo the scaling. A memset of the amax slots and two launches on the caller's
 * stream, no allocation:
 *   1. scan: each CTA one of a 64-row block of Q or a 64-key block of K and V, interleaved. A K/V
 *      CTA reduces the largest |k| and |v| of its keys and does one atomicMax a tensor per (batch,
 *      kv head) on the float bits (non-negative floats order like their bit patterns): K's and V's
 *      scales span all keys, so the scan must finish before either is rounded. A Q CTA scales its
 *      rows by 2^-E from their own amax (reduced from the registers they were loaded into, so Q is
 *      read once), rotates them (random signs + Walsh-Hadamard along the head dim), scales by c,
 *      rounds to e4m3 and leaves its amax in its factor's slot. The amax is memory-bound and the
 *      Q rounding bound by instructions, so sharing the SMs hides most of the amax;
 *   2. quantise, each CTA one of: a Q factor a thread (from its block's amax and K's), a 64-row
 *      block of K (rounded as Q is), a 128-key block of V. V is scaled and rounded into a
 *      shared-memory tile, then written transposed (head_dim rows of keys) with the keys of each
 *      group of 32 permuted to match the order in which the kernel packs P (softmax.cuh).
 * A lane holds eight consecutive elements of a row, read by one 16-byte load where the view's base
 * and strides allow it, else element by element into the same registers. Head dims 64 and 96 are
 * stored in 128 columns, 192 in 256, zeros past head_dim (quantize.h), so that the d128 and d256
 * kernels serve them. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <limits.h>
#include <math.h>

#include "../../core/internal.h"
#include "quantize.h"
#include "view.cuh"

/* Threads per CTA of both launches at head dim D: 128 up to d128 give each thread twice the rows of
 * 256, over which a CTA's fixed work (the role's index arithmetic, the scales, the block reduction)
 * is spread; the quantise launch measured 9% faster at d128, 14% at d64 (docs/perf-notes.md, v14). At
 * d256 a thread's 16 rows of Q would not fit its registers. */
#ifndef FP8_PASS_NARROW_MAX_D
#define FP8_PASS_NARROW_MAX_D 128
#endif
#define PASS_THREADS(D) ((D) <= FP8_PASS_NARROW_MAX_D ? 128 : 256)
#define ROW_BLOCK FP8_Q_BLOCK /* rows a CTA of the amax or of the Q/K quantisation takes */
#define V_KEYS 128            /* keys a V CTA takes: 128-byte segments of V^T's rows */

/* A row of D elements spread over cols / 8 consecutive lanes (eight elements each), cols being D
 * rounded up to a power of two (96 -> 128, 192 -> 256): the lanes past D hold zeros, which is what
 * the stored copies have there. A CTA covers PASS_THREADS(D) / lanes rows at a time. */
template <int D> struct row_geom {
    static constexpr int cols = D <= 64 ? 64 : D <= 128 ? 128 : 256;
    static constexpr int lanes = cols / 8, rows = PASS_THREADS(D) / lanes;
    static constexpr bool ragged = D < cols; /* lanes past D exist */
    static_assert(D % 8 == 0 && D <= cols && rows >= 1, "a row is whole lanes of eight elements, a power-of-two part of a warp");
    static_assert(FP8_STORED_DIM(D) % cols == 0, "the stored rows hold whole lane groups");
};

/* Words per key of a V CTA's shared tile: a lane group's row and one more, so that the row stride
 * in words is odd. */
template <int D> constexpr int v_tile_words = row_geom<D>::cols / 4 + 1;

/* Elements p[0..7] as raw 16-bit values: one 16-byte load with VEC, else eight 2-byte loads. */
template <typename T, bool VEC> static __device__ __forceinline__ uint4 load8(const T *p)
{
    if constexpr (VEC) {
        return *(const uint4 *)p;
    } else {
        const uint16_t *e = (const uint16_t *)p;
        return make_uint4(e[0] | (uint32_t)e[1] << 16, e[2] | (uint32_t)e[3] << 16, e[4] | (uint32_t)e[5] << 16,
                          e[6] | (uint32_t)e[7] << 16);
    }
}

/* Elements col0..col0+7 of a row, zeros from D on (a lane past the row's end reads nothing). */
template <typename T, int D, bool VEC> static __device__ __forceinline__ uint4 load_cols(const T *row, int col0)
{
    if (row_geom<D>::ragged && col0 >= D) return make_uint4(0, 0, 0, 0);
    return load8<T, VEC>(row + col0);
}

template <typename T> static __device__ __forceinline__ float to_f32(uint32_t bits);
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(uint32_t bits)
{
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)bits));
}
template <> __device__ __forceinline__ float to_f32<__half>(uint32_t bits)
{
    return __half2float(__ushort_as_half((unsigned short)bits));
}

template <typename T> static __device__ __forceinline__ void unpack8(uint4 r, float *x)
{
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        x[2 * i] = to_f32<T>(w[i] & 0xffffu);
        x[2 * i + 1] = to_f32<T>(w[i] >> 16);
    }
}

/* fmaxf passes NaN over, as the CPU's amax does: NaN inputs reach the output through their bytes. */
template <typename T> static __device__ __forceinline__ float amax8(float m, uint4 r)
{
    float x[8];
    unpack8<T>(r, x);
#pragma unroll
    for (int i = 0; i < 8; ++i) m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* e4m3(x[i] * mul), packed in element order (PTX's cvt.rn.satfinite.e4m3x2.f32). */
static __device__ __forceinline__ uint2 to_e4m3x8(const float *x, float mul)
{
    uint32_t w[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const uint32_t lo =
            __nv_cvt_float2_to_fp8x2(make_float2(x[4 * i] * mul, x[4 * i + 1] * mul), __NV_SATFINITE, __NV_E4M3);
        const uint32_t hi =
            __nv_cvt_float2_to_fp8x2(make_float2(x[4 * i + 2] * mul, x[4 * i + 3] * mul), __NV_SATFINITE, __NV_E4M3);
        w[i] = lo | hi << 16;
    }
    return make_uint2(w[0], w[1]);
}

static __device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

/* The CTA's maximum of x, in every thread; red holds a float per warp. */
template <int THREADS> static __device__ __forceinline__ float block_max(float x, float *red)
{
    x = warp_max(x);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float m = red[0];
#pragma unroll
    for (int w = 1; w < THREADS / 32; ++w) m = fmaxf(m, red[w]);
    return m;
}

/* A NaN factor for a block or head with an infinite input: satfinite would round Inf to a finite
 * e4m3, and fp8.h makes such rows NaN (NaN inputs get there through their own bytes). */
static __device__ __forceinline__ float poisoned(bool infinite, float factor)
{
    return infinite ? __int_as_float(0x7fc00000) : factor;
}

/* A block's scaling by 2^e (fattn_fp8_scale2, split once: x * first * pow2), folded with the random
 * signs of the lane's eight columns col0.. (fp8.h's R starts with them): sign * 2^e is exact, so
 * x * first * f[i] has the bits of scale2(x, e) * sign(col0 + i), two multiplies where the
 * element-wise form took a dozen instructions (the pass was issue-bound: docs/perf-notes.md, v14).
 * The products are rounded on their own (__fmul_rn): ptxas otherwise contracts x * f[i] into the
 * first butterfly's add, rounding product and sum once, which differs from fp8.h where x * 2^e is
 * an inexact subnormal (bf16 inputs 2^141 below their block's amax). */
struct lane_scale {
    float first, f[8];
};

static __device__ __forceinline__ lane_scale make_lane_scale(int e, int col0, bool signs)
{
    lane_scale ls;
    ls.first = fattn_fp8_scale2_first(&e);
    const float p = fattn_fp8_pow2(e);
#pragma unroll
    for (int i = 0; i < 8; ++i) ls.f[i] = signs ? fattn_fp8_sign(col0 + i) * p : p;
    return ls;
}

static __device__ __forceinline__ void apply_scale(float *x, const lane_scale &ls)
{
    if (ls.first != 1.0f) /* uniform: the block's exponent */
#pragma unroll
        for (int i = 0; i < 8; ++i) x[i] = __fmul_rn(x[i], ls.first);
#pragma unroll
    for (int i = 0; i < 8; ++i) x[i] = __fmul_rn(x[i], ls.f[i]);
}

/* The butterflies of fp8.h's R (its signs are lane_scale's) for the row that the lanes of
 * row_geom<D> hold, element col0 + i in x[i], in fattn_fp8_rotate's stage order: in-lane for
 * h = 1, 2, 4, then shuffles with the lane h / 8 away, where the upper element of a pair
 * computes lower - upper as the serial loop does: fma(upper, -1, lower) rounds that difference
 * once, as the subtraction does. */
template <int D> static __device__ __forceinline__ void butterflies8(float *x, int col0)
{
    const int N = fattn_fp8_hadamard_n(D);
#pragma unroll
    for (int h = 1; h < 8 && h < N; h *= 2)
#pragma unroll
        for (int i = 0; i < 8; ++i)
            if ((i & h) == 0) {
                const float a = x[i], b = x[i + h];
                x[i] = a + b;
                x[i + h] = a - b;
            }
#pragma unroll
    for (int h = 8; h < N; h *= 2) {
        const float sign = (col0 & h) ? -1.0f : 1.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) x[i] = fmaf(x[i], sign, __shfl_xor_sync(0xffffffffu, x[i], h / 8));
    }
}

/* The arguments of both launches. The scan's CTAs: q_ctas Q blocks and k_ctas K/V amax blocks
 * (scan_role); the quantisation's: qf_ctas of Q factors, then k_ctas K blocks, then the V blocks
 * (v_blocks a head). */
template <typename T> struct pass_args {
    view<T> q, k, v;
    fp8_layout lay;
    float scale_log2;
    unsigned *amax_k, *amax_v;
    float *q_factor, *v_factor;
    uint8_t *q8, *k8, *vt8;
    int q_ctas, k_ctas, qf_ctas, v_blocks;
};

/* Rows r0.. of (b, h) into raw[], rows from `rows` on as zeros; row k * row_geom<D>::rows + the
 * thread's row lands in raw[k]. */
template <typename T, int D, bool VEC>
static __device__ __forceinline__ void load_rows(const view<T> &src, int b, int h, int r0, int rows, uint4 *raw)
{
    using G = row_geom<D>;
    const int col0 = 8 * (threadIdx.x % G::lanes), r = threadIdx.x / G::lanes;
#pragma unroll
    for (int k = 0; k < ROW_BLOCK / G::rows; ++k)
        raw[k] = k * G::rows + r < rows ? load_cols<T, D, VEC>(src.row(b, r0 + k * G::rows + r, h), col0)
                                        : make_uint4(0, 0, 0, 0);
}

/* Scales by 2^-e, rotates, rounds and stores the rows load_rows gave, FP8_STORED_DIM(D) bytes a
 * row from dst, zeros past column D (the lanes' own zeros up to row_geom's cols, then a second
 * store where the stored row is wider still). */
template <typename T, int D>
static __device__ __forceinline__ void quantise_rows(const uint4 *raw, int e, int rows, uint8_t *dst)
{
    using G = row_geom<D>;
    constexpr int PD = FP8_STORED_DIM(D);
    const int col0 = 8 * (threadIdx.x % G::lanes), r = threadIdx.x / G::lanes;
    const lane_scale ls = make_lane_scale(-e, col0, true);
#pragma unroll
    for (int k = 0; k < ROW_BLOCK / G::rows; ++k) {
        float x[8];
        unpack8<T>(raw[k], x);
        apply_scale(x, ls);
        butterflies8<D>(x, col0); /* every lane: the shuffles need the whole warp */
        const int row = k * G::rows + r;
        if (row < rows) {
            uint8_t *out = dst + (size_t)row * PD;
            /* past D the rotation's zeros may be -0, whose e4m3 byte is not the padding's 0 */
            *(uint2 *)(out + col0) = !G::ragged || col0 < D ? to_e4m3x8(x, fattn_fp8_c(D)) : make_uint2(0, 0);
            if (PD > G::cols) *(uint2 *)(out + G::cols + col0) = make_uint2(0, 0);
        }
    }
}

template <typename T, int D, bool VEC>
static __device__ __forceinline__ void quantise_q(const pass_args<T> &a, int i, float *red)
{
    const fp8_layout &l = a.lay;
    const int blk = i % l.q_blocks, h = i / l.q_blocks % l.heads_q, b = i / l.q_blocks / l.heads_q;
    const int r0 = blk * ROW_BLOCK, rows = min(ROW_BLOCK, l.seqlen_q - r0);
    uint4 raw[ROW_BLOCK / row_geom<D>::rows];
    load_rows<T, D, VEC>(a.q, b, h, r0, rows, raw);
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < ROW_BLOCK / row_geom<D>::rows; ++k) m = amax8<T>(m, raw[k]);
    const float amax_q = block_max<PASS_THREADS(D)>(m, red);
    /* K's amax is still being reduced: the factor is made from this in the second launch */
    if (threadIdx.x == 0) a.q_factor[((size_t)b * l.heads_q + h) * l.q_blocks + blk] = amax_q;
    quantise_rows<T, D>(raw, fattn_fp8_exponent(amax_q), rows,
                        a.q8 + (((size_t)b * l.heads_q + h) * l.seqlen_q + r0) * FP8_STORED_DIM(D));
}

/* Thread t of Q-factor CTA i: Q block i * PASS_THREADS(D) + t's score factor, in place of the
 * block's amax that the scan left there. */
template <typename T, int D> static __device__ __forceinline__ void q_factor(const pass_args<T> &a, int i)
{
    const fp8_layout &l = a.lay;
    const int64_t idx = (int64_t)i * PASS_THREADS(D) + threadIdx.x;
    if (idx >= (int64_t)a.q_ctas) return;
    const int64_t bh = idx / l.q_blocks; /* b * heads_q + h */
    const int b = (int)(bh / l.heads_q), h = (int)(bh % l.heads_q);
    const float amax_q = a.q_factor[idx], amax_k = __uint_as_float(a.amax_k[b * l.heads_kv + h / l.group]);
    const float c = fattn_fp8_c(D);
    a.q_factor[idx] = poisoned(isinf(amax_q) || isinf(amax_k),
                               fattn_fp8_scale2(a.scale_log2 / (c * c * fattn_fp8_hadamard_n(D)),
                                                fattn_fp8_exponent(amax_q) + fattn_fp8_exponent(amax_k)));
}

template <typename T, int D, bool VEC> static __device__ __forceinline__ void quantise_k(const pass_args<T> &a, int i)
{
    const fp8_layout &l = a.lay;
    const int kb = (l.seqlen_kv + ROW_BLOCK - 1) / ROW_BLOCK;
    const int blk = i % kb, g = i / kb % l.heads_kv, b = i / kb / l.heads_kv;
    const int r0 = blk * ROW_BLOCK, rows = min(ROW_BLOCK, l.seqlen_kv - r0);
    uint4 raw[ROW_BLOCK / row_geom<D>::rows];
    load_rows<T, D, VEC>(a.k, b, g, r0, rows, raw);
    const int ek = fattn_fp8_exponent(__uint_as_float(a.amax_k[b * l.heads_kv + g]));
    quantise_rows<T, D>(raw, ek, rows, a.k8 + (((size_t)b * l.heads_kv + g) * l.seqlen_kv + r0) * FP8_STORED_DIM(D));
}

/* out[e] = byte e of w[0..15], in order: four 4x4 byte transposes. */
static __device__ __forceinline__ void transpose_bytes(const uint32_t *w, uint4 *out)
{
    uint32_t o[4][4];
#pragma unroll
    for (int m = 0; m < 4; ++m) {
        const uint32_t lo_ab = __byte_perm(w[4 * m], w[4 * m + 1], 0x5140);     /* a0 b0 a1 b1 */
        const uint32_t lo_cd = __byte_perm(w[4 * m + 2], w[4 * m + 3], 0x5140); /* c0 d0 c1 d1 */
        const uint32_t hi_ab = __byte_perm(w[4 * m], w[4 * m + 1], 0x7362);     /* a2 b2 a3 b3 */
        const uint32_t hi_cd = __byte_perm(w[4 * m + 2], w[4 * m + 3], 0x7362); /* c2 d2 c3 d3 */
        o[0][m] = __byte_perm(lo_ab, lo_cd, 0x5410);
        o[1][m] = __byte_perm(lo_ab, lo_cd, 0x7632);
        o[2][m] = __byte_perm(hi_ab, hi_cd, 0x5410);
        o[3][m] = __byte_perm(hi_ab, hi_cd, 0x7632);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) out[e] = make_uint4(o[e][0], o[e][1], o[e][2], o[e][3]);
}

/* A V block: keys t0.. rounded into tile (a row of D bytes a key, padded by a word so that the
 * row stride in words is odd), then V^T's rows written 16 keys at a time. A thread takes four
 * head-dim rows (one word of every key) of 16 slots; the two halves of a warp take the slots
 * 16 apart of the same 16 words, which lie in different banks. Keys from seqlen_kv up to
 * keys_pad are zeros (P is zero there, and 0 * 0 stays 0), as are the rows from D up. */
template <typename T, int D, bool VEC>
static __device__ __forceinline__ void quantise_v(const pass_args<T> &a, int i, uint32_t *tile)
{
    using G = row_geom<D>;
    constexpr int PD = FP8_STORED_DIM(D), W = v_tile_words<D>;
    const fp8_layout &l = a.lay;
    const int blk = i % a.v_blocks, g = i / a.v_blocks % l.heads_kv, b = i / a.v_blocks / l.heads_kv;
    const int t0 = blk * V_KEYS, slot = b * l.heads_kv + g;
    const float amax_v = __uint_as_float(a.amax_v[slot]);
    const int ev = fattn_fp8_exponent(amax_v);
    if (blk == 0 && threadIdx.x == 0)
        a.v_factor[slot] = poisoned(isinf(amax_v), fattn_fp8_scale2(1.0f / FATTN_FP8_P_SCALE, ev - FP8_V_SHIFT));
    const int col0 = 8 * (threadIdx.x % G::lanes), r = threadIdx.x / G::lanes;
    const lane_scale ls = make_lane_scale(FP8_V_SHIFT - ev, col0, false);
#pragma unroll
    for (int k = 0; k < V_KEYS / G::rows; ++k) {
        const int t = k * G::rows + r;
        float x[8];
        unpack8<T>(t0 + t < l.seqlen_kv ? load_cols<T, D, VEC>(a.v.row(b, t0 + t, g), col0) : make_uint4(0, 0, 0, 0),
                   x);
        apply_scale(x, ls);
        const uint2 q = to_e4m3x8(x, 1.0f);
        tile[t * W + col0 / 4] = q.x;
        tile[t * W + col0 / 4 + 1] = q.y;
    }
    __syncthreads();
    uint8_t *out = a.vt8 + (size_t)slot * PD * l.keys_pad + t0;
    constexpr int GROUPS = PD / 4; /* words of a key: four head-dim rows each */
    constexpr int TH = PASS_THREADS(D);
    static_assert(GROUPS * (V_KEYS / 16) % TH == 0, "every thread takes the same number of groups");
#pragma unroll
    for (int n = 0; n < GROUPS * (V_KEYS / 16) / TH; ++n) {
        const int it = threadIdx.x + n * TH, lane = it % 32, wi = it / 32;
        const int dg = wi % (GROUPS / 16) * 16 + lane % 16, s0 = 16 * (wi / (GROUPS / 16) * 2 + lane / 16);
        if (t0 + s0 >= l.keys_pad) continue;
        uint4 rows4[4] = {};
        if (4 * dg < D) {
            uint32_t w[16];
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const int s = s0 + j;
                w[j] = tile[(32 * (s / 32) + fattn_fp8_key_of_slot(s % 32)) * W + dg];
            }
            transpose_bytes(w, rows4);
        }
#pragma unroll
        for (int e = 0; e < 4; ++e) *(uint4 *)(out + (size_t)(4 * dg + e) * l.keys_pad + s0) = rows4[e];
    }
}

/* K/V amax block i: ROW_BLOCK keys of one (batch, kv head), the blocks of every pair flat. */
template <typename T, int D, bool VEC>
static __device__ __forceinline__ void amax_block(const pass_args<T> &a, int i, float (*red)[PASS_THREADS(D) / 32])
{
    using G = row_geom<D>;
    const fp8_layout &l = a.lay;
    const int kb = (l.seqlen_kv + ROW_BLOCK - 1) / ROW_BLOCK;
    const int blk = i % kb, g = i / kb % l.heads_kv, b = i / kb / l.heads_kv;
    const int col0 = 8 * (threadIdx.x % G::lanes), r = threadIdx.x / G::lanes;
    float mk = 0.0f, mv = 0.0f;
#pragma unroll
    for (int j = 0; j < ROW_BLOCK / G::rows; ++j) {
        const int t = blk * ROW_BLOCK + j * G::rows + r;
        if (t < l.seqlen_kv) {
            mk = amax8<T>(mk, load_cols<T, D, VEC>(a.k.row(b, t, g), col0));
            mv = amax8<T>(mv, load_cols<T, D, VEC>(a.v.row(b, t, g), col0));
        }
    }
    mk = block_max<PASS_THREADS(D)>(mk, red[0]);
    mv = block_max<PASS_THREADS(D)>(mv, red[1]);
    if (threadIdx.x == 0) {
        atomicMax(&a.amax_k[b * l.heads_kv + g], __float_as_uint(mk));
        atomicMax(&a.amax_v[b * l.heads_kv + g], __float_as_uint(mv));
    }
}

/* The scan's CTA i as (is a Q block, index among its kind): the two kinds alternate while both
 * last, so that the block scheduler hands every SM some of each. */
static __device__ __forceinline__ bool scan_role(int i, int nq, int na, int *j)
{
    const int both = 2 * min(nq, na);
    if (i < both) {
        *j = i / 2;
        return i % 2 == 0;
    }
    *j = i - both / 2;
    return nq > na;
}

template <typename T, int D, bool VEC> __global__ void __launch_bounds__(PASS_THREADS(D))
    fp8_scan_kernel(pass_args<T> a)
{
    __shared__ float red[2][PASS_THREADS(D) / 32];
    int j;
    if (scan_role(blockIdx.x, a.q_ctas, a.k_ctas, &j))
        quantise_q<T, D, VEC>(a, j, red[0]);
    else
        amax_block<T, D, VEC>(a, j, red);
}

template <typename T, int D, bool VEC> __global__ void __launch_bounds__(PASS_THREADS(D))
    fp8_quantise_kernel(pass_args<T> a)
{
    __shared__ uint32_t smem[V_KEYS * v_tile_words<D>];
    const int i = blockIdx.x;
    if (i < a.qf_ctas)
        q_factor<T, D>(a, i);
    else if (i < a.qf_ctas + a.k_ctas)
        quantise_k<T, D, VEC>(a, i - a.qf_ctas);
    else
        quantise_v<T, D, VEC>(a, i - a.qf_ctas - a.k_ctas, smem);
}

static int64_t align256(int64_t x) { return (x + 255) & ~(int64_t)255; }

extern "C" fp8_layout fattn_fp8_layout(const fattn_params *p)
{
    fp8_layout l;
    l.seqlen_q = (int)p->seqlen_q;
    l.seqlen_kv = (int)p->seqlen_kv;
    l.heads_q = (int)p->heads_q;
    l.heads_kv = (int)p->heads_kv;
    l.group = (int)(p->heads_q / p->heads_kv);
    l.q_blocks = (int)((p->seqlen_q + FP8_Q_BLOCK - 1) / FP8_Q_BLOCK);
    l.keys_pad = (int)((p->seqlen_kv + 31) / 32 * 32);
    l.dim = (int)FP8_STORED_DIM(p->head_dim);
    const int64_t D = l.dim, B = p->batch;
    l.q8 = 0;
    l.k8 = align256(l.q8 + B * p->heads_q * p->seqlen_q * D);
    l.vt8 = align256(l.k8 + B * p->heads_kv * p->seqlen_kv * D);
    l.amax = align256(l.vt8 + B * p->heads_kv * D * l.keys_pad);
    l.q_factor = align256(l.amax + 2 * B * p->heads_kv * (int64_t)sizeof(unsigned));
    l.v_factor = align256(l.q_factor + B * p->heads_q * l.q_blocks * (int64_t)sizeof(float));
    l.bytes = align256(l.v_factor + B * p->heads_kv * (int64_t)sizeof(float));
    return l;
}

/* Whether rows of t can be read 16 bytes at a time: the base and every stride in use multiples
 * of 16 bytes (8 elements). */
static bool vector_view(const fattn_tensor *t, int64_t seqlen, int64_t heads, int64_t batch)
{
    return (uintptr_t)t->data % 16 == 0 && (seqlen == 1 || t->stride_seq % 8 == 0) &&
           (heads == 1 || t->stride_head % 8 == 0) && (batch == 1 || t->stride_batch % 8 == 0);
}

template <typename T, int D, bool VEC>
static fattn_status quantise(const fattn_params *p, const fp8_layout *l, uint8_t *ws, cudaStream_t stream)
{
    pass_args<T> a;
    a.q = make_view<T>(&p->q), a.k = make_view<T>(&p->k), a.v = make_view<T>(&p->v);
    a.lay = *l;
    a.scale_log2 = fattn_effective_scale(p) * 1.4426950408889634f;
    const int64_t slots = (int64_t)p->batch * l->heads_kv; /* (batch, kv head) pairs */
    unsigned *amax = (unsigned *)(ws + l->amax);
    a.amax_k = amax, a.amax_v = amax + slots;
    a.q_factor = (float *)(ws + l->q_factor), a.v_factor = (float *)(ws + l->v_factor);
    a.q8 = ws + l->q8, a.k8 = ws + l->k8, a.vt8 = ws + l->vt8;
    a.v_blocks = (l->keys_pad + V_KEYS - 1) / V_KEYS;
    const int64_t k_ctas = slots * ((l->seqlen_kv + ROW_BLOCK - 1) / ROW_BLOCK),
                  q_ctas = (int64_t)p->batch * l->heads_q * l->q_blocks, v_ctas = slots * a.v_blocks,
                  qf_ctas = (q_ctas + PASS_THREADS(D) - 1) / PASS_THREADS(D);
    const int64_t scan_ctas = q_ctas + k_ctas, quantise_ctas = qf_ctas + k_ctas + v_ctas;
    const int64_t most = scan_ctas > quantise_ctas ? scan_ctas : quantise_ctas;
    if (most > INT_MAX)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "FP8 quantisation pass: its %lld CTAs exceed a grid's 2^31-1",
                          (long long)most);
    a.q_ctas = (int)q_ctas, a.k_ctas = (int)k_ctas, a.qf_ctas = (int)qf_ctas;
    cudaError_t e = cudaMemsetAsync(amax, 0, 2 * (size_t)slots * sizeof(unsigned), stream);
    if (e == cudaSuccess) {
        fp8_scan_kernel<T, D, VEC><<<(unsigned)scan_ctas, PASS_THREADS(D), 0, stream>>>(a);
        fp8_quantise_kernel<T, D, VEC><<<(unsigned)quantise_ctas, PASS_THREADS(D), 0, stream>>>(a);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess) return fattn_fail(FATTN_ERR_CUDA, "FP8 quantisation pass failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}

template <typename T, int D>
static fattn_status quantise_aligned(const fattn_params *p, const fp8_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const bool vec = vector_view(&p->q, p->seqlen_q, p->heads_q, p->batch) &&
                     vector_view(&p->k, p->seqlen_kv, p->heads_kv, p->batch) &&
                     vector_view(&p->v, p->seqlen_kv, p->heads_kv, p->batch);
    return vec ? quantise<T, D, true>(p, l, ws, stream) : quantise<T, D, false>(p, l, ws, stream);
}

template <typename T>
static fattn_status quantise_dim(const fattn_params *p, const fp8_layout *l, uint8_t *ws, cudaStream_t stream)
{
    switch (p->head_dim) {
    case 64: return quantise_aligned<T, 64>(p, l, ws, stream);
    case 96: return quantise_aligned<T, 96>(p, l, ws, stream);
    case 128: return quantise_aligned<T, 128>(p, l, ws, stream);
    case 192: return quantise_aligned<T, 192>(p, l, ws, stream);
    default: return quantise_aligned<T, 256>(p, l, ws, stream);
    }
}

extern "C" fattn_status fattn_fp8_quantise(const fattn_params *p, const fp8_layout *l, void *workspace,
                                           cudaStream_t stream)
{
    if (p->dtype == FATTN_DTYPE_BF16) return quantise_dim<__nv_bfloat16>(p, l, (uint8_t *)workspace, stream);
    return quantise_dim<__half>(p, l, (uint8_t *)workspace, stream);
}
