/* The portable (sm80+) CUDA forward, as seen by the dispatcher in src/cuda/forward.cu. */
#ifndef FATTN_PORTABLE_H
#define FATTN_PORTABLE_H

#include <cuda_runtime.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device workspace the portable path needs: fp32 inputs are staged as bf16 copies, the other
 * dtypes need none. Pure function of the sizes. */
size_t fattn_portable_workspace_size(const fattn_params *p);

/* FATTN_OK when the portable kernel serves these validated parameters on `device`, else
 * FATTN_ERR_UNSUPPORTED (or FATTN_ERR_CUDA when the device cannot be queried) with a message. */
fattn_status fattn_portable_supported(const fattn_params *p, int device);

/* The same rules asking no device: FATTN_OK when some GPU of compute capability 8.0 or newer
 * would run these validated parameters on the portable kernel, else FATTN_ERR_UNSUPPORTED. */
fattn_status fattn_portable_serves(const fattn_params *p);

/* Enqueues the portable forward; callers check fattn_portable_supported and the workspace. */
fattn_status fattn_portable_forward(const fattn_params *p, void *workspace, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
