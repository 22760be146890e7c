#include "fattn_plugin.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define FATTN_PLUGIN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define FATTN_PLUGIN_PRINTF(f, a)
#endif

/* Index order of the plugin's tensors, as TensorRT numbers them: inputs, then outputs. */
enum { IO_Q = 0, IO_K = 1, IO_V = 2, IO_O = 3 };
static const char *const io_names[] = {"q", "k", "v", "o"};

static const fattn_plugin_field_spec field_schema[] = {
    {"mode", FATTN_PLUGIN_FIELD_INT32, "INT", 0.0,
     "0: attention in the input precision; 1: FP8 (e4m3) attention on Q, K, V"},
    {"causal", FATTN_PLUGIN_FIELD_INT32, "INT", 0.0,
     "1: causal mask, bottom-right aligned (query i sees keys t <= i + Skv - Sq)"},
    {"scale", FATTN_PLUGIN_FIELD_FLOAT32, "FLOAT", 0.0,
     "softmax scale; 0 selects 1/sqrt(head_dim)"},
    {"layout", FATTN_PLUGIN_FIELD_INT32, "INT", 0.0,
     "0: q, k, v, o are [batch, seq, heads, head_dim] (BSHD); 1: [batch, heads, seq, head_dim] "
     "(BHSD)"},
};
enum { FIELD_MODE, FIELD_CAUSAL, FIELD_SCALE, FIELD_LAYOUT, FIELD_COUNT };

static fattn_status plugin_fail(fattn_plugin_error *err, fattn_status status, const char *fmt, ...)
    FATTN_PLUGIN_PRINTF(3, 4);

static fattn_status plugin_fail(fattn_plugin_error *err, fattn_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* The arrays and out-parameters TensorRT always passes: a NULL one is reported, not followed. */
static fattn_status null_argument(fattn_plugin_error *err, const char *name)
{
    return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "%s is NULL", name);
}

/* ---- Schema ---------------------------------------------------------------------------- */

const fattn_plugin_field_spec *fattn_plugin_field_schema(int32_t *count)
{
    if (count)
        *count = FIELD_COUNT;
    return field_schema;
}

const char *fattn_plugin_field_type_name(int32_t type)
{
    static const char *const names[] = {"FLOAT16", "FLOAT32", "FLOAT64", "INT8",  "INT16",
                                        "INT32",   "CHAR",    "DIMS",    "BYTES", "BF16",
                                        "INT64",   "FP8",     "INT4",    "FP4"};
    if (type < 0 || type >= (int32_t)(sizeof names / sizeof names[0]))
        return "INVALID";
    return names[type];
}

/* snprintf that appends at `*len` and keeps counting past the end of the buffer. */
static void append(char *buffer, size_t size, size_t *len, const char *fmt, ...)
    FATTN_PLUGIN_PRINTF(4, 5);

static void append(char *buffer, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = *len < size ? buffer + *len : NULL;
    size_t room = *len < size ? size - *len : 0;
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
}

size_t fattn_plugin_schema_json(char *buffer, size_t size)
{
    size_t len = 0;
    if (buffer && size)
        buffer[0] = '\0';
    else
        buffer = NULL, size = 0;
    append(buffer, size, &len,
           "{\n  \"plugin\": \"%s\",\n  \"version\": \"%s\",\n  \"namespace\": \"%s\",\n"
           "  \"inputs\": [\"q\", \"k\", \"v\"],\n  \"outputs\": [\"o\"],\n"
           "  \"serialized_field\": \"%s\",\n  \"fields\": [\n",
           FATTN_PLUGIN_NAME, FATTN_PLUGIN_VERSION, FATTN_PLUGIN_NAMESPACE,
           FATTN_PLUGIN_SERIAL_FIELD);
    for (int i = 0; i < FIELD_COUNT; ++i) {
        const fattn_plugin_field_spec *f = &field_schema[i];
        append(buffer, size, &len,
               "    {\"name\": \"%s\", \"type\": \"%s\", \"onnx_attribute_type\": \"%s\", "
               "\"length\": 1, \"default\": ",
               f->name, fattn_plugin_field_type_name(f->type), f->onnx_type);
        if (f->type == FATTN_PLUGIN_FIELD_INT32)
            append(buffer, size, &len, "%d", (int)f->default_value);
        else
            append(buffer, size, &len, "%.1f", f->default_value);
        append(buffer, size, &len, ", \"meaning\": \"%s\"}%s\n", f->meaning,
               i + 1 < FIELD_COUNT ? "," : "");
    }
    append(buffer, size, &len, "  ]\n}\n");
    return len;
}

