/*
 * Reasoning about values computed from tensor shapes, for the patterns exporters emit when
 * shapes are dynamic: shape vectors (Shape -> Slice/Gather/Concat/...) are tracked as lists of
 * symbolic dims, and masks built from them (Expand -> Trilu -> Equal -> Where) are evaluated on
 * small concrete grids. Only what can be proven is accepted; anything else is "unknown".
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "symbolic.h"

/* Follows a dim back through 4-D Transposes to the tensor it comes from, then names it by what
 * the shape information knows: a value, a symbolic name, or (tensor, axis). */
void fo_symdim_of(const fo_graph *gi, const char *tensor, int axis, fo_symdim *d)
{
    for (int hops = 0; hops < 16; hops++) {
        const Onnx__NodeProto *p = fo_producer(gi, tensor, NULL);
        const Onnx__AttributeProto *perm = p ? fo_attr(p, "perm") : NULL;
        if (!p || !fo_is_op(p, "Transpose") || p->n_input != 1 || !perm || perm->n_ints != 4 ||
            axis < 0 || axis > 3 || perm->ints[axis] < 0 || perm->ints[axis] > 3)
            break;
        axis = (int)perm->ints[axis];
        tensor = p->input[0];
    }
    fo_shape s;
    fo_value_shape(gi, tensor, &s);
    d->name = tensor;
    d->axis = axis;
    d->value = -1;
    if (s.rank > axis && axis >= 0 && axis < FO_MAX_RANK) {
        if (s.dim[axis] >= 0) {
            d->name = NULL;
            d->value = s.dim[axis];
        } else if (s.param[axis]) {
            d->name = s.param[axis];
            d->axis = -1;
        }
    }
}

int fo_symdim_eq(const fo_symdim *a, const fo_symdim *b)
{
    if (!a->name || !b->name)
        return !a->name && !b->name && a->value == b->value;
    return a->axis == b->axis && strcmp(a->name, b->name) == 0;
}

static int fo_const_ints(const fo_graph *gi, const char *name, int64_t *v, int max, int *n)
{
    fo_const c;
    if (fo_read_const(gi, name, (size_t)max, &c) != 1)
        return 0;
    int ok = c.rank <= 1;
    for (size_t i = 0; ok && i < c.count; i++) {
        double x = c.values[i];
        ok = x == floor(x); /* false for NaN */
        if (ok)
            v[i] = x >= 9.2e18 ? INT64_MAX : x <= -9.2e18 ? INT64_MIN : (int64_t)x;
    }
    *n = (int)c.count;
    fo_const_free(&c);
    return ok;
}

static int64_t fo_clamp_index(int64_t i, int64_t n)
{
    if (i < 0)
        i = i < -n ? 0 : i + n;
    return i > n ? n : i;
}

int fo_rank_of(const fo_graph *gi, const char *tensor)
{
    fo_shape s;
    fo_value_shape(gi, tensor, &s);
    if (s.rank >= 0)
        return s.rank;
    const Onnx__NodeProto *p = fo_producer(gi, tensor, NULL);
    const Onnx__AttributeProto *perm = p ? fo_attr(p, "perm") : NULL;
    if (p && fo_is_op(p, "Transpose") && perm)
        return (int)perm->n_ints;
    return -1;
}

/* Shared sub-DAGs make recursion exponential; every evaluation gets a fixed number of calls. */
#define FO_EVAL_BUDGET 512

