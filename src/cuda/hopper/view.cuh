/* A caller's tensor (fattn_tensor) as the pre-passes (quantize.cu, stage.cu) read it with ordinary
 * loads: any strides, the head dim contiguous; 16-bit elements may travel as their bits. */
#ifndef FATTN_HOPPER_VIEW_CUH
#define FATTN_HOPPER_VIEW_CUH

#include <stdint.h>

#include "fattn.h"

template <typename T> struct view {
    const T *data;
    int64_t sb, ss, sh;
    __device__ const T *row(int64_t b, int64_t s, int64_t h) const { return data + b * sb + s * ss + h * sh; }
};

template <typename T> static view<T> make_view(const fattn_tensor *t)
{
    return view<T>{(const T *)t->data, t->stride_batch, t->stride_seq, t->stride_head};
}

#endif
