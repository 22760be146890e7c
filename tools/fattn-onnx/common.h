/*
 * fattn-onnx internals: ONNX models as protobuf-c messages (generated at build time from the onnx
 * package's onnx.proto), plus the small containers and helpers the passes share.
 *
 * Memory rule: every message reachable from a model is owned through protobuf-c's default
 * allocator (malloc/free), so that protobuf_c_message_free_unpacked() can release a model that the
 * passes have edited. New strings and messages are therefore always made with fo_malloc & co.
 */
#ifndef FO_COMMON_H
#define FO_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "onnx.pb-c.h"

#if defined(__GNUC__)
#define FO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FO_PRINTF(f, a)
#endif

/* ---- errors and the change report ---------------------------------------------------------- */

/* Records the message of the failure being returned and returns -1. */
int fo_fail(const char *fmt, ...) FO_PRINTF(1, 2);
const char *fo_error(void);

/* Where report lines go (stdout for the CLI); NULL silences them. */
extern FILE *fo_report;
void fo_note(const char *fmt, ...) FO_PRINTF(1, 2);

/* ---- allocation: out of memory ends the process with a message, before anything is renamed -- */

void *fo_malloc(size_t n);
void *fo_calloc(size_t count, size_t size);
void *fo_realloc(void *p, size_t n);
char *fo_strdup(const char *s);
char *fo_sprintf(const char *fmt, ...) FO_PRINTF(1, 2);

/* Grows a protobuf-c repeated field (array of n pointers) by one element and stores item. */
void fo_push_ptr(void ***array, size_t *n, void *item);

/* NULL-safe string helpers: protobuf-c leaves unset strings NULL. */
const char *fo_str(const char *s);
int fo_streq(const char *a, const char *b);

/* ---- string -> int64 hash map (keys are copied) -------------------------------------------- */

typedef struct fo_map {
    char **keys;
    int64_t *vals;
    size_t cap;
    size_t len;
} fo_map;

void fo_map_init(fo_map *m);
void fo_map_free(fo_map *m);
int64_t *fo_map_get(const fo_map *m, const char *key);
/* Inserts or overwrites; returns the stored value's slot. */
int64_t *fo_map_put(fo_map *m, const char *key, int64_t val);

/* ---- models and their files ----------------------------------------------------------------- */

typedef struct fo_model {
    Onnx__ModelProto *proto;
    char *path; /* the file named on the command line, used in every message */
    char *dir;  /* where its external data lives; NULL when it has no directory (fuzzing) */
} fo_model;

int fo_model_load(fo_model *m, const char *path);
/* Parses a serialized ModelProto held in memory; external data is then unreadable. */
int fo_model_parse(fo_model *m, const uint8_t *data, size_t size, const char *label);
void fo_model_free(fo_model *m);

typedef struct fo_save_options {
    int external_data;            /* move initializers of at least `threshold` bytes out */
    uint64_t external_threshold;
} fo_save_options;

/*
 * Writes the model to `out` through a temporary file in the same directory and a rename.
 * External tensors stay external: references beside the output are kept; data that would be
 * rewritten or lives elsewhere is copied into "<out>.data". A protobuf over 2 GiB forces
 * external data.
 */
int fo_model_save(fo_model *m, const char *out, const fo_save_options *opt);

/* Bytes per element of an ONNX data type that fattn-onnx can read, 0 otherwise. */
size_t fo_dtype_size(int32_t data_type);
const char *fo_dtype_name(int32_t data_type);

/* Element count from dims; -1 when a dim is negative or the product overflows. */
int64_t fo_tensor_numel(const Onnx__TensorProto *t);

/* A tensor's bytes in little-endian raw layout, wherever they are stored (raw_data, typed
 * fields, external file). The caller frees *data. */
int fo_tensor_bytes(const fo_model *m, const Onnx__TensorProto *t, uint8_t **data, size_t *size);

/* External-data key lookup ("location", "offset", "length"); NULL when absent. */
const char *fo_external_key(const Onnx__TensorProto *t, const char *key);

/* ---- graph index ---------------------------------------------------------------------------- */

#define FO_MAX_RANK 8

typedef struct fo_shape {
    int rank; /* -1: unknown */
    int64_t dim[FO_MAX_RANK];          /* -1 where unknown or symbolic */
    const char *param[FO_MAX_RANK];    /* symbolic name, or NULL */
    int32_t elem_type;                 /* 0: unknown */
} fo_shape;

typedef struct fo_graph {
    const fo_model *model;
    Onnx__GraphProto *g;
    int64_t opset;    /* default-domain opset version, 0 when not imported */
    fo_map producer;  /* value -> index of the node producing it */
    fo_map consumers; /* value -> number of node inputs (subgraph references included) reading it */
    fo_map first_consumer; /* value -> index of the first node reading it */
    fo_map initializer;    /* name -> index in g->initializer */
    fo_map input;          /* graph input name -> index */
    fo_map output;         /* graph output name -> index */
    fo_map value_info;     /* name -> index in g->value_info */
} fo_graph;

