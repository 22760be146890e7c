/* `inspect`: opsets, interface, op counts and every attention site, fusable or not. */
#include <stdlib.h>
#include <string.h>

#include "fuse.h"

typedef struct fo_count {
    const char *op;
    int64_t n;
} fo_count;

static int fo_count_cmp(const void *a, const void *b)
{
    return strcmp(((const fo_count *)a)->op, ((const fo_count *)b)->op);
}

static void fo_print_value(FILE *out, const fo_graph *gi, const char *name)
{
    fo_shape s;
    char buf[256];
    fo_value_shape(gi, name, &s);
    fprintf(out, "'%s' %s %s", name, s.elem_type ? fo_dtype_name(s.elem_type) : "?",
            fo_shape_str(&s, buf, sizeof buf));
}

static void fo_print_chain(FILE *out, const fo_graph *gi, const char *tag, const fo_chain *ch,
                           const fo_site *s, int i)
{
    fprintf(out, "      %s: ", tag);
    if (!ch->n) {
        fputs("?\n", out);
        return;
    }
    fo_print_value(out, gi, ch->c[0].name);
    if (s->ok) {
        const fo_cand *c = &ch->c[s->pick[i]];
        if (s->insert[i])
            fprintf(out, "; plugin input: Transpose(perm %d,%d,%d,%d) of '%s'", s->perm[i][0],
                    s->perm[i][1], s->perm[i][2], s->perm[i][3], c->name);
        else if (c->name != ch->c[0].name)
            fprintf(out, "; plugin input: '%s'", c->name);
    }
    fputc('\n', out);
}

static void fo_print_site(FILE *out, const fo_graph *gi, const fo_site *s, size_t k)
{
    const Onnx__NodeProto *n = gi->g->node[s->anchor];
    char buf[256];
    static const char *kinds[] = {"plugin node", "ONNX Attention", "decomposition"};
    fprintf(out, "  [%zu] %s: %s\n", k, kinds[s->kind], s->path);
    if (s->kind == FO_SITE_PLUGIN) {
        static const char *tags[3] = {"q", "k", "v"};
        for (size_t i = 0; i < n->n_input && i < 3; i++) {
            fprintf(out, "      %s: ", tags[i]);
            fo_print_value(out, gi, n->input[i]);
            fputc('\n', out);
        }
        if (n->n_output >= 1) {
            fprintf(out, "      o: ");
            fo_print_value(out, gi, n->output[0]);
            fputc('\n', out);
        }
        fprintf(out, "      attributes:");
        for (size_t a = 0; a < n->n_attribute; a++)
            fprintf(out, " %s=%s", fo_str(n->attribute[a]->name),
                    fo_attr_str(n->attribute[a], buf, sizeof buf));
        fputc('\n', out);
        return;
    }
    fo_print_chain(out, gi, "q", &s->q, s, 0);
    fo_print_chain(out, gi, "k", &s->k, s, 1);
    fo_print_chain(out, gi, "v", &s->v, s, 2);
    if (s->kind == FO_SITE_ATTENTION)
        for (size_t a = 0; a < n->n_attribute; a++)
            fprintf(out, "      attribute %s=%s\n", fo_str(n->attribute[a]->name),
                    fo_attr_str(n->attribute[a], buf, sizeof buf));
    if (!s->ok) {
        fprintf(out, "      fusable: no: %s\n", s->reason);
        return;
    }
    double scale;
    fprintf(out, "      o: ");
    fo_print_value(out, gi, s->layout == 0 && s->has_out_t ? s->out_bshd : s->out_bhsd);
    fputc('\n', out);
    if (fo_site_scale(s, &scale))
        fprintf(out, "      scale %g, causal %d\n", scale, s->causal);
    else
        fprintf(out, "      scale 1/sqrt(head_dim), causal %d\n", s->causal);
    fprintf(out, "      fusable: yes: layout %d (%s), %d Transpose(s) to insert\n", s->layout,
            s->layout ? "BHSD" : "BSHD", s->inserts);
}

int fo_inspect(const fo_model *m, FILE *out)
{
    const Onnx__ModelProto *p = m->proto;
    fo_graph gi;
    if (fo_graph_index(&gi, m) != 0)
        return -1;
    const Onnx__GraphProto *g = gi.g;
    fprintf(out, "model: %s\n", m->path);
    fprintf(out, "  ir_version %lld, producer '%s' '%s'\n", (long long)p->ir_version,
            fo_str(p->producer_name), fo_str(p->producer_version));
    fprintf(out, "  opsets:");
    for (size_t i = 0; i < p->n_opset_import; i++)
        fprintf(out, " %s=%lld",
                fo_is_default_domain(p->opset_import[i]->domain) ? "ai.onnx"
                                                                 : p->opset_import[i]->domain,
                (long long)p->opset_import[i]->version);
    fputc('\n', out);
    uint64_t inline_bytes = 0, external_bytes = 0;
    size_t n_external = 0;
    for (size_t i = 0; i < g->n_initializer; i++) {
        const Onnx__TensorProto *t = g->initializer[i];
        int64_t numel = fo_tensor_numel(t);
        uint64_t bytes = numel < 0 ? 0 : (uint64_t)numel * fo_dtype_size(t->data_type);
        if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
            external_bytes += bytes;
            n_external++;
        } else {
            inline_bytes += bytes;
        }
    }
    fprintf(out, "graph '%s': %zu nodes, %zu initializers (%llu bytes inline, %zu external "
            "holding %llu bytes)\n", fo_str(g->name), g->n_node, g->n_initializer,
            (unsigned long long)inline_bytes, n_external, (unsigned long long)external_bytes);
    fprintf(out, "inputs:\n");
    for (size_t i = 0; i < g->n_input; i++) {
        if (fo_map_get(&gi.initializer, fo_str(g->input[i]->name)))
            continue;
        fprintf(out, "  ");
        fo_print_value(out, &gi, fo_str(g->input[i]->name));
        fputc('\n', out);
    }
    fprintf(out, "outputs:\n");
    for (size_t i = 0; i < g->n_output; i++) {
        fprintf(out, "  ");
        fo_print_value(out, &gi, fo_str(g->output[i]->name));
        fputc('\n', out);
    }
    fo_map counts;
    fo_map_init(&counts);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        char *key = fo_is_default_domain(n->domain) ? fo_strdup(fo_str(n->op_type))
                                                    : fo_sprintf("%s::%s", n->domain,
                                                                 fo_str(n->op_type));
        int64_t *c = fo_map_get(&counts, key);
        if (c)
            (*c)++;
        else
            fo_map_put(&counts, key, 1);
        free(key);
    }
    fo_count *list = fo_malloc((counts.len ? counts.len : 1) * sizeof *list);
    size_t nl = 0;
    for (size_t i = 0; i < counts.cap; i++)
        if (counts.keys[i])
            list[nl++] = (fo_count){counts.keys[i], counts.vals[i]};
    qsort(list, nl, sizeof *list, fo_count_cmp);
    fprintf(out, "nodes by op type:\n");
    for (size_t i = 0; i < nl; i++)
        fprintf(out, "  %-28s %lld\n", list[i].op, (long long)list[i].n);
    free(list);
    fo_map_free(&counts);
    fo_site *sites;
    size_t n_sites;
    fo_find_sites(&gi, &sites, &n_sites);
    fprintf(out, "attention sites: %zu\n", n_sites);
    for (size_t i = 0; i < n_sites; i++)
        fo_print_site(out, &gi, &sites[i], i);
    free(sites);
    fo_graph_free(&gi);
    return 0;
}
