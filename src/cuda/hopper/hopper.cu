/* Host side of the Hopper forward: support checks, tensor maps, tile configuration, launch. */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <math.h>

#include "../../core/internal.h"
#include "hopper.h"
#include "kernel.cuh"
#include "merge.h"
#include "quantize.h"
#include "stage.h"

/* Tile configuration per head dim (each overridable with -D for tuning runs): NWG consumer
 * warpgroups of 64 query rows each; BN keys per stage; STAGES deep. Each fits the register split
 * of kernel.cuh (O takes D/2 fp32 registers, S takes BN/2) and the 227 KB of shared memory. */
#ifndef CFG64_NWG
#define CFG64_NWG 3
#endif
#ifndef CFG64_BN
#define CFG64_BN 128
#endif
#ifndef CFG64_STAGES
#define CFG64_STAGES 2
#endif
/* Three consumers at D 80-128 (P through shared memory, config.cuh's HOPPER_P_SMEM) measured no
 * faster than two at the long shapes and 17% slower at d128_1k (docs/perf-notes.md, v13). */
#ifndef CFG128_NWG
#define CFG128_NWG 2
#endif
#ifndef CFG128_BN
#define CFG128_BN 128
#endif
#ifndef CFG128_STAGES
#define CFG128_STAGES 2
#endif
#ifndef CFG192_NWG
#define CFG192_NWG 2
#endif
#ifndef CFG192_BN
#define CFG192_BN 80
#endif
#ifndef CFG192_STAGES
#define CFG192_STAGES 2
#endif
#ifndef CFG256_NWG
#define CFG256_NWG 2
#endif
#ifndef CFG256_BN
#define CFG256_BN 80
#endif
#ifndef CFG256_STAGES
#define CFG256_STAGES 2
#endif
/* FP8 mode: e4m3 wgmma reads V^T in 128-key chunks, so the key block is 128 at every head dim. */
#ifndef CFGF8_NWG
#define CFGF8_NWG 2
#endif
#ifndef CFGF8_BN
#define CFGF8_BN 128
#endif
#ifndef CFGF8_STAGES
#define CFGF8_STAGES 2
#endif
/* The d128 FP8 kernel takes a third consumer with P through shared memory (config.cuh's
 * HOPPER_P_SMEM; 184 of 227 KB; +2 to +7% on the FP8 d64/d128 shapes from 4k keys, -0.4 and -1.5%
 * at 1k: docs/perf-notes.md v13); with two it had room for 3-4 stages, with three for 3 (d256's
 * for none): its own knobs. */
#ifndef CFGF8_128_STAGES
#define CFGF8_128_STAGES CFGF8_STAGES
#endif
#ifndef CFGF8_128_NWG
#define CFGF8_128_NWG 3
#endif

/* fp32 I/O (tf32 copies, hopper/stage.cu): 4-byte tiles take twice the shared memory of bf16's,
 * so d128 streams 64-key blocks; d64 keeps 128. d128 takes three consumers: 225 of 227 KB, and
 * their 160 registers spill about 30 per thread, yet measured 13% faster than two (perf-notes). */
#ifndef CFGT64_NWG
#define CFGT64_NWG 2
#endif
#ifndef CFGT64_BN
#define CFGT64_BN 128
#endif
#ifndef CFGT64_STAGES
#define CFGT64_STAGES 2
#endif
#ifndef CFGT128_NWG
#define CFGT128_NWG 3
#endif
#ifndef CFGT128_BN
#define CFGT128_BN 64
#endif
#ifndef CFGT128_STAGES
#define CFGT128_STAGES 2
#endif

