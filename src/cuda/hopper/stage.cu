/* fp32 I/O's staging pass (stage.h): Q, K and V become tf32-rounded copies in the workspace, laid
 * out as the Hopper kernel's TMA maps read them. Rounding here rather than letting wgmma drop the
 * low mantissa bits keeps the products unbiased. Two kernels, three launches on the caller's
 * stream, no allocation:
 *   rows: a CTA copies ROWS rows of one (batch, head) of Q or K, zeros past head_dim;
 *   vt:   a CTA transposes STAGE_KEY_BLOCK keys of one (batch, kv head) of V through shared
 *         memory, each group of 8 keys in P's register order, zeros past head_dim and seqlen_kv.
 * The inputs are any strided views (the head dim contiguous). A thread moves four consecutive
 * elements: one 16-byte load where the view's base, strides and head_dim allow it (VEC), else
 * four 4-byte loads; reads run along the head dim and writes along the copy's rows, so both are
 * coalesced. */
#include "../../core/internal.h"
#include "ptx.cuh"
#include "stage.h"
#include "view.cuh"

#define STAGE_THREADS 256
#define ROWS 32 /* rows of Q or K per CTA */

/* Elements d..d+3 of a row, rounded to tf32; zeros from head_dim on. With VEC, head_dim is a
 * multiple of 4, so the four lie wholly inside or outside. */
template <bool VEC> static __device__ __forceinline__ uint4 load4_tf32(const float *row, int d, int head_dim)
{
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (VEC) {
        if (d < head_dim) {
            const float4 v = *(const float4 *)(row + d);
            x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i)
            if (d + i < head_dim) x[i] = row[d + i];
    }
    return make_uint4(tf32_round(x[0]), tf32_round(x[1]), tf32_round(x[2]), tf32_round(x[3]));
}

/* dst[b][h][s][DIM] for the CTA's (seq block, head, batch), c counting seq blocks fastest. */
template <int DIM, bool VEC>
__global__ void __launch_bounds__(STAGE_THREADS) stage_rows(view<float> src, int seqlen, int heads, int head_dim,
                                                            int64_t ctas, uint32_t *dst)
{
    const int blocks = (seqlen + ROWS - 1) / ROWS;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        uint4 *out = (uint4 *)(dst + (bh * seqlen + (int64_t)blk * ROWS) * DIM);
        for (int e = threadIdx.x; e < ROWS * DIM / 4; e += STAGE_THREADS) {
            const int r = e / (DIM / 4), d = e % (DIM / 4) * 4, s = blk * ROWS + r;
            if (s < seqlen) out[e] = load4_tf32<VEC>(src.row(b, s, h), d, head_dim);
        }
    }
}

/* dst[b][h][DIM][keys_pad] for the CTA's (key block, kv head, batch). */
template <int DIM, bool VEC>
__global__ void __launch_bounds__(STAGE_THREADS) stage_vt(view<float> src, int seqlen_kv, int heads, int head_dim,
                                                          int keys_pad, int64_t ctas, uint32_t *dst)
{
    /* one padding column keeps the column-wise reads nearly conflict-free */
    __shared__ uint32_t tile[STAGE_KEY_BLOCK][DIM + 1];
    const int blocks = keys_pad / STAGE_KEY_BLOCK;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        for (int e = threadIdx.x; e < STAGE_KEY_BLOCK * DIM / 4; e += STAGE_THREADS) {
            const int key = e / (DIM / 4), d = e % (DIM / 4) * 4, s = blk * STAGE_KEY_BLOCK + key;
            const uint4 x = s < seqlen_kv ? load4_tf32<VEC>(src.row(b, s, h), d, head_dim) : make_uint4(0, 0, 0, 0);
            tile[key][d] = x.x, tile[key][d + 1] = x.y, tile[key][d + 2] = x.z, tile[key][d + 3] = x.w;
        }
        __syncthreads();
        uint32_t *out = dst + bh * DIM * keys_pad + (int64_t)blk * STAGE_KEY_BLOCK;
        for (int e = threadIdx.x; e < DIM * STAGE_KEY_BLOCK / 4; e += STAGE_THREADS) {
            const int d = e / (STAGE_KEY_BLOCK / 4), slot = e % (STAGE_KEY_BLOCK / 4) * 4;
            *(uint4 *)(out + (int64_t)d * keys_pad + slot) =
                make_uint4(tile[fattn_tf32_key_of_slot(slot)][d], tile[fattn_tf32_key_of_slot(slot + 1)][d],
                           tile[fattn_tf32_key_of_slot(slot + 2)][d], tile[fattn_tf32_key_of_slot(slot + 3)][d]);
        }
        __syncthreads();
    }
}

