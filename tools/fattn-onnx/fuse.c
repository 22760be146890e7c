/*
 * The fuse pass: ONNX Attention nodes and MatMul -> [scale] -> [mask] -> Softmax -> MatMul
 * decompositions become CustomAttnPlugin nodes. Matching is pure analysis (inspect uses it too);
 * rewriting only adds the plugin (and Transposes where layouts differ) and drops the node whose
 * output the plugin now produces; dead-code removal then takes the old chain away.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fuse.h"
#include "symbolic.h"

/* Masked scores must vanish in softmax: exp(-1e4) underflows in every float type. */
#define FO_MASKED (-1e4)
/* Masks are read whole; past this many elements they are not analysed. */
#define FO_MAX_MASK (1u << 26)

static const int fo_bshd_from_bhsd[4] = {0, 2, 1, 3};

static int fo_site_fail(fo_site *s, const char *fmt, ...) FO_PRINTF(2, 3);
static int fo_site_fail(fo_site *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->reason, sizeof s->reason, fmt, ap);
    va_end(ap);
    s->ok = 0;
    return -1;
}

static void fo_path_add(fo_site *s, const char *fmt, ...) FO_PRINTF(2, 3);
static void fo_path_add(fo_site *s, const char *fmt, ...)
{
    size_t used = strlen(s->path);
    if (used + 1 >= sizeof s->path)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->path + used, sizeof s->path - used, fmt, ap);
    va_end(ap);
}

static const char *fo_name(const Onnx__NodeProto *n)
{
    return n->name && *n->name ? n->name : "(unnamed)";
}

/* A scalar constant operand (possibly infinite, as mask fills are); its rank must not widen a
 * 4-D tensor by broadcasting. */
static int fo_scalar_operand(const fo_graph *gi, const char *name, double *v)
{
    fo_const c;
    if (fo_read_const(gi, name, 1, &c) != 1)
        return 0;
    int ok = c.count == 1 && c.rank <= 4 && !isnan(c.values[0]);
    if (ok)
        *v = c.values[0];
    fo_const_free(&c);
    return ok;
}

/* The factor a scalar Mul/Div applies and the operand it applies it to. */
static int fo_scalar_factor(const fo_graph *gi, const Onnx__NodeProto *p, double *factor,
                            const char **other)
{
    double c;
    if (p->n_input != 2 || !p->input[0][0] || !p->input[1][0])
        return 0;
    if (fo_is_op(p, "Mul")) {
        if (fo_scalar_operand(gi, p->input[1], &c))
            *other = p->input[0];
        else if (fo_scalar_operand(gi, p->input[0], &c))
            *other = p->input[1];
        else
            return 0;
        if (c == 0 || !isfinite(c))
            return 0;
        *factor = c;
        return 1;
    }
    if (fo_is_op(p, "Div") && fo_scalar_operand(gi, p->input[1], &c) && c != 0 && isfinite(c)) {
        *factor = 1.0 / c;
        *other = p->input[0];
        return 1;
    }
    return 0;
}

static int fo_valid_perm(const Onnx__AttributeProto *a, int perm[4])
{
    if (!a || a->n_ints != 4)
        return 0;
    int seen = 0;
    for (int j = 0; j < 4; j++) {
        if (a->ints[j] < 0 || a->ints[j] > 3 || (seen & (1 << a->ints[j])))
            return 0;
        seen |= 1 << a->ints[j];
        perm[j] = (int)a->ints[j];
    }
    return 1;
}

/* Reshape(Transpose(Reshape(T, [-1, T.2, T.3]), [0, 2, 1]), [T.0, T.1, T.3, T.2]) is
 * Transpose(T, [0, 1, 3, 2]) for a 4-D T: torch's exports transpose K this way when shapes are
 * dynamic (the shape vectors come from Shape(T) slices). */
static int fo_folded_transpose(const fo_graph *gi, const Onnx__NodeProto *r2, const char **t)
{
    if (!fo_is_op(r2, "Reshape") || r2->n_input != 2)
        return 0;
    const Onnx__NodeProto *tr = fo_producer(gi, r2->input[0], NULL);
    const Onnx__AttributeProto *perm = tr ? fo_attr(tr, "perm") : NULL;
    if (!tr || !fo_is_op(tr, "Transpose") || tr->n_input != 1 || !perm || perm->n_ints != 3 ||
        perm->ints[0] != 0 || perm->ints[1] != 2 || perm->ints[2] != 1)
        return 0;
    const Onnx__NodeProto *r1 = fo_producer(gi, tr->input[0], NULL);
    if (!r1 || !fo_is_op(r1, "Reshape") || r1->n_input != 2 || !r1->input[0][0] ||
        fo_rank_of(gi, r1->input[0]) != 4)
        return 0;
    const char *src = r1->input[0];
    fo_symdim s1[FO_MAX_SYMDIMS], s2[FO_MAX_SYMDIMS], d[4];
    int n1, n2;
    if (!fo_shape_vector(gi, r1->input[1], s1, &n1) || n1 != 3 ||
        !fo_shape_vector(gi, r2->input[1], s2, &n2) || n2 != 4)
        return 0;
    for (int a = 0; a < 4; a++)
        fo_symdim_of(gi, src, a, &d[a]);
    if (s1[0].name || s1[0].value != -1 || !fo_symdim_eq(&s1[1], &d[2]) ||
        !fo_symdim_eq(&s1[2], &d[3]))
        return 0;
    if (!fo_symdim_eq(&s2[0], &d[0]) || !fo_symdim_eq(&s2[1], &d[1]) ||
        !fo_symdim_eq(&s2[2], &d[3]) || !fo_symdim_eq(&s2[3], &d[2]))
        return 0;
    *t = src;
    return 1;
}