/* Native mode runs head_dim d on the kernel instantiated for the smallest D of the table below
 * that holds it. That kernel's Q K^T runs over D columns and its tiles are DT = D rounded up to 64
 * wide (config.cuh's HOPPER_DT), so columns d..DT-1 exist only in shared memory and registers:
 * - The tensor maps keep dims[0] = d and read boxes of 64 columns, so the boxes past d lie partly
 *   or wholly outside the tensor. The PTX ISA (5.5.3.3, "Out of Boundary Access") sets such
 *   elements of a box to 0 in zero-fill mode, which is CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE (cuda.h,
 *   cuTensorMapEncodeTiled: oobFill selects zero or a special NaN; boxDim is bounded by 256 and
 *   the swizzle span, not by globalDim). Q K^T then sums only real products, and P V's extra
 *   columns are P times zero.
 * - The producer's expect_tx stays the whole box: cp.async.bulk.tensor completes its mbarrier with
 *   the bytes it writes to shared memory, and it writes the whole box, zeros included. The row
 *   tails already rest on this (a Q tile past seqlen_q, a K/V block past seqlen_kv).
 * - O's TMA store writes only the box's elements inside the tensor, as it does for rows past
 *   seqlen_q, so columns d..D-1 never reach memory (the same PTX section says tensor operations
 *   handle a box that crosses the boundary; NVIDIA Fuser's doc/reading/tma-modeling-in-depth.md
 *   models the store as skipping what lies outside). epilogue.cuh writes O with TMA alone.
 * The scale default (1/sqrt(d)) and the LSE depend on d alone, never on D. */
typedef struct native_cfg {
    int d, nwg, bn, stages;
} native_cfg;

/* The D between the 64-column tiles (48, 80, 96, 160) cut the Q K^T work of the head dims FA4's
 * users bring (SD's 40, 80, 160; 72; 96) to D/DT of the padded kernel's; each D takes the tiles of
 * its DT (a V^T copy that let P V run N = D measured no faster: docs/perf-notes.md). 192 is a DT
 * of its own: three chunks, the register and shared-memory budget of 256's. */
/* The one source of the tiles: the host's row and key counts and the kernels launch_native
 * instantiates are read from it. */
static constexpr native_cfg NATIVE_CFGS[] = {
    {48, CFG64_NWG, CFG64_BN, CFG64_STAGES},      {64, CFG64_NWG, CFG64_BN, CFG64_STAGES},
    {80, CFG128_NWG, CFG128_BN, CFG128_STAGES},   {96, CFG128_NWG, CFG128_BN, CFG128_STAGES},
    {128, CFG128_NWG, CFG128_BN, CFG128_STAGES},  {160, CFG192_NWG, CFG192_BN, CFG192_STAGES},
    {192, CFG192_NWG, CFG192_BN, CFG192_STAGES}, {256, CFG256_NWG, CFG256_BN, CFG256_STAGES}};
/* Short query sequences at D 48 and 64 take two consumers (128-row tiles) where three would compute
 * more than an eighth more rows than two (fewer_rows_on_two): at 128 or 256 query rows a third of
 * a 192-row tiling is padding. At 1024 rows (an eighth) three consumers still measured faster. */
static constexpr native_cfg SHORT_CFGS[] = {{48, 2, CFG64_BN, CFG64_STAGES}, {64, 2, CFG64_BN, CFG64_STAGES}};

/* fp32: every head_dim up to 64 on the d64 kernel, the rest up to 128 on the d128 one, over the
 * staging pass's copies, zero-padded to D columns (so no multiple-of-8 rule: TMA reads only the
 * copies and O). */
static constexpr native_cfg TF32_CFGS[] = {{64, CFGT64_NWG, CFGT64_BN, CFGT64_STAGES},
                                           {128, CFGT128_NWG, CFGT128_BN, CFGT128_STAGES}};

/* The smallest entry of a configuration table that holds head_dim, or NULL. */
template <size_t N> static const native_cfg *smallest_holding(const native_cfg (&table)[N], int64_t head_dim)
{
    for (size_t i = 0; i < N; ++i)
        if (head_dim <= table[i].d) return &table[i];
    return NULL;
}

template <size_t N> static bool in_table(const native_cfg *c, const native_cfg (&table)[N])
{
    for (size_t i = 0; i < N; ++i)
        if (c == &table[i]) return true;
    return false;
}

/* Query rows padded to tiles of nwg consumers. */
static int64_t tiled_rows(int64_t seqlen_q, int nwg)
{
    const int64_t tile = (int64_t)nwg * HOPPER_WG_ROWS;
    return (seqlen_q + tile - 1) / tile * tile;
}

