/* Symbolic shape values and masks computed from them. Internal to fattn-onnx. */
#ifndef FO_SYMBOLIC_H
#define FO_SYMBOLIC_H

#include "common.h"

#define FO_MAX_SYMDIMS 8

/* A dim: a known value (name NULL), a symbolic name (axis -1), or axis `axis` of tensor `name`
 * when nothing more is known. Equal symdims are equal at run time. */
typedef struct fo_symdim {
    const char *name;
    int axis;
    int64_t value;
} fo_symdim;

/* Rank of a tensor when shape information or a Transpose producing it tells; -1 otherwise. */
int fo_rank_of(const fo_graph *gi, const char *tensor);

void fo_symdim_of(const fo_graph *gi, const char *tensor, int axis, fo_symdim *d);
int fo_symdim_eq(const fo_symdim *a, const fo_symdim *b);

/* The 1-D int64 value `name` as symbolic dims, when it is built from Shape, constants, Slice,
 * Gather, Concat, Unsqueeze, Squeeze, Cast. 1 on success. */
int fo_shape_vector(const fo_graph *gi, const char *name, fo_symdim *out, int *n);

/* Whether the run-time mask `name`, built over a [len, len] grid from Expand/ConstantOfShape,
 * Trilu, Equal, Not, Cast, Where and arithmetic, is empty (causal 0) or causal (causal 1).
 * masked_when < 0: `name` is added to the scores (then multiplied by `after`); 0 or 1: `name`
 * is a Where condition and that value selects the fill. 1 when proven, else 0. */
int fo_runtime_causal_mask(const fo_graph *gi, const char *name, const fo_symdim *len,
                           int masked_when, double after, int *causal);

#endif
