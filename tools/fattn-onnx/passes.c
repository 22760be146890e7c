/* Graph-wide passes: topological sort, dead-code removal, and `prepare`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ---- topological sort ----------------------------------------------------------------------- */

typedef struct fo_edges {
    const fo_graph *gi;
    size_t node;
    size_t *from;
    size_t *to;
    size_t n;
    size_t cap;
    int self_loop;
} fo_edges;

static void fo_edge_add(const char *name, void *ctx)
{
    fo_edges *e = ctx;
    int64_t *p = fo_map_get(&e->gi->producer, name);
    if (!p)
        return;
    if ((size_t)*p == e->node) {
        e->self_loop = 1;
        return;
    }
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 256;
        e->from = fo_realloc(e->from, e->cap * sizeof *e->from);
        e->to = fo_realloc(e->to, e->cap * sizeof *e->to);
    }
    e->from[e->n] = (size_t)*p;
    e->to[e->n] = e->node;
    e->n++;
}

static void fo_heap_push(size_t *h, size_t *n, size_t v)
{
    size_t i = (*n)++;
    h[i] = v;
    while (i && h[(i - 1) / 2] > h[i]) {
        size_t p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static size_t fo_heap_pop(size_t *h, size_t *n)
{
    size_t top = h[0];
    h[0] = h[--(*n)];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l] < h[m])
            m = l;
        if (r < *n && h[r] < h[m])
            m = r;
        if (m == i)
            break;
        size_t t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

int fo_toposort(fo_model *m, int *moved)
{
    fo_graph gi;
    if (fo_graph_index(&gi, m) != 0)
        return -1;
    Onnx__GraphProto *g = gi.g;
    size_t n = g->n_node;
    char label[300];
    fo_edges e = {&gi, 0, NULL, NULL, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        const Onnx__NodeProto *node = g->node[i];
        for (size_t k = 0; k < node->n_input; k++) {
            const char *in = node->input[k];
            if (in[0] && !fo_map_get(&gi.producer, in) && !fo_map_get(&gi.input, in) &&
                !fo_map_get(&gi.initializer, in)) {
                fo_fail("%s: node %s reads '%s', which no node, graph input or initializer "
                        "defines", m->path, fo_node_label(node, i, label, sizeof label), in);
                goto fail;
            }
        }
        e.node = i;
        fo_node_reads(node, fo_edge_add, &e);
        if (e.self_loop) {
            fo_fail("%s: node %s reads its own output (a cycle)", m->path,
                    fo_node_label(node, i, label, sizeof label));
            goto fail;
        }
    }
    size_t *indeg = fo_calloc(n, sizeof *indeg);
    size_t *start = fo_calloc(n + 1, sizeof *start);
    size_t *succ = fo_malloc((e.n ? e.n : 1) * sizeof *succ);
    for (size_t k = 0; k < e.n; k++) {
        indeg[e.to[k]]++;
        start[e.from[k] + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    size_t *fill = fo_malloc((n + 1) * sizeof *fill);
    memcpy(fill, start, (n + 1) * sizeof *fill);
    for (size_t k = 0; k < e.n; k++)
        succ[fill[e.from[k]]++] = e.to[k];
    /* Min-heap on the original position: a sorted graph keeps its order exactly. */
    size_t *heap = fo_malloc((n ? n : 1) * sizeof *heap), hn = 0;
    size_t *order = fo_malloc((n ? n : 1) * sizeof *order), done = 0;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i])
            fo_heap_push(heap, &hn, i);
    while (hn) {
        size_t v = fo_heap_pop(heap, &hn);
        order[done++] = v;
        for (size_t k = start[v]; k < start[v + 1]; k++)
            if (--indeg[succ[k]] == 0)
                fo_heap_push(heap, &hn, succ[k]);
    }
    int rc = 0;
    if (done < n) {
        size_t bad = 0;
        while (indeg[bad] == 0)
            bad++;
        rc = fo_fail("%s: node %s is part of a cycle", m->path,
                     fo_node_label(g->node[bad], bad, label, sizeof label));
    } else {
        Onnx__NodeProto **sorted = fo_malloc((n ? n : 1) * sizeof *sorted);
        *moved = 0;
        for (size_t i = 0; i < n; i++) {
            sorted[i] = g->node[order[i]];
            *moved |= order[i] != i;
        }
        free(g->node);
        g->node = sorted;
    }
    free(indeg);
    free(start);
    free(succ);
    free(fill);
    free(heap);
    free(order);
    free(e.from);
    free(e.to);
    fo_graph_free(&gi);
    return rc;
fail:
    free(e.from);
    free(e.to);
    fo_graph_free(&gi);
    return -1;
}

/* ---- dead code ------------------------------------------------------------------------------ */

typedef struct fo_live {
    const fo_graph *gi;
    unsigned char *live;
    size_t *stack;
    size_t top;
} fo_live;

static void fo_live_mark(const char *name, void *ctx)
{
    fo_live *l = ctx;
    int64_t *p = fo_map_get(&l->gi->producer, name);
    if (p && !l->live[*p]) {
        l->live[*p] = 1;
        l->stack[l->top++] = (size_t)*p;
    }
}

static void fo_map_read(const char *name, void *ctx)
{
    fo_map_put(ctx, name, 0);
}

int fo_remove_dead(fo_model *m, size_t *nodes_removed, size_t *initializers_removed)
{
    fo_graph gi;
    if (fo_graph_index(&gi, m) != 0)
        return -1;
    Onnx__GraphProto *g = gi.g;
    fo_live l = {&gi, fo_calloc(g->n_node, 1), fo_malloc((g->n_node + 1) * sizeof(size_t)), 0};
    for (size_t i = 0; i < g->n_output; i++)
        fo_live_mark(fo_str(g->output[i]->name), &l);
    while (l.top)
        fo_node_reads(g->node[l.stack[--l.top]], fo_live_mark, &l);
    unsigned char *remove = fo_calloc(g->n_node, 1);
    *nodes_removed = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        remove[i] = !l.live[i];
        *nodes_removed += remove[i];
    }
    fo_graph_free(&gi);
    fo_remove_nodes(g, remove);
    free(remove);
    free(l.live);
    free(l.stack);

    fo_map read;
    fo_map_init(&read);
    for (size_t i = 0; i < g->n_node; i++)
        fo_node_reads(g->node[i], fo_map_read, &read);
    for (size_t i = 0; i < g->n_output; i++)
        fo_map_put(&read, fo_str(g->output[i]->name), 0);
    fo_map gone;
    fo_map_init(&gone);
    size_t k = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        Onnx__TensorProto *t = g->initializer[i];
        if (fo_map_get(&read, fo_str(t->name))) {
            g->initializer[k++] = t;
        } else {
            fo_map_put(&gone, fo_str(t->name), 0);
            protobuf_c_message_free_unpacked(&t->base, NULL);
        }
    }
    *initializers_removed = g->n_initializer - k;
    g->n_initializer = k;
    /* Graph inputs that only gave an overridable default to a removed initializer go too. */
    k = 0;
    for (size_t i = 0; i < g->n_input; i++) {
        if (fo_map_get(&gone, fo_str(g->input[i]->name)))
            protobuf_c_message_free_unpacked(&g->input[i]->base, NULL);
        else
            g->input[k++] = g->input[i];
    }
    g->n_input = k;
    /* value_info of values that no longer exist would describe nothing. */
    fo_map defined;
    fo_map_init(&defined);
    for (size_t i = 0; i < g->n_node; i++)
        for (size_t o = 0; o < g->node[i]->n_output; o++)
            fo_map_put(&defined, g->node[i]->output[o], 0);
    for (size_t i = 0; i < g->n_initializer; i++)
        fo_map_put(&defined, fo_str(g->initializer[i]->name), 0);
    for (size_t i = 0; i < g->n_input; i++)
        fo_map_put(&defined, fo_str(g->input[i]->name), 0);
    k = 0;
    for (size_t i = 0; i < g->n_value_info; i++) {
        if (fo_map_get(&defined, fo_str(g->value_info[i]->name)))
            g->value_info[k++] = g->value_info[i];
        else
            protobuf_c_message_free_unpacked(&g->value_info[i]->base, NULL);
    }
    g->n_value_info = k;
    fo_map_free(&defined);
    fo_map_free(&gone);
    fo_map_free(&read);
    return 0;
}

