/* fp32 I/O's staging pass for the Hopper kernel (stage.cu): Q, K and V^T as fp32 rounded to tf32,
 * in the layout the kernel's TMA maps read (tf32 wgmma reads both operands K-major, hence V^T),
 * written into the caller's workspace. FP8 mode's pre-pass is its own (quantize.cu). */
#ifndef FATTN_HOPPER_STAGE_H
#define FATTN_HOPPER_STAGE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* V^T's rows are padded with zero keys to a multiple of this (a CTA of the pass each). */
#define STAGE_KEY_BLOCK 32

/* Byte offsets into the workspace (each 256-aligned): q [batch][heads_q][seqlen_q][dim],
 * k [batch][heads_kv][seqlen_kv][dim], vt [batch][heads_kv][dim][keys_pad], each element an fp32
 * rounded to the nearest tf32 (ties away from zero), zeros past head_dim (and past seqlen_kv in
 * vt). */
typedef struct stage_layout {
    int dim, keys_pad;
    int64_t q, k, vt, bytes;
} stage_layout;

/* The layout for validated fp32 parameters and the kernel's D (64 or 128: hopper.cu's TF32_CFGS),
 * the copies' head dim, zeros past head_dim. */
stage_layout fattn_stage_layout(const fattn_params *p, int dim);

/* Enqueues the pass into a workspace of at least l->bytes. */
fattn_status fattn_stage(const fattn_params *p, const stage_layout *l, void *workspace, cudaStream_t stream);

/* The key (within its group of 8) whose value goes to slot s of V^T. A tf32 A fragment holds
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
