/* The graph index (producers, consumers, shapes, constants) and node/attribute editing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int fo_is_default_domain(const char *domain)
{
    return !domain || !*domain || strcmp(domain, "ai.onnx") == 0;
}

int fo_is_op(const Onnx__NodeProto *n, const char *op_type)
{
    return fo_is_default_domain(n->domain) && fo_streq(n->op_type, op_type);
}

int64_t fo_opset_version(const Onnx__ModelProto *p, const char *domain)
{
    int def = fo_is_default_domain(domain);
    for (size_t i = 0; i < p->n_opset_import; i++) {
        const char *d = p->opset_import[i]->domain;
        if (def ? fo_is_default_domain(d) : fo_streq(d, domain))
            return p->opset_import[i]->version;
    }
    return 0;
}

const char *fo_node_label(const Onnx__NodeProto *n, size_t index, char *buf, size_t size)
{
    if (n->name && *n->name)
        snprintf(buf, size, "'%s' (%s)", n->name, fo_str(n->op_type));
    else
        snprintf(buf, size, "#%zu (%s, unnamed)", index, fo_str(n->op_type));
    return buf;
}

static void fo_graph_reads(const Onnx__GraphProto *g, fo_name_fn fn, void *ctx)
{
    for (size_t i = 0; i < g->n_node; i++)
        fo_node_reads(g->node[i], fn, ctx);
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name)
            fn(g->output[i]->name, ctx);
}

void fo_node_reads(const Onnx__NodeProto *n, fo_name_fn fn, void *ctx)
{
    for (size_t i = 0; i < n->n_input; i++)
        if (n->input[i][0])
            fn(n->input[i], ctx);
    /* Names a subgraph reads may come from the enclosing graph (ONNX's implicit inputs); taking
     * them all is conservative, since a subgraph may not redefine an outer name. */
    for (size_t a = 0; a < n->n_attribute; a++) {
        const Onnx__AttributeProto *at = n->attribute[a];
        if (at->g)
            fo_graph_reads(at->g, fn, ctx);
        for (size_t k = 0; k < at->n_graphs; k++)
            fo_graph_reads(at->graphs[k], fn, ctx);
    }
}

typedef struct fo_index_ctx {
    fo_graph *gi;
    size_t node;
} fo_index_ctx;

static void fo_index_read(const char *name, void *ctx)
{
    fo_index_ctx *c = ctx;
    int64_t *count = fo_map_get(&c->gi->consumers, name);
    if (count) {
        (*count)++;
    } else {
        fo_map_put(&c->gi->consumers, name, 1);
        fo_map_put(&c->gi->first_consumer, name, (int64_t)c->node);
    }
}

int fo_graph_index(fo_graph *gi, const fo_model *m)
{
    memset(gi, 0, sizeof *gi);
    gi->model = m;
    gi->g = m->proto->graph;
    gi->opset = fo_opset_version(m->proto, "");
    fo_map_init(&gi->producer);
    fo_map_init(&gi->consumers);
    fo_map_init(&gi->first_consumer);
    fo_map_init(&gi->initializer);
    fo_map_init(&gi->input);
    fo_map_init(&gi->output);
    fo_map_init(&gi->value_info);
    const Onnx__GraphProto *g = gi->g;
    for (size_t i = 0; i < g->n_initializer; i++)
        if (g->initializer[i]->name)
            fo_map_put(&gi->initializer, g->initializer[i]->name, (int64_t)i);
    for (size_t i = 0; i < g->n_input; i++)
        if (g->input[i]->name)
            fo_map_put(&gi->input, g->input[i]->name, (int64_t)i);
    for (size_t i = 0; i < g->n_output; i++)
        if (g->output[i]->name)
            fo_map_put(&gi->output, g->output[i]->name, (int64_t)i);
    for (size_t i = 0; i < g->n_value_info; i++)
        if (g->value_info[i]->name)
            fo_map_put(&gi->value_info, g->value_info[i]->name, (int64_t)i);
    char label[300];
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        for (size_t o = 0; o < n->n_output; o++) {
            if (!n->output[o][0])
                continue;
            int64_t *prev = fo_map_get(&gi->producer, n->output[o]);
            if (prev || fo_map_get(&gi->initializer, n->output[o]) ||
                fo_map_get(&gi->input, n->output[o])) {
                fo_fail("%s: node %s: output '%s' is already defined %s", m->path,
                        fo_node_label(n, i, label, sizeof label), n->output[o],
                        prev ? "by another node" : "as a graph input or initializer");
                fo_graph_free(gi);
                return -1;
            }
            fo_map_put(&gi->producer, n->output[o], (int64_t)i);
        }
        fo_index_ctx ctx = {gi, i};
        fo_node_reads(n, fo_index_read, &ctx);
    }
    return 0;
}

