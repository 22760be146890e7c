/* FP8 mode's quantisation pass for the Hopper kernel (quantize.cu): where its outputs live in the
 * caller's workspace, and the entry point that fills them. Also read by the GPU test that checks
 * the pass's bytes (tests/gpu/test_gpu_fp8_pass.c). */
#ifndef FATTN_HOPPER_QUANTIZE_H
#define FATTN_HOPPER_QUANTIZE_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "../../core/fp8.h"
#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FP8_Q_BLOCK FATTN_FP8_Q_BLOCK
#define FP8_V_SHIFT FATTN_FP8_V_SHIFT

/* The head dim of the e4m3 copies: head_dim 64 and 96 are stored in 128 columns, 192 in 256
 * (zeros past head_dim), so the d128 and d256 FP8 kernels serve them; their quantisation (rotation
 * chunk, c, factors) stays head_dim's own. */
#define FP8_STORED_DIM(D) ((D) <= 128 ? 128 : 256)

/* Byte offsets into the workspace (each 256-aligned) and the sizes the kernels index with:
 * q8 [batch][heads_q][seqlen_q][dim], k8 [batch][heads_kv][seqlen_kv][dim] and vt8
 * [batch][heads_kv][dim][keys_pad] in e4m3, dim = FP8_STORED_DIM(head_dim); amax (K's then V's,
 * as float bits); q_factor [batch][heads_q][q_blocks] and v_factor [batch][heads_kv] in fp32. */
typedef struct fp8_layout {
    int seqlen_q, seqlen_kv, heads_q, heads_kv, group, q_blocks, keys_pad, dim;
    int64_t q8, k8, vt8, amax, q_factor, v_factor, bytes;
} fp8_layout;

fp8_layout fattn_fp8_layout(const fattn_params *p);

/* Enqueues the pass for validated bf16/fp16 parameters with head_dim 64, 96, 128, 192 or 256 into a
 * workspace of at least fattn_fp8_layout(p).bytes. */
fattn_status fattn_fp8_quantise(const fattn_params *p, const fp8_layout *l, void *workspace, cudaStream_t stream);

/* The key whose value goes to slot L (0..31) of a 32-key group of V^T: the kernel packs, for its
 * quad position q, accumulator columns 2q, 2q+1, 2q+8, 2q+9 into A-fragment slots 4q..4q+3 (and
 * the same 16 further on), so slot 16h + 4q + i must hold key 16h + 2q + (i & 1) + 8 (i >> 1). */
FATTN_FP8_HD int fattn_fp8_key_of_slot(int slot)
{
    const int half = slot / 16, q = (slot % 16) / 4, i = slot % 4;
    return 16 * half + 2 * q + (i & 1) + 8 * (i >> 1);
}

#ifdef __cplusplus
}
#endif

#endif