static int64_t align256(int64_t x)
{
    return (x + 255) / 256 * 256;
}

extern "C" stage_layout fattn_stage_layout(const fattn_params *p, int dim)
{
    stage_layout l;
    l.dim = dim;
    l.keys_pad = (int)((p->seqlen_kv + STAGE_KEY_BLOCK - 1) / STAGE_KEY_BLOCK * STAGE_KEY_BLOCK);
    l.q = 0;
    l.k = l.q + align256(p->batch * p->heads_q * p->seqlen_q * dim * 4);
    l.vt = l.k + align256(p->batch * p->heads_kv * p->seqlen_kv * dim * 4);
    l.bytes = l.vt + align256(p->batch * p->heads_kv * dim * (int64_t)l.keys_pad * 4);
    return l;
}

/* A grid of at most this many CTAs loops over the rest. */
static const int64_t MAX_GRID = (int64_t)1 << 20;

static unsigned grid_of(int64_t ctas)
{
    return (unsigned)(ctas < MAX_GRID ? ctas : MAX_GRID);
}

/* Whether every row of t starts on 16 bytes (a stride of an extent-1 dimension is never used). */
static bool vec_ok(const fattn_tensor *t, int64_t seqlen, int64_t heads, int64_t batch)
{
    return (uintptr_t)t->data % 16 == 0 && (seqlen == 1 || t->stride_seq % 4 == 0) &&
           (heads == 1 || t->stride_head % 4 == 0) && (batch == 1 || t->stride_batch % 4 == 0);
}

template <int DIM, bool VEC>
static void stage_all(const fattn_params *p, const stage_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const int d = (int)p->head_dim;
    const int64_t q_ctas = (p->seqlen_q + ROWS - 1) / ROWS * p->heads_q * p->batch;
    const int64_t k_ctas = (p->seqlen_kv + ROWS - 1) / ROWS * p->heads_kv * p->batch;
    const int64_t v_ctas = l->keys_pad / STAGE_KEY_BLOCK * p->heads_kv * p->batch;
    stage_rows<DIM, VEC><<<grid_of(q_ctas), STAGE_THREADS, 0, stream>>>(
        make_view<float>(&p->q), (int)p->seqlen_q, (int)p->heads_q, d, q_ctas, (uint32_t *)(ws + l->q));
    stage_rows<DIM, VEC><<<grid_of(k_ctas), STAGE_THREADS, 0, stream>>>(
        make_view<float>(&p->k), (int)p->seqlen_kv, (int)p->heads_kv, d, k_ctas, (uint32_t *)(ws + l->k));
    stage_vt<DIM, VEC><<<grid_of(v_ctas), STAGE_THREADS, 0, stream>>>(make_view<float>(&p->v), (int)p->seqlen_kv,
                                                                      (int)p->heads_kv, d, l->keys_pad, v_ctas,
                                                                      (uint32_t *)(ws + l->vt));
}

template <int DIM>
static void stage_dim(const fattn_params *p, const stage_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const bool vec = p->head_dim % 4 == 0 && vec_ok(&p->q, p->seqlen_q, p->heads_q, p->batch) &&
                     vec_ok(&p->k, p->seqlen_kv, p->heads_kv, p->batch) &&
                     vec_ok(&p->v, p->seqlen_kv, p->heads_kv, p->batch);
    if (vec) stage_all<DIM, true>(p, l, ws, stream);
    else stage_all<DIM, false>(p, l, ws, stream);
}

extern "C" fattn_status fattn_stage(const fattn_params *p, const stage_layout *l, void *workspace, cudaStream_t stream)
{
    uint8_t *ws = (uint8_t *)workspace;
    if (l->dim == 64) stage_dim<64>(p, l, ws, stream);
    else stage_dim<128>(p, l, ws, stream);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "tf32 staging pass launch failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}