/* ---- prepare: plugin nodes ------------------------------------------------------------------ */

static int fo_is_plugin_node(const Onnx__NodeProto *n)
{
    return fo_streq(n->op_type, FO_PLUGIN_OP) || fo_streq(n->domain, FO_PLUGIN_DOMAIN) ||
           fo_streq(n->op_type, "custom_attn");
}

/* The value of an attribute that should be one integer, from any encoding exporters produced.
 * Returns 0 with *v set, or -1 with *why describing the value. */
static int fo_attr_integer(const Onnx__AttributeProto *a, int allow_names, int64_t *v,
                           char *why, size_t why_size)
{
    char buf[128];
    double f = NAN;
    switch (a->has_type ? a->type : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        *v = a->i;
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        if (a->n_ints == 1) {
            *v = a->ints[0];
            return 0;
        }
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        f = a->f;
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if (a->n_floats == 1)
            f = a->floats[0];
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
        char s[64];
        size_t len = a->s.len < sizeof s - 1 ? a->s.len : sizeof s - 1;
        memcpy(s, a->s.data ? (const char *)a->s.data : "", len);
        s[len] = '\0';
        if (allow_names && strcmp(s, "native") == 0) {
            *v = 0;
            return 0;
        }
        if (allow_names && strcmp(s, "fp8") == 0) {
            *v = 1;
            return 0;
        }
        char *end;
        long long x = strtoll(s, &end, 10);
        if (len && *end == '\0' && a->s.len == len) {
            *v = x;
            return 0;
        }
        break;
    }
    default:
        break;
    }
    if (isfinite(f) && f == floor(f) && fabs(f) < 1e15) {
        *v = (int64_t)f;
        return 0;
    }
    snprintf(why, why_size, "%s is not one integer", fo_attr_str(a, buf, sizeof buf));
    return -1;
}

