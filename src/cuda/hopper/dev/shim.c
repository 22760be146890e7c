/* Development-only stand-ins for libfattn's core, so the Hopper kernel can be checked before the
 * library's other parts land. Deleted once tests/gpu drives the real library. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "../../../core/internal.h"

static _Thread_local char message[512];

fattn_status fattn_fail(fattn_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return status;
}

const char *fattn_last_error(void) { return message; }

float fattn_effective_scale(const fattn_params *p)
{
    return p->scale != 0.0f ? p->scale : 1.0f / sqrtf((float)p->head_dim);
}

const char *fattn_dtype_name(fattn_dtype d)
{
    return d == FATTN_DTYPE_BF16 ? "bf16" : d == FATTN_DTYPE_F16 ? "fp16" : d == FATTN_DTYPE_F32 ? "fp32" : "unknown";
}