static int fo_shape_vector_rec(const fo_graph *gi, const char *name, fo_symdim *out, int *n,
                               int *budget)
{
    int64_t v[FO_MAX_SYMDIMS];
    int nv;
    if (--*budget < 0)
        return 0;
    if (fo_const_ints(gi, name, v, FO_MAX_SYMDIMS, &nv)) {
        for (int i = 0; i < nv; i++)
            out[i] = (fo_symdim){NULL, 0, v[i]};
        *n = nv;
        return 1;
    }
    const Onnx__NodeProto *p = fo_producer(gi, name, NULL);
    if (!p || p->n_input < 1 || !p->input[0][0])
        return 0;
    if (fo_is_op(p, "Shape")) {
        int rank = fo_rank_of(gi, p->input[0]);
        if (rank < 0 || rank > FO_MAX_SYMDIMS)
            return 0;
        int64_t start = fo_clamp_index(fo_attr_int(p, "start", 0), rank);
        int64_t end = fo_clamp_index(fo_attr_int(p, "end", rank), rank);
        *n = 0;
        for (int64_t a = start; a < end; a++)
            fo_symdim_of(gi, p->input[0], (int)a, &out[(*n)++]);
        return 1;
    }
    if (fo_is_op(p, "Cast") || fo_is_op(p, "Identity"))
        return fo_shape_vector_rec(gi, p->input[0], out, n, budget);
    if (fo_is_op(p, "Concat")) {
        *n = 0;
        for (size_t i = 0; i < p->n_input; i++) {
            fo_symdim part[FO_MAX_SYMDIMS];
            int np;
            if (!fo_shape_vector_rec(gi, p->input[i], part, &np, budget) ||
                *n + np > FO_MAX_SYMDIMS)
                return 0;
            memcpy(out + *n, part, (size_t)np * sizeof *part);
            *n += np;
        }
        return 1;
    }
    fo_symdim in[FO_MAX_SYMDIMS];
    int nin;
    if (!fo_shape_vector_rec(gi, p->input[0], in, &nin, budget))
        return 0;
    if (fo_is_op(p, "Slice") && p->n_input >= 3) {
        int64_t s[1], e[1], ax[1] = {0}, st[1] = {1};
        int k;
        if (!fo_const_ints(gi, p->input[1], s, 1, &k) || k != 1 ||
            !fo_const_ints(gi, p->input[2], e, 1, &k) || k != 1)
            return 0;
        if (p->n_input > 3 && p->input[3][0] &&
            (!fo_const_ints(gi, p->input[3], ax, 1, &k) || k != 1 || (ax[0] != 0 && ax[0] != -1)))
            return 0;
        if (p->n_input > 4 && p->input[4][0] &&
            (!fo_const_ints(gi, p->input[4], st, 1, &k) || k != 1 || st[0] != 1))
            return 0;
        int64_t b = fo_clamp_index(s[0], nin), f = fo_clamp_index(e[0], nin);
        *n = 0;
        for (int64_t i = b; i < f; i++)
            out[(*n)++] = in[i];
        return 1;
    }
    if (fo_is_op(p, "Gather") && p->n_input == 2 && fo_attr_int(p, "axis", 0) == 0) {
        int k;
        if (!fo_const_ints(gi, p->input[1], v, FO_MAX_SYMDIMS, &k))
            return 0;
        for (int i = 0; i < k; i++) {
            int64_t j = v[i] < 0 ? v[i] + nin : v[i];
            if (j < 0 || j >= nin)
                return 0;
            out[i] = in[j];
        }
        *n = k;
        return 1;
    }
    if ((fo_is_op(p, "Unsqueeze") || fo_is_op(p, "Squeeze")) && nin == 1) {
        out[0] = in[0];
        *n = 1;
        return 1;
    }
    return 0;
}

int fo_shape_vector(const fo_graph *gi, const char *name, fo_symdim *out, int *n)
{
    int budget = FO_EVAL_BUDGET;
    return fo_shape_vector_rec(gi, name, out, n, &budget);
}

/* ---- masks built from shapes ---------------------------------------------------------------- */

/* A value of the mask subgraph on a concrete n x n grid (or a scalar when count == 1). */
typedef struct fo_grid {
    int n; /* side; 0 for a scalar */
    double *v;
} fo_grid;

static double fo_at(const fo_grid *g, int i, int t)
{
    return g->n ? g->v[i * g->n + t] : g->v[0];
}

/* Evaluates `name` for query and key lengths equal to n, where both are the symbolic dim `len`.
 * Returns 1 with g filled (caller frees g->v), 0 when the subgraph is not understood. */