static int fo_attr_real(const Onnx__AttributeProto *a, double *v)
{
    switch (a->has_type ? a->type : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        *v = a->f;
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        *v = (double)a->i;
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if (a->n_floats != 1)
            return -1;
        *v = a->floats[0];
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: {
        char s[64], *end;
        size_t len = a->s.len < sizeof s - 1 ? a->s.len : sizeof s - 1;
        memcpy(s, a->s.data ? (const char *)a->s.data : "", len);
        s[len] = '\0';
        *v = strtod(s, &end);
        return len && *end == '\0' && a->s.len == len ? 0 : -1;
    }
    default:
        return -1;
    }
}

static int fo_is_string_attr(const Onnx__AttributeProto *a, const char *value)
{
    return a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING &&
           a->s.len == strlen(value) && (!a->s.len || memcmp(a->s.data, value, a->s.len) == 0);
}

typedef struct fo_flag_field {
    const char *name;
    const char *aliases[3]; /* legacy exporter suffixes: name_i, name_s, name_f */
    int required;
    int64_t fallback;
    int allow_names;
} fo_flag_field;

/* An INT field restricted to 0/1: found under its name or a legacy alias, converted to INT. */
static int fo_normalize_flag(const fo_model *m, Onnx__NodeProto *n, const char *label,
                             const fo_flag_field *f)
{
    Onnx__AttributeProto *a = fo_attr(n, f->name);
    const char *found = f->name;
    for (int k = 0; !a && k < 3; k++)
        if ((a = fo_attr(n, f->aliases[k])))
            found = f->aliases[k];
    char was[128], why[200];
    int64_t v;
    if (!a) {
        if (f->required) {
            fo_set_attr_int(n, f->name, f->fallback);
            fo_note("prepare: node %s: %s was missing; set to INT %lld", label, f->name,
                    (long long)f->fallback);
        }
        return 0;
    }
    if (fo_attr_integer(a, f->allow_names, &v, why, sizeof why) != 0)
        return fo_fail("%s: node %s: attribute %s: %s; expected 0 or 1", m->path, label, found,
                       why);
    if (v != 0 && v != 1)
        return fo_fail("%s: node %s: attribute %s is %lld; expected 0 or 1", m->path, label,
                       found, (long long)v);
    int is_int = a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    if (is_int && found == f->name)
        return 0;
    fo_attr_str(a, was, sizeof was);
    fo_remove_attr(n, found);
    fo_set_attr_int(n, f->name, v);
    fo_note("prepare: node %s: %s %s -> %s INT %lld", label, found, was, f->name, (long long)v);
    return 0;
}

static int fo_normalize_plugin(const fo_model *m, Onnx__NodeProto *n, size_t index)
{
    char label[300], was[128];
    fo_node_label(n, index, label, sizeof label);
    if (n->n_input != 3 || !n->input[0][0] || !n->input[1][0] || !n->input[2][0])
        return fo_fail("%s: node %s: a plugin attention node takes exactly 3 inputs (q, k, v); "
                       "it has %zu", m->path, label, n->n_input);
    if (n->n_output != 1 || !n->output[0][0])
        return fo_fail("%s: node %s: a plugin attention node has exactly 1 output; it has %zu",
                       m->path, label, n->n_output);
    if (!fo_streq(n->op_type, FO_PLUGIN_OP)) {
        fo_note("prepare: node %s: op_type -> %s", label, FO_PLUGIN_OP);
        fo_set_string(&n->op_type, FO_PLUGIN_OP);
    }
    if (fo_is_default_domain(n->domain)) {
        /* TensorRT ignores the domain, but onnx's checker rejects unknown ops in ai.onnx. */
        fo_note("prepare: node %s: domain '%s' -> '%s'", label, fo_str(n->domain),
                FO_PLUGIN_DOMAIN);
        fo_set_string(&n->domain, FO_PLUGIN_DOMAIN);
    }
    static const fo_flag_field fields[] = {
        {"mode", {"mode_i", "mode_s", "mode_f"}, 1, 0, 1},
        {"causal", {"causal_i", "causal_s", "causal_f"}, 0, 0, 0},
        {"layout", {"layout_i", "layout_s", "layout_f"}, 0, 0, 0},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
        if (fo_normalize_flag(m, n, label, &fields[f]) != 0)
            return -1;
    static const char *strings[2][2] = {{"plugin_version", "1"}, {"plugin_namespace", ""}};
    for (int s = 0; s < 2; s++) {
        Onnx__AttributeProto *a = fo_attr(n, strings[s][0]);
        if (a && fo_is_string_attr(a, strings[s][1]))
            continue;
        if (a)
            fo_note("prepare: node %s: %s %s -> STRING \"%s\"", label, strings[s][0],
                    fo_attr_str(a, was, sizeof was), strings[s][1]);
        else
            fo_note("prepare: node %s: %s set to \"%s\"", label, strings[s][0], strings[s][1]);
        fo_set_attr_string(n, strings[s][0], strings[s][1]);
    }
    const char *scale_names[3] = {"scale", "scale_f", "scale_s"};
    for (int k = 0; k < 3; k++) {
        Onnx__AttributeProto *a = fo_attr(n, scale_names[k]);
        if (!a)
            continue;
        double v;
        if (fo_attr_real(a, &v) != 0 || !isfinite(v) || fabs(v) > 3.4e38)
            return fo_fail("%s: node %s: attribute %s (%s) is not a finite float scale (0 "
                           "selects 1/sqrt(head_dim))", m->path, label, scale_names[k],
                           fo_attr_str(a, was, sizeof was));
        if (k == 0 && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)
            break;
        fo_attr_str(a, was, sizeof was);
        fo_remove_attr(n, scale_names[k]);
        fo_set_attr_float(n, "scale", (float)v);
        fo_note("prepare: node %s: %s %s -> scale FLOAT %g", label, scale_names[k], was, v);
        break;
    }
    static const char *known[] = {"mode", "plugin_version", "plugin_namespace", "causal",
                                  "scale", "layout"};
    for (size_t i = 0; i < n->n_attribute; i++) {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && !fo_streq(n->attribute[i]->name, known[k]))
            k++;
        if (k == sizeof known / sizeof known[0])
            fo_note("prepare: node %s: attribute '%s' is not a plugin field; TensorRT ignores "
                    "it", label, fo_str(n->attribute[i]->name));
    }
    return 0;
}

