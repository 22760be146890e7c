/*
 * src/core/fp8.h, the FP8 mode's shared definition, against independent double arithmetic:
 *  - e4m3: every byte decoded by this file's own decoder; every value round-trips through the
 *    encoder; every midpoint between neighbours (ties to even) and one float ulp either side; a
 *    dense sweep of fp32 over and around e4m3's range against nearest-even computed in double;
 *    saturation, Inf, NaN, signed zero;
 *  - E(amax) against frexp, subnormals included; the power-of-two scaling against ldexp;
 *  - the sign table, n and c for every D in 1..256;
 *  - the rotation against an explicit Sylvester-Hadamard matrix in double, and R(q).R(k) = n q.k.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/fp8.h"
#include "testutil.h"

static long failures, checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond) && failures++ < 20) {                                                          \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* e4m3fn by its definition: bias 7, 3 mantissa bits, S.1111.111 the only NaN, no infinities. */
static double decode(uint8_t b)
{
    int e = (b >> 3) & 15, m = b & 7;
    double sign = (b & 0x80) ? -1.0 : 1.0;
    if (e == 15 && m == 7)
        return NAN;
    if (e == 0)
        return sign * m / 512.0;
    return sign * ldexp(1.0 + m / 8.0, e - 7);
}

/* The e4m3 value nearest to x (ties to the even mantissa), saturated to +-448: computed on the
 * grid of x's binade in double, where every step is exact. */
static double nearest(float x)
{
    double a = fabs((double)x);
    int e;
    frexp(a, &e); /* a in [2^(e-1), 2^e) */
    double quantum = ldexp(1.0, (e - 1 < -6 ? -6 : e - 1) - 3);
    double r = nearbyint(a / quantum) * quantum;
    if (r > 448.0)
        r = 448.0;
    return signbit(x) ? -r : r;
}

static int same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

static void check_encode(float x)
{
    uint8_t b = fattn_fp8_e4m3_rn(x);
    double want = isnan(x) ? NAN : nearest(x);
    CHECK(same_value(decode(b), want), "e4m3_rn(%a) = 0x%02x (%a), want %a", (double)x, b,
          decode(b), want);
    if (isnan(x))
        CHECK(b == 0x7F, "e4m3_rn(NaN) = 0x%02x, want 0x7F", b);
}

static void check_around(double v)
{
    float f = (float)v;
    check_encode(f);
    check_encode(-f);
    check_encode(nextafterf(f, INFINITY));
    check_encode(nextafterf(f, -INFINITY));
}

static void test_e4m3(void)
{
    for (int b = 0; b < 256; b++) {
        double want = decode((uint8_t)b);
        float got = fattn_fp8_e4m3_to_float((uint8_t)b);
        CHECK(same_value(got, want), "e4m3_to_float(0x%02x) = %a, want %a", b, (double)got, want);
        if (!isnan(want)) {
            uint8_t back = fattn_fp8_e4m3_rn((float)want);
            CHECK(back == b, "e4m3 0x%02x (%a) round-trips to 0x%02x", b, want, back);
        }
    }
    /* Midpoints between neighbours: ties go to the even code (the even mantissa). 0x7E's upper
     * neighbour would be 480; its midpoint 464 and beyond saturate to 448. */
    for (int b = 0; b < 0x7E; b++) {
        double mid = (decode((uint8_t)b) + decode((uint8_t)(b + 1))) / 2;
        uint8_t even = (uint8_t)(b % 2 == 0 ? b : b + 1);
        uint8_t got = fattn_fp8_e4m3_rn((float)mid);
        CHECK(got == even, "midpoint %a: 0x%02x, want 0x%02x", mid, got, even);
        CHECK(fattn_fp8_e4m3_rn((float)-mid) == (0x80 | even), "midpoint %a: 0x%02x", -mid,
              fattn_fp8_e4m3_rn((float)-mid));
        check_around(mid);
        check_around(decode((uint8_t)b));
    }
    const double specials[] = {0.0, 448.0, 464.0, 479.0, 480.0, 1e6, FLT_MAX, INFINITY,
                               0x1p-9, 0x1p-10, 0x1.8p-10, 0x1p-11, 0x1p-6, 0x1.ep-7,
                               0x1p-126, 0x1p-149};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        check_around(specials[i]);
    CHECK(fattn_fp8_e4m3_rn(INFINITY) == 0x7E && fattn_fp8_e4m3_rn(-INFINITY) == 0xFE,
          "Inf saturates to 448: 0x%02x 0x%02x", fattn_fp8_e4m3_rn(INFINITY),
          fattn_fp8_e4m3_rn(-INFINITY));
    check_encode(NAN);
    check_encode(-NAN);
    /* Every fifth fp32 from 2^-12 (which rounds to zero) to 2^10 (saturated), both signs: five
     * is odd, so every pattern of the 20 bits below e4m3's mantissa is met in each binade. */
    for (uint32_t u = 0x39800000u; u < 0x44800000u; u += 5) {
        float x;
        memcpy(&x, &u, sizeof x);
        check_encode(x);
        check_encode(-x);
    }
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_fp8"));
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)tu_next_u64(&rng);
        float x;
        memcpy(&x, &u, sizeof x);
        check_encode(x);
    }
}

