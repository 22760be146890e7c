/*
 * The C core of the TensorRT plugin CustomAttnPlugin (version "1", namespace "").
 *
 * Every decision the plugin makes lives here, with no TensorRT type in sight: the field schema,
 * building a configuration from named, typed fields, its serialisation, the type/format rules,
 * shape checks, workspace sizing and the mapping of tensor descriptions onto fattn_params. The
 * C++ shim (plugin/trt) only converts TensorRT's structs to these and forwards.
 *
 * Errors: every function that can fail returns a fattn_status and, when `err` is not NULL, writes
 * a message naming the offending field and value into it. The core keeps no mutable state.
 */
#ifndef FATTN_PLUGIN_H
#define FATTN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "fattn.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FATTN_PLUGIN_API
#else
#define FATTN_PLUGIN_API __attribute__((visibility("default")))
#endif

#define FATTN_PLUGIN_NAME "CustomAttnPlugin"
#define FATTN_PLUGIN_VERSION "1"
#define FATTN_PLUGIN_NAMESPACE ""
#define FATTN_PLUGIN_NUM_INPUTS 3  /* q, k, v */
#define FATTN_PLUGIN_NUM_OUTPUTS 1 /* o */
#define FATTN_PLUGIN_MAX_DIMS 8    /* as TensorRT's Dims */

/* The one field getFieldsToSerialize returns: the configuration as opaque bytes (see below). */
#define FATTN_PLUGIN_SERIAL_FIELD "fattn_config"
/* Serialised configuration: "FATP", u16 format version, u16 payload bytes, payload (mode i32,
 * causal i32, scale f32, layout i32), CRC-32 of all preceding bytes; all little-endian. */
#define FATTN_PLUGIN_SERIAL_FORMAT 1
#define FATTN_PLUGIN_SERIAL_SIZE 28

/* Field types, numbered as TensorRT's PluginFieldType so the shim's mapping is checkable. */
typedef enum fattn_plugin_field_type {
    FATTN_PLUGIN_FIELD_FLOAT16 = 0,
    FATTN_PLUGIN_FIELD_FLOAT32 = 1,
    FATTN_PLUGIN_FIELD_FLOAT64 = 2,
    FATTN_PLUGIN_FIELD_INT8 = 3,
    FATTN_PLUGIN_FIELD_INT16 = 4,
    FATTN_PLUGIN_FIELD_INT32 = 5,
    FATTN_PLUGIN_FIELD_CHAR = 6,
    FATTN_PLUGIN_FIELD_DIMS = 7,
    FATTN_PLUGIN_FIELD_BYTES = 8, /* TensorRT's kUNKNOWN: opaque bytes, length counts bytes */
    FATTN_PLUGIN_FIELD_BF16 = 9,
    FATTN_PLUGIN_FIELD_INT64 = 10,
    FATTN_PLUGIN_FIELD_FP8 = 11,
    FATTN_PLUGIN_FIELD_INT4 = 12,
    FATTN_PLUGIN_FIELD_FP4 = 13
} fattn_plugin_field_type;

/* One named, typed field as a host passes it: `length` elements of `type` at `data`. */
typedef struct fattn_plugin_field {
    const char *name;
    const void *data;
    int32_t type; /* a fattn_plugin_field_type; other values are rejected */
    int32_t length;
} fattn_plugin_field;

/* One entry of the field schema. All fields are optional scalars (length 1). */
typedef struct fattn_plugin_field_spec {
    const char *name;
    fattn_plugin_field_type type;
    const char *onnx_type; /* ONNX attribute type that TensorRT's parser maps to `type` */
    double default_value;
    const char *meaning;
} fattn_plugin_field_spec;

typedef struct fattn_plugin_config {
    int32_t mode;   /* fattn_mode: 0 native precision, 1 FP8 */
    int32_t causal; /* 0 or 1 */
    float scale;    /* 0 selects 1/sqrt(head_dim) */
    int32_t layout; /* fattn_plugin_layout */
} fattn_plugin_config;

typedef enum fattn_plugin_layout {
    FATTN_PLUGIN_LAYOUT_BSHD = 0, /* [batch, seq, heads, head_dim], as the seed and FA3 */
    FATTN_PLUGIN_LAYOUT_BHSD = 1  /* [batch, heads, seq, head_dim], as torch SDPA */
} fattn_plugin_layout;

typedef struct fattn_plugin_error {
    char message[512];
} fattn_plugin_error;

