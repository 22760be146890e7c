/* The split tiles' pieces merged (merge.h): a warp per row of a split tile, its lanes over the
 * head dim four columns at a time, MERGE_WARPS rows a CTA. A tile's pieces are the CTAs' runs that
 * reach into it (scheduler.cuh's split_piece); each holds the row's output normalised by its own
 * sum and its base-2 log-sum-exp lse_p, so the whole row is the mean of the pieces weighted by
 * 2^lse_p, and its LSE the log of their sum. The merge is the split's fixed cost (v17 in
 * docs/perf-notes.md): hence one pass over the pieces with 16-byte loads, and the pieces found once
 * a CTA by a warp's ballot rather than by one thread. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "../../core/internal.h"
#include "merge.h"
#include "scheduler.cuh"

#define MERGE_WARPS 4

/* four outputs in one store: 8 bytes of bf16 or fp16, 16 of fp32 */
template <typename T2> struct alignas(2 * sizeof(T2)) two_pairs {
    T2 lo, hi;
};
template <typename T> static __device__ __forceinline__ void store4(T *dst, float4 v);
template <> __device__ __forceinline__ void store4(__nv_bfloat16 *dst, float4 v)
{
    *(two_pairs<__nv_bfloat162> *)dst = {__floats2bfloat162_rn(v.x, v.y), __floats2bfloat162_rn(v.z, v.w)};
}
template <> __device__ __forceinline__ void store4(__half *dst, float4 v)
{
    *(two_pairs<__half2> *)dst = {__floats2half2_rn(v.x, v.y), __floats2half2_rn(v.z, v.w)};
}
template <> __device__ __forceinline__ void store4(float *dst, float4 v) { *(float4 *)dst = v; }

template <typename T>
__global__ void __launch_bounds__(32 * MERGE_WARPS)
    merge_kernel(const __grid_constant__ hopper_args a, T *o, int64_t sb, int64_t ss, int64_t sh, int head_dim,
                 int n_total)
{
    /* the tile's piece slots in CTA order, so the sums below run in the same order on every call */
    __shared__ int slot[2 * HOPPER_SPLIT_MAX_CTAS];
    __shared__ int pieces;
    const int st = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp == 0) {
        int c0, c1, n = 0;
        runs_into(&a, st, n_total, &c0, &c1);
        for (int base = 2 * c0; base < 2 * c1; base += 32) {
            const int t = base + lane;
            const bool in = t < 2 * c1 && piece_in(&a, t / 2, t % 2, st, n_total);
            const unsigned ballot = __ballot_sync(0xffffffffu, in);
            if (in) slot[n + __popc(ballot & ((1u << lane) - 1))] = t;
            n += __popc(ballot);
        }
        if (lane == 0) pieces = n;
    }
    __syncthreads();
    const int row = blockIdx.x * MERGE_WARPS + warp, number = a.split_from + st, bh = number / a.m_blocks;
    const int i = number % a.m_blocks * a.tile_rows + row, head = bh % a.heads_q, batch = bh / a.heads_q;
    if (row >= a.tile_rows || i >= a.seqlen_q) return;
    float mx = -INFINITY;
    for (int q = lane; q < pieces; q += 32) mx = fmaxf(mx, a.piece_lse[(size_t)slot[q] * a.tile_rows + row]);
    for (int s = 16; s > 0; s /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, s));
    float4 acc[2] = {make_float4(0.f, 0.f, 0.f, 0.f), make_float4(0.f, 0.f, 0.f, 0.f)};
    float total = 0.0f;
    for (int base = 0; base < pieces; base += 32) {
        const int q = base + lane;
        const float w = q < pieces && mx != -INFINITY ? exp2f(a.piece_lse[(size_t)slot[q] * a.tile_rows + row] - mx) : 0.0f;
        total += w;
        const int count = min(32, pieces - base);
        for (int u = 0; u < count; ++u) {
            const float wu = __shfl_sync(0xffffffffu, w, u);
            const float *src = a.piece_o + ((size_t)slot[base + u] * a.tile_rows + row) * a.piece_cols;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int d = 4 * lane + 128 * h;
                if (d < head_dim) {
                    const float4 v = *(const float4 *)(src + d);
                    acc[h].x += wu * v.x;
                    acc[h].y += wu * v.y;
                    acc[h].z += wu * v.z;
                    acc[h].w += wu * v.w;
                }
            }
        }
    }
    for (int s = 16; s > 0; s /= 2) total += __shfl_xor_sync(0xffffffffu, total, s);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    T *out = o + batch * sb + (int64_t)i * ss + head * sh;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int d = 4 * lane + 128 * h;
        if (d < head_dim)
            store4<T>(out + d, make_float4(acc[h].x * inv, acc[h].y * inv, acc[h].z * inv, acc[h].w * inv));
    }
    if (a.lse != NULL && lane == 0)
        a.lse[((size_t)batch * a.heads_q + head) * a.seqlen_q + i] =
            total > 0.0f ? (mx + log2f(total)) * 0.69314718055994531f : -INFINITY;
}

template <typename T>
static fattn_status merge(const fattn_params *p, const hopper_args *a, int n_total, cudaStream_t stream)
{
    const dim3 grid((unsigned)((a->tile_rows + MERGE_WARPS - 1) / MERGE_WARPS), (unsigned)(a->tiles - a->split_from));
    merge_kernel<T><<<grid, 32 * MERGE_WARPS, 0, stream>>>(*a, (T *)p->o.data, p->o.stride_batch,
                                                                   p->o.stride_seq, p->o.stride_head,
                                                                   (int)p->head_dim, n_total);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "Hopper kernel: the merge of the split tiles failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}

fattn_status fattn_hopper_merge(const fattn_params *p, const hopper_args *args, int n_total, cudaStream_t stream)
{
    if (args->split_units == 0) return FATTN_OK;
    if (p->dtype == FATTN_DTYPE_BF16) return merge<__nv_bfloat16>(p, args, n_total, stream);
    if (p->dtype == FATTN_DTYPE_F16) return merge<__half>(p, args, n_total, stream);
    return merge<float>(p, args, n_total, stream);
}