/* ---- Configuration --------------------------------------------------------------------- */

void fattn_plugin_config_default(fattn_plugin_config *config)
{
    if (!config)
        return;
    config->mode = FATTN_MODE_NATIVE;
    config->causal = 0;
    config->scale = 0.0f;
    config->layout = FATTN_PLUGIN_LAYOUT_BSHD;
}

fattn_status fattn_plugin_config_validate(const fattn_plugin_config *config,
                                          fattn_plugin_error *err)
{
    if (!config)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "config is NULL");
    if (config->mode != FATTN_MODE_NATIVE && config->mode != FATTN_MODE_FP8)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "mode (%d) must be 0 (input precision) or 1 (FP8)", (int)config->mode);
    if (config->causal != 0 && config->causal != 1)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "causal (%d) must be 0 or 1",
                           (int)config->causal);
    if (!isfinite(config->scale))
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "scale (%g) must be finite (0 selects 1/sqrt(head_dim))",
                           (double)config->scale);
    if (config->layout != FATTN_PLUGIN_LAYOUT_BSHD && config->layout != FATTN_PLUGIN_LAYOUT_BHSD)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "layout (%d) must be 0 (BSHD) or 1 (BHSD)", (int)config->layout);
    return FATTN_OK;
}

fattn_status fattn_plugin_config_from_fields(const fattn_plugin_field *fields, int32_t count,
                                             fattn_plugin_config *config,
                                             fattn_plugin_error *err)
{
    if (!config)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "config is NULL");
    if (count < 0 || (count > 0 && !fields))
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "field collection is malformed (%d fields at %p)", (int)count,
                           (const void *)fields);
    fattn_plugin_config c;
    fattn_plugin_config_default(&c);
    int seen[FIELD_COUNT] = {0};
    for (int32_t i = 0; i < count; ++i) {
        const fattn_plugin_field *f = &fields[i];
        if (!f->name)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "field %d has no name", (int)i);
        int which = -1;
        for (int j = 0; j < FIELD_COUNT; ++j)
            if (strcmp(f->name, field_schema[j].name) == 0)
                which = j;
        if (which < 0)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "unknown field '%.64s' (%s takes mode, causal, scale, layout)",
                               f->name, FATTN_PLUGIN_NAME);
        if (seen[which]++)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "field '%s' is given twice",
                               f->name);
        if (f->type != (int32_t)field_schema[which].type)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "field '%s' has type %s (%d); expected %s", f->name,
                               fattn_plugin_field_type_name(f->type), (int)f->type,
                               fattn_plugin_field_type_name(field_schema[which].type));
        if (f->length != 1)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "field '%s' has length %d; expected 1", f->name, (int)f->length);
        if (!f->data)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "field '%s' has no data",
                               f->name);
        /* memcpy: TensorRT does not promise the field data is aligned. */
        switch (which) {
        case FIELD_MODE: memcpy(&c.mode, f->data, sizeof c.mode); break;
        case FIELD_CAUSAL: memcpy(&c.causal, f->data, sizeof c.causal); break;
        case FIELD_SCALE: memcpy(&c.scale, f->data, sizeof c.scale); break;
        default: memcpy(&c.layout, f->data, sizeof c.layout); break;
        }
    }
    fattn_status st = fattn_plugin_config_validate(&c, err);
    if (st != FATTN_OK)
        return st;
    *config = c;
    return FATTN_OK;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* CRC-32 (IEEE 802.3, reflected), bitwise: the blob is 24 bytes, a table buys nothing. */
static uint32_t crc32_ieee(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int b = 0; b < 8; ++b)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

enum { SERIAL_HEADER = 8, SERIAL_PAYLOAD = 16, SERIAL_CRC_AT = SERIAL_HEADER + SERIAL_PAYLOAD };
static const uint8_t serial_magic[4] = {'F', 'A', 'T', 'P'};

fattn_status fattn_plugin_config_serialize(const fattn_plugin_config *config, void *buffer,
                                           size_t size, fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_config_validate(config, err);
    if (st != FATTN_OK)
        return st;
    if (!buffer || size < FATTN_PLUGIN_SERIAL_SIZE)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialisation buffer (%zu bytes at %p) is smaller than %d bytes", size,
                           buffer, FATTN_PLUGIN_SERIAL_SIZE);
    uint8_t *p = buffer;
    uint32_t scale_bits;
    memcpy(&scale_bits, &config->scale, sizeof scale_bits);
    memcpy(p, serial_magic, sizeof serial_magic);
    put_u16(p + 4, FATTN_PLUGIN_SERIAL_FORMAT);
    put_u16(p + 6, SERIAL_PAYLOAD);
    put_u32(p + 8, (uint32_t)config->mode);
    put_u32(p + 12, (uint32_t)config->causal);
    put_u32(p + 16, scale_bits);
    put_u32(p + 20, (uint32_t)config->layout);
    put_u32(p + SERIAL_CRC_AT, crc32_ieee(p, SERIAL_CRC_AT));
    return FATTN_OK;
}

fattn_status fattn_plugin_config_deserialize(const void *buffer, size_t size,
                                             fattn_plugin_config *config, fattn_plugin_error *err)
{
    if (!config)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "config is NULL");
    if (!buffer && size > 0)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config is NULL with size %zu", size);
    const uint8_t *p = buffer;
    if (size < SERIAL_HEADER)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config is truncated: %zu bytes, the header alone has %d",
                           size, SERIAL_HEADER);
    if (memcmp(p, serial_magic, sizeof serial_magic) != 0)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config does not start with \"FATP\" (bytes %02x %02x %02x "
                           "%02x): not a %s config",
                           p[0], p[1], p[2], p[3], FATTN_PLUGIN_NAME);
    unsigned format = get_u16(p + 4), payload = get_u16(p + 6);
    if (format != FATTN_PLUGIN_SERIAL_FORMAT)
        return plugin_fail(err, FATTN_ERR_UNSUPPORTED,
                           "serialized config has format version %u; this plugin reads version %d",
                           format, FATTN_PLUGIN_SERIAL_FORMAT);
    if (payload != SERIAL_PAYLOAD)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config declares a %u-byte payload; format %d has %d bytes",
                           payload, FATTN_PLUGIN_SERIAL_FORMAT, SERIAL_PAYLOAD);
    if (size != FATTN_PLUGIN_SERIAL_SIZE)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config is %s: %zu bytes, expected %d",
                           size < FATTN_PLUGIN_SERIAL_SIZE ? "truncated" : "oversized", size,
                           FATTN_PLUGIN_SERIAL_SIZE);
    uint32_t stored = get_u32(p + SERIAL_CRC_AT), computed = crc32_ieee(p, SERIAL_CRC_AT);
    if (stored != computed)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized config is corrupt: CRC-32 0x%08x, stored 0x%08x",
                           (unsigned)computed, (unsigned)stored);
    fattn_plugin_config c;
    uint32_t scale_bits = get_u32(p + 16);
    c.mode = (int32_t)get_u32(p + 8);
    c.causal = (int32_t)get_u32(p + 12);
    memcpy(&c.scale, &scale_bits, sizeof c.scale);
    c.layout = (int32_t)get_u32(p + 20);
    fattn_status st = fattn_plugin_config_validate(&c, err);
    if (st != FATTN_OK)
        return st;
    *config = c;
    return FATTN_OK;
}

fattn_status fattn_plugin_config_from_serialized_fields(const fattn_plugin_field *fields,
                                                        int32_t count, fattn_plugin_config *config,
                                                        fattn_plugin_error *err)
{
    if (count != 1 || !fields)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized plugin has %d fields; expected exactly one, '%s'",
                           (int)count, FATTN_PLUGIN_SERIAL_FIELD);
    const fattn_plugin_field *f = &fields[0];
    if (!f->name || strcmp(f->name, FATTN_PLUGIN_SERIAL_FIELD) != 0)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "serialized plugin's field is '%.64s'; expected '%s'",
                           f->name ? f->name : "(null)", FATTN_PLUGIN_SERIAL_FIELD);
    if (f->type != FATTN_PLUGIN_FIELD_BYTES)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "field '%s' has type %s (%d); expected BYTES", f->name,
                           fattn_plugin_field_type_name(f->type), (int)f->type);
    if (f->length < 0)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "field '%s' has length %d", f->name,
                           (int)f->length);
    return fattn_plugin_config_deserialize(f->data, (size_t)f->length, config, err);
}

static const char *layout_name(int32_t layout)
{
    return layout == FATTN_PLUGIN_LAYOUT_BHSD ? "BHSD" : "BSHD";
}

void fattn_plugin_config_describe(const fattn_plugin_config *config, char *buffer, size_t size)
{
    if (!buffer || !size)
        return;
    if (!config) {
        snprintf(buffer, size, "(no config)");
        return;
    }
    snprintf(buffer, size, "mode=%d causal=%d scale=%g layout=%s", (int)config->mode,
             (int)config->causal, (double)config->scale, layout_name(config->layout));
}

/* ---- Types and shapes ------------------------------------------------------------------ */

fattn_status fattn_plugin_check_io_counts(int32_t nb_inputs, int32_t nb_outputs,
                                          fattn_plugin_error *err)
{
    if (nb_inputs != FATTN_PLUGIN_NUM_INPUTS)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "%s takes 3 inputs (q, k, v); got %d", FATTN_PLUGIN_NAME,
                           (int)nb_inputs);
    if (nb_outputs != FATTN_PLUGIN_NUM_OUTPUTS)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "%s has 1 output (o); got %d",
                           FATTN_PLUGIN_NAME, (int)nb_outputs);
    return FATTN_OK;
}

static int dtype_supported(int32_t dtype)
{
    return dtype == FATTN_DTYPE_F32 || dtype == FATTN_DTYPE_F16 || dtype == FATTN_DTYPE_BF16;
}

static const char *tensor_type_name(const fattn_plugin_tensor *t)
{
    if (t->type_name)
        return t->type_name;
    return dtype_supported(t->dtype) ? fattn_dtype_name((fattn_dtype)t->dtype) : "unsupported";
}

/* The type rule for io[pos], reading only io[0] and io[pos]. */
static fattn_status check_tensor_type(int32_t pos, const fattn_plugin_tensor *io, int check_format,
                                      fattn_plugin_error *err)
{
    const fattn_plugin_tensor *t = &io[pos];
    if (check_format && !t->linear)
        return plugin_fail(err, FATTN_ERR_UNSUPPORTED,
                           "%s is not in the linear (row-major) format %s needs",
                           io_names[pos], FATTN_PLUGIN_NAME);
    if (!dtype_supported(t->dtype))
        return plugin_fail(err, FATTN_ERR_UNSUPPORTED,
                           "%s has type %s; %s takes fp32, fp16 or bf16", io_names[pos],
                           tensor_type_name(t), FATTN_PLUGIN_NAME);
    if (pos > IO_Q && t->dtype != io[IO_Q].dtype)
        return plugin_fail(err, FATTN_ERR_UNSUPPORTED,
                           "%s has type %s but q has %s; q, k, v and o share one type",
                           io_names[pos], tensor_type_name(t), tensor_type_name(&io[IO_Q]));
    return FATTN_OK;
}

int fattn_plugin_supports_format(int32_t pos, const fattn_plugin_tensor *io, int32_t nb_inputs,
                                 int32_t nb_outputs)
{
    if (!io || fattn_plugin_check_io_counts(nb_inputs, nb_outputs, NULL) != FATTN_OK || pos < 0 ||
        pos > IO_O)
        return 0;
    return check_tensor_type(pos, io, 1, NULL) == FATTN_OK;
}