void fo_graph_free(fo_graph *gi)
{
    fo_map_free(&gi->producer);
    fo_map_free(&gi->consumers);
    fo_map_free(&gi->first_consumer);
    fo_map_free(&gi->initializer);
    fo_map_free(&gi->input);
    fo_map_free(&gi->output);
    fo_map_free(&gi->value_info);
}

int64_t fo_consumer_count(const fo_graph *gi, const char *name)
{
    int64_t *c = fo_map_get(&gi->consumers, name);
    return c ? *c : 0;
}

int fo_is_graph_output(const fo_graph *gi, const char *name)
{
    return fo_map_get(&gi->output, name) != NULL;
}

Onnx__NodeProto *fo_producer(const fo_graph *gi, const char *name, size_t *index)
{
    int64_t *p = fo_map_get(&gi->producer, name);
    if (!p)
        return NULL;
    if (index)
        *index = (size_t)*p;
    return gi->g->node[*p];
}

static void fo_shape_from_type(const Onnx__TypeProto *tp, fo_shape *s)
{
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return;
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type)
        s->elem_type = tt->elem_type;
    if (!tt->shape)
        return;
    s->rank = (int)(tt->shape->n_dim > 1000 ? 1000 : tt->shape->n_dim);
    for (size_t i = 0; i < tt->shape->n_dim && i < FO_MAX_RANK; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        s->dim[i] = -1;
        s->param[i] = NULL;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
            s->dim[i] = d->dim_value;
        else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                 d->dim_param && *d->dim_param)
            s->param[i] = d->dim_param;
    }
}

void fo_value_shape(const fo_graph *gi, const char *name, fo_shape *s)
{
    memset(s, 0, sizeof *s);
    s->rank = -1;
    int64_t *i;
    if ((i = fo_map_get(&gi->initializer, name))) {
        const Onnx__TensorProto *t = gi->g->initializer[*i];
        s->elem_type = t->data_type;
        s->rank = (int)(t->n_dims > 1000 ? 1000 : t->n_dims);
        for (size_t d = 0; d < t->n_dims && d < FO_MAX_RANK; d++)
            s->dim[d] = t->dims[d];
        return;
    }
    if ((i = fo_map_get(&gi->input, name)))
        fo_shape_from_type(gi->g->input[*i]->type, s);
    else if ((i = fo_map_get(&gi->value_info, name)))
        fo_shape_from_type(gi->g->value_info[*i]->type, s);
    else if ((i = fo_map_get(&gi->output, name)))
        fo_shape_from_type(gi->g->output[*i]->type, s);
}