/* Walks back from `start` through 4-D Transposes (and, when allowed, scalar Mul/Div), recording
 * every tensor the canonical BHSD input can be taken from. */
static void fo_walk(const fo_graph *gi, const char *start, const int perm0[4], int allow_scale,
                    fo_chain *ch)
{
    fo_cand cur = {start, {perm0[0], perm0[1], perm0[2], perm0[3]}, 1.0};
    fo_shape sh;
    fo_value_shape(gi, start, &sh);
    ch->n = 0;
    ch->rank4 = sh.rank == 4;
    ch->c[ch->n++] = cur;
    while (ch->n < FO_MAX_CANDS) {
        const Onnx__NodeProto *p = fo_producer(gi, cur.name, NULL);
        if (!p)
            break;
        fo_cand next = cur;
        int perm[4];
        double f;
        if (fo_is_op(p, "Transpose") && p->n_input == 1 && p->input[0][0] &&
            fo_valid_perm(fo_attr(p, "perm"), perm)) {
            next.name = p->input[0];
            for (int j = 0; j < 4; j++)
                next.perm[j] = perm[cur.perm[j]];
            ch->rank4 = 1;
        } else if (allow_scale && fo_scalar_factor(gi, p, &f, &next.name)) {
            next.scale = cur.scale * f;
        } else if (fo_folded_transpose(gi, p, &next.name)) {
            static const int swap_last[4] = {0, 1, 3, 2};
            for (int j = 0; j < 4; j++)
                next.perm[j] = swap_last[cur.perm[j]];
            ch->rank4 = 1;
        } else {
            break;
        }
        fo_value_shape(gi, next.name, &sh);
        if (sh.rank >= 0 && sh.rank != 4)
            break;
        ch->rank4 |= sh.rank == 4;
        cur = next;
        ch->c[ch->n++] = cur;
    }
}

/* The canonical BHSD shape of a chain, from the first tensor along it with a known shape. */
static void fo_chain_shape(const fo_graph *gi, const fo_chain *ch, fo_shape *out)
{
    memset(out, 0, sizeof *out);
    out->rank = -1;
    for (size_t i = 0; i < ch->n; i++) {
        fo_shape s;
        fo_value_shape(gi, ch->c[i].name, &s);
        if (!out->elem_type)
            out->elem_type = s.elem_type;
        if (s.rank == 4 && out->rank < 0) {
            out->rank = 4;
            for (int j = 0; j < 4; j++) {
                out->dim[j] = s.dim[ch->c[i].perm[j]];
                out->param[j] = s.param[ch->c[i].perm[j]];
            }
        }
    }
}

/* 1 equal, 0 different, -1 unknown */
static int fo_dim_eq(const fo_shape *a, int i, const fo_shape *b, int j)
{
    if (a->rank != 4 || b->rank != 4)
        return -1;
    if (a->dim[i] >= 0 && b->dim[j] >= 0)
        return a->dim[i] == b->dim[j];
    if (a->param[i] && b->param[j] && strcmp(a->param[i], b->param[j]) == 0)
        return 1;
    return -1;
}

static void fo_perm_for_layout(const int p[4], int layout, int out[4])
{
    for (int j = 0; j < 4; j++)
        out[j] = layout ? p[j] : p[fo_bshd_from_bhsd[j]];
}

static int fo_is_identity(const int p[4])
{
    return p[0] == 0 && p[1] == 1 && p[2] == 2 && p[3] == 3;
}

/* The candidate furthest back that is already in `layout`; else the furthest one, transposed. */
static int fo_pick(const fo_chain *ch, int layout, size_t *pick, int perm[4])
{
    for (size_t i = ch->n; i-- > 0;) {
        fo_perm_for_layout(ch->c[i].perm, layout, perm);
        if (fo_is_identity(perm)) {
            *pick = i;
            return 0;
        }
    }
    *pick = ch->n - 1;
    fo_perm_for_layout(ch->c[*pick].perm, layout, perm);
    return 1;
}

