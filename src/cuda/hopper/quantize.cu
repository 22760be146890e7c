/* FP8 mode's quantisation pass (the definition is src/core/fp8.h's): Q, K and V in the I/O dtype
 * become e4m3 copies in the workspace, laid out as the Hopper kernel's TMA maps read them, plus the
 * factors that undo the scaling. Three launches on the caller's stream, no allocation:
 *   1. amax: the largest |k| and |v| of each (batch, kv head), by atomicMax on the float bits
 *      (non-negative floats order like their bit patterns); the slots are zeroed first;
 *   2. Q and K rows: scaled by 2^-E, rotated (random signs + Walsh-Hadamard along the head dim,
 *      warp-wide butterflies), scaled by c and rounded to e4m3; Q's E comes from its own 64-row
 *      block, which is also where its score factor is written;
 *   3. V: scaled and rounded, then written transposed (head_dim rows of keys) with the keys of
 *      each group of 32 permuted to match the order in which the kernel packs P (softmax.cuh). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>

#include "../../core/fp8.h"
#include "../../core/internal.h"
#include "quantize.h"

template <typename T> static __device__ __forceinline__ float load_f32(const T *p);
template <> __device__ __forceinline__ float load_f32<__nv_bfloat16>(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}
template <> __device__ __forceinline__ float load_f32<__half>(const __half *p) { return __half2float(*p); }

static __device__ __forceinline__ uint8_t to_e4m3(float x)
{
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

/* One strided input view (fattn_tensor) with its element type. */
template <typename T> struct view {
    const T *data;
    int64_t sb, ss, sh;
    __device__ const T *row(int b, int s, int h) const { return data + b * sb + s * ss + h * sh; }
};

template <typename T> static view<T> make_view(const fattn_tensor *t)
{
    return view<T>{(const T *)t->data, t->stride_batch, t->stride_seq, t->stride_head};
}

static __device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

#define AMAX_ROWS 64

/* grid (key blocks of AMAX_ROWS, heads_kv, batch), 256 threads. */
template <typename T, int D>
__global__ void __launch_bounds__(256) fp8_amax_kernel(view<T> k, view<T> v, int seqlen_kv, int heads_kv,
                                                       int batch_heads, unsigned *amax)
{
    const int b = blockIdx.z, g = blockIdx.y, r0 = blockIdx.x * AMAX_ROWS;
    const int rows = min(AMAX_ROWS, seqlen_kv - r0);
    float mk = 0.0f, mv = 0.0f;
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) {
        mk = fmaxf(mk, fabsf(load_f32(k.row(b, r0 + i / D, g) + i % D)));
        mv = fmaxf(mv, fabsf(load_f32(v.row(b, r0 + i / D, g) + i % D)));
    }
    mk = warp_max(mk);
    mv = warp_max(mv);
    if (threadIdx.x % 32 == 0) {
        const int slot = b * heads_kv + g;
        atomicMax(&amax[slot], __float_as_uint(mk));
        atomicMax(&amax[batch_heads + slot], __float_as_uint(mv));
    }
}

/* Rotates the row a warp holds, EPT consecutive elements per lane (element lane*EPT + i), in the
 * stage order of fattn_fp8_rotate: in-lane butterflies while the partner is in the same lane, then
 * shuffles. The upper element of a pair computes lower - upper, as the serial loop does. */
template <int D> static __device__ __forceinline__ void rotate_row(float *x, int lane)
{
    constexpr int EPT = D / 32;
    const int N = fattn_fp8_hadamard_n(D);
#pragma unroll
    for (int i = 0; i < EPT; ++i) x[i] *= fattn_fp8_sign(lane * EPT + i);
#pragma unroll
    for (int h = 1; h < N; h *= 2) {
        if (h < EPT) {
#pragma unroll
            for (int i = 0; i < EPT; ++i)
                if ((i & h) == 0) {
                    const float a = x[i], b = x[i + h];
                    x[i] = a + b;
                    x[i + h] = a - b;
                }
        } else {
            const int m = h / EPT;
#pragma unroll
            for (int i = 0; i < EPT; ++i) {
                const float other = __shfl_xor_sync(0xffffffffu, x[i], m);
                x[i] = (lane & m) ? other - x[i] : x[i] + other;
            }
        }
    }
}

/* Scales, rotates, rounds and stores one row of D elements; the warp works together. */
template <typename T, int D>
static __device__ __forceinline__ void quantise_row(const T *src, uint8_t *dst, int e, int lane)
{
    constexpr int EPT = D / 32;
    float x[EPT];
#pragma unroll
    for (int i = 0; i < EPT; ++i) x[i] = fattn_fp8_scale2(load_f32(src + lane * EPT + i), -e);
    rotate_row<D>(x, lane);
    static_assert(EPT % 4 == 0, "a lane stores whole 32-bit words");
    uint32_t w[EPT / 4];
#pragma unroll
    for (int i = 0; i < EPT / 4; ++i) {
        w[i] = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) w[i] |= (uint32_t)to_e4m3(x[4 * i + j] * fattn_fp8_c(D)) << (8 * j);
    }
