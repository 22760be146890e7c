/*
 * fattn: fused attention for TensorRT, PyTorch and C programs.
 *
 * The one public header of libfattn. Semantics and error rules: docs/design.md.
 *
 *   O[b,s,h,:] = softmax(scale * Q[b,s,h,:] . K[b,t,g,:]^T + mask) . V[b,t,g,:]
 *
 * with g = h / (heads_q / heads_kv) (GQA; MQA when heads_kv == 1), scale = 1/sqrt(head_dim)
 * when the given scale is 0, fp32 accumulation. Causal masking is bottom-right aligned: query i
 * sees keys t <= i + seqlen_kv - seqlen_q; a query row that sees no key outputs zeros (and its
 * log-sum-exp is -INFINITY).
 *
 * FATTN_MODE_FP8 keeps the I/O dtype and every other parameter's meaning, and computes on e4m3
 * values with fp32 accumulation (docs/architecture.md, "FP8 mode", gives the exact definition
 * that the CPU forward and the GPU kernels share):
 *   - Q and K rows are rotated along head_dim (fixed random signs, then an unnormalised
 *     Walsh-Hadamard transform over chunks of n = the largest power of two dividing head_dim),
 *     which spreads outliers over the row; V is not rotated;
 *   - scales are powers of two from amax values: Q per (batch, head, block of 64 query rows),
 *     K and V per (batch, kv head), so nothing saturates and every scaling is exact;
 *   - the probabilities are rounded as e4m3(p * 256) for P.V, the row sums use the fp32 p;
 *   - a NaN input makes the rows it reaches NaN; an Inf makes its whole Q block or K/V head's
 *     rows NaN (e4m3 has no Inf); finite inputs give finite outputs while the true logits are
 *     finite in fp32. Expected error: about 5e-2 relative L2 on N(0,1) inputs (e4m3's 3-bit
 *     mantissa), whatever the inputs' magnitude.
 *
 * Every entry point validates all of its parameters before touching memory. On failure it returns
 * a non-zero status, writes nothing to the outputs, and leaves a thread-local message naming the
 * offending field and value, readable with fattn_last_error().
 */
#ifndef FATTN_H
#define FATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FATTN_VERSION_MAJOR 0
#define FATTN_VERSION_MINOR 1
#define FATTN_VERSION_PATCH 0

#if defined(_WIN32)
#define FATTN_API
#else
#define FATTN_API __attribute__((visibility("default")))
#endif

typedef enum fattn_status {
    FATTN_OK = 0,
    FATTN_ERR_INVALID_ARGUMENT = 1, /* a parameter is out of its domain */
    FATTN_ERR_UNSUPPORTED = 2,      /* valid, but no kernel on this path serves it */
    FATTN_ERR_CUDA = 3,             /* the CUDA runtime or driver reported an error */
    FATTN_ERR_OUT_OF_MEMORY = 4,    /* a host allocation failed */
    FATTN_ERR_WORKSPACE = 5         /* the caller's workspace is smaller than required */
} fattn_status;

typedef enum fattn_dtype {
    FATTN_DTYPE_F32 = 0,
    FATTN_DTYPE_F16 = 1,
    FATTN_DTYPE_BF16 = 2
} fattn_dtype;

typedef enum fattn_mode {
    FATTN_MODE_NATIVE = 0, /* attention computed in the input precision */
    FATTN_MODE_FP8 = 1     /* Q, K, V quantised to e4m3 inside the kernel; I/O stays in dtype */
} fattn_mode;

/*
 * A strided 4-D view [batch, seq, heads, head_dim] with the head dimension contiguous.
 * Strides are in elements. BSHD, BHSD and packed QKV (B,S,3,H,D) are all such views.
 */
typedef struct fattn_tensor {
    void *data;
    int64_t stride_batch;
    int64_t stride_seq;
    int64_t stride_head;
} fattn_tensor;

typedef struct fattn_params {
    int64_t batch;
    int64_t seqlen_q;
    int64_t seqlen_kv;
    int64_t heads_q;
    int64_t heads_kv;
    int64_t head_dim;
    fattn_dtype dtype; /* of q, k, v and o alike */
    fattn_mode mode;
    int causal;  /* 0 or 1 */
    float scale; /* 0 selects 1/sqrt(head_dim) */
    fattn_tensor q, k, v; /* read only */
    fattn_tensor o;       /* written; must not overlap itself or the inputs */
    float *lse;           /* optional: fp32 [batch, heads_q, seqlen_q], contiguous; NULL to skip */
} fattn_params;

