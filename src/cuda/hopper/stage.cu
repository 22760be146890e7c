/* The staging pass (stage.h): copies of Q, K and V in the workspace, laid out as the Hopper
 * kernel's TMA maps read them. Two kernels, one launch per tensor on the caller's stream, no
 * allocation:
 *   rows: fp32 only; a CTA copies ROWS rows of one (batch, head) of Q or K, rounded to tf32,
 *         zeros past head_dim. Rounding here rather than letting wgmma drop the low mantissa
 *         bits keeps the products unbiased;
 *   vt:   a CTA transposes STAGE_KEY_BLOCK keys of one (batch, kv head) of V through shared
 *         memory (tf32: rounded, each group of 8 keys in P's register order), zeros past
 *         head_dim and seqlen_kv.
 * The inputs are any strided views (the head dim contiguous); reads run along the head dim and
 * writes along the copy's rows, so both are coalesced. */
#include "../../core/internal.h"
#include "ptx.cuh"
#include "stage.h"
#include "view.cuh"

#define STAGE_THREADS 256
#define ROWS 32 /* rows of Q or K per CTA */


/* An input element as the copy holds it: fp32 as its tf32 bits, 16-bit elements as they are. */
static __device__ __forceinline__ uint32_t staged(float x)
{
    return tf32_round(x);
}
static __device__ __forceinline__ uint16_t staged(uint16_t x)
{
    return x;
}

/* The key of V^T's slot s within its block: tf32 permutes each group of 8 (stage.h). */
template <typename T> static __device__ __forceinline__ int key_of_slot(int s)
{
    return sizeof(T) == 4 ? fattn_tf32_key_of_slot(s) : s;
}

/* dst[b][h][s][DIM] for the CTA's (seq block, head, batch), c counting seq blocks fastest. */
template <int DIM>
__global__ void __launch_bounds__(STAGE_THREADS) stage_rows(view<float> src, int seqlen, int heads, int head_dim,
                                                            int64_t ctas, uint32_t *dst)
{
    const int blocks = (seqlen + ROWS - 1) / ROWS;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        uint32_t *out = dst + (bh * seqlen + (int64_t)blk * ROWS) * DIM;
        for (int e = threadIdx.x; e < ROWS * DIM; e += STAGE_THREADS) {
            const int r = e / DIM, d = e % DIM, s = blk * ROWS + r;
            if (s < seqlen) out[e] = d < head_dim ? staged(src.row(b, s, h)[d]) : 0u;
        }
    }
}

/* dst[b][h][DIM][keys_pad] for the CTA's (key block, kv head, batch); T the input element, U the
 * copy's. */
