/* Status names, dtype facts and the thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

/* Long enough for any message fattn composes (field name, two int64 values, a reason). */
#define FATTN_MESSAGE_CAPACITY 512

static _Thread_local char last_message[FATTN_MESSAGE_CAPACITY];

fattn_status fattn_fail(fattn_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, args);
    va_end(args);
    return status;
}

void fattn_clear_error(void)
{
    last_message[0] = '\0';
}

const char *fattn_last_error(void)
{
    return last_message;
}

const char *fattn_status_name(fattn_status status)
{
    switch (status) {
    case FATTN_OK:
        return "FATTN_OK";
    case FATTN_ERR_INVALID_ARGUMENT:
        return "FATTN_ERR_INVALID_ARGUMENT";
    case FATTN_ERR_UNSUPPORTED:
        return "FATTN_ERR_UNSUPPORTED";
    case FATTN_ERR_CUDA:
        return "FATTN_ERR_CUDA";
    case FATTN_ERR_OUT_OF_MEMORY:
        return "FATTN_ERR_OUT_OF_MEMORY";
    case FATTN_ERR_WORKSPACE:
        return "FATTN_ERR_WORKSPACE";
    }
    return "FATTN_STATUS_UNKNOWN";
}

const char *fattn_dtype_name(fattn_dtype dtype)
{
    switch (dtype) {
    case FATTN_DTYPE_F32:
        return "f32";
    case FATTN_DTYPE_F16:
        return "f16";
    case FATTN_DTYPE_BF16:
        return "bf16";
    }
    return "unknown";
}

size_t fattn_dtype_size(fattn_dtype dtype)
{
    switch (dtype) {
    case FATTN_DTYPE_F32:
        return 4;
    case FATTN_DTYPE_F16:
    case FATTN_DTYPE_BF16:
        return 2;
    }
    return 0;
}