static bool fewer_rows_on_two(int64_t seqlen_q)
{
    return tiled_rows(seqlen_q, 3) * 8 > tiled_rows(seqlen_q, 2) * 9;
}

/* The configuration that serves head_dim in native mode, or NULL. A dense row of 2-byte elements
 * meets TMA's 16-byte stride rule only when head_dim is a multiple of 8; the rule is head_dim's
 * alone, so that whether a head dim is served does not depend on the layout. fp32 takes
 * TF32_CFGS; short query sequences at D 48 and 64 SHORT_CFGS. */
static const native_cfg *native_config(const fattn_params *p)
{
    if (p->dtype == FATTN_DTYPE_F32) return smallest_holding(TF32_CFGS, p->head_dim);
    if (p->head_dim < 8 || p->head_dim % 8 != 0) return NULL;
    const native_cfg *c = smallest_holding(NATIVE_CFGS, p->head_dim);
    if (c != NULL && c->nwg == 3 && fewer_rows_on_two(p->seqlen_q)) {
        const native_cfg *s = smallest_holding(SHORT_CFGS, p->head_dim);
        if (s != NULL) return s;
    }
    return c;
}

/* What the staging pass writes for these parameters (stage.h): the tf32 copies for fp32 in native
 * mode, as wide as its kernel's D; bytes 0 where the kernel reads the call's own tensors (and for
 * FP8 mode, whose copies are quantize.h's). Shapes only. */
static stage_layout staging(const fattn_params *p)
{
    stage_layout none = {};
    const native_cfg *c = native_config(p);
    if (p->mode == FATTN_MODE_FP8 || p->dtype != FATTN_DTYPE_F32 || c == NULL) return none;
    return fattn_stage_layout(p, c->d);
}

/* Only for parameters fattn_hopper_serves accepted, so native_config is not NULL here. */
static int rows_per_cta(const fattn_params *p)
{
    if (p->mode == FATTN_MODE_FP8)
        return (FP8_STORED_DIM(p->head_dim) == 128 ? CFGF8_128_NWG : CFGF8_NWG) * HOPPER_WG_ROWS;
    return native_config(p)->nwg * HOPPER_WG_ROWS;
}

static int key_block(const fattn_params *p)
{
    return p->mode == FATTN_MODE_FP8 ? CFGF8_BN : native_config(p)->bn;
}

/* The columns of the kernel's O accumulator (its DT), which a split tile's pieces keep. */
static int kernel_cols(const fattn_params *p)
{
    return HOPPER_DT(p->mode == FATTN_MODE_FP8 ? (int)FP8_STORED_DIM(p->head_dim) : native_config(p)->d);
}

static const int64_t TMA_STRIDE_LIMIT = (int64_t)1 << 40;

/* TMA reads a tensor through a map whose base and strides must be 16-byte multiples. A stride of
 * a dimension of extent 1 is never used, so it is not held to that. */
static fattn_status check_tensor(const char *name, const fattn_tensor *t, int64_t seqlen, int64_t heads,
                                 int64_t batch, size_t elem)
{
    if ((uintptr_t)t->data % 16 != 0)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: %s.data (%p) is not 16-byte aligned", name,
                          t->data);
    const struct {
        const char *field;
        int64_t stride, extent;
    } dims[3] = {{"stride_seq", t->stride_seq, seqlen}, {"stride_head", t->stride_head, heads},
                 {"stride_batch", t->stride_batch, batch}};
    for (int i = 0; i < 3; ++i) {
        if (dims[i].extent == 1) continue;
        int64_t bytes = dims[i].stride * (int64_t)elem;
        if (dims[i].stride <= 0 || bytes % 16 != 0 || bytes >= TMA_STRIDE_LIMIT)
            return fattn_fail(FATTN_ERR_UNSUPPORTED,
                              "Hopper kernel: %s.%s (%lld elements) is not a positive multiple of 16 bytes "
                              "below 2^40 bytes, as TMA requires",
                              name, dims[i].field, (long long)dims[i].stride);
    }
    return FATTN_OK;
}

