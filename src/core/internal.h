/* Helpers shared by libfattn's C core, CPU path and CUDA host code. Not installed. */
#ifndef FATTN_INTERNAL_H
#define FATTN_INTERNAL_H

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FATTN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FATTN_PRINTF(f, a)
#endif

/* Records a message for fattn_last_error() on this thread and returns status, so that callers can
 * write `return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "heads_q (%lld) ...", ...)`. */
fattn_status fattn_fail(fattn_status status, const char *fmt, ...) FATTN_PRINTF(2, 3);

/* Empties this thread's message; entry points call it on success. */
void fattn_clear_error(void);

/* The largest head_dim any path accepts. */
#define FATTN_HEAD_DIM_MAX 256

/* fattn_validate without the pointer checks (non-null, alignment, overlap between buffers): for
 * queries that take sizes only, such as fattn_cuda_workspace_size. The output's self-overlap is
 * a stride rule and is checked here. */
fattn_status fattn_validate_shape(const fattn_params *params);

/* 1/sqrt(head_dim) when params->scale is 0, else params->scale. */
float fattn_effective_scale(const fattn_params *params);

#ifdef __cplusplus
}
#endif

#endif
