/*
 * fattn_testutil: what every fattn C test needs, CPU or GPU.
 *
 *  - a seeded RNG whose seed is fresh every run and printed (FATTN_TEST_SEED=n replays one);
 *  - fp16/bf16 <-> float conversions, round-to-nearest-even, written independently of the
 *    library's (they go through double arithmetic, not bit tricks);
 *  - test problems: host buffers in BSHD, BHSD or packed-QKV layout with random inputs and a
 *    NaN-poisoned output (optionally with gaps between heads, which must stay poisoned);
 *  - the float64 naive reference attention over any fattn_params;
 *  - relative L2 error and the "output fully written, nothing else touched" check.
 *
 * GPU tests build a problem here, copy tu_problem's buffers to the device whole (offsets are
 * preserved, see tu_problem_rebase), run, copy the output back and check it the same way.
 */
#ifndef FATTN_TESTUTIL_H
#define FATTN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tu_rng {
    uint64_t state;
} tu_rng;

/* Fresh seed from the clock and pid unless FATTN_TEST_SEED is set; prints "<name>: seed N". */
uint64_t tu_seed(const char *test_name);
void tu_rng_init(tu_rng *rng, uint64_t seed);
uint64_t tu_next_u64(tu_rng *rng);
double tu_uniform(tu_rng *rng);              /* [0, 1) */
double tu_normal(tu_rng *rng);               /* N(0, 1) */
int64_t tu_randint(tu_rng *rng, int64_t lo, int64_t hi); /* [lo, hi] */

uint16_t tu_f32_to_f16(float x);
float tu_f16_to_f32(uint16_t h);
uint16_t tu_f32_to_bf16(float x);
float tu_bf16_to_f32(uint16_t h);

/* Element i of a buffer of dtype, as double; and a store with RNE rounding. */
double tu_get(const void *buf, int64_t i, fattn_dtype dtype);
void tu_set(void *buf, int64_t i, fattn_dtype dtype, double value);
/* A NaN of the dtype in every element. */
void tu_poison(void *buf, int64_t count, fattn_dtype dtype);

typedef enum tu_layout {
    TU_BSHD = 0,
    TU_BHSD = 1,
    TU_PACKED_QKV = 2 /* q, k, v interleaved as (B, S, 3, H, D); needs Sq == Skv, Hq == Hkv */
} tu_layout;

const char *tu_layout_name(tu_layout layout);

typedef struct tu_shape {
    int64_t batch, seqlen_q, seqlen_kv, heads_q, heads_kv, head_dim;
    fattn_dtype dtype;
    int causal;
    float scale;       /* 0: default */
    tu_layout layout;  /* of q, k, v and o */
    int64_t out_gap;   /* extra elements after each output head (stay poisoned) */
    int with_lse;
} tu_shape;

typedef struct tu_problem {
    tu_shape shape;
    fattn_params params;   /* views into the buffers below */
    void *in_buf;          /* q, k and v, one allocation */
    size_t in_bytes;
    void *out_buf;         /* o, with its gaps */
    size_t out_bytes;
    int64_t out_count;     /* elements in out_buf */
    float *lse;            /* NULL unless shape.with_lse; batch*heads_q*seqlen_q */
    int64_t lse_count;
} tu_problem;

/* Allocates and fills: inputs N(0, 1) * input_scale rounded to the dtype, output and LSE NaN.
 * Returns 0, or -1 (with a message on stderr) on a bad shape or failed allocation. */
int tu_problem_init(tu_problem *pr, const tu_shape *shape, tu_rng *rng, double input_scale);
void tu_problem_free(tu_problem *pr);
/* Re-points params at other copies of the buffers (e.g. device ones) with the same offsets. */
void tu_problem_rebase(const tu_problem *pr, fattn_params *params, void *in_buf, void *out_buf,
                       float *lse);
/* Output and LSE back to NaN. */
void tu_problem_poison(tu_problem *pr);

/* float64 attention over params' views (any dtype, strides, GQA, causal). out: [B][Sq][Hq][D],
 * lse: [B][Hq][Sq] or NULL. Rows that see no key give 0 and -Inf. Returns 0, -1 on no memory. */
int tu_reference(const fattn_params *params, double *out, double *lse);

/* The same for one query row (b, h, i): out gets head_dim values, lse one (if non-NULL). For
 * problems too large to check whole, e.g. sampled rows in the demo. Returns 0, -1 on no memory. */
int tu_reference_row(const fattn_params *params, int64_t b, int64_t h, int64_t i, double *out,
                     double *lse);

typedef struct tu_check {
    double rel_l2;        /* ||o - ref|| / ||ref|| over the output view */
    double max_abs;       /* max |o - ref| */
    double lse_max_abs;   /* max |lse - ref_lse| over rows with a finite reference */
    int64_t unwritten;    /* view elements still NaN (or NaN where the reference is finite) */
    int64_t stray;        /* elements outside the view that are no longer NaN */
    int64_t lse_bad;      /* LSE entries NaN, or -Inf/finite where the reference is not */
} tu_check;

/* Compares pr's output (or out_host, a host copy of out_buf, if non-NULL; same for lse_host)
 * with the reference. Returns 0, -1 on no memory. */
int tu_check_output(const tu_problem *pr, const void *out_host, const float *lse_host,
                    tu_check *result);

/* The same against another reference with tu_reference's signature (e.g. tu_fp8_reference). */
typedef int (*tu_reference_fn)(const fattn_params *params, double *out, double *lse);
int tu_check_output_with(const tu_problem *pr, const void *out_host, const float *lse_host,
                         tu_reference_fn reference, tu_check *c);

/* rel_l2 <= bound, lse within lse_bound, everything written and nothing else: 1 if so. Prints
 * one line describing the case and the figures either way. */
int tu_check_passes(const tu_problem *pr, const tu_check *c, double bound, double lse_bound);

/* The relative L2 bound docs/design.md sets for a dtype in native mode (1e-3, 5e-3, 1e-2). */
double tu_design_bound(fattn_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif
