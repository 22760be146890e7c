/* Host side of the portable forward: configuration per head dim, checks, fp32 staging, launch. */
#include "portable.h"

#include <math.h>

#include "../common/check.h"
#include "kernel.cuh"

#define FATTN_WS_ALIGN 256u

/* Per head dim, (D, BM, BN, warps, stages, lazy rescale). Tiles as FA2 picks them for sm90: warps
 * of 32 query rows while the O accumulators fit in registers (d <= 128), 16 rows above that, with
 * single K/V buffers so that two CTAs share an SM. d64 takes 128-key tiles because its
 * accumulators leave room for twice the S tile. The lazy rescale measured 2-5% faster at d128
 * and d256 and 3-8% slower at d64 (H100, docs/perf-notes.md), so d64 keeps the classic one. */
#define FATTN_CFG_64 64, 128, 128, 4, 2, 0
#define FATTN_CFG_96 96, 128, 64, 4, 2, 1
#define FATTN_CFG_128 128, 128, 64, 4, 2, 1
#define FATTN_CFG_192 192, 64, 64, 4, 1, 1
#define FATTN_CFG_256 256, 64, 64, 4, 1, 1
#define FATTN_BLOCK_M 128 /* the largest BM above */

template <int D, int BM, int BN, int NW, int STAGES, int LAZY> static size_t fattn_smem_of(void)
{
    return FATTN_PORTABLE_SMEM(D, BM, BN, STAGES);
}

static size_t fattn_smem_for_dim(int64_t d)
{
    switch (d) {
    case 64: return fattn_smem_of<FATTN_CFG_64>();
    case 96: return fattn_smem_of<FATTN_CFG_96>();
    case 128: return fattn_smem_of<FATTN_CFG_128>();
    case 192: return fattn_smem_of<FATTN_CFG_192>();
    case 256: return fattn_smem_of<FATTN_CFG_256>();
    default: return 0;
    }
}

static size_t fattn_round_ws(size_t n)
{
    return (n + FATTN_WS_ALIGN - 1) / FATTN_WS_ALIGN * FATTN_WS_ALIGN;
}

static size_t fattn_staged_bytes(const fattn_params *p, int64_t seqlen, int64_t heads)
{
    return fattn_round_ws((size_t)(p->batch * seqlen * heads * p->head_dim) * 2u);
}

extern "C" size_t fattn_portable_workspace_size(const fattn_params *p)
{
    if (p->dtype != FATTN_DTYPE_F32)
        return 0;
    return fattn_staged_bytes(p, p->seqlen_q, p->heads_q) +
           2 * fattn_staged_bytes(p, p->seqlen_kv, p->heads_kv);
}

/* The kernels move 16 bytes per cp.async (and 8 per fp32 store), so every row start must be
 * 16-byte aligned: the base address and each stride in bytes. */
static fattn_status fattn_check_alignment(const char *name, const fattn_tensor *t, size_t esize)
{
    const int64_t unit = (int64_t)(16 / esize);
    if (((uintptr_t)t->data % 16) != 0)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "%s.data (%p) is not 16-byte aligned, which the CUDA kernels need", name,
                          t->data);
    if (t->stride_batch % unit || t->stride_seq % unit || t->stride_head % unit)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "%s strides (%lld, %lld, %lld) must be multiples of %lld elements "
                          "(16 bytes) for the CUDA kernels",
                          name, (long long)t->stride_batch, (long long)t->stride_seq,
                          (long long)t->stride_head, (long long)unit);
    return FATTN_OK;
}

/* The largest per-block shared memory any GPU of compute capability 8.0 or newer offers: 227 KB
 * on sm90 and sm100 (sm80: 163 KB, sm86/89/120: 99 KB). */
#define FATTN_MAX_SMEM_OPTIN (227 * 1024)

/* The portable kernel's rules with `smem_optin` bytes of shared memory per block, on `device`
 * (-1: the most capable GPU, for questions asked without one). */
