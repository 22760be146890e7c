/*
 * The library's fp16/bf16 conversions (src/cpu/convert.h, bit tricks) against fattn_testutil's
 * (double arithmetic): every fp16 and bf16 value decoded, and rounding checked at every
 * representable value, every midpoint between neighbours (ties go to even), one float ulp on
 * either side of each midpoint, overflow, subnormals, signed zero, Inf and NaN, plus random floats.
 */
#include <math.h>
#include <stdio.h>

#include "convert.h"
#include "testutil.h"

static long failures, checks;

static int same(float a, float b)
{
    return (isnan(a) && isnan(b)) || fattn_f32_to_bits(a) == fattn_f32_to_bits(b);
}

static void check_round(float x)
{
    uint16_t lib16 = fattn_f32_to_f16(x), ref16 = tu_f32_to_f16(x);
    uint16_t libb = fattn_f32_to_bf16(x), refb = tu_f32_to_bf16(x);
    checks += 2;
    /* NaN payloads may differ; both must be a NaN of the same sign. */
    int ok16 = lib16 == ref16 || (isnan(x) && isnan(tu_f16_to_f32(lib16)) &&
                                   (lib16 & 0x8000) == (ref16 & 0x8000));
    int okb = libb == refb || (isnan(x) && isnan(tu_bf16_to_f32(libb)) &&
                               (libb & 0x8000) == (refb & 0x8000));
    if (!ok16 && failures++ < 20)
        printf("f32->f16 %a (0x%08x): library 0x%04x, reference 0x%04x\n", (double)x,
               fattn_f32_to_bits(x), lib16, ref16);
    if (!okb && failures++ < 20)
        printf("f32->bf16 %a (0x%08x): library 0x%04x, reference 0x%04x\n", (double)x,
               fattn_f32_to_bits(x), libb, refb);
}

static void check_around(float value)
{
    check_round(value);
    check_round(-value);
    check_round(nextafterf(value, INFINITY));
    check_round(nextafterf(value, -INFINITY));
}

int main(void)
{
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_convert"));
    for (uint32_t h = 0; h < 0x10000; h++) {
        float lib16 = fattn_f16_to_f32((uint16_t)h), ref16 = tu_f16_to_f32((uint16_t)h);
        float libb = fattn_bf16_to_f32((uint16_t)h), refb = tu_bf16_to_f32((uint16_t)h);
        checks += 2;
        if (!same(lib16, ref16) && failures++ < 20)
            printf("f16 0x%04x: library %a, reference %a\n", h, (double)lib16, (double)ref16);
        if (!same(libb, refb) && failures++ < 20)
            printf("bf16 0x%04x: library %a, reference %a\n", h, (double)libb, (double)refb);
        /* Each representable value, and the midpoint to the next one up. */
        if ((h & 0x7fff) < 0x7c00) {
            float next = tu_f16_to_f32((uint16_t)(h + 1));
            check_around(ref16);
            check_around((float)(((double)ref16 + (double)next) / 2));
        }
        if ((h & 0x7fff) < 0x7f80) {
            float next = tu_bf16_to_f32((uint16_t)(h + 1));
            check_around(refb);
            check_around((float)(((double)refb + (double)next) / 2));
        }
    }
    const float specials[] = {0.0f, 65504.0f, 65519.996f, 65520.0f, 65536.0f, 1e30f, 0x1p-24f,
                              0x1p-25f, 0x1.8p-25f, 0x1p-26f, 0x1p-14f, 0x1.ffcp-15f, 0x1p-126f,
                              0x1p-149f, 0x1.fffffep127f, INFINITY, NAN};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        check_around(specials[i]);
    for (int i = 0; i < 2000000; i++)
        check_round(fattn_bits_to_f32((uint32_t)tu_next_u64(&rng)));
    printf("%ld of %ld conversion checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
