/* FP8 mode's quantisation, the one definition that the CPU forward and the CUDA kernels share
 * (docs/architecture.md, "FP8 mode", says why each choice was made).
 *
 * Q and K rows are rotated along the head dim (random signs, then an unnormalised Walsh-Hadamard
 * transform over chunks of n = the largest power of two dividing D), which spreads outliers over
 * the row; Q, K and V are scaled by powers of two taken from amax values and rounded to e4m3:
 *   Q per (batch, head, block of 64 rows):  q8 = e4m3(R(q * 2^-Eq) * c)
 *   K per (batch, kv head):                 k8 = e4m3(R(k * 2^-Ek) * c)
 *   V per (batch, kv head):                 v8 = e4m3(v * 2^(7 - Ev))
 * with E(amax) the exponent that puts amax * 2^-E in [1, 2), so |R(.) * c| <= 256 and |v8| < 256:
 * nothing saturates. Scores are q8 . k8 * scale * 2^(Eq + Ek) / (c^2 n); the probabilities p in
 * [0, 1] are rounded as e4m3(p * 256) for P V; the row sums use the unrounded p; O is
 * (sum p8 v8) * 2^(Ev - 7) / 256 / l. Every scaling is by a power of two, so it is exact and the
 * CPU and GPU quantise to the same bytes. */
#ifndef FATTN_FP8_H
#define FATTN_FP8_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define FATTN_FP8_HD __host__ __device__ static inline
#else
#define FATTN_FP8_HD static inline
#endif

#define FATTN_FP8_Q_BLOCK 64     /* query rows per Q scale */
#define FATTN_FP8_V_SHIFT 7      /* V * 2^(7 - Ev) < 256 */
#define FATTN_FP8_P_SCALE 256.0f /* p <= 1 into e4m3's top binades */

FATTN_FP8_HD uint32_t fattn_fp8_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

FATTN_FP8_HD float fattn_fp8_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* The random signs: bit d % 64 of word d / 64 of a fixed 256-bit pattern (pi's fraction). */
FATTN_FP8_HD float fattn_fp8_sign(int d)
{
    const uint64_t w = d < 64    ? 0x243F6A8885A308D3ull
                       : d < 128 ? 0x13198A2E03707344ull
                       : d < 192 ? 0xA4093822299F31D0ull
                                 : 0x082EFA98EC4E6C89ull;
    return (w >> (d % 64)) & 1 ? -1.0f : 1.0f;
}

/* The rotation's chunk: the largest power of two dividing D. */
FATTN_FP8_HD int fattn_fp8_hadamard_n(int D) { return D & -D; }

/* 2^floor(log2(224 / n)): the largest power of two that keeps 2n * c <= 448. */
FATTN_FP8_HD float fattn_fp8_c(int D)
{
    const float n = (float)fattn_fp8_hadamard_n(D);
    float c = 1.0f;
    while (n * c > 224.0f) c *= 0.5f;
    while (n * c * 2.0f <= 224.0f) c *= 2.0f;
    return c;
}

/* x * 2^e: one multiply, rounded once (a subnormal product included), where 2^e is a normal float;
 * two steps otherwise, exact whenever the result is a normal float. The first step's factor
 * (2^127, 2^-126, or 1 where 2^e is normal) comes from fattn_fp8_scale2_first, which leaves in *e
 * the exponent of the second, a normal power of two (fattn_fp8_pow2), so that a kernel scaling
 * many values by one 2^e splits it once. */
FATTN_FP8_HD float fattn_fp8_scale2_first(int *e)
{
    if (*e > 127) {
        *e = *e - 127 > 127 ? 127 : *e - 127;
        return fattn_fp8_float(254u << 23); /* 2^127 */
    }
    if (*e < -126) {
        *e = *e + 126 < -126 ? -126 : *e + 126;
        return fattn_fp8_float(1u << 23); /* 2^-126 */
    }
    return 1.0f;
}

/* 2^e for -126 <= e <= 127. */
FATTN_FP8_HD float fattn_fp8_pow2(int e) { return fattn_fp8_float((uint32_t)(e + 127) << 23); }

FATTN_FP8_HD float fattn_fp8_scale2(float x, int e)
{
    const float first = fattn_fp8_scale2_first(&e);
    return x * first * fattn_fp8_pow2(e);
}

/* E(amax): amax * 2^-E in [1, 2); E(0) = 0 (an all-zero block needs no scale). */
FATTN_FP8_HD int fattn_fp8_exponent(float amax)
{
    const uint32_t u = fattn_fp8_bits(amax) & 0x7FFFFFFFu;
    if (u == 0) return 0;
    if (u >= 0x7F800000u) return 0; /* Inf/NaN: the output is NaN whatever the scale */
    int exp = (int)(u >> 23);
    if (exp > 0) return exp - 127;
    int e = -127; /* subnormal: 0.m * 2^-126 */
    for (uint32_t m = u; m < 0x00800000u; m <<= 1) --e;
    return e + 1;
}

/* R(x) of the definition above, in place: signs, then the butterflies in stage order h = 1, 2, 4,
 * ... (within a stage the pairs are independent, so any order of them gives the same bits). */
FATTN_FP8_HD void fattn_fp8_rotate(float *x, int D)
{
    const int n = fattn_fp8_hadamard_n(D);
    for (int d = 0; d < D; ++d) x[d] *= fattn_fp8_sign(d);
    for (int base = 0; base < D; base += n)
        for (int h = 1; h < n; h *= 2)
            for (int j = base; j < base + n; ++j)
                if ((j & h) == 0) {
                    const float a = x[j], b = x[j + h];
                    x[j] = a + b;
                    x[j + h] = a - b;
                }
}

/* Round to nearest even into e4m3fn (bias 7, no infinities, max 448, subnormals from 2^-9), finite
 * values beyond 448 saturating to it and NaN becoming 0x7F: PTX's cvt.rn.satfinite.e4m3x2.f32. */
FATTN_FP8_HD uint8_t fattn_fp8_e4m3_rn(float x)
{
    const uint32_t u = fattn_fp8_bits(x);
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return 0x7F;
    if (a >= 0x43E00000u) return sign | 0x7E; /* >= 448, Inf included */
    if (a < 0x3C800000u) {                     /* below 2^-6: e4m3 subnormals, steps of 2^-9 */
        /* the value in units of 2^-9, rounded to nearest even: exact in fp32 (a power-of-two
         * scale), then the integer rounding by the add-and-subtract of 2^23 */
        const float units = fattn_fp8_float(a) * 512.0f;
        const float r = (units + 8388608.0f) - 8388608.0f;
        return sign | (uint8_t)r;
    }
    /* normal: keep 3 mantissa bits of the fp32 value, round to nearest even on the 20 dropped */
    const uint32_t rounded = a + 0x7FFFFu + ((a >> 20) & 1u);
    const uint32_t exp = (rounded >> 23) - 127 + 7, man = (rounded >> 20) & 7u;
    return sign | (uint8_t)(exp << 3 | man);
}

FATTN_FP8_HD float fattn_fp8_e4m3_to_float(uint8_t b)
{
    const uint32_t sign = (uint32_t)(b & 0x80) << 24, exp = (b >> 3) & 15u, man = b & 7u;
    if (exp == 15 && man == 7) return fattn_fp8_float(sign | 0x7FC00000u);
    if (exp == 0) return fattn_fp8_float(sign) + (sign ? -1.0f : 1.0f) * (float)man * (1.0f / 512.0f);
    return fattn_fp8_float(sign | (exp - 7 + 127) << 23 | man << 20);
}

#endif