#pragma unroll
    for (int i = 0; i < EPT / 4; ++i) ((uint32_t *)(dst + lane * EPT))[i] = w[i];
}

/* grid (Q blocks of 64 rows, heads_q, batch), 128 threads: the block's E, its score factor, then
 * its rows. */
template <typename T, int D>
__global__ void __launch_bounds__(128) fp8_quant_q_kernel(view<T> q, fp8_layout lay, float scale_log2,
                                                          const unsigned *amax, float *q_factor, uint8_t *q8)
{
    const int b = blockIdx.z, h = blockIdx.y, blk = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r0 = blk * FP8_Q_BLOCK, rows = min(FP8_Q_BLOCK, lay.seqlen_q - r0);
    __shared__ float part[4];
    float mx = 0.0f;
    for (int i = threadIdx.x; i < rows * D; i += blockDim.x) mx = fmaxf(mx, fabsf(load_f32(q.row(b, r0 + i / D, h) + i % D)));
    mx = warp_max(mx);
    if (lane == 0) part[warp] = mx;
    __syncthreads();
    const float amax_q = fmaxf(fmaxf(part[0], part[1]), fmaxf(part[2], part[3]));
    const int g = h / lay.group, eq = fattn_fp8_exponent(amax_q);
    const int ek = fattn_fp8_exponent(__uint_as_float(amax[b * lay.heads_kv + g]));
    /* An infinite input would round to a finite e4m3 (satfinite): a NaN factor makes its rows NaN,
     * as fp8.h defines (NaN inputs get there through their own bytes). */
    const float amax_k = __uint_as_float(amax[b * lay.heads_kv + g]);
    if (threadIdx.x == 0)
        q_factor[((size_t)b * lay.heads_q + h) * lay.q_blocks + blk] =
            isinf(amax_q) || isinf(amax_k)
                ? __int_as_float(0x7fc00000)
                : fattn_fp8_scale2(scale_log2 / (fattn_fp8_c(D) * fattn_fp8_c(D) * fattn_fp8_hadamard_n(D)), eq + ek);
    for (int r = warp; r < rows; r += 4)
        quantise_row<T, D>(q.row(b, r0 + r, h), q8 + (((size_t)b * lay.heads_q + h) * lay.seqlen_q + r0 + r) * D, eq,
                           lane);
}

#define K_ROWS 16

/* grid (key blocks of K_ROWS, heads_kv, batch), 128 threads. */
template <typename T, int D>
__global__ void __launch_bounds__(128) fp8_quant_k_kernel(view<T> k, fp8_layout lay, const unsigned *amax,
                                                          uint8_t *k8)
{
    const int b = blockIdx.z, g = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r0 = blockIdx.x * K_ROWS, rows = min(K_ROWS, lay.seqlen_kv - r0);
    const int ek = fattn_fp8_exponent(__uint_as_float(amax[b * lay.heads_kv + g]));
    for (int r = warp; r < rows; r += 4)
        quantise_row<T, D>(k.row(b, r0 + r, g), k8 + (((size_t)b * lay.heads_kv + g) * lay.seqlen_kv + r0 + r) * D,
                           ek, lane);
}

/* The key whose value goes to slot L (0..31) of a 32-key group of V^T: the kernel packs, for its
 * quad position q, accumulator columns 2q, 2q+1, 2q+8, 2q+9 into A-fragment slots 4q..4q+3 (and
 * the same 16 further on), so slot 16h + 4q + i must hold key 16h + 2q + (i & 1) + 8 (i >> 1). */
static __device__ __forceinline__ int fp8_key_of_slot(int slot)
{
    const int half = slot / 16, q = (slot % 16) / 4, i = slot % 4;
    return 16 * half + 2 * q + (i & 1) + 8 * (i >> 1);
}

#define V_KEYS 64

/* grid (key blocks of V_KEYS, heads_kv, batch), 256 threads: a V_KEYS x D block is rounded into
 * shared memory, then written out as D rows of V_KEYS keys, four slots per thread. Keys from
 * seqlen_kv up to the row's padded end are written as zeros (P is zero there, and 0 * 0 stays 0). */