extern "C" fattn_status fattn_hopper_serves(const fattn_params *p)
{
    const int fp8 = p->mode == FATTN_MODE_FP8, f32 = p->dtype == FATTN_DTYPE_F32;
    if (p->dtype != FATTN_DTYPE_BF16 && p->dtype != FATTN_DTYPE_F16 && !f32)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: dtype %s is not served (bf16, fp16, fp32 only)",
                          fattn_dtype_name(p->dtype));
    if (f32 && fp8)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: FP8 mode with dtype fp32 is not served (bf16, fp16 I/O)");
    if (f32 && native_config(p) == NULL)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "Hopper kernel: fp32 at head_dim (%lld) is not served (at most %d: a tf32 tile twice "
                          "bf16's leaves no room for two consumers beyond)",
                          (long long)p->head_dim, TF32_CFGS[sizeof TF32_CFGS / sizeof TF32_CFGS[0] - 1].d);
    if (fp8 && p->head_dim != 64 && p->head_dim != 96 && p->head_dim != 128 && p->head_dim != 192 &&
        p->head_dim != 256)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "Hopper kernel: FP8 mode at head_dim (%lld) is not served (64, 96, 128, 192, 256)",
                          (long long)p->head_dim);
    if (!fp8 && !f32 && native_config(p) == NULL)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: head_dim (%lld) is not a multiple of 8 in 8..256",
                          (long long)p->head_dim);
    float scale = fattn_effective_scale(p);
    if (!(scale > 0.0f) || isinf(scale))
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: scale (%g) is not positive and finite",
                          (double)scale);
    const int64_t int_max = 0x7fffffff;
    int64_t m_blocks = (p->seqlen_q + rows_per_cta(p) - 1) / rows_per_cta(p);
    if (p->seqlen_q > int_max || p->seqlen_kv > int_max || m_blocks * p->heads_q * p->batch > int_max)
        return fattn_fail(FATTN_ERR_UNSUPPORTED,
                          "Hopper kernel: seqlen_q (%lld), seqlen_kv (%lld) or the tile count exceed 2^31-1",
                          (long long)p->seqlen_q, (long long)p->seqlen_kv);
    const size_t elem = fattn_dtype_size(p->dtype);
    fattn_status st;
    /* FP8 mode and fp32 read Q, K and V with ordinary loads (their pre-passes); only O goes through
     * TMA. */
    if (!fp8 && !f32) {
        if ((st = check_tensor("q", &p->q, p->seqlen_q, p->heads_q, p->batch, elem)) != FATTN_OK) return st;
        if ((st = check_tensor("k", &p->k, p->seqlen_kv, p->heads_kv, p->batch, elem)) != FATTN_OK) return st;
        if ((st = check_tensor("v", &p->v, p->seqlen_kv, p->heads_kv, p->batch, elem)) != FATTN_OK) return st;
    }
    if ((st = check_tensor("o", &p->o, p->seqlen_q, p->heads_q, p->batch, elem)) != FATTN_OK) return st;
    return FATTN_OK;
}

extern "C" fattn_status fattn_hopper_supported(const fattn_params *p)
{
    fattn_status st = fattn_hopper_serves(p);
    if (st != FATTN_OK) return st;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        cudaGetLastError();
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: no CUDA device could be queried");
    }
    if (major != 9 || minor != 0)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: device %d is sm_%d%d, not sm_90", dev, major,
                          minor);
    return FATTN_OK;
}

/* A 4-D view (cols, rows, heads, batch) with strides in elements, read in boxes of 128 bytes by
 * box_rows rows. */
typedef struct map_spec {
    const void *data;
    int64_t cols, rows, heads, batch;
    int64_t stride_row, stride_head, stride_batch;
    int box_rows;
    int elem; /* bytes: the I/O dtype's, 1 for FP8's e4m3 copies, 4 for tf32 copies */
} map_spec;