/* Name of a status code ("FATTN_ERR_UNSUPPORTED"); "FATTN_STATUS_UNKNOWN" for others. */
FATTN_API const char *fattn_status_name(fattn_status status);

/* The calling thread's message for the last failed call; "" when none has failed. */
FATTN_API const char *fattn_last_error(void);

/* Name of a dtype ("bf16"), or "unknown". */
FATTN_API const char *fattn_dtype_name(fattn_dtype dtype);

/* Bytes per element of a dtype, or 0 for an invalid one. */
FATTN_API size_t fattn_dtype_size(fattn_dtype dtype);

/* Version as MAJOR*10000 + MINOR*100 + PATCH, and as a string. */
FATTN_API int fattn_version(void);
FATTN_API const char *fattn_version_string(void);

/*
 * Checks every parameter against the semantics above (shapes, enums, head-count ratio, strides,
 * non-null pointers, output non-overlap). Touches no tensor memory.
 */
FATTN_API fattn_status fattn_validate(const fattn_params *params);

/*
 * Fills params' sizes, dtype and strides for contiguous BSHD tensors at the given pointers,
 * with mode NATIVE, scale 0, causal 0 and no LSE. A convenience for tests and demos.
 */
FATTN_API void fattn_params_bshd(fattn_params *params, int64_t batch, int64_t seqlen_q,
                                 int64_t seqlen_kv, int64_t heads_q, int64_t heads_kv,
                                 int64_t head_dim, fattn_dtype dtype, void *q, void *k, void *v,
                                 void *o);

/*
 * CPU forward, multithreaded over batch x head x query blocks. num_threads 0 picks the number of
 * CPUs this process may run on (its affinity mask). Exact to fp32 rounding. FATTN_MODE_FP8 is
 * served for every dtype and head_dim: its result is the FP8 reference the GPU's FP8 kernels
 * are held to. Results do not depend on num_threads.
 */
FATTN_API fattn_status fattn_cpu_forward(const fattn_params *params, int num_threads);

/* cudaStream_t without including CUDA's headers: both name struct CUstream_st *. */
struct CUstream_st;

/*
 * Device workspace the CUDA forward needs for these parameters (0 when none). Tensor pointers
 * are not read, so this may be called with NULL data (e.g. for a profile's maximum shapes).
 */
FATTN_API fattn_status fattn_cuda_workspace_size(const fattn_params *params, size_t *bytes);

/*
 * Whether the CUDA forward has a kernel for these parameters on the current device, without
 * launching anything: FATTN_OK, FATTN_ERR_UNSUPPORTED (message says why), or a validation error.
 * Validates like fattn_validate, pointers included: which kernel serves a call depends on the
 * tensors' alignment, so the answer holds for these addresses (no memory is read).
 */
FATTN_API fattn_status fattn_cuda_supported(const fattn_params *params);

/*
 * Whether some GPU that libfattn's CUDA kernels run on (compute capability 8.0 or newer) has a
 * kernel for these parameters, asking no device: for ahead-of-time decisions on a machine without
 * the GPU that will run the call (e.g. a TensorRT engine build on a build server). FATTN_OK means
 * such a GPU exists, not that the current one is it; fattn_cuda_supported answers for the current
 * device. FATTN_ERR_UNSUPPORTED says why no GPU would serve them. Validates like
 * fattn_cuda_supported, pointers included (alignment decides the kernel; no memory is read).
 * fattn_cuda_workspace_size is device-independent too: its size covers whichever kernel runs.
 */
FATTN_API fattn_status fattn_cuda_supported_any(const fattn_params *params);

/*
 * CUDA forward on the given stream (NULL is the legacy default stream). Tensors are device
 * pointers. Enqueues work only: no allocation, no synchronisation, safe under CUDA graph capture.
 * workspace must hold fattn_cuda_workspace_size() bytes and be 256-byte aligned (cudaMalloc's
 * pointers are); it may be NULL when that size is 0. Builds without CUDA return
 * FATTN_ERR_UNSUPPORTED.
 */
FATTN_API fattn_status fattn_cuda_forward(const fattn_params *params, void *workspace,
                                          size_t workspace_bytes, struct CUstream_st *stream);

#ifdef __cplusplus
}
#endif

#endif /* FATTN_H */