fattn_status fattn_plugin_output_dtype(const fattn_plugin_tensor *inputs, int32_t nb_inputs,
                                       int32_t *output_dtype, fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_check_io_counts(nb_inputs, FATTN_PLUGIN_NUM_OUTPUTS, err);
    if (st != FATTN_OK)
        return st;
    if (!inputs)
        return null_argument(err, "inputs");
    if (!output_dtype)
        return null_argument(err, "output_dtype");
    for (int32_t pos = IO_Q; pos <= IO_V; ++pos)
        if ((st = check_tensor_type(pos, inputs, 0, err)) != FATTN_OK)
            return st;
    *output_dtype = inputs[IO_Q].dtype;
    return FATTN_OK;
}

static const char *layout_dims_text(int32_t layout)
{
    return layout == FATTN_PLUGIN_LAYOUT_BHSD ? "[batch, heads, seq, head_dim] (layout 1, BHSD)"
                                              : "[batch, seq, heads, head_dim] (layout 0, BSHD)";
}

fattn_status fattn_plugin_check_ranks(const int32_t *input_ranks, int32_t nb_inputs,
                                      fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_check_io_counts(nb_inputs, FATTN_PLUGIN_NUM_OUTPUTS, err);
    if (st != FATTN_OK)
        return st;
    if (!input_ranks)
        return null_argument(err, "input_ranks");
    for (int32_t i = 0; i < nb_inputs; ++i)
        if (input_ranks[i] != 4)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%s has %d dimensions; expected 4: [batch, seq, heads, head_dim] "
                               "(layout 0) or [batch, heads, seq, head_dim] (layout 1)",
                               io_names[i], (int)input_ranks[i]);
    return FATTN_OK;
}

/* Shape in fattn's terms, whatever the layout. */
typedef struct shape4 {
    int64_t batch, seq, heads, dim;
} shape4;

static void dims_text(const fattn_plugin_dims *d, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    append(buf, size, &len, "[");
    for (int32_t i = 0; i < d->nb_dims && i < FATTN_PLUGIN_MAX_DIMS; ++i)
        append(buf, size, &len, "%s%lld", i ? ", " : "", (long long)d->d[i]);
    append(buf, size, &len, "]");
}

/* Extents of one 4-D tensor: each known, >= 1, and a volume that fits int64 with bytes to spare. */
static fattn_status read_shape(int32_t layout, int pos, const fattn_plugin_dims *d, const char *when,
                               shape4 *s, fattn_plugin_error *err)
{
    static const char *const bshd[] = {"batch", "seq", "heads", "head_dim"};
    static const char *const bhsd[] = {"batch", "heads", "seq", "head_dim"};
    const char *const *axis = layout == FATTN_PLUGIN_LAYOUT_BHSD ? bhsd : bshd;
    if (d->nb_dims != 4)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "%s%s has %d dimensions; expected 4: %s",
                           when, io_names[pos], (int)d->nb_dims, layout_dims_text(layout));
    int64_t volume = 1;
    for (int i = 0; i < 4; ++i) {
        if (d->d[i] < 1)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%s%s's %s extent (dimension %d) is %lld; it must be at least 1",
                               when, io_names[pos], axis[i], i, (long long)d->d[i]);
        if (d->d[i] > (INT64_C(1) << 40) / volume)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%s%s's shape is too large (more than 2^40 elements)", when,
                               io_names[pos]);
        volume *= d->d[i];
    }
    s->batch = d->d[0];
    s->dim = d->d[3];
    s->seq = layout == FATTN_PLUGIN_LAYOUT_BHSD ? d->d[2] : d->d[1];
    s->heads = layout == FATTN_PLUGIN_LAYOUT_BHSD ? d->d[1] : d->d[2];
    return FATTN_OK;
}