const char *fo_shape_str(const fo_shape *s, char *buf, size_t size)
{
    if (s->rank < 0) {
        snprintf(buf, size, "?");
        return buf;
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < s->rank && used < size; d++) {
        const char *sep = d ? ", " : "";
        if (d >= FO_MAX_RANK)
            used += (size_t)snprintf(buf + used, size - used, "%s?", sep);
        else if (s->param[d])
            used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, s->param[d]);
        else if (s->dim[d] >= 0)
            used += (size_t)snprintf(buf + used, size - used, "%s%lld", sep,
                                     (long long)s->dim[d]);
        else
            used += (size_t)snprintf(buf + used, size - used, "%s?", sep);
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

static double fo_half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : ldexp(f + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double fo_bf16_to_double(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts a readable numeric tensor to doubles; 0 when its type is not numeric. */
static int fo_tensor_doubles(const fo_model *m, const Onnx__TensorProto *t, size_t max_count,
                             fo_const *c)
{
    int64_t numel = fo_tensor_numel(t);
    if (numel < 0 || (uint64_t)numel > max_count || t->n_dims > FO_MAX_RANK ||
        !fo_dtype_size(t->data_type))
        return 0;
    uint8_t *raw;
    size_t bytes;
    if (fo_tensor_bytes(m, t, &raw, &bytes) != 0)
        return -1;
    c->rank = (int)t->n_dims;
    for (size_t d = 0; d < t->n_dims; d++)
        c->dim[d] = t->dims[d];
    c->count = (size_t)numel;
    c->values = fo_malloc(c->count * sizeof *c->values);
    int ok = 1;
    for (size_t i = 0; i < c->count && ok; i++) {
        const uint8_t *p = raw + i * fo_dtype_size(t->data_type);
        double v = 0;
        switch (t->data_type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: { float f; memcpy(&f, p, 4); v = f; break; }
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: memcpy(&v, p, 8); break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: { uint16_t h; memcpy(&h, p, 2); v = fo_half_to_double(h); break; }
        case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: { uint16_t h; memcpy(&h, p, 2); v = fo_bf16_to_double(h); break; }
        case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
        case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: v = p[0]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: v = (int8_t)p[0]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t x; memcpy(&x, p, 4); v = x; break; }
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: { int64_t x; memcpy(&x, p, 8); v = (double)x; break; }
        default: ok = 0; break;
        }
        c->values[i] = v;
    }
    free(raw);
    if (!ok) {
        fo_const_free(c);
        return 0;
    }
    return 1;
}

void fo_const_free(fo_const *c)
{
    free(c->values);
    memset(c, 0, sizeof *c);
}

int fo_read_const(const fo_graph *gi, const char *name, size_t max_count, fo_const *c)
{
    memset(c, 0, sizeof *c);
    int64_t *i = fo_map_get(&gi->initializer, name);
    if (i) {
        /* An initializer that is also a graph input is only a default the caller may replace. */
        if (fo_map_get(&gi->input, name))
            return 0;
        return fo_tensor_doubles(gi->model, gi->g->initializer[*i], max_count, c);
    }
    Onnx__NodeProto *p = fo_producer(gi, name, NULL);
    if (!p || !fo_is_op(p, "Constant"))
        return 0;
    for (size_t a = 0; a < p->n_attribute; a++) {
        const Onnx__AttributeProto *at = p->attribute[a];
        if (fo_streq(at->name, "value") && at->t)
            return fo_tensor_doubles(gi->model, at->t, max_count, c);
        if (fo_streq(at->name, "value_float") || fo_streq(at->name, "value_int")) {
            c->rank = 0;
            c->count = 1;
            c->values = fo_malloc(sizeof *c->values);
            c->values[0] = fo_streq(at->name, "value_float") ? at->f : (double)at->i;
            return 1;
        }
        if ((fo_streq(at->name, "value_floats") || fo_streq(at->name, "value_ints"))) {
            int fl = fo_streq(at->name, "value_floats");
            size_t n = fl ? at->n_floats : at->n_ints;
            if (n > max_count)
                return 0;
            c->rank = 1;
            c->dim[0] = (int64_t)n;
            c->count = n;
            c->values = fo_malloc((n ? n : 1) * sizeof *c->values);
            for (size_t k = 0; k < n; k++)
                c->values[k] = fl ? at->floats[k] : (double)at->ints[k];
            return 1;
        }
    }
    return 0;
}

/* found: what fo_tensor_doubles or fo_read_const returned for c */
static int fo_single_value(int found, fo_const *c, double *value)
{
    if (found != 1)
        return 0;
    int ok = c->count == 1;
    if (ok)
        *value = c->values[0];
    fo_const_free(c);
    return ok;
}

int fo_tensor_scalar(const fo_model *m, const Onnx__TensorProto *t, double *value)
{
    fo_const c;
    return fo_single_value(fo_tensor_doubles(m, t, 1, &c), &c, value);
}

int fo_scalar_const(const fo_graph *gi, const char *name, double *value)
{
    fo_const c;
    return fo_single_value(fo_read_const(gi, name, 1, &c), &c, value);
}

/* ---- attributes ----------------------------------------------------------------------------- */

Onnx__AttributeProto *fo_attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t i = 0; i < n->n_attribute; i++)
        if (fo_streq(n->attribute[i]->name, name))
            return n->attribute[i];
    return NULL;
}

int64_t fo_attr_int(const Onnx__NodeProto *n, const char *name, int64_t fallback)
{
    const Onnx__AttributeProto *a = fo_attr(n, name);
    return a && a->has_i ? a->i : fallback;
}

void fo_remove_attr(Onnx__NodeProto *n, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n->n_attribute; i++) {
        if (fo_streq(n->attribute[i]->name, name))
            protobuf_c_message_free_unpacked(&n->attribute[i]->base, NULL);
        else
            n->attribute[k++] = n->attribute[i];
    }
    n->n_attribute = k;
}

