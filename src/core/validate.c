/*
 * Parameter validation shared by every entry point.
 *
 * Accepted views: sizes 1..2^31-1 (head_dim 1..256), strides >= 0 in elements, each view's
 * byte span representable in int64. Inputs may alias each other and themselves (packed QKV,
 * stride-0 broadcast). The output must not overlap itself: its dimensions of extent > 1, taken
 * in increasing stride order, must each step past everything spanned by the dimensions inside
 * it (head_dim elements for the innermost). That accepts every dense permutation with or
 * without padding and rejects a few exotic interleavings that would not overlap. The output and
 * the LSE buffer must not share a byte with any input or with each other.
 */
#include <inttypes.h>
#include <math.h>

#include "internal.h"

#define FATTN_EXTENT_MAX INT32_MAX

static fattn_status check_extent(const char *field, int64_t value)
{
    if (value < 1)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "%s (%" PRId64 ") must be at least 1",
                          field, value);
    if (value > FATTN_EXTENT_MAX)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "%s (%" PRId64 ") exceeds %d", field,
                          value, FATTN_EXTENT_MAX);
    return FATTN_OK;
}

typedef struct view_dim {
    const char *stride_name;
    int64_t extent;
    int64_t stride;
} view_dim;

/* Row of the per-view name tables below: q, k, v, o. */
static int view_index(char which)
{
    return which == 'q' ? 0 : which == 'k' ? 1 : which == 'v' ? 2 : 3;
}

static void view_dims(const fattn_params *p, char which, const fattn_tensor *t, view_dim d[3])
{
    int64_t seqlen = which == 'q' || which == 'o' ? p->seqlen_q : p->seqlen_kv;
    int64_t heads = which == 'q' || which == 'o' ? p->heads_q : p->heads_kv;
    static const char *const names[4][3] = {
        {"q.stride_batch", "q.stride_seq", "q.stride_head"},
        {"k.stride_batch", "k.stride_seq", "k.stride_head"},
        {"v.stride_batch", "v.stride_seq", "v.stride_head"},
        {"o.stride_batch", "o.stride_seq", "o.stride_head"},
    };
    int row = view_index(which);
    d[0] = (view_dim){names[row][0], p->batch, t->stride_batch};
    d[1] = (view_dim){names[row][1], seqlen, t->stride_seq};
    d[2] = (view_dim){names[row][2], heads, t->stride_head};
}

/* Elements from the view's first to one past its last element, or -1 if that overflows the
 * byte range of int64. Strides are already known to be non-negative. */
static int64_t view_span(const view_dim d[3], int64_t head_dim, size_t elem)
{
    int64_t span = head_dim;
    for (int i = 0; i < 3; i++) {
        int64_t step;
        if (__builtin_mul_overflow(d[i].extent - 1, d[i].stride, &step) ||
            __builtin_add_overflow(span, step, &span))
            return -1;
    }
    int64_t bytes;
    if (__builtin_mul_overflow(span, (int64_t)elem, &bytes))
        return -1;
    return span;
}

static fattn_status check_view_strides(const fattn_params *p, char which, const fattn_tensor *t)
{
    view_dim d[3];
    view_dims(p, which, t, d);
    for (int i = 0; i < 3; i++)
        if (d[i].stride < 0)
            return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "%s (%" PRId64 ") must not be negative",
                              d[i].stride_name, d[i].stride);
    if (view_span(d, p->head_dim, fattn_dtype_size(p->dtype)) < 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT,
                          "%c view (strides %" PRId64 ", %" PRId64 ", %" PRId64
                          ") spans more bytes than int64 can address",
                          which, d[0].stride, d[1].stride, d[2].stride);
    return FATTN_OK;
}

static fattn_status check_output_self_overlap(const fattn_params *p)
{
    view_dim d[3];
    view_dims(p, 'o', &p->o, d);
    /* Insertion sort of three by stride; dims of extent 1 never step and are skipped. */
    for (int i = 1; i < 3; i++)
        for (int j = i; j > 0 && d[j].stride < d[j - 1].stride; j--) {
            view_dim tmp = d[j];
            d[j] = d[j - 1];
            d[j - 1] = tmp;
        }
    int64_t span = p->head_dim;
    for (int i = 0; i < 3; i++) {
        if (d[i].extent == 1)
            continue;
        if (d[i].stride < span)
            return fattn_fail(FATTN_ERR_INVALID_ARGUMENT,
                              "%s (%" PRId64 ") is smaller than the %" PRId64
                              " elements it must step over, so the output overlaps itself",
                              d[i].stride_name, d[i].stride, span);
        span += d[i].stride * (d[i].extent - 1);
    }
    return FATTN_OK;
}