/* A tensor shape; -1 marks an extent not known yet (TensorRT's wildcard). */
typedef struct fattn_plugin_dims {
    int32_t nb_dims;
    int64_t d[FATTN_PLUGIN_MAX_DIMS];
} fattn_plugin_dims;

/* A tensor's element type, its memory format and its shape. */
#define FATTN_PLUGIN_DTYPE_OTHER (-1) /* any type fattn has no fattn_dtype for */
typedef struct fattn_plugin_tensor {
    fattn_plugin_dims dims;
    int32_t dtype;         /* a fattn_dtype, or FATTN_PLUGIN_DTYPE_OTHER */
    int32_t linear;        /* 1 when stored row-major without padding */
    const char *type_name; /* the host's name of the type, for messages; may be NULL */
} fattn_plugin_tensor;

/* A tensor at build time: `desc.dims` may hold -1; min and max bound the profile. */
typedef struct fattn_plugin_dyn_tensor {
    fattn_plugin_tensor desc;
    fattn_plugin_dims min;
    fattn_plugin_dims max;
} fattn_plugin_dyn_tensor;

/* ---- Schema ---------------------------------------------------------------------------- */

/* The build fields, in the order getFieldNames lists them; *count receives their number. */
FATTN_PLUGIN_API const fattn_plugin_field_spec *fattn_plugin_field_schema(int32_t *count);

/* Name of a field type ("INT32"), or "INVALID". */
FATTN_PLUGIN_API const char *fattn_plugin_field_type_name(int32_t type);

/*
 * The schema as JSON (plugin name, version, namespace, inputs, outputs, fields with types and
 * defaults), the same text as plugin/core/field_schema.json. Writes at most `size` bytes including
 * the terminator and returns the full length without it, as snprintf does.
 */
FATTN_PLUGIN_API size_t fattn_plugin_schema_json(char *buffer, size_t size);

/* ---- Configuration --------------------------------------------------------------------- */

/* mode 0, causal 0, scale 0, layout BSHD. */
FATTN_PLUGIN_API void fattn_plugin_config_default(fattn_plugin_config *config);

/* Checks each value's domain (mode 0/1, causal 0/1, any finite scale (libfattn's rule), layout 0/1). */
FATTN_PLUGIN_API fattn_status fattn_plugin_config_validate(const fattn_plugin_config *config,
                                                           fattn_plugin_error *err);

/*
 * Builds a configuration from build-time fields (as TensorRT's ONNX parser or a user passes
 * them): known names only, each at most once, with the schema's type and length 1; absent fields
 * keep their defaults. `fields` may be NULL when count is 0. Nothing is written on error.
 */
FATTN_PLUGIN_API fattn_status fattn_plugin_config_from_fields(const fattn_plugin_field *fields,
                                                              int32_t count,
                                                              fattn_plugin_config *config,
                                                              fattn_plugin_error *err);

/* Writes FATTN_PLUGIN_SERIAL_SIZE bytes; `size` must be at least that. */
FATTN_PLUGIN_API fattn_status fattn_plugin_config_serialize(const fattn_plugin_config *config,
                                                            void *buffer, size_t size,
                                                            fattn_plugin_error *err);

/* Reads bytes from fattn_plugin_config_serialize; rejects truncated, oversized, foreign,
 * newer-format and corrupt input and out-of-domain values. Nothing is written on error. */
FATTN_PLUGIN_API fattn_status fattn_plugin_config_deserialize(const void *buffer, size_t size,
                                                              fattn_plugin_config *config,
                                                              fattn_plugin_error *err);

/* Runtime-phase creation: exactly one field, FATTN_PLUGIN_SERIAL_FIELD of type BYTES. */
FATTN_PLUGIN_API fattn_status fattn_plugin_config_from_serialized_fields(
    const fattn_plugin_field *fields, int32_t count, fattn_plugin_config *config,
    fattn_plugin_error *err);

/* A short text for logs and TensorRT's metadata string, e.g. "mode=0 causal=1 scale=0 layout=BSHD". */
FATTN_PLUGIN_API void fattn_plugin_config_describe(const fattn_plugin_config *config, char *buffer,
                                                   size_t size);

/* ---- Build-time rules ------------------------------------------------------------------ */

/* Checks the input and output counts TensorRT passes against 3 and 1. */
FATTN_PLUGIN_API fattn_status fattn_plugin_check_io_counts(int32_t nb_inputs, int32_t nb_outputs,
                                                           fattn_plugin_error *err);