static Onnx__AttributeProto *fo_fresh_attr(Onnx__NodeProto *n, const char *name,
                                           Onnx__AttributeProto__AttributeType type)
{
    fo_remove_attr(n, name);
    Onnx__AttributeProto *a = fo_malloc(sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = fo_strdup(name);
    a->has_type = 1;
    a->type = type;
    fo_push_ptr((void ***)&n->attribute, &n->n_attribute, a);
    return a;
}

void fo_set_attr_int(Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = fo_fresh_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

void fo_set_attr_float(Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = fo_fresh_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

void fo_set_attr_string(Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a =
        fo_fresh_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.len = strlen(v);
    a->s.data = (uint8_t *)fo_strdup(v);
}

void fo_set_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count)
{
    Onnx__AttributeProto *a = fo_fresh_attr(n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = count;
    a->ints = fo_malloc(count * sizeof *a->ints);
    memcpy(a->ints, v, count * sizeof *a->ints);
}

const char *fo_attr_str(const Onnx__AttributeProto *a, char *buf, size_t size)
{
    switch (a->has_type ? a->type : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        snprintf(buf, size, "INT %lld", (long long)a->i);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        snprintf(buf, size, "FLOAT %g", a->f);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        snprintf(buf, size, "STRING \"%.*s\"", (int)(a->s.len > 64 ? 64 : a->s.len),
                 a->s.data ? (const char *)a->s.data : "");
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        if (a->n_ints == 1)
            snprintf(buf, size, "INTS [%lld]", (long long)a->ints[0]);
        else
            snprintf(buf, size, "INTS (%zu values)", a->n_ints);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if (a->n_floats == 1)
            snprintf(buf, size, "FLOATS [%g]", a->floats[0]);
        else
            snprintf(buf, size, "FLOATS (%zu values)", a->n_floats);
        break;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
        snprintf(buf, size, "STRINGS (%zu values)", a->n_strings);
        break;
    default:
        snprintf(buf, size, "type %d", a->has_type ? (int)a->type : 0);
        break;
    }
    return buf;
}

/* ---- nodes ---------------------------------------------------------------------------------- */

void fo_set_string(char **field, const char *value)
{
    free(*field);
    *field = value ? fo_strdup(value) : NULL;
}

Onnx__NodeProto *fo_new_node(const char *op_type, const char *domain, const char *name,
                             size_t n_in, const char *const *in, size_t n_out,
                             const char *const *out)
{
    Onnx__NodeProto *n = fo_malloc(sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = fo_strdup(op_type);
    n->domain = fo_strdup(domain);
    n->name = fo_strdup(name);
    n->n_input = n_in;
    n->input = fo_malloc(n_in * sizeof *n->input);
    for (size_t i = 0; i < n_in; i++)
        n->input[i] = fo_strdup(in[i]);
    n->n_output = n_out;
    n->output = fo_malloc(n_out * sizeof *n->output);
    for (size_t i = 0; i < n_out; i++)
        n->output[i] = fo_strdup(out[i]);
    return n;
}

void fo_remove_nodes(Onnx__GraphProto *g, const unsigned char *remove)
{
    size_t k = 0;
    for (size_t i = 0; i < g->n_node; i++) {
        if (remove[i])
            protobuf_c_message_free_unpacked(&g->node[i]->base, NULL);
        else
            g->node[k++] = g->node[i];
    }
    g->n_node = k;
}

static void fo_names_add_graph(fo_names *nm, const Onnx__GraphProto *g)
{
    for (size_t i = 0; i < g->n_input; i++)
        fo_map_put(&nm->used, fo_str(g->input[i]->name), 0);
    for (size_t i = 0; i < g->n_initializer; i++)
        fo_map_put(&nm->used, fo_str(g->initializer[i]->name), 0);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        fo_map_put(&nm->used, fo_str(n->name), 0);
        for (size_t o = 0; o < n->n_output; o++)
            fo_map_put(&nm->used, n->output[o], 0);
        for (size_t a = 0; a < n->n_attribute; a++) {
            if (n->attribute[a]->g)
                fo_names_add_graph(nm, n->attribute[a]->g);
            for (size_t k = 0; k < n->attribute[a]->n_graphs; k++)
                fo_names_add_graph(nm, n->attribute[a]->graphs[k]);
        }
    }
}

void fo_names_init(fo_names *nm, const Onnx__GraphProto *g)
{
    fo_map_init(&nm->used);
    fo_names_add_graph(nm, g);
}

void fo_names_free(fo_names *nm)
{
    fo_map_free(&nm->used);
}

char *fo_names_fresh(fo_names *nm, const char *base)
{
    char *name = fo_strdup(base);
    for (unsigned k = 1; fo_map_get(&nm->used, name); k++) {
        free(name);
        name = fo_sprintf("%s_%u", base, k);
    }
    fo_map_put(&nm->used, name, 0);
    return name;
}