static int fo_plan_cost(fo_site *s, int layout, int commit)
{
    const fo_chain *ch[3] = {&s->q, &s->k, &s->v};
    int cost = layout == 0 && !s->has_out_t;
    for (int i = 0; i < 3; i++) {
        size_t pick;
        int perm[4];
        int ins = fo_pick(ch[i], layout, &pick, perm);
        cost += ins;
        if (commit) {
            s->pick[i] = pick;
            s->insert[i] = ins;
            memcpy(s->perm[i], perm, sizeof perm);
        }
    }
    if (commit) {
        s->layout = layout;
        s->inserts = cost;
    }
    return cost;
}

/* Fewest inserted Transposes; BSHD (the seed's and FA3's layout) on a tie. */
static void fo_plan(fo_site *s)
{
    int c0 = fo_plan_cost(s, 0, 0), c1 = fo_plan_cost(s, 1, 0);
    fo_plan_cost(s, c1 < c0 ? 1 : 0, 1);
}

int fo_site_scale(const fo_site *s, double *scale)
{
    if (!s->has_scale)
        return 0;
    *scale = s->scale;
    if (s->kind == FO_SITE_DECOMPOSITION)
        *scale *= s->q.c[s->pick[0]].scale * s->k.c[s->pick[1]].scale;
    return 1;
}

/* The plugin takes libfattn's rule, any finite scale with 0 read as 1/sqrt(head_dim), so a graph
 * whose scores are really multiplied by 0 (or by a non-finite or float-overflowing value) cannot
 * be expressed by it. Returns non-zero (the site failed) for such a scale. */
static int fo_unmappable_scale(fo_site *s, double scale)
{
    if (scale == 0)
        return fo_site_fail(s, "the score scale is 0, which the plugin would read as 1/sqrt(head_dim)");
    if (!isfinite(scale) || fabs(scale) > 3.4e38)
        return fo_site_fail(s, "the score scale %g is not a finite float", scale);
    return 0;
}

static void fo_find_output_transpose(const fo_graph *gi, fo_site *s)
{
    s->has_out_t = 0;
    if (fo_consumer_count(gi, s->out_bhsd) != 1 || fo_is_graph_output(gi, s->out_bhsd))
        return;
    int64_t *c = fo_map_get(&gi->first_consumer, s->out_bhsd);
    const Onnx__NodeProto *t = gi->g->node[*c];
    int perm[4];
    if (fo_is_op(t, "Transpose") && t->n_input == 1 && t->n_output >= 1 &&
        fo_valid_perm(fo_attr(t, "perm"), perm) && memcmp(perm, fo_bshd_from_bhsd,
                                                          sizeof perm) == 0) {
        s->has_out_t = 1;
        s->out_bshd = t->output[0];
        s->out_t_node = (size_t)*c;
    }
}

static int fo_check_types(const fo_graph *gi, fo_site *s, fo_shape *q, fo_shape *k, fo_shape *v)
{
    fo_chain_shape(gi, &s->q, q);
    fo_chain_shape(gi, &s->k, k);
    fo_chain_shape(gi, &s->v, v);
    if (!s->q.rank4 || !s->k.rank4 || !s->v.rank4)
        return fo_site_fail(s, "the rank of %s is not known to be 4 (no 4-D Transpose or shape "
                            "information; run onnx shape inference first)",
                            !s->q.rank4 ? "Q" : !s->k.rank4 ? "K" : "V");
    int32_t t = q->elem_type;
    if (t && t != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
        t != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 && t != ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16)
        return fo_site_fail(s, "Q is %s; the plugin takes float, float16 or bfloat16",
                            fo_dtype_name(t));
    if (fo_dim_eq(q, 3, v, 3) == 0)
        return fo_site_fail(s, "V's head dim (%lld) differs from Q's (%lld)",
                            (long long)v->dim[3], (long long)q->dim[3]);
    if (fo_dim_eq(q, 0, k, 0) == 0 || fo_dim_eq(q, 0, v, 0) == 0)
        return fo_site_fail(s, "Q, K and V have different batch sizes (broadcast batch)");
    if (fo_dim_eq(k, 1, v, 1) == 0 || fo_dim_eq(k, 2, v, 2) == 0)
        return fo_site_fail(s, "K and V differ in heads or sequence length");
    if (k->rank == 4 && q->rank == 4 && k->dim[1] > 1 && q->dim[1] > 0 &&
        q->dim[1] % k->dim[1] != 0)
        return fo_site_fail(s, "Q's heads (%lld) are not a multiple of K's (%lld)",
                            (long long)q->dim[1], (long long)k->dim[1]);
    return 0;
}

/* Whether Q's and K's sequence lengths are provably equal: the same known dim in the shape
 * information, or the same symbolic dim along their chains. *len gets it. */
static int fo_same_seq_len(const fo_graph *gi, const fo_site *s, fo_symdim *len)
{
    for (size_t i = 0; i < s->q.n; i++) {
        fo_symdim dq, dk;
        fo_symdim_of(gi, s->q.c[i].name, s->q.c[i].perm[2], &dq);
        for (size_t j = 0; j < s->k.n; j++) {
            fo_symdim_of(gi, s->k.c[j].name, s->k.c[j].perm[2], &dk);
            if (fo_symdim_eq(&dq, &dk) && (dq.name || dq.value >= 0)) {
                *len = dq;
                return 1;
            }
        }
    }
    return 0;
}