static map_spec io_map(const fattn_params *p, const fattn_tensor *t, int64_t seqlen, int64_t heads, int box_rows)
{
    return map_spec{t->data, p->head_dim, seqlen, heads, p->batch, t->stride_seq, t->stride_head, t->stride_batch,
                    box_rows, (int)fattn_dtype_size(p->dtype)};
}

/* A copy of the pre-passes, dense [batch][heads][rows][cols] with elements of elem bytes. */
static map_spec copy_map(const void *data, int64_t cols, int64_t rows, int64_t heads, int64_t batch, int box_rows,
                         int elem)
{
    return map_spec{data, cols, rows, heads, batch, cols, rows * cols, heads * rows * cols, box_rows, elem};
}

static fattn_status encode_map(PFN_cuTensorMapEncodeTiled_v12000 encode, CUtensorMap *map, const fattn_params *p,
                               const char *name, map_spec spec)
{
    const cuuint64_t elem = (cuuint64_t)spec.elem;
    /* Unused strides (extent 1) still have to satisfy the encoder's alignment rule. */
    cuuint64_t fallback = (cuuint64_t)spec.cols * elem;
    cuuint64_t dims[4] = {(cuuint64_t)spec.cols, (cuuint64_t)spec.rows, (cuuint64_t)spec.heads,
                          (cuuint64_t)spec.batch};
    cuuint64_t strides[3] = {spec.rows == 1 ? fallback : (cuuint64_t)spec.stride_row * elem,
                             spec.heads == 1 ? fallback : (cuuint64_t)spec.stride_head * elem,
                             spec.batch == 1 ? fallback : (cuuint64_t)spec.stride_batch * elem};
    cuuint32_t box[4] = {(cuuint32_t)(HOPPER_ROW_BYTES / spec.elem), (cuuint32_t)spec.box_rows, 1, 1};
    cuuint32_t elem_strides[4] = {1, 1, 1, 1};
    CUtensorMapDataType type = spec.elem == 1               ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                               : spec.elem == 4               ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32
                               : p->dtype == FATTN_DTYPE_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                             : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    CUresult r = encode(map, type, 4, (void *)spec.data, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return fattn_fail(FATTN_ERR_UNSUPPORTED, "Hopper kernel: cuTensorMapEncodeTiled rejected %s (CUresult %d)",
                          name, (int)r);
    return FATTN_OK;
}

/* The maps over a pre-pass's copies (FP8's e4m3, fp32's tf32; elem bytes each): Q and K rows of
 * dim elements, V^T's dim rows of keys_pad keys per (batch, kv head), read in boxes of all dim
 * rows. */
static fattn_status encode_copies(PFN_cuTensorMapEncodeTiled_v12000 encode, hopper_args *a, const fattn_params *p,
                                  const void *q, const void *k, const void *vt, int64_t dim, int64_t keys_pad, int bn,
                                  int elem)
{
    fattn_status st;
    if ((st = encode_map(encode, &a->q, p, "q copy",
                         copy_map(q, dim, p->seqlen_q, p->heads_q, p->batch, HOPPER_WG_ROWS, elem))) ||
        (st = encode_map(encode, &a->k, p, "k copy", copy_map(k, dim, p->seqlen_kv, p->heads_kv, p->batch, bn, elem))))
        return st;
    return encode_map(encode, &a->v, p, "v^t copy", copy_map(vt, keys_pad, dim, p->heads_kv, p->batch, (int)dim, elem));
}

template <int K, int D, int NWG, int BN, int STAGES, bool CAUSAL>
static fattn_status launch(const hopper_args *args, int grid, cudaStream_t stream)
{
    constexpr int smem = HOPPER_SMEM_BYTES(D, NWG, BN, STAGES, K);
    static_assert(smem <= 227 * 1024, "the tiles exceed the 227 KB of shared memory a CTA may have");
    void (*kernel)(hopper_args) = hopper_fwd_kernel<K, D, NWG, BN, STAGES, CAUSAL>;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess) {
        kernel<<<grid, (NWG + 1) * 128, smem, stream>>>(*args);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "Hopper kernel (d%d) launch failed: %s", D, cudaGetErrorString(e));
    return FATTN_OK;
}