static int fo_eval_grid(const fo_graph *gi, const char *name, const fo_symdim *len, int n,
                        fo_grid *g, int *budget)
{
    if (--*budget < 0)
        return 0;
    double c;
    if (fo_scalar_const(gi, name, &c)) {
        g->n = 0;
        g->v = fo_malloc(sizeof *g->v);
        g->v[0] = c;
        return 1;
    }
    const Onnx__NodeProto *p = fo_producer(gi, name, NULL);
    if (!p || p->n_input < 1 || !p->input[0][0])
        return 0;
    fo_grid a = {0, NULL}, b = {0, NULL}, cnd = {0, NULL};
    int ok = 0;
    if ((fo_is_op(p, "Expand") && p->n_input == 2) || fo_is_op(p, "ConstantOfShape")) {
        fo_symdim dims[FO_MAX_SYMDIMS];
        int nd;
        const char *shape = fo_is_op(p, "Expand") ? p->input[1] : p->input[0];
        if (!fo_shape_vector(gi, shape, dims, &nd) || nd != 2 ||
            !fo_symdim_eq(&dims[0], len) || !fo_symdim_eq(&dims[1], len))
            return 0;
        if (fo_is_op(p, "Expand")) {
            if (!fo_eval_grid(gi, p->input[0], len, n, &a, budget))
                return 0;
            ok = a.n == 0;
            c = a.v[0];
        } else {
            const Onnx__AttributeProto *value = fo_attr(p, "value");
            c = 0;
            ok = !value || (value->t && fo_tensor_scalar(gi->model, value->t, &c));
        }
        if (ok) {
            g->n = n;
            g->v = fo_malloc((size_t)(n * n) * sizeof *g->v);
            for (int i = 0; i < n * n; i++)
                g->v[i] = c;
        }
    } else if (fo_is_op(p, "Trilu")) {
        int64_t kk[1] = {0};
        int nk;
        if (p->n_input > 1 && p->input[1][0] &&
            (!fo_const_ints(gi, p->input[1], kk, 1, &nk) || nk != 1))
            return 0;
        if (fo_eval_grid(gi, p->input[0], len, n, &a, budget) && a.n == n) {
            int upper = fo_attr_int(p, "upper", 1) != 0;
            g->n = n;
            g->v = fo_malloc((size_t)(n * n) * sizeof *g->v);
            for (int i = 0; i < n; i++)
                for (int t = 0; t < n; t++)
                    g->v[i * n + t] = (upper ? t - i >= kk[0] : t - i <= kk[0]) ? fo_at(&a, i, t)
                                                                             : 0;
            ok = 1;
        }
    } else if ((fo_is_op(p, "Equal") || fo_is_op(p, "Add") || fo_is_op(p, "Sub") ||
                fo_is_op(p, "Mul")) && p->n_input == 2) {
        if (fo_eval_grid(gi, p->input[0], len, n, &a, budget) &&
            fo_eval_grid(gi, p->input[1], len, n, &b, budget)) {
            g->n = a.n > b.n ? a.n : b.n;
            int cells = g->n ? g->n * g->n : 1;
            g->v = fo_malloc((size_t)cells * sizeof *g->v);
            for (int i = 0; i < cells; i++) {
                double x = fo_at(&a, g->n ? i / g->n : 0, g->n ? i % g->n : 0);
                double y = fo_at(&b, g->n ? i / g->n : 0, g->n ? i % g->n : 0);
                g->v[i] = fo_is_op(p, "Equal") ? x == y : fo_is_op(p, "Add") ? x + y
                        : fo_is_op(p, "Sub") ? x - y : x * y;
            }
            ok = 1;
        }
    } else if (fo_is_op(p, "Not") || fo_is_op(p, "Cast") || fo_is_op(p, "Identity")) {
        if (fo_eval_grid(gi, p->input[0], len, n, &a, budget)) {
            int cells = a.n ? a.n * a.n : 1;
            int to_bool = fo_is_op(p, "Cast") &&
                          fo_attr_int(p, "to", 0) == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
            for (int i = 0; i < cells; i++)
                a.v[i] = fo_is_op(p, "Not") ? a.v[i] == 0 : to_bool ? a.v[i] != 0 : a.v[i];
            *g = a;
            a.v = NULL;
            ok = 1;
        }
    } else if (fo_is_op(p, "Where") && p->n_input == 3) {
        if (fo_eval_grid(gi, p->input[0], len, n, &cnd, budget) &&
            fo_eval_grid(gi, p->input[1], len, n, &a, budget) &&
            fo_eval_grid(gi, p->input[2], len, n, &b, budget)) {
            g->n = cnd.n > a.n ? cnd.n : a.n > b.n ? a.n : b.n;
            int cells = g->n ? g->n * g->n : 1;
            g->v = fo_malloc((size_t)cells * sizeof *g->v);
            for (int i = 0; i < cells; i++) {
                int r = g->n ? i / g->n : 0, t = g->n ? i % g->n : 0;
                g->v[i] = fo_at(&cnd, r, t) != 0 ? fo_at(&a, r, t) : fo_at(&b, r, t);
            }
            ok = 1;
        }
    }
    free(a.v);
    free(b.v);
    free(cnd.v);
    return ok;
}

int fo_runtime_causal_mask(const fo_graph *gi, const char *mask, const fo_symdim *len,
                           int masked_when, double after, int *causal)
{
    int all_allowed = 1, causal_ok = 1;
    for (int n = 1; n <= 6; n++) {
        fo_grid g;
        int budget = FO_EVAL_BUDGET;
        if (!fo_eval_grid(gi, mask, len, n, &g, &budget))
            return 0;
        for (int i = 0; i < n; i++) {
            for (int t = 0; t < n; t++) {
                double v = fo_at(&g, i, t);
                int allowed = masked_when < 0 ? v == 0 : (v != 0) != masked_when;
                if (masked_when < 0 && !allowed && !(v * after <= -1e4)) {
                    free(g.v);
                    return 0;
                }
                all_allowed &= allowed;
                causal_ok &= allowed == (t <= i);
            }
        }
        free(g.v);
    }
    if (!all_allowed && !causal_ok)
        return 0;
    *causal = !all_allowed;
    return 1;
}
