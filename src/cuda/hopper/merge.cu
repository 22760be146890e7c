/* The split tiles' pieces merged (merge.h): one CTA per (split tile, row), its threads over the
 * head dim. A row's pieces are the CTAs' runs that reach into its tile (scheduler.cuh's
 * split_piece); each holds the row's output normalised by its own sum and its base-2 log-sum-exp
 * lse_p, so the whole row is the mean of the pieces weighted by 2^lse_p, and its LSE the log of
 * their sum. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "../../core/internal.h"
#include "merge.h"
#include "scheduler.cuh"

#define MERGE_THREADS 64

template <typename T> static __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f32(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ float from_f32(float x) { return x; }

template <typename T>
__global__ void __launch_bounds__(MERGE_THREADS)
    merge_kernel(const __grid_constant__ hopper_args a, T *o, int64_t sb, int64_t ss, int64_t sh, int head_dim,
                 int n_total)
{
    /* the row's pieces and their weights 2^(lse_p - max), found once, in CTA order, so the sum
     * below runs in the same order on every call */
    __shared__ int slot[2 * HOPPER_SPLIT_MAX_CTAS];
    __shared__ float weight[2 * HOPPER_SPLIT_MAX_CTAS];
    __shared__ int pieces;
    __shared__ float total, lse2;
    const int st = blockIdx.x / a.tile_rows, row = blockIdx.x % a.tile_rows;
    const int number = a.split_from + st, bh = number / a.m_blocks;
    const int i = number % a.m_blocks * a.tile_rows + row, head = bh % a.heads_q, batch = bh / a.heads_q;
    if (i >= a.seqlen_q) return;
    if (threadIdx.x == 0) {
        int c0, c1, n = 0;
        runs_into(&a, st, n_total, &c0, &c1);
        float mx = -INFINITY, sum = 0.0f;
        for (int c = c0; c < c1; ++c)
            for (int k = 0; k < 2; ++k)
                if (piece_in(&a, c, k, st, n_total)) {
                    slot[n] = 2 * c + k;
                    mx = fmaxf(mx, a.piece_lse[(size_t)slot[n] * a.tile_rows + row]);
                    ++n;
                }
        for (int q = 0; q < n; ++q) {
            weight[q] = mx == -INFINITY ? 0.0f : exp2f(a.piece_lse[(size_t)slot[q] * a.tile_rows + row] - mx);
            sum += weight[q];
        }
        pieces = n;
        total = sum;
        lse2 = sum > 0.0f ? mx + log2f(sum) : -INFINITY;
    }
    __syncthreads();
    T *out = o + batch * sb + (int64_t)i * ss + head * sh;
    for (int d = threadIdx.x; d < head_dim; d += MERGE_THREADS) {
        float acc = 0.0f;
        for (int q = 0; q < pieces; ++q)
            acc += weight[q] * a.piece_o[((size_t)slot[q] * a.tile_rows + row) * a.piece_cols + d];
        out[d] = from_f32<T>(total > 0.0f ? acc / total : 0.0f);
    }
    if (a.lse != NULL && threadIdx.x == 0)
        a.lse[((size_t)batch * a.heads_q + head) * a.seqlen_q + i] = lse2 * 0.69314718055994531f;
}

template <typename T>
static fattn_status merge(const fattn_params *p, const hopper_args *a, int n_total, cudaStream_t stream)
{
    const int64_t grid = (int64_t)(a->tiles - a->split_from) * a->tile_rows;
    merge_kernel<T><<<(unsigned)grid, MERGE_THREADS, 0, stream>>>(*a, (T *)p->o.data, p->o.stride_batch,
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