typedef int (*fo_graph_fn)(const fo_model *m, Onnx__GraphProto *g, void *ctx);

/* Calls fn on the main graph and, depth first, on every subgraph. */
static int fo_each_graph(const fo_model *m, Onnx__GraphProto *g, fo_graph_fn fn, void *ctx)
{
    if (fn(m, g, ctx) != 0)
        return -1;
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *n = g->node[i];
        for (size_t a = 0; a < n->n_attribute; a++) {
            if (n->attribute[a]->g && fo_each_graph(m, n->attribute[a]->g, fn, ctx) != 0)
                return -1;
            for (size_t k = 0; k < n->attribute[a]->n_graphs; k++)
                if (fo_each_graph(m, n->attribute[a]->graphs[k], fn, ctx) != 0)
                    return -1;
        }
    }
    return 0;
}

static int fo_plugins_in_graph(const fo_model *m, Onnx__GraphProto *g, void *ctx)
{
    size_t *count = ctx;
    for (size_t i = 0; i < g->n_node; i++) {
        if (!fo_is_plugin_node(g->node[i]))
            continue;
        if (fo_normalize_plugin(m, g->node[i], i) != 0)
            return -1;
        (*count)++;
    }
    return 0;
}

/* ---- prepare: names ------------------------------------------------------------------------- */

typedef struct fo_naming {
    fo_map seen;   /* node names taken so far */
    fo_names all;  /* every name in use, for fresh ones */
    size_t renamed;
} fo_naming;

static int fo_unique_names(const fo_model *m, Onnx__GraphProto *g, void *ctx)
{
    fo_naming *nm = ctx;
    for (size_t i = 0; i < g->n_node; i++) {
        Onnx__NodeProto *n = g->node[i];
        const char *name = fo_str(n->name);
        if (*name && !fo_map_get(&nm->seen, name)) {
            fo_map_put(&nm->seen, name, 0);
            continue;
        }
        char *fresh = fo_names_fresh(&nm->all, *name ? name : fo_str(n->op_type));
        char label[300];
        fo_note("prepare: node %s renamed '%s'%s", fo_node_label(n, i, label, sizeof label),
                fresh, *name ? " (duplicate name)" : "");
        fo_set_string(&n->name, fresh);
        fo_map_put(&nm->seen, fresh, 0);
        free(fresh);
        nm->renamed++;
    }
    (void)m;
    return 0;
}

/* ---- prepare: opset imports ----------------------------------------------------------------- */

static int fo_collect_domains(const fo_model *m, Onnx__GraphProto *g, void *ctx)
{
    (void)m;
    for (size_t i = 0; i < g->n_node; i++)
        fo_map_put(ctx, fo_is_default_domain(g->node[i]->domain) ? "" : g->node[i]->domain, 0);
    return 0;
}

static int fo_standard_domain(const char *d)
{
    return fo_is_default_domain(d) || strcmp(d, "ai.onnx.ml") == 0 ||
           strcmp(d, "ai.onnx.training") == 0 || strcmp(d, "ai.onnx.preview.training") == 0;
}

static void fo_add_opset(Onnx__ModelProto *p, const char *domain, int64_t version)
{
    Onnx__OperatorSetIdProto *o = fo_malloc(sizeof *o);
    onnx__operator_set_id_proto__init(o);
    o->domain = fo_strdup(domain);
    o->has_version = 1;
    o->version = version;
    fo_push_ptr((void ***)&p->opset_import, &p->n_opset_import, o);
}

