/*
 * float64 references for FP8 mode (mode 1), written from the definition (docs/architecture.md)
 * independently of the library's code: amax exponents by frexp, scores, online softmax and P V
 * in double; only the rotation runs in fp32 as the definition says. The rounding to e4m3 is
 * fattn's (src/core/fp8.h, itself checked against double arithmetic by test_cpu_fp8).
 *
 *  - tu_fp8_reference: the FP8 semantics, what fattn's FP8 mode computes up to fp32 rounding and
 *    the order of its sums. Out and LSE laid out as tu_reference's.
 *  - tu_fp8_reference_rows: the same on listed query rows only, for problems too large to
 *    check whole (GPU tests' sampled rows).
 *  - tu_fp8_bare_rows: the seed's method for comparison, on listed rows: Q, K and V cast to
 *    e4m3 as they are (no scale: |x| >= 464 becomes NaN, as torch's float8_e4m3fn cast does),
 *    exact softmax in double, P cast bare, O = sum p8 v8 / sum p.
 *  - tu_cpu_forward_reference: libfattn's own CPU result, for GPU tests of FP8 mode.
 */
#ifndef FATTN_FP8REF_H
#define FATTN_FP8REF_H

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Returns 0, or -1 when memory runs out. */
int tu_fp8_reference(const fattn_params *params, double *out, double *lse);
/* The FP8 semantics' output with, per element, the slack an fp32 implementation may
 * legitimately differ by: P values within 1e-5 of an e4m3 rounding midpoint may round either way
 * in fp32 (one such P moves a small case's relative L2 by up to ~3e-3). Both in tu_reference's
 * layout. */
int tu_fp8_reference_slack(const fattn_params *params, double *out, double *slack);
/* rows: n (b, h, i) triples; out gets n rows of head_dim values, lse (if non-NULL) n values, in
 * the list's order. */
int tu_fp8_reference_rows(const fattn_params *params, const int64_t *rows, int64_t n,
                          double *out, double *lse);
/* The bare cast on n listed (b, h, i) rows, out in the list's order: each kv head's K and V are
 * cast once for all its rows. */
int tu_fp8_bare_rows(const fattn_params *params, const int64_t *rows, int64_t n, double *out);

/* The library's CPU forward (fattn_cpu_forward, params' mode, all CPUs) as a reference with
 * tu_reference's signature: what a GPU's FP8 result is compared with, up to exp2's rounding.
 * params' host buffers are read, not written. Returns 0, or -1 (message on stderr). */
int tu_cpu_forward_reference(const fattn_params *params, double *out, double *lse);

#ifdef __cplusplus
}
#endif

#endif