static fattn_status fattn_portable_rules(const fattn_params *p, int smem_optin, int device)
{
    fattn_status st;
    if (p->mode != FATTN_MODE_NATIVE)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "mode (%d, FP8): the portable kernel has no FP8 path (no FP8 mma before "
                          "sm_89; untested on Ada); the Hopper kernel and the CPU serve it",
                          (int)p->mode);
    const size_t smem = fattn_smem_for_dim(p->head_dim);
    if (smem == 0)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "head_dim (%lld) has no CUDA kernel; supported: 64, 96, 128, 192, 256",
                          (long long)p->head_dim);
    if (smem > (size_t)smem_optin && device < 0)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "head_dim (%lld) needs %zu bytes of shared memory per block; no GPU "
                          "offers more than %d",
                          (long long)p->head_dim, smem, smem_optin);
    if (smem > (size_t)smem_optin)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "head_dim (%lld) needs %zu bytes of shared memory per block; device %d "
                          "offers %d",
                          (long long)p->head_dim, smem, device, smem_optin);
    if (p->scale < 0.f)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "scale (%g) is negative; the CUDA kernels take the row maximum of the raw "
                          "scores and need a non-negative scale",
                          (double)p->scale);
    if (p->seqlen_q > INT32_MAX - FATTN_BLOCK_M || p->seqlen_kv > INT32_MAX - FATTN_BLOCK_M)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "seqlen_q (%lld) / seqlen_kv (%lld) exceed the CUDA kernels' 32-bit row "
                          "indices",
                          (long long)p->seqlen_q, (long long)p->seqlen_kv);
    if (p->heads_q > 65535 || p->batch > 65535)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "heads_q (%lld) and batch (%lld) must each be at most 65535 on the CUDA "
                          "path (grid dimensions)",
                          (long long)p->heads_q, (long long)p->batch);
    const size_t esize = fattn_dtype_size(p->dtype);
    if ((st = fattn_check_alignment("q", &p->q, esize)) ||
        (st = fattn_check_alignment("k", &p->k, esize)) ||
        (st = fattn_check_alignment("v", &p->v, esize)) ||
        (st = fattn_check_alignment("o", &p->o, esize)))
        return st;
    return FATTN_OK;
}

extern "C" fattn_status fattn_portable_supported(const fattn_params *p, int device)
{
    int major = 0, minor = 0, smem_optin = 0;
    fattn_status st;
    if ((st = fattn_cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                               "cudaDeviceGetAttribute(compute capability)")))
        return st;
    if ((st = fattn_cuda_check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                               "cudaDeviceGetAttribute(compute capability)")))
        return st;
    if ((st = fattn_cuda_check(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                               "cudaDeviceGetAttribute(shared memory per block)")))
        return st;
    if (major < 8)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "device %d has compute capability %d.%d; the CUDA kernels need 8.0 or newer",
                          device, major, minor);
    return fattn_portable_rules(p, smem_optin, device);
}

extern "C" fattn_status fattn_portable_serves(const fattn_params *p)
{
    return fattn_portable_rules(p, FATTN_MAX_SMEM_OPTIN, -1);
}

/* fp32 staging: one thread turns 8 floats of a strided [B,S,H,D] view into 8 bf16 of a compact
 * BSHD copy, so the tensor-core kernel reads 16-bit tiles (error bound 1e-2, docs/design.md). */
__global__ void fattn_stage_bf16(const float *src, int64_t sb, int64_t ss, int64_t sh,
                                 uint16_t *dst, int64_t seqlen, int64_t heads, int64_t d,
                                 int64_t nvec)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nvec)
        return;
    const int64_t cpr = d / 8;
    int64_t c = i % cpr, t = i / cpr;
    int64_t hh = t % heads;
    t /= heads;
    int64_t s = t % seqlen, bb = t / seqlen;
    const float4 *p = (const float4 *)(src + bb * sb + s * ss + hh * sh + c * 8);
    float4 x = p[0], y = p[1];
    uint4 r;
    r.x = fattn_pack2<FATTN_ELEM_BF16>(x.x, x.y);
    r.y = fattn_pack2<FATTN_ELEM_BF16>(x.z, x.w);
    r.z = fattn_pack2<FATTN_ELEM_BF16>(y.x, y.y);
    r.w = fattn_pack2<FATTN_ELEM_BF16>(y.z, y.w);
    ((uint4 *)dst)[i] = r;
}

static fattn_status fattn_stage(const fattn_params *p, const fattn_tensor *t, int64_t seqlen,
                                int64_t heads, uint16_t *dst, fattn_tensor *out, cudaStream_t stream)
{
    const int64_t nvec = p->batch * seqlen * heads * p->head_dim / 8;
    const int threads = 256;
    fattn_stage_bf16<<<(unsigned)((nvec + threads - 1) / threads), threads, 0, stream>>>(
        (const float *)t->data, t->stride_batch, t->stride_seq, t->stride_head, dst, seqlen, heads,
        p->head_dim, nvec);
    out->data = dst;
    out->stride_head = p->head_dim;
    out->stride_seq = heads * p->head_dim;
    out->stride_batch = seqlen * heads * p->head_dim;
    return fattn_cuda_check(cudaGetLastError(), "launching the fp32 staging kernel");
}

template <int D, int BM, int BN, int NW, int STAGES, int LAZY, int E, int OE>
static fattn_status fattn_launch(const fattn_portable_args *in, int batch, cudaStream_t stream)
{
    fattn_portable_args args = *in;
    args.num_m_blocks = (args.seqlen_q + BM - 1) / BM;
    const size_t smem = FATTN_PORTABLE_SMEM(D, BM, BN, STAGES);
    void (*kernel)(const fattn_portable_args) = fattn_portable_fwd<D, BM, BN, NW, STAGES, LAZY, E, OE>;
    fattn_status st = fattn_cuda_check(
        cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
        "cudaFuncSetAttribute(portable kernel shared memory)");
    if (st)
        return st;
    dim3 grid((unsigned)args.num_m_blocks, (unsigned)args.heads_q, (unsigned)batch);
    kernel<<<grid, NW * 32, smem, stream>>>(args);
    return fattn_cuda_check(cudaGetLastError(), "launching the portable attention kernel");
}

template <int E, int OE>
static fattn_status fattn_launch_dim(int64_t d, const fattn_portable_args *args, int batch,
                                     cudaStream_t stream)
{
    switch (d) {
    case 64: return fattn_launch<FATTN_CFG_64, E, OE>(args, batch, stream);
    case 96: return fattn_launch<FATTN_CFG_96, E, OE>(args, batch, stream);
    case 128: return fattn_launch<FATTN_CFG_128, E, OE>(args, batch, stream);
    case 192: return fattn_launch<FATTN_CFG_192, E, OE>(args, batch, stream);
    case 256: return fattn_launch<FATTN_CFG_256, E, OE>(args, batch, stream);
    default:
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "head_dim (%lld) has no CUDA kernel", (long long)d);
    }
}

extern "C" fattn_status fattn_portable_forward(const fattn_params *p, void *workspace,
                                               cudaStream_t stream)
{
    fattn_tensor q = p->q, k = p->k, v = p->v;
    fattn_status st;
    if (p->dtype == FATTN_DTYPE_F32) {
        uint16_t *ws = (uint16_t *)workspace;
        uint16_t *wq = ws;
        uint16_t *wk = wq + fattn_staged_bytes(p, p->seqlen_q, p->heads_q) / 2;
        uint16_t *wv = wk + fattn_staged_bytes(p, p->seqlen_kv, p->heads_kv) / 2;
        if ((st = fattn_stage(p, &p->q, p->seqlen_q, p->heads_q, wq, &q, stream)) ||
            (st = fattn_stage(p, &p->k, p->seqlen_kv, p->heads_kv, wk, &k, stream)) ||
            (st = fattn_stage(p, &p->v, p->seqlen_kv, p->heads_kv, wv, &v, stream)))
            return st;
    }
    fattn_portable_args a;
    a.q = q.data;
    a.k = k.data;
    a.v = v.data;
    a.o = p->o.data;
    a.lse = p->lse;
    a.q_sb = q.stride_batch, a.q_ss = q.stride_seq, a.q_sh = q.stride_head;
    a.k_sb = k.stride_batch, a.k_ss = k.stride_seq, a.k_sh = k.stride_head;
    a.v_sb = v.stride_batch, a.v_ss = v.stride_seq, a.v_sh = v.stride_head;
    a.o_sb = p->o.stride_batch, a.o_ss = p->o.stride_seq, a.o_sh = p->o.stride_head;
    a.seqlen_q = (int)p->seqlen_q;
    a.seqlen_kv = (int)p->seqlen_kv;
    a.heads_q = (int)p->heads_q;
    a.group = (int)(p->heads_q / p->heads_kv);
    a.causal = p->causal != 0;
    a.num_m_blocks = 0; /* set per configuration by fattn_launch */
    a.scale_log2 = fattn_effective_scale(p) * 1.4426950408889634f;
    const int batch = (int)p->batch;
    switch (p->dtype) {
    case FATTN_DTYPE_BF16:
        return fattn_launch_dim<FATTN_ELEM_BF16, FATTN_ELEM_BF16>(p->head_dim, &a, batch, stream);
    case FATTN_DTYPE_F16:
        return fattn_launch_dim<FATTN_ELEM_F16, FATTN_ELEM_F16>(p->head_dim, &a, batch, stream);
    case FATTN_DTYPE_F32:
        return fattn_launch_dim<FATTN_ELEM_BF16, FATTN_ELEM_F32>(p->head_dim, &a, batch, stream);
    }
    return fattn_fail(FATTN_ERR_UNSUPPORTED, "dtype (%d) has no CUDA kernel", (int)p->dtype);
}
