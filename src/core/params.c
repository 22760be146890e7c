#include <math.h>
#include <string.h>

#include "internal.h"

static fattn_tensor bshd_view(void *data, int64_t seqlen, int64_t heads, int64_t head_dim)
{
    fattn_tensor t;
    t.data = data;
    t.stride_head = head_dim;
    t.stride_seq = heads * head_dim;
    t.stride_batch = seqlen * heads * head_dim;
    return t;
}

void fattn_params_bshd(fattn_params *params, int64_t batch, int64_t seqlen_q, int64_t seqlen_kv,
                       int64_t heads_q, int64_t heads_kv, int64_t head_dim, fattn_dtype dtype,
                       void *q, void *k, void *v, void *o)
{
    if (!params)
        return;
    memset(params, 0, sizeof *params);
    params->batch = batch;
    params->seqlen_q = seqlen_q;
    params->seqlen_kv = seqlen_kv;
    params->heads_q = heads_q;
    params->heads_kv = heads_kv;
    params->head_dim = head_dim;
    params->dtype = dtype;
    params->mode = FATTN_MODE_NATIVE;
    params->q = bshd_view(q, seqlen_q, heads_q, head_dim);
    params->k = bshd_view(k, seqlen_kv, heads_kv, head_dim);
    params->v = bshd_view(v, seqlen_kv, heads_kv, head_dim);
    params->o = bshd_view(o, seqlen_q, heads_q, head_dim);
}

float fattn_effective_scale(const fattn_params *params)
{
    if (params->scale != 0.0f)
        return params->scale;
    return (float)(1.0 / sqrt((double)params->head_dim));
}