/* ---- ONNX Attention ------------------------------------------------------------------------- */

static void fo_match_attention(const fo_graph *gi, size_t index, fo_site *s)
{
    const Onnx__NodeProto *n = gi->g->node[index];
    static const int id[4] = {0, 1, 2, 3};
    static const char *inputs[] = {"Q", "K", "V", "attn_mask", "past_key", "past_value",
                                   "nonpad_kv_seqlen"};
    s->kind = FO_SITE_ATTENTION;
    s->anchor = index;
    snprintf(s->path, sizeof s->path, "Attention '%s'", fo_name(n));
    if (gi->opset < 23) {
        fo_site_fail(s, "the model imports opset %lld; Attention is rewritten from opset 23",
                     (long long)gi->opset);
        return;
    }
    if (n->n_input < 3 || !n->input[0][0] || !n->input[1][0] || !n->input[2][0] ||
        n->n_output < 1 || !n->output[0][0]) {
        fo_site_fail(s, "it lacks Q, K, V or Y");
        return;
    }
    for (size_t i = 3; i < n->n_input; i++) {
        if (n->input[i][0]) {
            fo_site_fail(s, "it has input %s ('%s'); masks, KV caches and padding are not fused",
                         i < 7 ? inputs[i] : "beyond the known ones", n->input[i]);
            return;
        }
    }
    for (size_t o = 1; o < n->n_output; o++) {
        if (n->output[o][0] && (fo_consumer_count(gi, n->output[o]) ||
                                fo_is_graph_output(gi, n->output[o]))) {
            fo_site_fail(s, "its output %zu ('%s') is used; the plugin only produces Y", o,
                         n->output[o]);
            return;
        }
    }
    s->causal = 0;
    for (size_t a = 0; a < n->n_attribute; a++) {
        const Onnx__AttributeProto *at = n->attribute[a];
        const char *name = fo_str(at->name);
        if (strcmp(name, "is_causal") == 0) {
            s->causal = at->i != 0;
        } else if (strcmp(name, "scale") == 0) {
            s->has_scale = 1;
            s->scale = at->f;
        } else if (strcmp(name, "softcap") == 0) {
            if (at->f != 0) {
                fo_site_fail(s, "softcap %g is not supported by the plugin", at->f);
                return;
            }
        } else if (strcmp(name, "q_num_heads") == 0 || strcmp(name, "kv_num_heads") == 0) {
            fo_site_fail(s, "it has %s: 3-D inputs; only 4-D Attention is rewritten", name);
            return;
        } else if (strcmp(name, "qk_matmul_output_mode") == 0 ||
                   strcmp(name, "softmax_precision") == 0) {
            continue; /* only shape the unused scores output / ask for at least fp32 softmax */
        } else if ((strcmp(name, "left_window_size") == 0 ||
                    strcmp(name, "right_window_size") == 0) && at->i < 0) {
            continue;
        } else {
            fo_site_fail(s, "attribute %s is not supported by the rewrite", name);
            return;
        }
    }
    if (s->has_scale && fo_unmappable_scale(s, s->scale))
        return;
    fo_walk(gi, n->input[0], id, 0, &s->q);
    fo_walk(gi, n->input[1], id, 0, &s->k);
    fo_walk(gi, n->input[2], id, 0, &s->v);
    fo_shape q, k, v;
    fo_shape qs;
    fo_value_shape(gi, n->input[0], &qs);
    if (qs.rank >= 0 && qs.rank != 4) {
        fo_site_fail(s, "Q is %d-D; only 4-D Attention is rewritten", qs.rank);
        return;
    }
    /* 3-D Attention needs q_num_heads, so without it the inputs are 4-D. */
    s->q.rank4 = s->k.rank4 = s->v.rank4 = 1;
    if (fo_check_types(gi, s, &q, &k, &v) != 0)
        return;
    /* ONNX aligns its causal mask top-left without a KV cache, fattn bottom-right: they agree
     * only when Sq == Skv. */
    fo_symdim len;
    if (s->causal && fo_dim_eq(&q, 2, &k, 2) != 1 && !fo_same_seq_len(gi, s, &len)) {
        fo_site_fail(s, "is_causal with Sq and Skv not known to be equal (ONNX's causal mask is "
                     "top-left aligned here, fattn's bottom-right; they agree only when Sq == "
                     "Skv)");
        return;
    }
    s->out_bhsd = n->output[0];
    s->out_node = index;
    fo_find_output_transpose(gi, s);
    s->ok = 1;
    fo_plan(s);
}

/* ---- MatMul -> Softmax -> MatMul ------------------------------------------------------------ */

enum { FO_MASK_NONE, FO_MASK_ADD, FO_MASK_WHERE };