template <typename T, typename U, int DIM>
__global__ void __launch_bounds__(STAGE_THREADS) stage_vt(view<T> src, int seqlen_kv, int heads, int head_dim,
                                                          int keys_pad, int64_t ctas, U *dst)
{
    /* one padding column keeps the column-wise read free of (4-byte) or low in (2-byte) conflicts */
    __shared__ U tile[STAGE_KEY_BLOCK][DIM + 1];
    const int blocks = keys_pad / STAGE_KEY_BLOCK;
    for (int64_t c = blockIdx.x; c < ctas; c += gridDim.x) {
        const int blk = (int)(c % blocks);
        const int64_t bh = c / blocks, h = bh % heads, b = bh / heads;
        for (int e = threadIdx.x; e < STAGE_KEY_BLOCK * DIM; e += STAGE_THREADS) {
            const int key = e / DIM, d = e % DIM, s = blk * STAGE_KEY_BLOCK + key;
            tile[key][d] = s < seqlen_kv && d < head_dim ? staged(src.row(b, s, h)[d]) : (U)0;
        }
        __syncthreads();
        U *out = dst + bh * DIM * keys_pad + (int64_t)blk * STAGE_KEY_BLOCK;
        for (int e = threadIdx.x; e < DIM * STAGE_KEY_BLOCK; e += STAGE_THREADS) {
            const int d = e / STAGE_KEY_BLOCK, slot = e % STAGE_KEY_BLOCK;
            out[(int64_t)d * keys_pad + slot] = tile[key_of_slot<T>(slot)][d];
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
    const int f32 = p->dtype == FATTN_DTYPE_F32;
    l.dim = dim;
    l.elem = f32 ? 4 : 2;
    l.keys_pad = (int)((p->seqlen_kv + STAGE_KEY_BLOCK - 1) / STAGE_KEY_BLOCK * STAGE_KEY_BLOCK);
    int64_t at = 0;
    l.q = l.k = -1;
    if (f32) {
        l.q = at;
        at += align256(p->batch * p->heads_q * p->seqlen_q * dim * 4);
        l.k = at;
        at += align256(p->batch * p->heads_kv * p->seqlen_kv * dim * 4);
    }
    l.vt = at;
    l.bytes = at + align256(p->batch * p->heads_kv * dim * (int64_t)l.keys_pad * l.elem);
    return l;
}

/* A grid of at most this many CTAs loops over the rest. */
static const int64_t MAX_GRID = (int64_t)1 << 20;

static unsigned grid_of(int64_t ctas)
{
    return (unsigned)(ctas < MAX_GRID ? ctas : MAX_GRID);
}

template <typename T, typename U, int DIM>
static void stage_v(const fattn_params *p, const stage_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const int64_t ctas = l->keys_pad / STAGE_KEY_BLOCK * p->heads_kv * p->batch;
    stage_vt<T, U, DIM><<<grid_of(ctas), STAGE_THREADS, 0, stream>>>(
        make_view<T>(&p->v), (int)p->seqlen_kv, (int)p->heads_kv, (int)p->head_dim, l->keys_pad, ctas,
        (U *)(ws + l->vt));
}

template <int DIM> static void stage_qk(const fattn_params *p, const stage_layout *l, uint8_t *ws, cudaStream_t stream)
{
    const int64_t q_ctas = (p->seqlen_q + ROWS - 1) / ROWS * p->heads_q * p->batch;
    const int64_t k_ctas = (p->seqlen_kv + ROWS - 1) / ROWS * p->heads_kv * p->batch;
    stage_rows<DIM><<<grid_of(q_ctas), STAGE_THREADS, 0, stream>>>(make_view<float>(&p->q), (int)p->seqlen_q,
                                                                   (int)p->heads_q, (int)p->head_dim, q_ctas,
                                                                   (uint32_t *)(ws + l->q));
    stage_rows<DIM><<<grid_of(k_ctas), STAGE_THREADS, 0, stream>>>(make_view<float>(&p->k), (int)p->seqlen_kv,
                                                                   (int)p->heads_kv, (int)p->head_dim, k_ctas,
                                                                   (uint32_t *)(ws + l->k));
    stage_v<float, uint32_t, DIM>(p, l, ws, stream);
}

extern "C" fattn_status fattn_stage(const fattn_params *p, const stage_layout *l, void *workspace, cudaStream_t stream)
{
    uint8_t *ws = (uint8_t *)workspace;
    if (l->elem == 4 && l->dim == 64) stage_qk<64>(p, l, ws, stream);
    else if (l->elem == 4 && l->dim == 128) stage_qk<128>(p, l, ws, stream);
    else if (l->elem == 2 && l->dim == 48) stage_v<uint16_t, uint16_t, 48>(p, l, ws, stream);
    else if (l->elem == 2 && l->dim == 80) stage_v<uint16_t, uint16_t, 80>(p, l, ws, stream);
    else if (l->elem == 2 && l->dim == 96) stage_v<uint16_t, uint16_t, 96>(p, l, ws, stream);
    else
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "staging pass: no kernel for %d-byte elements at dim %d", l->elem,
                          l->dim);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "staging pass launch failed: %s", cudaGetErrorString(e));
    return FATTN_OK;
}
