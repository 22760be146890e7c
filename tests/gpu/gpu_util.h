/* Host helpers of the GPU test: a seeded RNG and exact fp16/bf16 <-> float conversion. */
#ifndef FATTN_GPU_UTIL_H
#define FATTN_GPU_UTIL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fattn.h"

typedef struct gpu_rng {
    uint64_t s;
} gpu_rng;

static inline void gpu_rng_seed(gpu_rng *r, uint64_t seed)
{
    r->s = seed;
}

/* splitmix64: every seed, including 0, gives a full-period stream. */
static inline uint64_t gpu_rng_next(gpu_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Approximately N(0, 1): the sum of four uniforms, recentred and scaled (Irwin-Hall). No
 * transcendental functions, so filling hundreds of millions of elements stays fast. */
static inline float gpu_rng_normal(gpu_rng *r)
{
    const uint64_t a = gpu_rng_next(r), b = gpu_rng_next(r);
    const uint32_t sum = (uint32_t)(a & 0xffffffu) + (uint32_t)((a >> 32) & 0xffffffu) +
                         (uint32_t)(b & 0xffffffu) + (uint32_t)((b >> 32) & 0xffffffu);
    return ((float)sum * 0x1.0p-24f - 2.f) * 1.7320508f;
}

static inline uint32_t gpu_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float gpu_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even; inputs here are finite. */
static inline uint16_t gpu_f32_to_bf16(float f)
{
    uint32_t u = gpu_f32_bits(f);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float gpu_bf16_to_f32(uint16_t h)
{
    return gpu_bits_f32((uint32_t)h << 16);
}

static inline float gpu_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const int exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0x1f)
        return gpu_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) /* subnormal or zero: man * 2^-24 */
        return (sign ? -1.f : 1.f) * (float)man * 0x1.0p-24f;
    return gpu_bits_f32(sign | ((uint32_t)(exp - 15 + 127) << 23) | (man << 13));
}

/* Round to nearest even. Normal results: rebias the exponent and let the rounding carry run
 * into it (a carry out of the largest finite value gives infinity, as it should). */
static inline uint16_t gpu_f32_to_f16(float f)
{
    uint32_t x = gpu_f32_bits(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u)
        return sign | 0x7e00u;
    if (x >= 0x47800000u)
        return sign | 0x7c00u;
    if (x < 0x38800000u) /* below 2^-14: a multiple of 2^-24, rintf rounds ties to even */
        return sign | (uint16_t)rintf(gpu_bits_f32(x) * 0x1.0p24f);
    x += 0xc8000fffu + ((x >> 13) & 1u);
    return sign | (uint16_t)(x >> 13);
}

/* The value f takes once stored in dtype dt. */
static inline float gpu_round(fattn_dtype dt, float f)
{
    switch (dt) {
    case FATTN_DTYPE_BF16: return gpu_bf16_to_f32(gpu_f32_to_bf16(f));
    case FATTN_DTYPE_F16: return gpu_f16_to_f32(gpu_f32_to_f16(f));
    default: return f;
    }
}

static inline void gpu_store(fattn_dtype dt, void *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == FATTN_DTYPE_F32)
            ((float *)dst)[i] = src[i];
        else {
            uint16_t h = dt == FATTN_DTYPE_BF16 ? gpu_f32_to_bf16(src[i]) : gpu_f32_to_f16(src[i]);
            memcpy((char *)dst + 2 * i, &h, 2);
        }
    }
}

static inline void gpu_load(fattn_dtype dt, const void *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == FATTN_DTYPE_F32)
            memcpy(&dst[i], (const char *)src + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)src + 2 * i, 2);
            dst[i] = dt == FATTN_DTYPE_BF16 ? gpu_bf16_to_f32(h) : gpu_f16_to_f32(h);
        }
    }
}

#endif