typedef struct fo_mask {
    int kind;
    const char *value;  /* Add: the additive mask; Where: the condition */
    int masked_when;    /* Where: the condition value that selects the fill */
    double fill;
} fo_mask;

/* A mask computed at run time from the sequence length (torch's SDPA export with dynamic
 * shapes): accepted when Q and K provably have the same length, so that its top-left causal
 * triangle is also fattn's bottom-right one. */
static int fo_runtime_mask(const fo_graph *gi, fo_site *s, const fo_mask *mk, double after)
{
    fo_symdim len;
    int causal;
    if (!fo_same_seq_len(gi, s, &len) ||
        !fo_runtime_causal_mask(gi, mk->value, &len,
                                mk->kind == FO_MASK_WHERE ? mk->masked_when : -1, after,
                                &causal))
        return 0;
    s->causal = causal;
    return 1;
}

/* Classifies a constant mask as empty (causal 0) or bottom-right causal (causal 1). */
static int fo_mask_causal(const fo_graph *gi, fo_site *s, const fo_mask *mk, double after,
                          const fo_shape *q, const fo_shape *k)
{
    if (mk->kind == FO_MASK_WHERE && !(mk->fill * after <= FO_MASKED))
        return fo_site_fail(s, "Where fills masked scores with %g, not -inf or a large negative "
                            "number", mk->fill * after);
    fo_const c;
    int r = fo_read_const(gi, mk->value, FO_MAX_MASK, &c);
    if (r < 0)
        return fo_site_fail(s, "reading mask '%s' failed: %s", mk->value, fo_error());
    if (r == 0) {
        if (fo_runtime_mask(gi, s, mk, after))
            return 0;
        return fo_site_fail(s, "%s '%s' is neither a constant nor a causal mask built from the "
                            "sequence length", mk->kind == FO_MASK_ADD ? "mask" : "condition",
                            mk->value);
    }
    int rc = 0;
    if (!rc && c.rank == 0) {
        /* A scalar mask treats every score alike: a finite shift leaves softmax unchanged. */
        int masks_all = mk->kind == FO_MASK_WHERE ? (c.values[0] != 0) == mk->masked_when
                                                  : !isfinite(c.values[0]);
        if (masks_all)
            rc = fo_site_fail(s, "the constant mask '%s' masks every score", mk->value);
        fo_const_free(&c);
        s->causal = 0;
        return rc;
    }
    for (int d = 0; !rc && d + 2 < c.rank; d++)
        if (c.dim[d] != 1)
            rc = fo_site_fail(s, "mask '%s' varies over batch or heads (dim %d is %lld)",
                              mk->value, d, (long long)c.dim[d]);
    if (!rc && c.rank > 4)
        rc = fo_site_fail(s, "mask '%s' has rank %d", mk->value, c.rank);
    int64_t sq = c.rank >= 2 ? c.dim[c.rank - 2] : 1, skv = c.dim[c.rank - 1];
    int all = 1, bottom_right = 1, top_left = 1;
    int64_t bi = -1, bt = -1;
    for (int64_t i = 0; !rc && i < sq; i++) {
        for (int64_t t = 0; t < skv; t++) {
            double v = c.values[i * skv + t];
            int allowed;
            if (mk->kind == FO_MASK_WHERE) {
                allowed = (v != 0) != mk->masked_when;
            } else if (v == 0) {
                allowed = 1;
            } else if (v * after <= FO_MASKED) {
                allowed = 0;
            } else {
                rc = fo_site_fail(s, "mask value %g at [%lld, %lld] is neither 0 nor a large "
                                  "negative number (additive biases are not fused)", v,
                                  (long long)i, (long long)t);
                break;
            }
            all &= allowed;
            if (allowed != (t <= i + skv - sq) && bottom_right) {
                bottom_right = 0;
                bi = i;
                bt = t;
            }
            top_left &= allowed == (t <= i);
        }
    }
    fo_const_free(&c);
    if (rc)
        return rc;
    if (all) {
        s->causal = 0;
        return 0;
    }
    if (!bottom_right) {
        if (top_left)
            return fo_site_fail(s, "the mask is top-left causal with Sq (%lld) != Skv (%lld); "
                                "fattn's causal mask is bottom-right aligned", (long long)sq,
                                (long long)skv);
        return fo_site_fail(s, "the mask is neither empty nor causal (first difference at "
                            "[%lld, %lld])", (long long)bi, (long long)bt);
    }
    if ((q->rank == 4 && q->dim[2] >= 0 && q->dim[2] != sq) ||
        (k->rank == 4 && k->dim[2] >= 0 && k->dim[2] != skv))
        return fo_site_fail(s, "the causal mask is %lldx%lld but the sequences are %lld and "
                            "%lld", (long long)sq, (long long)skv, (long long)q->dim[2],
                            (long long)k->dim[2]);
    s->causal = 1;
    return 0;
}

