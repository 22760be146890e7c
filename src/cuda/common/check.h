/* Host-side CUDA error reporting shared by the CUDA entry points. */
#ifndef FATTN_CUDA_CHECK_H
#define FATTN_CUDA_CHECK_H

#include <cuda_runtime.h>

#include "../../core/internal.h"

/* FATTN_OK for cudaSuccess, else FATTN_ERR_CUDA with the runtime's words and what was being done. */
static inline fattn_status fattn_cuda_check(cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return FATTN_OK;
    return fattn_fail(FATTN_ERR_CUDA, "%s failed: %s (%s)", what, cudaGetErrorString(err),
                      cudaGetErrorName(err));
}

#endif
