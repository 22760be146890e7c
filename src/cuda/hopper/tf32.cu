/* fp32 I/O's staging pass: Q, K and V become tf32-rounded copies in the workspace, laid out as the
 * Hopper kernel's TMA maps read them. tf32 wgmma reads both operands K-major, so V is written
 * transposed (head_dim rows of keys), the keys of each group of 8 in the order P's registers
 * take them (tf32.h). Rounding here rather than letting wgmma drop the low mantissa bits keeps
 * the products unbiased. Two kernels, three launches on the caller's stream, no allocation:
 *   rows: a CTA copies ROWS rows of one (batch, head) of Q or K, zeros past head_dim;
 *   vt:   a CTA transposes TF32_KEY_BLOCK keys of one (batch, kv head) of V through shared
 *         memory, zeros past head_dim and seqlen_kv.
 * The inputs are any strided views (the head dim contiguous); reads and writes run along the head
 * dim and the keys respectively, so both are coalesced. */
#include "../../core/internal.h"
#include "ptx.cuh"
#include "tf32.h"

#define STAGE_THREADS 256
#define ROWS 32 /* rows of Q or K per CTA */

/* One strided fp32 view (fattn_tensor). */
struct f32_view {
    const float *data;
    int64_t sb, ss, sh;
    __device__ const float *row(int64_t b, int64_t s, int64_t h) const { return data + b * sb + s * ss + h * sh; }
};

static f32_view make_view(const fattn_tensor *t)
{
    return f32_view{(const float *)t->data, t->stride_batch, t->stride_seq, t->stride_head};
}

/* dst[b][h][s][DIM] for the CTA's (seq block, head, batch), c counting seq blocks fastest. */
template <int DIM>
__global__ void __launch_bounds__(STAGE_THREADS) stage_rows(f32_view src, int seqlen, int heads, int head_dim,
                                                            int64_t ctas, uint32_t *dst)
{
    const int blocks = (seqlen + ROWS - 1) / ROWS;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        uint32_t *out = dst + (bh * seqlen + (int64_t)blk * ROWS) * DIM;
        for (int e = threadIdx.x; e < ROWS * DIM; e += STAGE_THREADS) {
            const int r = e / DIM, d = e % DIM, s = blk * ROWS + r;
            if (s < seqlen) out[e] = d < head_dim ? tf32_round(src.row(b, s, h)[d]) : 0u;
        }
    }
}

/* dst[b][h][DIM][keys_pad] for the CTA's (key block, kv head, batch). */
template <int DIM>
__global__ void __launch_bounds__(STAGE_THREADS) stage_vt(f32_view src, int seqlen_kv, int heads, int head_dim,
                                                          int keys_pad, int64_t ctas, uint32_t *dst)
{
    /* one padding column keeps both the row-wise fill and the column-wise read conflict-free */
    __shared__ uint32_t tile[TF32_KEY_BLOCK][DIM + 1];
    const int blocks = keys_pad / TF32_KEY_BLOCK;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        for (int e = threadIdx.x; e < TF32_KEY_BLOCK * DIM; e += STAGE_THREADS) {
            const int key = e / DIM, d = e % DIM, s = blk * TF32_KEY_BLOCK + key;
            tile[key][d] = s < seqlen_kv && d < head_dim ? tf32_round(src.row(b, s, h)[d]) : 0u;
        }
        __syncthreads();
        uint32_t *out = dst + bh * DIM * keys_pad + (int64_t)blk * TF32_KEY_BLOCK;
        for (int e = threadIdx.x; e < DIM * TF32_KEY_BLOCK; e += STAGE_THREADS) {
            const int d = e / TF32_KEY_BLOCK, slot = e % TF32_KEY_BLOCK;
            out[(int64_t)d * keys_pad + slot] = tile[fattn_tf32_key_of_slot(slot)][d];
        }
        __syncthreads();
    }
}

static int64_t align256(int64_t x)
{
    return (x + 255) / 256 * 256;
}

extern "C" tf32_layout fattn_tf32_layout(const fattn_params *p)
{
    tf32_layout l;
    l.dim = TF32_STORED_DIM((int)p->head_dim);
    l.keys_pad = (int)((p->seqlen_kv + TF32_KEY_BLOCK - 1) / TF32_KEY_BLOCK * TF32_KEY_BLOCK);
    const int64_t q = p->batch * p->heads_q * p->seqlen_q * l.dim * 4;
    const int64_t k = p->batch * p->heads_kv * p->seqlen_kv * l.dim * 4;
    const int64_t vt = p->batch * p->heads_kv * l.dim * (int64_t)l.keys_pad * 4;
    l.q = 0;
    l.k = align256(q);
    l.vt = l.k + align256(k);
    l.bytes = l.vt + align256(vt);
    return l;
}

/* A grid of at most this many CTAs loops over the rest. */
static const int64_t MAX_GRID = (int64_t)1 << 20;

template <int DIM>
static fattn_status stage(const fattn_params *p, const tf32_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const int d = (int)p->head_dim;
    const int64_t q_ctas = (p->seqlen_q + ROWS - 1) / ROWS * p->heads_q * p->batch;
    const int64_t k_ctas = (p->seqlen_kv + ROWS - 1) / ROWS * p->heads_kv * p->batch;
    const int64_t v_ctas = l->keys_pad / TF32_KEY_BLOCK * p->heads_kv * p->batch;
    stage_rows<DIM><<<(unsigned)(q_ctas < MAX_GRID ? q_ctas : MAX_GRID), STAGE_THREADS, 0, stream>>>(
        make_view(&p->q), (int)p->seqlen_q, (int)p->heads_q, d, q_ctas, (uint32_t *)(ws + l->q));
    stage_rows<DIM><<<(unsigned)(k_ctas < MAX_GRID ? k_ctas : MAX_GRID), STAGE_THREADS, 0, stream>>>(
        make_view(&p->k), (int)p->seqlen_kv, (int)p->heads_kv, d, k_ctas, (uint32_t *)(ws + l->k));
    stage_vt<DIM><<<(unsigned)(v_ctas < MAX_GRID ? v_ctas : MAX_GRID), STAGE_THREADS, 0, stream>>>(
        make_view(&p->v), (int)p->seqlen_kv, (int)p->heads_kv, d, l->keys_pad, v_ctas, (uint32_t *)(ws + l->vt));
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "tf32 staging pass launch failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}

extern "C" fattn_status fattn_tf32_stage(const fattn_params *p, const tf32_layout *l, void *workspace,
                                         cudaStream_t stream)
{
    uint8_t *ws = (uint8_t *)workspace;
    return l->dim == 64 ? stage<64>(p, l, ws, stream) : stage<128>(p, l, ws, stream);
}