static int fo_is_const_name(const fo_graph *gi, const char *name)
{
    if (fo_map_get(&gi->initializer, name))
        return !fo_map_get(&gi->input, name);
    const Onnx__NodeProto *p = fo_producer(gi, name, NULL);
    return p && fo_is_op(p, "Constant");
}

/* A Cast with one input and output to a float type; to float only when `up` (an upcast of
 * half-precision scores, which changes no value). */
static int fo_float_cast(const Onnx__NodeProto *p, int up)
{
    if (!fo_is_op(p, "Cast") || p->n_input != 1 || !p->input[0][0] || p->n_output < 1 ||
        !p->output[0][0])
        return 0;
    int64_t to = fo_attr_int(p, "to", 0);
    return to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ||
           (!up && (to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 ||
                    to == ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16));
}

/* Whether a value is the scores (a MatMul, possibly scaled) rather than a mask. */
static int fo_scores_side(const fo_graph *gi, const char *name)
{
    const Onnx__NodeProto *p = fo_producer(gi, name, NULL);
    double f;
    const char *other;
    return p && (fo_is_op(p, "MatMul") || fo_scalar_factor(gi, p, &f, &other));
}

static int fo_intermediate(const fo_graph *gi, fo_site *s, const char *name)
{
    if (fo_consumer_count(gi, name) != 1 || fo_is_graph_output(gi, name))
        return fo_site_fail(s, "intermediate '%s' is also used outside the attention pattern",
                            name);
    return 0;
}

static void fo_match_decomposition(const fo_graph *gi, size_t index, fo_site *s)
{
    static const int id[4] = {0, 1, 2, 3}, kt[4] = {0, 1, 3, 2};
    const Onnx__NodeProto *sm = gi->g->node[index];
    s->kind = FO_SITE_DECOMPOSITION;
    s->anchor = index;
    const char *x = sm->input[0], *y = sm->output[0];
    int64_t axis = fo_attr_int(sm, "axis", gi->opset >= 13 ? -1 : 1);
    const Onnx__NodeProto *mm2 = NULL, *cast_back = NULL;
    int64_t *c2 = fo_map_get(&gi->first_consumer, y);
    /* Softmax run in float and cast back to the model's type (mixed-precision exports): fattn's
     * softmax is float anyway. */
    if (c2 && fo_is_op(gi->g->node[*c2], "Cast") && fo_consumer_count(gi, y) == 1 &&
        !fo_is_graph_output(gi, y) && fo_float_cast(gi->g->node[*c2], 0)) {
        cast_back = gi->g->node[*c2];
        y = cast_back->output[0];
        c2 = fo_map_get(&gi->first_consumer, y);
    }
    if (c2)
        mm2 = gi->g->node[*c2];
    if (mm2 && !fo_is_op(mm2, "MatMul"))
        mm2 = NULL;

    /* scores: MatMul -> {scalar Mul/Div, mask Add/Where}* -> Softmax */
    const char *cur = x;
    double after = 1, before = 1;
    fo_mask mk = {FO_MASK_NONE, NULL, 0, 0};
    const Onnx__NodeProto *p = NULL;
    const Onnx__NodeProto *between[6]; /* walked from Softmax backwards */
    int n_between = 0;
    int failed = 0;
    for (int step = 0; step < 6; step++) {
        p = fo_producer(gi, cur, NULL);
        if (!p || fo_is_op(p, "MatMul"))
            break;
        double f;
        const char *other = NULL;
        if (!failed && fo_intermediate(gi, s, cur) != 0)
            failed = 1;
        between[n_between++] = p;
        if (fo_float_cast(p, 1)) {
            cur = p->input[0];
        } else if (fo_scalar_factor(gi, p, &f, &other)) {
            if (mk.kind == FO_MASK_NONE)
                after *= f;
            else
                before *= f;
            cur = other;
        } else if (mk.kind == FO_MASK_NONE && fo_is_op(p, "Add") && p->n_input == 2) {
            int which = fo_is_const_name(gi, p->input[1]) ? 1 :
                        fo_is_const_name(gi, p->input[0]) ? 0 :
                        fo_scores_side(gi, p->input[0]) ? 1 :
                        fo_scores_side(gi, p->input[1]) ? 0 : -1;
            if (which < 0) {
                if (!failed)
                    fo_site_fail(s, "Add '%s': neither operand is a mask", fo_name(p));
                failed = 1;
                break;
            }
            mk.kind = FO_MASK_ADD;
            mk.value = p->input[which];
            cur = p->input[1 - which];
        } else if (mk.kind == FO_MASK_NONE && fo_is_op(p, "Where") && p->n_input == 3) {
            /* Where(cond, X, Y) = cond ? X : Y, with the fill on either side. */
            mk.kind = FO_MASK_WHERE;
            mk.value = p->input[0];
            if (fo_scalar_operand(gi, p->input[1], &mk.fill)) {
                mk.masked_when = 1;
                cur = p->input[2];
            } else if (fo_scalar_operand(gi, p->input[2], &mk.fill)) {
                mk.masked_when = 0;
                cur = p->input[1];
            } else {
                if (!failed)
                    fo_site_fail(s, "Where '%s' has no constant scalar fill value", fo_name(p));
                failed = 1;
                break;
            }
        } else {
            if (!failed) {
                fo_site_fail(s, "%s '%s' between the scores MatMul and Softmax is not part of "
                             "the pattern", fo_str(p->op_type), fo_name(p));
                failed = 1;
            }
            p = NULL;
            break;
        }
    }
    /* Only Softmax nodes between two MatMuls are attention sites at all. */
    if (!mm2 && (!p || !fo_is_op(p, "MatMul"))) {
        s->kind = -1;
        return;
    }
    fo_path_add(s, "MatMul '%s'", p && fo_is_op(p, "MatMul") ? fo_name(p) : "?");
    for (int i = n_between; i-- > 0;)
        fo_path_add(s, " -> %s '%s'", fo_str(between[i]->op_type), fo_name(between[i]));
    fo_path_add(s, " -> Softmax '%s'", fo_name(sm));
    if (cast_back)
        fo_path_add(s, " -> Cast '%s'", fo_name(cast_back));
    fo_path_add(s, " -> MatMul '%s'", mm2 ? fo_name(mm2) : "?");
    if (failed)
        return;
    if (axis != -1 && axis != 3) {
        fo_site_fail(s, "Softmax axis %lld is not the last axis of a 4-D tensor", (long long)axis);
        return;
    }
    if (fo_is_graph_output(gi, y) || fo_consumer_count(gi, y) != 1 || !mm2) {
        fo_site_fail(s, "the attention probabilities '%s' are used by other nodes or are a "
                     "graph output", y);
        return;
    }
    if (mm2->n_input != 2 || !fo_streq(mm2->input[0], y) || fo_streq(mm2->input[1], y) ||
        !mm2->input[1][0] || mm2->n_output < 1 || !mm2->output[0][0]) {
        fo_site_fail(s, "MatMul '%s' does not take the probabilities as its first operand",
                     fo_name(mm2));
        return;
    }
    if (!p || !fo_is_op(p, "MatMul") || p->n_input != 2) {
        fo_site_fail(s, "the scores do not come from a MatMul within the pattern");
        return;
    }
    if (fo_intermediate(gi, s, cur) != 0)
        return;
    if (fo_unmappable_scale(s, after * before))
        return;
    fo_walk(gi, p->input[0], id, 1, &s->q);
    fo_walk(gi, p->input[1], kt, 1, &s->k);
    fo_walk(gi, mm2->input[1], id, 0, &s->v);
    fo_shape q, k, v;
    if (fo_check_types(gi, s, &q, &k, &v) != 0)
        return;
    if (cast_back && fo_attr_int(cast_back, "to", 0) != q.elem_type) {
        fo_site_fail(s, "the probabilities are cast to type %lld, which is not Q's known type",
                     (long long)fo_attr_int(cast_back, "to", 0));
        return;
    }
    if (mk.kind != FO_MASK_NONE && fo_mask_causal(gi, s, &mk, after, &q, &k) != 0)
        return;
    s->has_scale = 1;
    s->scale = after * before;
    s->out_bhsd = mm2->output[0];
    fo_producer(gi, mm2->output[0], &s->out_node);
    fo_find_output_transpose(gi, s);
    s->ok = 1;
    fo_plan(s);
    double total;
    fo_site_scale(s, &total);
    if (fo_unmappable_scale(s, total))
        return;
}

