/* CUDA entry points of fattn.h: validation, device query, and the choice between the Hopper
 * kernel and the portable one. Host code only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "../core/internal.h"
#include "common/check.h"
#include "hopper/hopper.h"
#include "portable/portable.h"

/* FATTN_FORCE_PORTABLE=1 sends sm90 work to the portable kernel (tests run both paths on one
 * card). Read once; concurrent first calls race benignly, all storing the same value. */
static int fattn_force_portable(void)
{
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (v < 0) {
        const char *env = getenv("FATTN_FORCE_PORTABLE");
        v = env != NULL && env[0] != '\0' && strcmp(env, "0") != 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELEASE);
    }
    return v;
}

typedef enum { FATTN_PATH_PORTABLE, FATTN_PATH_HOPPER } fattn_path;

/* Picks the kernel for validated parameters on the current device. The device is queried per
 * call (cudaGetDevice and attribute reads are cheap), so there is no per-device cache to guard. */
static fattn_status fattn_choose(const fattn_params *p, fattn_path *path)
{
    int device = 0, major = 0;
    fattn_status st;
    if ((st = fattn_cuda_check(cudaGetDevice(&device), "cudaGetDevice")))
        return st;
    if ((st = fattn_cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                               "cudaDeviceGetAttribute(compute capability)")))
        return st;
    if (major == 9 && !fattn_force_portable() && fattn_hopper_supported(p) == FATTN_OK) {
        *path = FATTN_PATH_HOPPER;
        return FATTN_OK;
    }
    *path = FATTN_PATH_PORTABLE;
    return fattn_portable_supported(p, device);
}

/* Validation then the choice of kernel: what fattn_cuda_supported answers and
 * fattn_cuda_forward acts on. */
static fattn_status fattn_prepare(const fattn_params *p, fattn_path *path)
{
    fattn_status st = fattn_validate(p);
    if (st)
        return st;
    return fattn_choose(p, path);
}

extern "C" fattn_status fattn_cuda_workspace_size(const fattn_params *params, size_t *bytes)
{
    if (bytes == NULL)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "bytes (NULL) must point to a size_t");
    if (params == NULL)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "params (NULL) must point to fattn_params");
    /* Sizes only: tensor pointers may be NULL here (a profile's maximum shapes). */
    fattn_status st = fattn_validate_shape(params);
    if (st)
        return st;
    /* Shapes only, so the most any kernel could need: the portable kernel's, or FP8 mode's
     * quantised copies on the Hopper path. */
    const size_t portable = fattn_portable_workspace_size(params), hopper = fattn_hopper_workspace_size(params);
    *bytes = portable > hopper ? portable : hopper;
    fattn_clear_error();
    return FATTN_OK;
}

extern "C" fattn_status fattn_cuda_supported(const fattn_params *params)
{
    fattn_path path;
    fattn_status st = fattn_prepare(params, &path);
    if (st == FATTN_OK)
        fattn_clear_error();
    return st;
}

extern "C" fattn_status fattn_cuda_supported_any(const fattn_params *params)
{
    fattn_status st = fattn_validate(params);
    if (st)
        return st;
    char hopper[256], portable[256];
    if ((st = fattn_hopper_serves(params)) != FATTN_OK) {
        snprintf(hopper, sizeof hopper, "%s", fattn_last_error());
        st = fattn_portable_serves(params);
    }
    if (st == FATTN_OK) {
        fattn_clear_error();
        return FATTN_OK;
    }
    /* Both kernels' reasons: neither serves every call the other does (FP8 is Hopper's alone). */
    snprintf(portable, sizeof portable, "%s", fattn_last_error());
    return fattn_fail(st, "%s; %s", portable, hopper);
}

extern "C" fattn_status fattn_cuda_forward(const fattn_params *params, void *workspace,
                                          size_t workspace_bytes, struct CUstream_st *stream)
{
    fattn_path path;
    fattn_status st = fattn_prepare(params, &path);
    if (st)
        return st;
    const size_t need = path == FATTN_PATH_HOPPER ? fattn_hopper_workspace_size(params)
                                                  : fattn_portable_workspace_size(params);
    if (workspace_bytes < need)
        return fattn_fail(FATTN_ERR_WORKSPACE,
                          "workspace_bytes (%zu) is smaller than the %zu bytes this call needs "
                          "(see fattn_cuda_workspace_size)",
                          workspace_bytes, need);
    if (need > 0 && (workspace == NULL || ((uintptr_t)workspace % 256) != 0))
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT,
                          "workspace (%p) must be a non-NULL, 256-byte aligned device pointer "
                          "when %zu bytes are needed",
                          workspace, need);
    if (path == FATTN_PATH_HOPPER)
        st = fattn_hopper_forward(params, workspace, stream);
    else
        st = fattn_portable_forward(params, workspace, stream);
    if (st == FATTN_OK)
        fattn_clear_error();
    return st;
}