/* The cross-tensor rules: k and v alike, batch and head_dim shared, GQA ratio, o = q's shape. */
static fattn_status check_shapes(int32_t layout, const fattn_plugin_dims *const dims[4],
                                 const char *when, shape4 out[3], fattn_plugin_error *err)
{
    fattn_status st;
    for (int pos = IO_Q; pos <= IO_V; ++pos)
        if ((st = read_shape(layout, pos, dims[pos], when, &out[pos], err)) != FATTN_OK)
            return st;
    const shape4 *q = &out[IO_Q], *k = &out[IO_K], *v = &out[IO_V];
    for (int pos = IO_K; pos <= IO_V; ++pos) {
        if (out[pos].batch != q->batch)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%s%s's batch (%lld) differs from q's (%lld)", when, io_names[pos],
                               (long long)out[pos].batch, (long long)q->batch);
        if (out[pos].dim != q->dim)
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%s%s's head_dim (%lld) differs from q's (%lld)", when,
                               io_names[pos], (long long)out[pos].dim, (long long)q->dim);
    }
    if (v->seq != k->seq)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "%sv's seq (%lld) differs from k's (%lld)", when, (long long)v->seq,
                           (long long)k->seq);
    if (v->heads != k->heads)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "%sv's heads (%lld) differs from k's (%lld)", when,
                           (long long)v->heads, (long long)k->heads);
    if (q->heads % k->heads != 0)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                           "%sq's heads (%lld) is not a multiple of k's heads (%lld)", when,
                           (long long)q->heads, (long long)k->heads);
    const fattn_plugin_dims *o = dims[IO_O];
    if (o) {
        int same = o->nb_dims == dims[IO_Q]->nb_dims;
        for (int32_t i = 0; same && i < o->nb_dims; ++i)
            same = o->d[i] == dims[IO_Q]->d[i];
        if (!same) {
            char ot[160], qt[160];
            dims_text(o, ot, sizeof ot);
            dims_text(dims[IO_Q], qt, sizeof qt);
            return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT,
                               "%so's shape %s differs from q's %s", when, ot, qt);
        }
    }
    return FATTN_OK;
}

/* Contiguous strides of a 4-D tensor of shape s in the given layout. */
static fattn_tensor make_view(int32_t layout, const shape4 *s, void *data)
{
    fattn_tensor t;
    t.data = data;
    t.stride_batch = s->seq * s->heads * s->dim;
    if (layout == FATTN_PLUGIN_LAYOUT_BHSD) {
        t.stride_head = s->seq * s->dim;
        t.stride_seq = s->dim;
    } else {
        t.stride_seq = s->heads * s->dim;
        t.stride_head = s->dim;
    }
    return t;
}

/*
 * Stand-in addresses for the shape-only questions the plugin asks libfattn (configurePlugin,
 * onShapeChange): fattn_cuda_supported validates pointers as it would for a launch (non-NULL,
 * aligned, output disjoint from the inputs) but reads no memory. They are 2^44 bytes apart,
 * beyond any tensor read_shape admits (2^40 elements of at most 4 bytes).
 */
static void *placeholder(int index) { return (void *)((uintptr_t)(index + 1) << 44); }

static void fill_params(const fattn_plugin_config *config, int32_t dtype, const shape4 s[3],
                        const void *const *input_data, void *const *output_data, fattn_params *p)
{
    memset(p, 0, sizeof *p);
    p->batch = s[IO_Q].batch;
    p->seqlen_q = s[IO_Q].seq;
    p->seqlen_kv = s[IO_K].seq;
    p->heads_q = s[IO_Q].heads;
    p->heads_kv = s[IO_K].heads;
    p->head_dim = s[IO_Q].dim;
    p->dtype = (fattn_dtype)dtype;
    p->mode = (fattn_mode)config->mode;
    p->causal = config->causal;
    p->scale = config->scale;
    /* fattn never writes through q, k, v: the casts only fit fattn_tensor's one pointer type. */
    p->q = make_view(config->layout, &s[IO_Q],
                     input_data ? (void *)input_data[IO_Q] : placeholder(IO_Q));
    p->k = make_view(config->layout, &s[IO_K],
                     input_data ? (void *)input_data[IO_K] : placeholder(IO_K));
    p->v = make_view(config->layout, &s[IO_V],
                     input_data ? (void *)input_data[IO_V] : placeholder(IO_V));
    p->o = make_view(config->layout, &s[IO_Q], output_data ? output_data[0] : placeholder(IO_O));
    p->lse = NULL;
}

