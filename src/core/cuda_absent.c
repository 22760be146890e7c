/* The CUDA entry points of a build without CUDA: they validate, then say why they cannot run. */
#include "internal.h"

#define NO_CUDA_MESSAGE "this build of libfattn has no CUDA support (built without nvcc)"

fattn_status fattn_cuda_workspace_size(const fattn_params *params, size_t *bytes)
{
    if (!bytes)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "bytes (NULL) must point to a size_t");
    fattn_status st = fattn_validate_shape(params);
    if (st)
        return st;
    return fattn_fail(FATTN_ERR_UNSUPPORTED, NO_CUDA_MESSAGE);
}

/* Pointers are validated too, as the CUDA build does (fattn.h): the same call gives the same
 * validation error with or without CUDA. */
fattn_status fattn_cuda_supported(const fattn_params *params)
{
    fattn_status st = fattn_validate(params);
    if (st)
        return st;
    return fattn_fail(FATTN_ERR_UNSUPPORTED, NO_CUDA_MESSAGE);
}

fattn_status fattn_cuda_supported_any(const fattn_params *params)
{
    fattn_status st = fattn_validate(params);
    if (st)
        return st;
    return fattn_fail(FATTN_ERR_UNSUPPORTED, NO_CUDA_MESSAGE);
}

fattn_status fattn_cuda_forward(const fattn_params *params, void *workspace,
                                size_t workspace_bytes, struct CUstream_st *stream)
{
    (void)workspace;
    (void)workspace_bytes;
    (void)stream;
    fattn_status st = fattn_validate(params);
    if (st)
        return st;
    return fattn_fail(FATTN_ERR_UNSUPPORTED, NO_CUDA_MESSAGE);
}