/* The kernel of entry cfg of TABLE (NATIVE_CFGS or TF32_CFGS): one instantiation per entry, found
 * by walking the table. */
template <int K, bool CAUSAL, const auto &TABLE, size_t I = 0>
static fattn_status launch_native(const native_cfg *cfg, const hopper_args *args, int grid, cudaStream_t stream)
{
    constexpr native_cfg c = TABLE[I];
    if constexpr (I + 1 < sizeof TABLE / sizeof TABLE[0]) {
        if (cfg != &TABLE[I]) return launch_native<K, CAUSAL, TABLE, I + 1>(cfg, args, grid, stream);
    }
    return launch<K, c.d, c.nwg, c.bn, c.stages, CAUSAL>(args, grid, stream);
}

/* K: the I/O's kind, HK_BF16 or HK_F16. */
template <int K, bool CAUSAL>
static fattn_status launch_dim(const fattn_params *p, const hopper_args *args, int grid, cudaStream_t stream)
{
    /* FP8 d64 and d96 run on the d128 kernel, d192 on the d256 one: their copies are stored in 128
     * or 256 columns, zeros past head_dim (quantize.h), and O's map keeps head_dim columns, so TMA
     * drops the store of the columns past it. */
    if (p->mode == FATTN_MODE_FP8) {
        constexpr int K8 = K == HK_BF16 ? HK_E4M3_BF16 : HK_E4M3_F16;
        if (FP8_STORED_DIM(p->head_dim) == 128)
            return launch<K8, 128, CFGF8_128_NWG, CFGF8_BN, CFGF8_128_STAGES, CAUSAL>(args, grid, stream);
        return launch<K8, 256, CFGF8_NWG, CFGF8_BN, CFGF8_STAGES, CAUSAL>(args, grid, stream);
    }
    const native_cfg *c = native_config(p);
    if (in_table(c, SHORT_CFGS)) return launch_native<K, CAUSAL, SHORT_CFGS>(c, args, grid, stream);
    return launch_native<K, CAUSAL, NATIVE_CFGS>(c, args, grid, stream);
}

/* fp32: O's map keeps head_dim columns, as for FP8 d64, so the store drops the copies' padding. */
template <bool CAUSAL>
static fattn_status launch_tf32(const fattn_params *p, const hopper_args *args, int grid, cudaStream_t stream)
{
    return launch_native<HK_TF32, CAUSAL, TF32_CFGS>(native_config(p), args, grid, stream);
}

/* Where the causal tile counter (scheduler.cuh) sits: past the pre-pass's copies (copy_bytes, FP8's
 * or fp32's layout; 0 without a pre-pass), 256-byte aligned. */
static size_t counter_offset(int64_t copy_bytes)
{
    return ((size_t)copy_bytes + 255) / 256 * 256;
}

/* HOPPER_SPLIT_TAIL's pieces (two slots a CTA, at most HOPPER_SPLIT_MAX_CTAS of them, each of the
 * tallest tile any call of this head dim may take: rows_per_cta moves with seqlen_q at D 48/64, and
 * a plugin sizes the workspace at its profile's largest shapes): the offset of their outputs past
 * the counter, and their bytes with the log-sum-exps (0 where nothing is split). */
static size_t pieces_offset(const fattn_params *p, int64_t copy_bytes)
{
    return counter_offset(copy_bytes) + (p->causal ? 256 : 0);
}

/* Whether a call of these parameters may split its tail at all (plan_split's rule, without the
 * shape-dependent part). Never in FP8 mode: its definition rounds P against the running maxima of
 * the key blocks from key 0 (docs/architecture.md), which a piece starting further on does not
 * have (v17 in docs/perf-notes.md: an integer max that would make the rounding piece-invariant
 * gave up the exact P of a row's largest score). */
static bool may_split(const fattn_params *p)
{
    return HOPPER_SPLIT_TAIL && !p->causal && p->mode != FATTN_MODE_FP8 && native_config(p) != NULL;
}

