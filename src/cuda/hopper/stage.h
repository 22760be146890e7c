/* The Hopper kernel's staging pass (stage.cu): copies of the inputs in the layout and element type
 * its TMA maps read, where the call's own tensors will not do (FP8 mode's quantisation pass is its
 * own, quantize.cu):
 *   - fp32 I/O: Q, K and V^T rounded to tf32 (tf32 wgmma reads both operands K-major);
 *   - bf16/fp16 at the kernels whose D is not a multiple of 64 (48, 80, 96): V^T alone, so that
 *     P V's B operand is K-major and its N is D itself, where an MN-major V under the 128-byte
 *     swizzle takes N only in multiples of 64. */
#ifndef FATTN_HOPPER_STAGE_H
#define FATTN_HOPPER_STAGE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fp32: the head dim of the copies, zeros past head_dim, and of the kernel that serves them:
 * every head_dim up to 64 runs on the d64 kernel, the rest up to 128 on the d128 one. */
#define TF32_STORED_DIM(D) ((D) <= 64 ? 64 : 128)
#define TF32_MAX_DIM 128
/* V^T's rows are padded with zero keys to a multiple of this (a CTA of the pass each). */
#define STAGE_KEY_BLOCK 32

/* Byte offsets into the workspace (each 256-aligned): q [batch][heads_q][seqlen_q][dim] and
 * k [batch][heads_kv][seqlen_kv][dim] (fp32 only, else -1), vt [batch][heads_kv][dim][keys_pad];
 * dim is the kernel's D, zeros past head_dim (and past seqlen_kv in vt). tf32 elements are fp32
 * rounded to the nearest tf32 (ties away from zero); bf16/fp16 elements are copied. */
typedef struct stage_layout {
    int dim, keys_pad, elem; /* elem: bytes per element, 4 (tf32) or 2 */
    int64_t q, k, vt, bytes;
} stage_layout;

/* The layout for validated parameters and the kernel's D: Q, K and V^T for fp32, V^T alone for
 * bf16/fp16. */
stage_layout fattn_stage_layout(const fattn_params *p, int dim);

/* Enqueues the pass into a workspace of at least l->bytes. */
fattn_status fattn_stage(const fattn_params *p, const stage_layout *l, void *workspace, cudaStream_t stream);

/* tf32 only: the key (within its group of 8) whose value goes to slot s of V^T. A tf32 A fragment
 * holds k = q and q + 4 for quad position q, where the accumulator of S holds columns 2q and
 * 2q + 1 (softmax.cuh, probs_to_a), so slot q holds key 2q and slot q + 4 key 2q + 1. bf16 and fp16
 * keep the keys in order: their A fragment is the accumulator's layout. */
#ifdef __CUDACC__
__host__ __device__
#endif
static inline int fattn_tf32_key_of_slot(int s)
{
    return 8 * (s / 8) + 2 * (s % 4) + (s % 8) / 4;
}

#ifdef __cplusplus
}
#endif

#endif