static int fo_is_plugin(const Onnx__NodeProto *n)
{
    return fo_streq(n->op_type, FO_PLUGIN_OP) || fo_streq(n->domain, FO_PLUGIN_DOMAIN) ||
           fo_streq(n->op_type, "custom_attn");
}

void fo_find_sites(const fo_graph *gi, fo_site **sites, size_t *count)
{
    *sites = NULL;
    *count = 0;
    size_t cap = 0;
    for (size_t i = 0; i < gi->g->n_node; i++) {
        const Onnx__NodeProto *n = gi->g->node[i];
        fo_site s;
        memset(&s, 0, sizeof s);
        s.kind = -1;
        if (fo_is_plugin(n)) {
            s.kind = FO_SITE_PLUGIN;
            s.anchor = i;
            snprintf(s.path, sizeof s.path, "%s '%s' (domain '%s')", fo_str(n->op_type),
                     fo_name(n), fo_str(n->domain));
        } else if (fo_is_op(n, "Attention")) {
            fo_match_attention(gi, i, &s);
        } else if (fo_is_op(n, "Softmax") && n->n_input >= 1 && n->n_output >= 1 &&
                   n->input[0][0] && n->output[0][0]) {
            fo_match_decomposition(gi, i, &s);
        }
        if (s.kind < 0)
            continue;
        if (*count == cap) {
            cap = cap ? cap * 2 : 8;
            *sites = fo_realloc(*sites, cap * sizeof **sites);
        }
        (*sites)[(*count)++] = s;
    }
}

