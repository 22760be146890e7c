/* FP8 mode's quantisation pass for the Hopper kernel (quantize.cu): where its outputs live in the
 * caller's workspace, and the entry point that fills them. */
#ifndef FATTN_HOPPER_QUANTIZE_H
#define FATTN_HOPPER_QUANTIZE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP8_Q_BLOCK FATTN_FP8_Q_BLOCK
#define FP8_V_SHIFT FATTN_FP8_V_SHIFT

/* Byte offsets into the workspace (each 256-aligned) and the sizes the kernels index with:
 * q8 [batch][heads_q][seqlen_q][D], k8 [batch][heads_kv][seqlen_kv][D] and vt8
 * [batch][heads_kv][D][keys_pad] in e4m3; amax (K's then V's, as float bits); q_factor
 * [batch][heads_q][q_blocks] and v_factor [batch][heads_kv] in fp32. */
typedef struct fp8_layout {
    int seqlen_q, seqlen_kv, heads_q, heads_kv, group, q_blocks, keys_pad;
    int64_t q8, k8, vt8, amax, q_factor, v_factor, bytes;
} fp8_layout;

fp8_layout fattn_fp8_layout(const fattn_params *p);

/* Enqueues the pass for validated bf16/fp16 parameters with head_dim 128 or 256 into a
 * workspace of at least fattn_fp8_layout(p).bytes. */
fattn_status fattn_fp8_quantise(const fattn_params *p, const fp8_layout *l, void *workspace, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
