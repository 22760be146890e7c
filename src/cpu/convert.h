/* fp16/bf16 <-> fp32 conversions, round-to-nearest-even, branch-free enough to vectorise. */
#ifndef FATTN_CPU_CONVERT_H
#define FATTN_CPU_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "fattn.h"

static inline float fattn_bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t fattn_f32_to_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static inline float fattn_bf16_to_f32(uint16_t h)
{
    return fattn_bits_to_f32((uint32_t)h << 16);
}

static inline uint16_t fattn_f32_to_bf16(float f)
{
    uint32_t x = fattn_f32_to_bits(f);
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    /* A NaN keeps its sign and becomes quiet; rounding could otherwise carry it into Inf. */
    uint32_t nan = (x >> 16) | 0x40u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

static inline float fattn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    /* Shifting exponent+mantissa into place and multiplying by 2^(127-15) rebiases normals and
     * normalises subnormals exactly; Inf and NaN need their exponent forced to all ones. */
    float finite = fattn_bits_to_f32(em << 13) * 0x1p112f;
    uint32_t special = 0x7f800000u | (em << 13);
    uint32_t mag = em >= 0x7c00u ? special : fattn_f32_to_bits(finite);
    return fattn_bits_to_f32(mag | sign);
}

static inline uint16_t fattn_f32_to_f16(float f)
{
    uint32_t x = fattn_f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7fffffffu;
    uint32_t h;
    if (a > 0x7f800000u)
        h = 0x7e00u;
    else if (a >= 0x477ff000u) /* 65520 and above round to Inf */
        h = 0x7c00u;
    else if (a >= 0x38800000u) /* fp16 normals: rebias by 127-15, round on the dropped 13 bits */
        h = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    else /* subnormals and zero: adding 0.5 lines the value up on fp16's 2^-24 grid, RNE */
        h = fattn_f32_to_bits(fattn_bits_to_f32(a) + 0.5f) - 0x3f000000u;
    return (uint16_t)(h | sign);
}

/* n elements of a row of dtype at base + offset (elements) to fp32, and back with RNE. */
static inline void fattn_load_row(const void *base, int64_t offset, fattn_dtype dtype, int64_t n, float *dst)
{
    if (dtype == FATTN_DTYPE_F32) {
        memcpy(dst, (const float *)base + offset, (size_t)n * sizeof(float));
    } else if (dtype == FATTN_DTYPE_F16) {
        const uint16_t *src = (const uint16_t *)base + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = fattn_f16_to_f32(src[i]);
    } else {
        const uint16_t *src = (const uint16_t *)base + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = fattn_bf16_to_f32(src[i]);
    }
}

static inline void fattn_store_row(void *base, int64_t offset, fattn_dtype dtype, int64_t n, const float *src)
{
    if (dtype == FATTN_DTYPE_F32) {
        memcpy((float *)base + offset, src, (size_t)n * sizeof(float));
    } else if (dtype == FATTN_DTYPE_F16) {
        uint16_t *dst = (uint16_t *)base + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = fattn_f32_to_f16(src[i]);
    } else {
        uint16_t *dst = (uint16_t *)base + offset;
        for (int64_t i = 0; i < n; i++)
            dst[i] = fattn_f32_to_bf16(src[i]);
    }
}

#endif