static void test_exponent_and_scaling(void)
{
    CHECK(fattn_fp8_exponent(0.0f) == 0, "E(0) = %d", fattn_fp8_exponent(0.0f));
    tu_rng rng;
    tu_rng_init(&rng, 12345);
    for (int i = 0; i < 200000; i++) {
        /* every finite positive float is reachable: random bits below the Inf pattern */
        uint32_t u = (uint32_t)(tu_next_u64(&rng) % 0x7F800000u);
        if (i < 24)
            u = 1u << i; /* every subnormal binade */
        float a;
        memcpy(&a, &u, sizeof a);
        if (a == 0.0f)
            continue;
        int fe;
        frexp((double)a, &fe);
        int e = fattn_fp8_exponent(a);
        CHECK(e == fe - 1, "E(%a) = %d, want %d", (double)a, e, fe - 1);
        double m = ldexp((double)a, -e);
        CHECK(m >= 1.0 && m < 2.0, "%a * 2^-E = %a", (double)a, m);
        /* The quantisation's scalings: x * 2^-E(amax) for |x| <= amax, and V's 2^(7-E). */
        float x = (float)(a * tu_uniform(&rng));
        for (int k = 0; k < 2; k++) {
            int shift = k ? 7 - e : -e;
            double want = ldexp((double)x, shift);
            float got = fattn_fp8_scale2(x, shift);
            if (fabs(want) >= 0x1p-126) /* the range where the header promises exactness */
                CHECK((double)got == want, "scale2(%a, %d) = %a, want %a", (double)x, shift,
                      (double)got, want);
        }
    }
    CHECK(fattn_fp8_exponent(-3.0f) == 1, "E uses |amax|: E(-3) = %d", fattn_fp8_exponent(-3.0f));
    CHECK(fattn_fp8_exponent(FLT_MAX) == 127, "E(FLT_MAX) = %d", fattn_fp8_exponent(FLT_MAX));
    CHECK(fattn_fp8_exponent(0x1p-149f) == -149, "E(2^-149) = %d",
          fattn_fp8_exponent(0x1p-149f));
}

static int popcount(unsigned x)
{
    int c = 0;
    for (; x; x &= x - 1)
        c++;
    return c;
}

static void test_constants_and_rotation(void)
{
    /* The spec's words, bit d % 64 of word d / 64 set meaning -1. */
    static const uint64_t words[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull,
                                      0xA4093822299F31D0ull, 0x082EFA98EC4E6C89ull};
    for (int d = 0; d < 256; d++) {
        float want = ((words[d / 64] >> (d % 64)) & 1) ? -1.0f : 1.0f;
        CHECK(fattn_fp8_sign(d) == want, "sign(%d) = %g", d, (double)fattn_fp8_sign(d));
    }
    tu_rng rng;
    tu_rng_init(&rng, tu_seed("test_cpu_fp8 rotation"));
    for (int D = 1; D <= 256; D++) {
        int n = 1;
        while (D % (2 * n) == 0)
            n *= 2;
        CHECK(fattn_fp8_hadamard_n(D) == n, "hadamard_n(%d) = %d", D, fattn_fp8_hadamard_n(D));
        double c = pow(2.0, floor(log2(224.0 / n)));
        CHECK((double)fattn_fp8_c(D) == c, "c(%d) = %g, want %g", D, (double)fattn_fp8_c(D), c);

        float q[256], k[256], rq[256], rk[256];
        double qk = 0, nq = 0, nk = 0;
        for (int d = 0; d < D; d++) {
            q[d] = rq[d] = (float)tu_normal(&rng);
            k[d] = rk[d] = (float)tu_normal(&rng);
            qk += (double)q[d] * k[d];
            nq += (double)q[d] * q[d];
            nk += (double)k[d] * k[d];
        }
        fattn_fp8_rotate(rq, D);
        fattn_fp8_rotate(rk, D);
        double rqk = 0;
        for (int d = 0; d < D; d++) {
            int base = d / n * n;
            double want = 0, mag = 0;
            for (int j = 0; j < n; j++) {
                double term = (popcount((unsigned)((d - base) & j)) % 2 ? -1.0 : 1.0) *
                              fattn_fp8_sign(base + j) * q[base + j];
                want += term;
                mag += fabs(term);
            }
            /* log2(n) rounded additions, each within half an ulp of a partial sum <= mag */
            CHECK(fabs(rq[d] - want) <= (1 + log2(n)) * 0x1p-24 * mag,
                  "D=%d: R(q)[%d] = %a, Hadamard in double %a", D, d, (double)rq[d], want);
            rqk += (double)rq[d] * rk[d];
        }
        CHECK(fabs(rqk - n * qk) <= 1e-5 * n * sqrt(nq * nk),
              "D=%d: R(q).R(k) = %.9g, n q.k = %.9g", D, rqk, n * qk);
    }
}

int main(void)
{
    test_e4m3();
    test_exponent_and_scaling();
    test_constants_and_rotation();
    printf("%ld of %ld fp8 checks passed\n", checks - failures, checks);
    return failures ? 1 : 0;
}