int fo_graph_index(fo_graph *gi, const fo_model *m);
void fo_graph_free(fo_graph *gi);

int64_t fo_opset_version(const Onnx__ModelProto *p, const char *domain);
int fo_is_default_domain(const char *domain);
/* op_type in the default ONNX domain */
int fo_is_op(const Onnx__NodeProto *n, const char *op_type);
/* "name" or "#index" when the node is unnamed, for messages */
const char *fo_node_label(const Onnx__NodeProto *n, size_t index, char *buf, size_t buf_size);

int64_t fo_consumer_count(const fo_graph *gi, const char *name);
int fo_is_graph_output(const fo_graph *gi, const char *name);
Onnx__NodeProto *fo_producer(const fo_graph *gi, const char *name, size_t *index);

/* What is known about a value's type and shape (inputs, outputs, value_info, initializers). */
void fo_value_shape(const fo_graph *gi, const char *name, fo_shape *s);
/* "[batch, 128, 8, 64]" or "?" into buf. */
const char *fo_shape_str(const fo_shape *s, char *buf, size_t size);

/* Calls fn for every value name a node reads, including names used inside its subgraphs. */
typedef void (*fo_name_fn)(const char *name, void *ctx);
void fo_node_reads(const Onnx__NodeProto *n, fo_name_fn fn, void *ctx);

/* A constant as doubles: an initializer that is not also a graph input, or a Constant node. */
typedef struct fo_const {
    int rank;
    int64_t dim[FO_MAX_RANK];
    size_t count;
    double *values;
} fo_const;

/* 1 with *c filled (free with fo_const_free), 0 when not a readable constant, -1 on error. */
int fo_read_const(const fo_graph *gi, const char *name, size_t max_count, fo_const *c);
void fo_const_free(fo_const *c);
/* 1 and *value when t is a readable tensor with exactly one numeric element, else 0. */
int fo_tensor_scalar(const fo_model *m, const Onnx__TensorProto *t, double *value);
/* 1 and *value when name is a constant with exactly one element, else 0. */
int fo_scalar_const(const fo_graph *gi, const char *name, double *value);

/* ---- attributes ----------------------------------------------------------------------------- */

Onnx__AttributeProto *fo_attr(const Onnx__NodeProto *n, const char *name);
int64_t fo_attr_int(const Onnx__NodeProto *n, const char *name, int64_t fallback);
void fo_set_attr_int(Onnx__NodeProto *n, const char *name, int64_t v);
void fo_set_attr_float(Onnx__NodeProto *n, const char *name, float v);
void fo_set_attr_string(Onnx__NodeProto *n, const char *name, const char *v);
void fo_set_attr_ints(Onnx__NodeProto *n, const char *name, const int64_t *v, size_t count);
void fo_remove_attr(Onnx__NodeProto *n, const char *name);
/* "INT 1", "INTS [1]", "STRING \"1\"" ... for reports */
const char *fo_attr_str(const Onnx__AttributeProto *a, char *buf, size_t size);

/* ---- nodes ---------------------------------------------------------------------------------- */

Onnx__NodeProto *fo_new_node(const char *op_type, const char *domain, const char *name,
                             size_t n_in, const char *const *in, size_t n_out,
                             const char *const *out);
void fo_set_string(char **field, const char *value);

/* Removes the nodes whose flag is set, freeing them, keeping the others' order. */
void fo_remove_nodes(Onnx__GraphProto *g, const unsigned char *remove);

/* A name no value or node in the graph (subgraphs included) uses yet, derived from base. */
typedef struct fo_names {
    fo_map used;
} fo_names;
void fo_names_init(fo_names *nm, const Onnx__GraphProto *g);
void fo_names_free(fo_names *nm);
char *fo_names_fresh(fo_names *nm, const char *base);

/* ---- passes --------------------------------------------------------------------------------- */

/* Stable topological sort of the main graph; *moved says whether the order changed. */
int fo_toposort(fo_model *m, int *moved);
/* Removes nodes that do not lead to a graph output and initializers nothing reads. */
int fo_remove_dead(fo_model *m, size_t *nodes_removed, size_t *initializers_removed);

typedef struct fo_prepare_stats {
    size_t plugin_nodes;
    size_t renamed;
} fo_prepare_stats;

/* prepare: plugin nodes normalised, unique names, dead code removed, sorted, opsets consistent. */
int fo_prepare(fo_model *m, fo_prepare_stats *stats);

/* fuse: attention sites rewritten into CustomAttnPlugin nodes (then prepare). */
int fo_fuse(fo_model *m, int mode, size_t *fused);

/* inspect: a human-readable description of the model and its attention sites. */
int fo_inspect(const fo_model *m, FILE *out);

#define FO_PLUGIN_OP "CustomAttnPlugin"
#define FO_PLUGIN_DOMAIN "attn"

#endif