static int fo_fix_opsets(fo_model *m)
{
    Onnx__ModelProto *p = m->proto;
    fo_map used, seen;
    fo_map_init(&used);
    fo_map_init(&seen);
    fo_each_graph(m, p->graph, fo_collect_domains, &used);
    for (size_t f = 0; f < p->n_functions; f++) {
        const Onnx__FunctionProto *fn = p->functions[f];
        fo_map_put(&used, fo_is_default_domain(fn->domain) ? "" : fn->domain, 0);
        for (size_t i = 0; i < fn->n_node; i++)
            fo_map_put(&used, fo_is_default_domain(fn->node[i]->domain) ? "" : fn->node[i]->domain,
                       0);
    }
    size_t k = 0;
    for (size_t i = 0; i < p->n_opset_import; i++) {
        Onnx__OperatorSetIdProto *o = p->opset_import[i];
        const char *d = fo_is_default_domain(o->domain) ? "" : o->domain;
        int64_t *prev = fo_map_get(&seen, d);
        if (prev) {
            Onnx__OperatorSetIdProto *keep = p->opset_import[*prev];
            fo_note("prepare: opset import '%s' appears twice (versions %lld and %lld); kept "
                    "%lld", d, (long long)keep->version, (long long)o->version,
                    (long long)(o->version > keep->version ? o->version : keep->version));
            if (o->version > keep->version)
                keep->version = o->version;
            protobuf_c_message_free_unpacked(&o->base, NULL);
            continue;
        }
        if (!fo_standard_domain(d) && !fo_map_get(&used, d)) {
            fo_note("prepare: removed opset import '%s' (no node uses it)", d);
            protobuf_c_message_free_unpacked(&o->base, NULL);
            continue;
        }
        fo_map_put(&seen, d, (int64_t)k);
        p->opset_import[k++] = o;
    }
    p->n_opset_import = k;
    int rc = 0;
    for (size_t i = 0; i < used.cap && rc == 0; i++) {
        const char *d = used.keys[i];
        if (!d || fo_map_get(&seen, d))
            continue;
        if (!*d || strcmp(d, "ai.onnx.ml") == 0) {
            rc = fo_fail("%s: nodes use domain '%s' but the model imports no opset for it",
                         m->path, *d ? d : "ai.onnx");
            break;
        }
        fo_add_opset(p, d, 1);
        fo_map_put(&seen, d, 0);
        fo_note("prepare: added opset import '%s' version 1", d);
    }
    fo_map_free(&used);
    fo_map_free(&seen);
    return rc;
}

int fo_prepare(fo_model *m, fo_prepare_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    if (fo_each_graph(m, m->proto->graph, fo_plugins_in_graph, &stats->plugin_nodes) != 0)
        return -1;
    size_t dead_nodes, dead_inits;
    if (fo_remove_dead(m, &dead_nodes, &dead_inits) != 0)
        return -1;
    if (dead_nodes)
        fo_note("prepare: removed %zu node(s) that no graph output depends on", dead_nodes);
    if (dead_inits)
        fo_note("prepare: removed %zu unused initializer(s)", dead_inits);
    int moved = 0;
    if (fo_toposort(m, &moved) != 0)
        return -1;
    if (moved)
        fo_note("prepare: reordered nodes topologically");
    fo_naming nm;
    fo_map_init(&nm.seen);
    fo_names_init(&nm.all, m->proto->graph);
    nm.renamed = 0;
    fo_each_graph(m, m->proto->graph, fo_unique_names, &nm);
    stats->renamed = nm.renamed;
    fo_map_free(&nm.seen);
    fo_names_free(&nm.all);
    if (fo_fix_opsets(m) != 0)
        return -1;
    fo_note("prepare: %zu plugin node(s), %zu node(s) renamed, %zu node(s) and %zu "
            "initializer(s) removed", stats->plugin_nodes, stats->renamed, dead_nodes, dead_inits);
    return 0;
}