template <typename T, int D>
__global__ void __launch_bounds__(256) fp8_quant_v_kernel(view<T> v, fp8_layout lay, const unsigned *amax,
                                                          float *v_factor, uint8_t *vt8)
{
    const int b = blockIdx.z, g = blockIdx.y, t0 = blockIdx.x * V_KEYS;
    __shared__ uint8_t tile[V_KEYS][D + 4];
    const int slot = b * lay.heads_kv + g;
    const int ev = fattn_fp8_exponent(__uint_as_float(amax[gridDim.z * lay.heads_kv + slot]));
    const float amax_v = __uint_as_float(amax[gridDim.z * lay.heads_kv + slot]);
    if (blockIdx.x == 0 && threadIdx.x == 0)
        v_factor[slot] = isinf(amax_v) ? __int_as_float(0x7fc00000) : fattn_fp8_scale2(1.0f / 256.0f, ev - FP8_V_SHIFT);
    for (int i = threadIdx.x; i < V_KEYS * D; i += blockDim.x) {
        const int t = i / D, d = i % D;
        tile[t][d] = t0 + t < lay.seqlen_kv
                         ? to_e4m3(fattn_fp8_scale2(load_f32(v.row(b, t0 + t, g) + d), FP8_V_SHIFT - ev))
                         : (uint8_t)0;
    }
    __syncthreads();
    const int keys = min(V_KEYS, lay.keys_pad - t0);
    uint8_t *out = vt8 + (size_t)slot * D * lay.keys_pad + t0;
    for (int i = threadIdx.x; i < D * (V_KEYS / 4); i += blockDim.x) {
        const int d = i / (V_KEYS / 4), s0 = 4 * (i % (V_KEYS / 4));
        if (s0 >= keys) continue;
        uint32_t w = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int s = s0 + j;
            w |= (uint32_t)tile[32 * (s / 32) + fp8_key_of_slot(s % 32)][d] << (8 * j);
        }
        *(uint32_t *)(out + (size_t)d * lay.keys_pad + s0) = w;
    }
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
    const int64_t D = p->head_dim, B = p->batch;
    l.q8 = 0;
    l.k8 = align256(l.q8 + B * p->heads_q * p->seqlen_q * D);
    l.vt8 = align256(l.k8 + B * p->heads_kv * p->seqlen_kv * D);
    l.amax = align256(l.vt8 + B * p->heads_kv * D * l.keys_pad);
    l.q_factor = align256(l.amax + 2 * B * p->heads_kv * (int64_t)sizeof(unsigned));
    l.v_factor = align256(l.q_factor + B * p->heads_q * l.q_blocks * (int64_t)sizeof(float));
    l.bytes = align256(l.v_factor + B * p->heads_kv * (int64_t)sizeof(float));
    return l;
}

template <typename T, int D>
static fattn_status quantise(const fattn_params *p, const fp8_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const view<T> q = make_view<T>(&p->q), k = make_view<T>(&p->k), v = make_view<T>(&p->v);
    const int B = (int)p->batch;
    unsigned *amax = (unsigned *)(ws + l->amax);
    cudaError_t e = cudaMemsetAsync(amax, 0, 2 * (size_t)B * l->heads_kv * sizeof(unsigned), stream);
    if (e == cudaSuccess) {
        fp8_amax_kernel<T, D><<<dim3((l->seqlen_kv + AMAX_ROWS - 1) / AMAX_ROWS, l->heads_kv, B), 256, 0, stream>>>(
            k, v, l->seqlen_kv, l->heads_kv, B * l->heads_kv, amax);
        fp8_quant_q_kernel<T, D><<<dim3(l->q_blocks, l->heads_q, B), 128, 0, stream>>>(
            q, *l, fattn_effective_scale(p) * 1.4426950408889634f, amax, (float *)(ws + l->q_factor), ws + l->q8);
        fp8_quant_k_kernel<T, D><<<dim3((l->seqlen_kv + K_ROWS - 1) / K_ROWS, l->heads_kv, B), 128, 0, stream>>>(
            k, *l, amax, ws + l->k8);
        fp8_quant_v_kernel<T, D><<<dim3((l->keys_pad + V_KEYS - 1) / V_KEYS, l->heads_kv, B), 256, 0, stream>>>(
            v, *l, amax, (float *)(ws + l->v_factor), ws + l->vt8);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "FP8 quantisation pass failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}

template <typename T>
static fattn_status quantise_dim(const fattn_params *p, const fp8_layout *l, uint8_t *ws, cudaStream_t stream)
{
    if (p->head_dim == 128) return quantise<T, 128>(p, l, ws, stream);
    return quantise<T, 256>(p, l, ws, stream);
}

extern "C" fattn_status fattn_fp8_quantise(const fattn_params *p, const fp8_layout *l, void *workspace,
                                           cudaStream_t stream)
{
    if (p->dtype == FATTN_DTYPE_BF16) return quantise_dim<__nv_bfloat16>(p, l, (uint8_t *)workspace, stream);
    return quantise_dim<__half>(p, l, (uint8_t *)workspace, stream);
}