/* ---- rewriting ------------------------------------------------------------------------------ */

/* A Transpose named like its output (fresh, from `base`); returns the output name. */
static char *fo_add_transpose(fo_names *names, const char *base, const char *src,
                              const char *out, const int perm[4], Onnx__NodeProto ***added,
                              size_t *n_added)
{
    char *name = fo_names_fresh(names, base);
    Onnx__NodeProto *t = fo_new_node("Transpose", "", name, 1, &src, 1, out ? &out
                                                                        : (const char **)&name);
    int64_t p[4] = {perm[0], perm[1], perm[2], perm[3]};
    fo_set_attr_ints(t, "perm", p, 4);
    fo_push_ptr((void ***)added, n_added, t);
    return name;
}

static void fo_rewrite(fo_names *names, const fo_site *s, int mode, unsigned char *remove,
                       Onnx__NodeProto ***added, size_t *n_added)
{
    static const char *tags[3] = {"q", "k", "v"};
    static const int bshd_to_bhsd[4] = {0, 2, 1, 3};
    const fo_chain *ch[3] = {&s->q, &s->k, &s->v};
    char *base = fo_names_fresh(names, "fattn_attention");
    char *in[3];
    for (int i = 0; i < 3; i++) {
        const char *src = ch[i]->c[s->pick[i]].name;
        if (!s->insert[i]) {
            in[i] = fo_strdup(src);
            continue;
        }
        char *tn = fo_sprintf("%s_%s_to_%s", base, tags[i], s->layout ? "bhsd" : "bshd");
        in[i] = fo_add_transpose(names, tn, src, NULL, s->perm[i], added, n_added);
        free(tn);
    }
    char *out;
    if (s->layout == 1) {
        out = fo_strdup(s->out_bhsd);
        remove[s->out_node] = 1;
    } else if (s->has_out_t) {
        out = fo_strdup(s->out_bshd);
        remove[s->out_t_node] = 1;
    } else {
        char *tn = fo_sprintf("%s_o_bshd", base);
        out = fo_names_fresh(names, tn);
        free(tn);
        tn = fo_sprintf("%s_o_to_bhsd", base);
        free(fo_add_transpose(names, tn, out, s->out_bhsd, bshd_to_bhsd, added, n_added));
        free(tn);
        remove[s->out_node] = 1;
    }
    Onnx__NodeProto *pl = fo_new_node(FO_PLUGIN_OP, FO_PLUGIN_DOMAIN, base, 3,
                                      (const char *const *)in, 1, (const char *const *)&out);
    fo_set_attr_int(pl, "mode", mode);
    fo_set_attr_string(pl, "plugin_version", "1");
    fo_set_attr_string(pl, "plugin_namespace", "");
    fo_set_attr_int(pl, "causal", s->causal);
    double scale;
    char scale_text[64] = "1/sqrt(head_dim)";
    if (fo_site_scale(s, &scale)) {
        fo_set_attr_float(pl, "scale", (float)scale);
        snprintf(scale_text, sizeof scale_text, "%g", scale);
    }
    fo_set_attr_int(pl, "layout", s->layout);
    fo_push_ptr((void ***)added, n_added, pl);
    fo_note("fuse: %s -> %s '%s': layout %d (%s), causal %d, scale %s, %d Transpose(s) "
            "inserted", s->path, FO_PLUGIN_OP, base, s->layout, s->layout ? "BHSD" : "BSHD",
            s->causal, scale_text, s->inserts);
    for (int i = 0; i < 3; i++)
        free(in[i]);
    free(out);
    free(base);
}

int fo_fuse(fo_model *m, int mode, size_t *fused)
{
    fo_graph gi;
    *fused = 0;
    if (fo_graph_index(&gi, m) != 0)
        return -1;
    fo_site *sites;
    size_t n_sites;
    fo_find_sites(&gi, &sites, &n_sites);
    fo_names names;
    fo_names_init(&names, gi.g);
    unsigned char *remove = fo_calloc(gi.g->n_node, 1);
    Onnx__NodeProto **added = NULL;
    size_t n_added = 0;
    for (size_t i = 0; i < n_sites; i++) {
        const fo_site *s = &sites[i];
        if (s->kind == FO_SITE_PLUGIN)
            continue;
        if (!s->ok) {
            fo_note("fuse: left alone: %s: %s", s->path, s->reason);
            continue;
        }
        fo_rewrite(&names, s, mode, remove, &added, &n_added);
        (*fused)++;
    }
    fo_graph_free(&gi);
    fo_names_free(&names);
    free(sites);
    Onnx__GraphProto *g = m->proto->graph;
    fo_remove_nodes(g, remove);
    free(remove);
    for (size_t i = 0; i < n_added; i++)
        fo_push_ptr((void ***)&g->node, &g->n_node, added[i]);
    free(added);
    fo_note("fuse: %zu attention site(s) fused", *fused);
    fo_prepare_stats st;
    return fo_prepare(m, &st);
}
