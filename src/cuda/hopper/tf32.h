/* fp32 I/O's staging pass for the Hopper kernel (tf32.cu): where its tf32 copies of Q, K and V^T
 * live in the caller's workspace, and the entry point that writes them. */
#ifndef FATTN_HOPPER_TF32_H
#define FATTN_HOPPER_TF32_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The head dim of the copies, zeros past head_dim, and of the kernel that serves them: every
 * head_dim up to 64 runs on the d64 kernel, the rest up to 128 on the d128 one. */
#define TF32_STORED_DIM(D) ((D) <= 64 ? 64 : 128)
#define TF32_MAX_DIM 128
/* V^T's rows are padded with zero keys to a multiple of this (a CTA of the pass each). */
#define TF32_KEY_BLOCK 32

/* Byte offsets into the workspace (each 256-aligned): q [batch][heads_q][seqlen_q][dim],
 * k [batch][heads_kv][seqlen_kv][dim], vt [batch][heads_kv][dim][keys_pad], each element an fp32
 * rounded to tf32 (nearest, ties away from zero), dim = TF32_STORED_DIM(head_dim). */
typedef struct tf32_layout {
    int dim, keys_pad;
    int64_t q, k, vt, bytes;
} tf32_layout;

tf32_layout fattn_tf32_layout(const fattn_params *p);

/* Enqueues the pass for validated fp32 parameters with head_dim <= TF32_MAX_DIM into a workspace
 * of at least fattn_tf32_layout(p).bytes. */
fattn_status fattn_tf32_stage(const fattn_params *p, const tf32_layout *l, void *workspace, cudaStream_t stream);

/* The key (within its group of 8) whose value goes to slot s of V^T: a tf32 A fragment holds
 * k = q and q + 4 for quad position q, where the accumulator of S holds columns 2q and 2q + 1
 * (softmax.cuh, probs_to_a), so slot q holds key 2q and slot q + 4 key 2q + 1. */
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