static fattn_status from_fattn(fattn_status st, fattn_plugin_error *err, const char *what,
                               const fattn_params *p)
{
    if (st == FATTN_OK)
        return st;
    return plugin_fail(err, st,
                       "%s (%s, mode %d, batch %lld, seqlen_q %lld, seqlen_kv %lld, heads_q %lld, "
                       "heads_kv %lld, head_dim %lld, causal %d): %s: %s",
                       what, fattn_dtype_name(p->dtype), (int)p->mode, (long long)p->batch,
                       (long long)p->seqlen_q, (long long)p->seqlen_kv, (long long)p->heads_q,
                       (long long)p->heads_kv, (long long)p->head_dim, p->causal,
                       fattn_status_name(st), fattn_last_error());
}

/* The configuration's domain, then the type and format rule for all four tensors. */
static fattn_status check_io(const fattn_plugin_config *config, const fattn_plugin_tensor io[4],
                             fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_config_validate(config, err);
    for (int32_t pos = IO_Q; st == FATTN_OK && pos <= IO_O; ++pos)
        st = check_tensor_type(pos, io, 1, err);
    return st;
}

static void gather_io(const fattn_plugin_tensor *inputs, const fattn_plugin_tensor *outputs,
                      fattn_plugin_tensor io[4])
{
    io[IO_Q] = inputs[IO_Q];
    io[IO_K] = inputs[IO_K];
    io[IO_V] = inputs[IO_V];
    io[IO_O] = outputs[0];
}

fattn_status fattn_plugin_configure(const fattn_plugin_config *config,
                                    const fattn_plugin_dyn_tensor *inputs, int32_t nb_inputs,
                                    const fattn_plugin_dyn_tensor *outputs, int32_t nb_outputs,
                                    fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_check_io_counts(nb_inputs, nb_outputs, err);
    if (st != FATTN_OK)
        return st;
    if (!inputs || !outputs)
        return null_argument(err, !inputs ? "inputs" : "outputs");
    fattn_plugin_tensor io[4] = {inputs[0].desc, inputs[1].desc, inputs[2].desc, outputs[0].desc};
    if ((st = check_io(config, io, err)) != FATTN_OK)
        return st;
    /* Every shape rule at both extremes first, so a shape error is reported as such. */
    fattn_params p[2];
    for (int extreme = 0; extreme < 2; ++extreme) {
        const char *when = extreme ? "at the profile's max shapes: " : "at the profile's min shapes: ";
        const fattn_plugin_dims *dims[4];
        for (int pos = IO_Q; pos <= IO_V; ++pos)
            dims[pos] = extreme ? &inputs[pos].max : &inputs[pos].min;
        dims[IO_O] = extreme ? &outputs[0].max : &outputs[0].min;
        shape4 s[3];
        if ((st = check_shapes(config->layout, dims, when, s, err)) != FATTN_OK)
            return st;
        fill_params(config, io[IO_Q].dtype, s, NULL, NULL, &p[extreme]);
    }
    static const char *const no_kernel[2][2] = {
        {"no fattn GPU kernel for any GPU at the profile's min shapes",
         "no fattn GPU kernel for any GPU at the profile's max shapes"},
        {"no fattn GPU kernel on this device at the profile's min shapes",
         "no fattn GPU kernel on this device at the profile's max shapes"}};
    for (int extreme = 0; extreme < 2; ++extreme)
        if ((st = from_fattn(fattn_cuda_supported_any(&p[extreme]), err, no_kernel[0][extreme],
                             &p[extreme])) != FATTN_OK)
            return st;
    /* A device that answers must serve the profile too; one that cannot be asked (a build server
     * without a GPU or driver) leaves the choice to onShapeChange on the device that runs it. */
    for (int extreme = 0; extreme < 2; ++extreme) {
        const fattn_status here = fattn_cuda_supported(&p[extreme]);
        if (here == FATTN_ERR_CUDA)
            break;
        if ((st = from_fattn(here, err, no_kernel[1][extreme], &p[extreme])) != FATTN_OK)
            return st;
    }
    return FATTN_OK;
}