static size_t pieces_bytes(const fattn_params *p)
{
    if (!may_split(p)) return 0;
    return (size_t)2 * HOPPER_SPLIT_MAX_CTAS * HOPPER_SPLIT_MAX_ROWS * (kernel_cols(p) + 1) * sizeof(float);
}

extern "C" size_t fattn_hopper_workspace_size(const fattn_params *p)
{
    const int64_t copies = p->mode == FATTN_MODE_FP8 ? fattn_fp8_layout(p).bytes : staging(p).bytes;
    return pieces_offset(p, copies) + pieces_bytes(p);
}

/* HOPPER_SPLIT_TAIL: splits the last round of a non-causal call's tiles where it has one (a tile
 * count that is not a multiple of the grid, after at least one whole round) and where the split
 * tiles' key blocks give every CTA at least two (may_split says for which calls at all). */
static void plan_split(const fattn_params *p, hopper_args *a, int grid, int bn, uint8_t *ws, size_t pieces)
{
    const int whole = a->tiles / grid * grid, left = a->tiles - whole, n_total = (a->seqlen_kv + bn - 1) / bn;
    a->ctas = grid;
    a->split_from = a->tiles;
    a->split_units = 0;
    a->piece_cols = 0;
    a->piece_o = a->piece_lse = NULL;
    const int64_t units = (int64_t)left * n_total;
    /* the key blocks the split takes off the last round, as multiply-adds of one CTA */
    const int64_t saved = (n_total - (units + grid - 1) / grid) * (int64_t)a->tile_rows * bn * kernel_cols(p);
    if (!may_split(p) || whole == 0 || left == 0 ||
        grid > HOPPER_SPLIT_MAX_CTAS || a->tile_rows > HOPPER_SPLIT_MAX_ROWS || units < 2 * (int64_t)grid ||
        units > 0x7fffffff || saved < HOPPER_SPLIT_MIN_SAVED)
        return;
    a->split_from = whole;
    a->split_units = (int)units;
    a->piece_cols = kernel_cols(p);
    a->piece_o = (float *)(ws + pieces);
    a->piece_lse = a->piece_o + (size_t)2 * grid * a->tile_rows * a->piece_cols;
}

/* Causal tiles go through the L2 in sections (scheduler.cuh): as many (batch, head) pairs, in whole
 * GQA groups, as have their K and V (kv_head_bytes each kv head, as the kernel reads them) in three
 * quarters of the L2 together; FA4's causal scheduler sizes its sections the same way. */
static int l2_section(const fattn_params *p, int64_t kv_head_bytes, int l2_bytes)
{
    const int64_t group = p->heads_q / p->heads_kv, pairs_all = p->heads_q * p->batch;
    int64_t kv_heads = (int64_t)l2_bytes / 4 * 3 / (kv_head_bytes > 0 ? kv_head_bytes : 1);
    if (kv_heads < 1) kv_heads = 1;
    return (int)(kv_heads * group < pairs_all ? kv_heads * group : pairs_all);
}

