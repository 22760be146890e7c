/* The FA3-class Hopper (sm90a) forward: entry points used by the CUDA dispatcher (src/cuda/forward.cu).
 * C-style and C-callable; the dispatcher falls back to the portable kernel whenever
 * fattn_hopper_supported says FATTN_ERR_UNSUPPORTED. */
#ifndef FATTN_HOPPER_H
#define FATTN_HOPPER_H

#include <cuda_runtime.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Hopper kernel's rules for these (already validated) parameters, asking no device: FATTN_OK
 * when an sm_90 GPU would run them on this kernel, else FATTN_ERR_UNSUPPORTED with the reason. */
fattn_status fattn_hopper_serves(const fattn_params *p);

/* FATTN_OK when the Hopper kernel serves these (already validated) parameters on the current device,
 * else FATTN_ERR_UNSUPPORTED with a message saying why (dtype, head dim, alignment, architecture). */
fattn_status fattn_hopper_supported(const fattn_params *p);

/* Device workspace the Hopper forward needs: FP8 mode's e4m3 copies and factors, fp32's tf32 copies,
 * a causal call's tile counter, and in a build with HOPPER_SPLIT_TAIL a non-causal call's split
 * pieces; 0 for a non-causal bf16/fp16 call otherwise. */
size_t fattn_hopper_workspace_size(const fattn_params *p);

/* Enqueues the Hopper forward on stream, with a 256-byte aligned workspace of at least
 * fattn_hopper_workspace_size(p) bytes. Callers check fattn_hopper_supported first. */
fattn_status fattn_hopper_forward(const fattn_params *p, void *workspace, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