/* Output type (a fattn_dtype) from the inputs' types: q's, once q, k, v are alike and supported.
 * Only dtype and type_name of `inputs` are read. */
FATTN_PLUGIN_API fattn_status fattn_plugin_output_dtype(const fattn_plugin_tensor *inputs,
                                                        int32_t nb_inputs, int32_t *output_dtype,
                                                        fattn_plugin_error *err);

/* The rank rule behind getOutputShapes: q, k and v are 4-D (the output takes q's shape). */
FATTN_PLUGIN_API fattn_status fattn_plugin_check_ranks(const int32_t *input_ranks,
                                                       int32_t nb_inputs, fattn_plugin_error *err);

/*
 * supportsFormatCombination: whether io[pos] is acceptable given io[0..pos-1] (already accepted).
 * Linear fp32/fp16/bf16; k, v and o of q's type. Returns 1 or 0.
 */
FATTN_PLUGIN_API int fattn_plugin_supports_format(int32_t pos, const fattn_plugin_tensor *io,
                                                  int32_t nb_inputs, int32_t nb_outputs);

/*
 * configurePlugin: types, formats, and shapes at the profile's min and max; then asks libfattn
 * whether a kernel on some GPU serves both extremes in this mode (fattn_cuda_supported_any), so a
 * call no fattn kernel serves anywhere fails the build here with libfattn's reason. Where the
 * current device can be queried it must serve them too (fattn_cuda_supported); where it cannot
 * (no GPU or driver: an ahead-of-time build server), the kernel is chosen at onShapeChange and
 * enqueue on the device that runs the engine.
 */
FATTN_PLUGIN_API fattn_status fattn_plugin_configure(const fattn_plugin_config *config,
                                                     const fattn_plugin_dyn_tensor *inputs,
                                                     int32_t nb_inputs,
                                                     const fattn_plugin_dyn_tensor *outputs,
                                                     int32_t nb_outputs, fattn_plugin_error *err);

/* Device workspace for the profile's max shapes: libfattn's fattn_cuda_workspace_size, which
 * asks no device and covers whichever kernel serves them. */
FATTN_PLUGIN_API fattn_status fattn_plugin_workspace_size(const fattn_plugin_config *config,
                                                          const fattn_plugin_dyn_tensor *inputs,
                                                          int32_t nb_inputs, size_t *bytes,
                                                          fattn_plugin_error *err);

/* ---- Runtime --------------------------------------------------------------------------- */

/*
 * Maps concrete tensor descriptions and pointers onto fattn_params (strides per layout,
 * contiguous tensors). With NULL pointer arrays, params get distinct non-NULL stand-in addresses
 * that libfattn's support check accepts: use them only for questions that read no memory.
 */
FATTN_PLUGIN_API fattn_status fattn_plugin_make_params(const fattn_plugin_config *config,
                                                       const fattn_plugin_tensor *inputs,
                                                       int32_t nb_inputs,
                                                       const fattn_plugin_tensor *outputs,
                                                       int32_t nb_outputs,
                                                       const void *const *input_data,
                                                       void *const *output_data,
                                                       fattn_params *params,
                                                       fattn_plugin_error *err);

/* onShapeChange: the shapes map onto params and libfattn has a kernel for them. */
FATTN_PLUGIN_API fattn_status fattn_plugin_on_shape_change(const fattn_plugin_config *config,
                                                           const fattn_plugin_tensor *inputs,
                                                           int32_t nb_inputs,
                                                           const fattn_plugin_tensor *outputs,
                                                           int32_t nb_outputs,
                                                           fattn_plugin_error *err);

/*
 * enqueue: fattn_cuda_forward on `stream` with the caller's workspace. TensorRT passes no
 * workspace size; it guarantees the size getWorkspaceSize returned for the profile's max shapes,
 * which covers these shapes, so libfattn is told the size these shapes need. Allocates nothing
 * and does not synchronise.
 */
FATTN_PLUGIN_API fattn_status fattn_plugin_enqueue(const fattn_plugin_config *config,
                                                   const fattn_plugin_tensor *inputs,
                                                   int32_t nb_inputs,
                                                   const fattn_plugin_tensor *outputs,
                                                   int32_t nb_outputs,
                                                   const void *const *input_data,
                                                   void *const *output_data, void *workspace,
                                                   struct CUstream_st *stream,
                                                   fattn_plugin_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FATTN_PLUGIN_H */
