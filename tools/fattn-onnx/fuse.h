/* Attention sites as the fuse pass and inspect see them. Internal to fattn-onnx. */
#ifndef FO_FUSE_H
#define FO_FUSE_H

#include "common.h"

#define FO_MAX_CANDS 12

/* A tensor from which q, k or v can be taken: Transpose(name, perm) is the canonical BHSD
 * tensor, and `scale` is the product of the scalar factors walked over to reach it. */
typedef struct fo_cand {
    const char *name;
    int perm[4];
    double scale;
} fo_cand;

typedef struct fo_chain {
    size_t n;
    fo_cand c[FO_MAX_CANDS];
    int rank4; /* proven 4-D */
} fo_chain;

enum fo_site_kind { FO_SITE_PLUGIN, FO_SITE_ATTENTION, FO_SITE_DECOMPOSITION };

typedef struct fo_site {
    int kind;
    size_t anchor; /* plugin, Attention or Softmax node */
    int ok;
    char reason[512];
    char path[512]; /* the nodes matched, for reports */
    fo_chain q, k, v;
    int has_scale;
    double scale; /* factors outside the q/k chains (decomposition) or the Attention's scale */
    int causal;
    const char *out_bhsd;
    size_t out_node;
    int has_out_t; /* out_bhsd's only reader is Transpose(0,2,1,3) */
    const char *out_bshd;
    size_t out_t_node;
    /* the plan: layout 0 = BSHD, 1 = BHSD, and per input the candidate and Transpose needed */
    int layout;
    int inserts;
    size_t pick[3];
    int insert[3];
    int perm[3][4];
} fo_site;

/* Every attention site of the main graph, fusable or not (with the reason). */
void fo_find_sites(const fo_graph *gi, fo_site **sites, size_t *count);
/* The scale the plugin gets, when the site fixes one. */
int fo_site_scale(const fo_site *s, double *scale);

#endif