fattn_status fattn_plugin_workspace_size(const fattn_plugin_config *config,
                                         const fattn_plugin_dyn_tensor *inputs, int32_t nb_inputs,
                                         size_t *bytes, fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_check_io_counts(nb_inputs, FATTN_PLUGIN_NUM_OUTPUTS, err);
    if (st != FATTN_OK)
        return st;
    if (!inputs || !bytes)
        return null_argument(err, !inputs ? "inputs" : "bytes");
    fattn_plugin_tensor io[4] = {inputs[0].desc, inputs[1].desc, inputs[2].desc, inputs[0].desc};
    if ((st = check_io(config, io, err)) != FATTN_OK)
        return st;
    const fattn_plugin_dims *dims[4] = {&inputs[0].max, &inputs[1].max, &inputs[2].max, NULL};
    shape4 s[3];
    if ((st = check_shapes(config->layout, dims, "at the profile's max shapes: ", s, err)) !=
        FATTN_OK)
        return st;
    fattn_params p;
    fill_params(config, io[IO_Q].dtype, s, NULL, NULL, &p);
    size_t need = 0;
    st = from_fattn(fattn_cuda_workspace_size(&p, &need), err,
                    "workspace size at the profile's max shapes", &p);
    if (st == FATTN_OK)
        *bytes = need;
    return st;
}

fattn_status fattn_plugin_make_params(const fattn_plugin_config *config,
                                      const fattn_plugin_tensor *inputs, int32_t nb_inputs,
                                      const fattn_plugin_tensor *outputs, int32_t nb_outputs,
                                      const void *const *input_data, void *const *output_data,
                                      fattn_params *params, fattn_plugin_error *err)
{
    fattn_status st = fattn_plugin_check_io_counts(nb_inputs, nb_outputs, err);
    if (st != FATTN_OK)
        return st;
    if (!inputs || !outputs || !params)
        return null_argument(err, !inputs ? "inputs" : !outputs ? "outputs" : "params");
    fattn_plugin_tensor io[4];
    gather_io(inputs, outputs, io);
    if ((st = check_io(config, io, err)) != FATTN_OK)
        return st;
    const fattn_plugin_dims *dims[4] = {&io[0].dims, &io[1].dims, &io[2].dims, &io[3].dims};
    shape4 s[3];
    if ((st = check_shapes(config->layout, dims, "", s, err)) != FATTN_OK)
        return st;
    fill_params(config, io[IO_Q].dtype, s, input_data, output_data, params);
    return FATTN_OK;
}

fattn_status fattn_plugin_on_shape_change(const fattn_plugin_config *config,
                                          const fattn_plugin_tensor *inputs, int32_t nb_inputs,
                                          const fattn_plugin_tensor *outputs, int32_t nb_outputs,
                                          fattn_plugin_error *err)
{
    fattn_params p;
    fattn_status st = fattn_plugin_make_params(config, inputs, nb_inputs, outputs, nb_outputs,
                                               NULL, NULL, &p, err);
    if (st != FATTN_OK)
        return st;
    return from_fattn(fattn_cuda_supported(&p), err, "no fattn GPU kernel", &p);
}

fattn_status fattn_plugin_enqueue(const fattn_plugin_config *config,
                                  const fattn_plugin_tensor *inputs, int32_t nb_inputs,
                                  const fattn_plugin_tensor *outputs, int32_t nb_outputs,
                                  const void *const *input_data, void *const *output_data,
                                  void *workspace, struct CUstream_st *stream,
                                  fattn_plugin_error *err)
{
    if (!input_data || !output_data)
        return plugin_fail(err, FATTN_ERR_INVALID_ARGUMENT, "enqueue without %s pointers",
                           !input_data ? "input" : "output");
    fattn_params p;
    fattn_status st = fattn_plugin_make_params(config, inputs, nb_inputs, outputs, nb_outputs,
                                               input_data, output_data, &p, err);
    if (st != FATTN_OK)
        return st;
    size_t need = 0;
    st = from_fattn(fattn_cuda_workspace_size(&p, &need), err, "workspace size", &p);
    if (st != FATTN_OK)
        return st;
    return from_fattn(fattn_cuda_forward(&p, workspace, need, stream), err, "fattn_cuda_forward",
                      &p);
}