extern "C" fattn_status fattn_hopper_forward(const fattn_params *p, void *workspace, cudaStream_t stream)
{
    fattn_status st = fattn_hopper_supported(p);
    if (st != FATTN_OK) return st;

    void *fn = NULL;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess || fn == NULL) {
        cudaGetLastError();
        return fattn_fail(FATTN_ERR_CUDA, "Hopper kernel: the driver has no cuTensorMapEncodeTiled");
    }
    PFN_cuTensorMapEncodeTiled_v12000 encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;

    const int m_rows = rows_per_cta(p), bn = key_block(p);
    hopper_args args;
    args.q_factor = args.v_factor = NULL;
    args.tile_counter = NULL;
    fp8_layout l = {};
    const stage_layout sl = staging(p);
    uint8_t *ws = (uint8_t *)workspace;
    int64_t kv_head_bytes = 2 * p->seqlen_kv * p->head_dim * 2; /* K and V of one kv head */
    if (p->mode == FATTN_MODE_FP8) {
        l = fattn_fp8_layout(p);
        if ((st = encode_copies(encode, &args, p, ws + l.q8, ws + l.k8, ws + l.vt8, l.dim, l.keys_pad, bn, 1)))
            return st;
        args.q_factor = (const float *)(ws + l.q_factor);
        args.v_factor = (const float *)(ws + l.v_factor);
        kv_head_bytes = 2 * (int64_t)l.keys_pad * l.dim;
    } else if (sl.bytes > 0) {
        if ((st = encode_copies(encode, &args, p, ws + sl.q, ws + sl.k, ws + sl.vt, sl.dim, sl.keys_pad, bn, 4)))
            return st;
        kv_head_bytes = 2 * (int64_t)sl.keys_pad * sl.dim * 4;
    } else if ((st = encode_map(encode, &args.q, p, "q", io_map(p, &p->q, p->seqlen_q, p->heads_q, HOPPER_WG_ROWS))) ||
               (st = encode_map(encode, &args.k, p, "k", io_map(p, &p->k, p->seqlen_kv, p->heads_kv, bn))) ||
               (st = encode_map(encode, &args.v, p, "v", io_map(p, &p->v, p->seqlen_kv, p->heads_kv, bn))))
        return st;
    if ((st = encode_map(encode, &args.o, p, "o", io_map(p, &p->o, p->seqlen_q, p->heads_q, HOPPER_WG_ROWS))))
        return st;
    args.lse = p->lse;
    args.seqlen_q = (int)p->seqlen_q;
    args.seqlen_kv = (int)p->seqlen_kv;
    args.heads_q = (int)p->heads_q;
    args.group = (int)(p->heads_q / p->heads_kv);
    args.m_blocks = (int)((p->seqlen_q + m_rows - 1) / m_rows);
    args.scale_log2 = fattn_effective_scale(p) * 1.4426950408889634f;
    args.tiles = args.m_blocks * (int)(p->heads_q * p->batch);
    /* persistent: one CTA per multiprocessor, each walking tiles blockIdx.x, + gridDim.x, ... */
    int dev = 0, sms = 0, l2 = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) != cudaSuccess)
        return fattn_fail(FATTN_ERR_CUDA, "Hopper kernel: could not read the multiprocessor count and L2 size");
    args.section = l2_section(p, kv_head_bytes, l2);
    const int grid = args.tiles < sms ? args.tiles : sms;
    if (grid == 0) return FATTN_OK; /* no query rows: nothing to write */
    args.tile_rows = m_rows;
    plan_split(p, &args, grid, bn, ws, pieces_offset(p, p->mode == FATTN_MODE_FP8 ? l.bytes : sl.bytes));
    /* The pre-passes go last, so a call refused above has enqueued nothing. */
    if (p->mode == FATTN_MODE_FP8 && (st = fattn_fp8_quantise(p, &l, workspace, stream)) != FATTN_OK) return st;
    if (sl.bytes > 0 && (st = fattn_stage(p, &sl, workspace, stream)) != FATTN_OK) return st;
    if (p->causal) {
        args.tile_counter = (int *)(ws + counter_offset(p->mode == FATTN_MODE_FP8 ? l.bytes : sl.bytes));
        const cudaError_t e = cudaMemsetAsync(args.tile_counter, 0, sizeof(int), stream);
        if (e != cudaSuccess)
            return fattn_fail(FATTN_ERR_CUDA, "Hopper kernel: clearing the tile counter failed: %s", cudaGetErrorString(e));
    }

    if (p->dtype == FATTN_DTYPE_F32)
        st = p->causal ? launch_tf32<true>(p, &args, grid, stream) : launch_tf32<false>(p, &args, grid, stream);
    else if (p->dtype == FATTN_DTYPE_BF16)
        st = p->causal ? launch_dim<HK_BF16, true>(p, &args, grid, stream)
                       : launch_dim<HK_BF16, false>(p, &args, grid, stream);
    else
        st = p->causal ? launch_dim<HK_F16, true>(p, &args, grid, stream) : launch_dim<HK_F16, false>(p, &args, grid, stream);
    if (st != FATTN_OK) return st;
    return fattn_hopper_merge(p, &args, (args.seqlen_kv + bn - 1) / bn, stream);
}