fattn_status fattn_validate_shape(const fattn_params *p)
{
    if (!p)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "params is NULL");
    fattn_status st;
    if ((st = check_extent("batch", p->batch)) || (st = check_extent("seqlen_q", p->seqlen_q)) ||
        (st = check_extent("seqlen_kv", p->seqlen_kv)) ||
        (st = check_extent("heads_q", p->heads_q)) || (st = check_extent("heads_kv", p->heads_kv)))
        return st;
    if (p->head_dim < 1 || p->head_dim > FATTN_HEAD_DIM_MAX)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "head_dim (%" PRId64 ") is outside 1..%d",
                          p->head_dim, FATTN_HEAD_DIM_MAX);
    if (p->heads_q % p->heads_kv != 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT,
                          "heads_q (%" PRId64 ") is not a multiple of heads_kv (%" PRId64 ")",
                          p->heads_q, p->heads_kv);
    if (fattn_dtype_size(p->dtype) == 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "dtype (%d) is not a fattn_dtype",
                          (int)p->dtype);
    if (p->mode != FATTN_MODE_NATIVE && p->mode != FATTN_MODE_FP8)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "mode (%d) is not a fattn_mode",
                          (int)p->mode);
    if (p->causal != 0 && p->causal != 1)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "causal (%d) must be 0 or 1", p->causal);
    if (!isfinite(p->scale))
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "scale (%g) must be finite",
                          (double)p->scale);
    if ((st = check_view_strides(p, 'q', &p->q)) || (st = check_view_strides(p, 'k', &p->k)) ||
        (st = check_view_strides(p, 'v', &p->v)) || (st = check_view_strides(p, 'o', &p->o)))
        return st;
    return check_output_self_overlap(p);
}

typedef struct byte_range {
    const char *name;
    uintptr_t begin, end;
} byte_range;

static byte_range tensor_range(const fattn_params *p, char which, const fattn_tensor *t)
{
    view_dim d[3];
    view_dims(p, which, t, d);
    size_t elem = fattn_dtype_size(p->dtype);
    uintptr_t begin = (uintptr_t)t->data;
    static const char *const names[] = {"q", "k", "v", "o"};
    return (byte_range){names[view_index(which)], begin,
                        begin + (uintptr_t)view_span(d, p->head_dim, elem) * elem};
}

static int ranges_overlap(byte_range a, byte_range b)
{
    return a.begin < b.end && b.begin < a.end;
}

static fattn_status check_pointer(const char *name, const void *ptr, size_t align, const char *why)
{
    if (!ptr)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "%s is NULL", name);
    if ((uintptr_t)ptr % align != 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "%s (%p) is not aligned to %zu bytes (%s)",
                          name, ptr, align, why);
    return FATTN_OK;
}

fattn_status fattn_validate(const fattn_params *p)
{
    fattn_status st = fattn_validate_shape(p);
    if (st)
        return st;
    size_t elem = fattn_dtype_size(p->dtype);
    const char *dt = fattn_dtype_name(p->dtype);
    if ((st = check_pointer("q.data", p->q.data, elem, dt)) ||
        (st = check_pointer("k.data", p->k.data, elem, dt)) ||
        (st = check_pointer("v.data", p->v.data, elem, dt)) ||
        (st = check_pointer("o.data", p->o.data, elem, dt)))
        return st;
    if (p->lse && (uintptr_t)p->lse % sizeof(float) != 0)
        return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "lse (%p) is not aligned to 4 bytes (f32)",
                          (void *)p->lse);

    byte_range out = tensor_range(p, 'o', &p->o);
    byte_range ins[3] = {tensor_range(p, 'q', &p->q), tensor_range(p, 'k', &p->k),
                         tensor_range(p, 'v', &p->v)};
    for (int i = 0; i < 3; i++)
        if (ranges_overlap(out, ins[i]))
            return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "o.data (%p) overlaps %s.data (%p)",
                              (void *)out.begin, ins[i].name, (void *)ins[i].begin);
    if (p->lse) {
        uintptr_t begin = (uintptr_t)p->lse;
        /* Each extent is below 2^31, so their product can still overflow. */
        int64_t count, bytes;
        if (__builtin_mul_overflow(p->batch, p->heads_q, &count) ||
            __builtin_mul_overflow(count, p->seqlen_q, &count) ||
            __builtin_mul_overflow(count, (int64_t)sizeof(float), &bytes))
            return fattn_fail(FATTN_ERR_INVALID_ARGUMENT,
                              "lse size (batch %" PRId64 " * heads_q %" PRId64 " * seqlen_q %" PRId64
                              " floats) overflows int64",
                              p->batch, p->heads_q, p->seqlen_q);
        byte_range lse = {"lse", begin, begin + (uintptr_t)bytes};
        if (ranges_overlap(lse, out))
            return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "lse (%p) overlaps o.data (%p)",
                              (void *)lse.begin, (void *)out.begin);
        for (int i = 0; i < 3; i++)
            if (ranges_overlap(lse, ins[i]))
                return fattn_fail(FATTN_ERR_INVALID_ARGUMENT, "lse (%p) overlaps %s.data (%p)",
                                  (void *)lse.begin, ins[i].name, (void *)ins[i].begin);
    }
    fattn_clear_error();
    return FATTN_OK;
}
