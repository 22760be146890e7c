/*
 * Unit tests of the plugin's C core: schema, field parsing, serialisation, type/format rules,
 * shape checks, the mapping onto fattn_params (checked by running libfattn's CPU forward on both
 * layouts), and that build-time checks agree with libfattn about kernel support.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fattn_plugin.h"

static int failures;

#define CHECK(cond)                                                                              \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
            ++failures;                                                                          \
        }                                                                                        \
    } while (0)

/* Status is `want` and the message holds `needle`. */
#define CHECK_ERR(call, want, err, needle)                                                       \
    do {                                                                                         \
        memset(&(err), 0, sizeof(err));                                                          \
        fattn_status st_ = (call);                                                               \
        if (st_ != (want) || !strstr((err).message, (needle))) {                                 \
            fprintf(stderr, "%s:%d: %s: status %d (want %d), message \"%s\" lacks \"%s\"\n",     \
                    __FILE__, __LINE__, #call, (int)st_, (int)(want), (err).message, (needle));  \
            ++failures;                                                                          \
        }                                                                                        \
    } while (0)

static uint64_t rng_state;

static uint32_t rng_next(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static float rng_uniform(void) { return (float)rng_next() / 2147483648.0f - 1.0f; }

static fattn_plugin_field int_field(const char *name, const int32_t *v)
{
    fattn_plugin_field f = {name, v, FATTN_PLUGIN_FIELD_INT32, 1};
    return f;
}

static int config_equal(const fattn_plugin_config *a, const fattn_plugin_config *b)
{
    return a->mode == b->mode && a->causal == b->causal && a->layout == b->layout &&
           memcmp(&a->scale, &b->scale, sizeof a->scale) == 0;
}

static const fattn_plugin_config sentinel = {77, 77, 77.0f, 77};

static void test_schema(void)
{
    int32_t n = 0;
    const fattn_plugin_field_spec *s = fattn_plugin_field_schema(&n);
    CHECK(n == 4);
    const char *names[] = {"mode", "causal", "scale", "layout"};
    const fattn_plugin_field_type types[] = {FATTN_PLUGIN_FIELD_INT32, FATTN_PLUGIN_FIELD_INT32,
                                             FATTN_PLUGIN_FIELD_FLOAT32, FATTN_PLUGIN_FIELD_INT32};
    const char *onnx[] = {"INT", "INT", "FLOAT", "INT"};
    for (int i = 0; i < 4 && i < n; ++i) {
        CHECK(strcmp(s[i].name, names[i]) == 0);
        CHECK(s[i].type == types[i]);
        CHECK(strcmp(s[i].onnx_type, onnx[i]) == 0);
        CHECK(s[i].default_value == 0.0);
        CHECK(!strchr(s[i].meaning, '"') && !strchr(s[i].meaning, '\\'));
    }
    CHECK(strcmp(fattn_plugin_field_type_name(FATTN_PLUGIN_FIELD_INT32), "INT32") == 0);
    CHECK(strcmp(fattn_plugin_field_type_name(FATTN_PLUGIN_FIELD_BYTES), "BYTES") == 0);
    CHECK(strcmp(fattn_plugin_field_type_name(99), "INVALID") == 0);
    CHECK(strcmp(fattn_plugin_field_type_name(-1), "INVALID") == 0);

    size_t len = fattn_plugin_schema_json(NULL, 0);
    char *json = malloc(len + 1);
    CHECK(json && fattn_plugin_schema_json(json, len + 1) == len && strlen(json) == len);
    if (json) {
        CHECK(strstr(json, "\"plugin\": \"CustomAttnPlugin\""));
        CHECK(strstr(json, "\"version\": \"1\""));
        CHECK(strstr(json, "{\"name\": \"scale\", \"type\": \"FLOAT32\", \"onnx_attribute_type\": "
                           "\"FLOAT\", \"length\": 1, \"default\": 0.0"));
        CHECK(strstr(json, "{\"name\": \"mode\", \"type\": \"INT32\", \"onnx_attribute_type\": "
                           "\"INT\", \"length\": 1, \"default\": 0,"));
        char small[10];
        CHECK(fattn_plugin_schema_json(small, sizeof small) == len);
        CHECK(strlen(small) == sizeof small - 1 && memcmp(small, json, sizeof small - 1) == 0);
    }
    free(json);
}

static void test_fields(void)
{
    fattn_plugin_config c = sentinel;
    fattn_plugin_error err;
    CHECK(fattn_plugin_config_from_fields(NULL, 0, &c, &err) == FATTN_OK);
    fattn_plugin_config def;
    fattn_plugin_config_default(&def);
    CHECK(config_equal(&c, &def) && c.mode == 0 && c.causal == 0 && c.scale == 0.0f &&
          c.layout == 0);

    int32_t one = 1, two = 2, neg = -1, zero = 0;
    float scale = 0.125f;
    fattn_plugin_field all[4] = {int_field("layout", &one), int_field("causal", &one),
                                 {"scale", &scale, FATTN_PLUGIN_FIELD_FLOAT32, 1},
                                 int_field("mode", &zero)};
    CHECK(fattn_plugin_config_from_fields(all, 4, &c, &err) == FATTN_OK);
    CHECK(c.layout == 1 && c.causal == 1 && c.scale == 0.125f && c.mode == 0);
    /* libfattn's rule: any finite scale, negative ones included (0 selects 1/sqrt(D)). */
    float negative = -0.75f;
    fattn_plugin_field neg_scale = {"scale", &negative, FATTN_PLUGIN_FIELD_FLOAT32, 1};
    CHECK(fattn_plugin_config_from_fields(&neg_scale, 1, &c, &err) == FATTN_OK &&
          c.scale == -0.75f);

    /* Unaligned data: TensorRT promises no alignment. */
    unsigned char raw[8] = {0};
    memcpy(raw + 1, &one, sizeof one);
    fattn_plugin_field unaligned = {"mode", raw + 1, FATTN_PLUGIN_FIELD_INT32, 1};
    CHECK(fattn_plugin_config_from_fields(&unaligned, 1, &c, &err) == FATTN_OK && c.mode == 1);

    fattn_plugin_field f;
    c = sentinel;
    f = int_field("casual", &one);
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "unknown field 'casual'");
    fattn_plugin_field twice[2] = {int_field("mode", &one), int_field("mode", &zero)};
    CHECK_ERR(fattn_plugin_config_from_fields(twice, 2, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 'mode' is given twice");
    int64_t wide = 1;
    f = (fattn_plugin_field){"mode", &wide, FATTN_PLUGIN_FIELD_INT64, 1};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 'mode' has type INT64 (10); expected INT32");
    f = (fattn_plugin_field){"scale", &one, FATTN_PLUGIN_FIELD_INT32, 1};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 'scale' has type INT32 (5); expected FLOAT32");
    f = (fattn_plugin_field){"causal", &one, 42, 1};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "type INVALID (42)");
    int32_t pair[2] = {1, 1};
    f = (fattn_plugin_field){"causal", pair, FATTN_PLUGIN_FIELD_INT32, 2};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 'causal' has length 2; expected 1");
    f = (fattn_plugin_field){"layout", NULL, FATTN_PLUGIN_FIELD_INT32, 1};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 'layout' has no data");
    f = (fattn_plugin_field){NULL, &one, FATTN_PLUGIN_FIELD_INT32, 1};
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "field 0 has no name");
    CHECK_ERR(fattn_plugin_config_from_fields(NULL, 2, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "malformed");
    f = int_field("mode", &two);
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "mode (2) must be 0");
    f = int_field("causal", &neg);
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "causal (-1) must be 0 or 1");
    f = int_field("layout", &two);
    CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "layout (2) must be 0 (BSHD) or 1 (BHSD)");
    const float bad_scales[] = {-INFINITY, NAN, INFINITY};
    const char *bad_text[] = {"scale (-inf) must be finite", "scale (nan)", "scale (inf)"};
    for (int i = 0; i < 3; ++i) {
        f = (fattn_plugin_field){"scale", &bad_scales[i], FATTN_PLUGIN_FIELD_FLOAT32, 1};
        CHECK_ERR(fattn_plugin_config_from_fields(&f, 1, &c, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, bad_text[i]);
    }
    CHECK(config_equal(&c, &sentinel)); /* nothing written by any failed call */

    char text[96];
    fattn_plugin_config d = {1, 1, 0.25f, 1};
    fattn_plugin_config_describe(&d, text, sizeof text);
    CHECK(strcmp(text, "mode=1 causal=1 scale=0.25 layout=BHSD") == 0);
}

static void test_serialization(void)
{
    fattn_plugin_error err;
    /* Golden bytes: mode 1, causal 1, scale 0.5, layout 1; CRC-32 from Python's zlib.crc32. */
    const fattn_plugin_config golden_cfg = {1, 1, 0.5f, 1};
    const uint8_t golden[FATTN_PLUGIN_SERIAL_SIZE] = {
        'F', 'A', 'T', 'P', 1, 0, 16, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, 1, 0, 0, 0,
        0x28, 0xc6, 0x40, 0xce};
    uint8_t blob[FATTN_PLUGIN_SERIAL_SIZE + 8];
    CHECK(fattn_plugin_config_serialize(&golden_cfg, blob, FATTN_PLUGIN_SERIAL_SIZE, &err) ==
          FATTN_OK);
    if (memcmp(blob, golden, sizeof golden) != 0) {
        fprintf(stderr, "serialised bytes:");
        for (int i = 0; i < FATTN_PLUGIN_SERIAL_SIZE; ++i)
            fprintf(stderr, " %02x", blob[i]);
        fprintf(stderr, "\n");
        CHECK(!"serialisation matches the golden bytes");
    }
    CHECK_ERR(fattn_plugin_config_serialize(&golden_cfg, blob, FATTN_PLUGIN_SERIAL_SIZE - 1, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "smaller than 28 bytes");

    /* Random valid configs round-trip exactly. */
    for (int i = 0; i < 1000; ++i) {
        fattn_plugin_config c = {(int32_t)(rng_next() & 1), (int32_t)(rng_next() & 1),
                                 fabsf(rng_uniform()) * 4.0f, (int32_t)(rng_next() & 1)}, back;
        CHECK(fattn_plugin_config_serialize(&c, blob, sizeof blob, &err) == FATTN_OK);
        CHECK(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &back, &err) ==
              FATTN_OK);
        CHECK(config_equal(&c, &back));
    }

    fattn_plugin_config out = sentinel;
    memcpy(blob, golden, sizeof golden);
    for (size_t n = 0; n < FATTN_PLUGIN_SERIAL_SIZE; ++n)
        CHECK_ERR(fattn_plugin_config_deserialize(blob, n, &out, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "truncated");
    blob[FATTN_PLUGIN_SERIAL_SIZE] = 0;
    CHECK_ERR(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE + 1, &out, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "oversized: 29 bytes, expected 28");
    /* Every single-bit corruption is caught (magic, version, length, values or checksum). */
    int caught = 0;
    for (int bit = 0; bit < 8 * FATTN_PLUGIN_SERIAL_SIZE; ++bit) {
        memcpy(blob, golden, sizeof golden);
        blob[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        caught += fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &out, NULL) !=
                  FATTN_OK;
    }
    CHECK(caught == 8 * FATTN_PLUGIN_SERIAL_SIZE);
    memcpy(blob, golden, sizeof golden);
    blob[0] = 'X';
    CHECK_ERR(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &out, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "does not start with \"FATP\"");
    memcpy(blob, golden, sizeof golden);
    blob[4] = 2;
    CHECK_ERR(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &out, &err),
              FATTN_ERR_UNSUPPORTED, err, "format version 2; this plugin reads version 1");
    memcpy(blob, golden, sizeof golden);
    blob[6] = 20;
    CHECK_ERR(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &out, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "20-byte payload");
    memcpy(blob, golden, sizeof golden);
    blob[9] = 1;
    CHECK_ERR(fattn_plugin_config_deserialize(blob, FATTN_PLUGIN_SERIAL_SIZE, &out, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "corrupt: CRC-32");
    CHECK_ERR(fattn_plugin_config_deserialize(NULL, 28, &out, &err), FATTN_ERR_INVALID_ARGUMENT,
              err, "NULL");
    CHECK(config_equal(&out, &sentinel));

    /* The runtime-phase field wrapper. */
    fattn_plugin_config c;
    fattn_plugin_field f = {FATTN_PLUGIN_SERIAL_FIELD, golden, FATTN_PLUGIN_FIELD_BYTES,
                            FATTN_PLUGIN_SERIAL_SIZE};
    CHECK(fattn_plugin_config_from_serialized_fields(&f, 1, &c, &err) == FATTN_OK &&
          config_equal(&c, &golden_cfg));
    CHECK_ERR(fattn_plugin_config_from_serialized_fields(&f, 0, &c, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "0 fields; expected exactly one, 'fattn_config'");
    fattn_plugin_field two[2] = {f, f};
    CHECK_ERR(fattn_plugin_config_from_serialized_fields(two, 2, &c, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "2 fields");
    f.name = "mode";
    CHECK_ERR(fattn_plugin_config_from_serialized_fields(&f, 1, &c, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "field is 'mode'; expected 'fattn_config'");
    f.name = FATTN_PLUGIN_SERIAL_FIELD;
    f.type = FATTN_PLUGIN_FIELD_CHAR;
    CHECK_ERR(fattn_plugin_config_from_serialized_fields(&f, 1, &c, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "type CHAR (6); expected BYTES");
    f.type = FATTN_PLUGIN_FIELD_BYTES;
    f.length = -3;
    CHECK_ERR(fattn_plugin_config_from_serialized_fields(&f, 1, &c, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "length -3");
}

static fattn_plugin_tensor tensor(int32_t dtype, int linear, int64_t a, int64_t b, int64_t c,
                                  int64_t d)
{
    fattn_plugin_tensor t;
    memset(&t, 0, sizeof t);
    t.dims.nb_dims = 4;
    t.dims.d[0] = a;
    t.dims.d[1] = b;
    t.dims.d[2] = c;
    t.dims.d[3] = d;
    t.dtype = dtype;
    t.linear = linear;
    return t;
}

static void test_formats(void)
{
    const int32_t dtypes[] = {FATTN_PLUGIN_DTYPE_OTHER, FATTN_DTYPE_F32, FATTN_DTYPE_F16,
                              FATTN_DTYPE_BF16, 7};
    int accepted_full = 0;
    for (int pos = 0; pos < 4; ++pos) {
        for (int combo = 0; combo < 10 * 10 * 10 * 10; ++combo) {
            fattn_plugin_tensor io[4];
            int c = combo, ok_prefix = 1, expect;
            for (int i = 0; i < 4; ++i, c /= 10)
                io[i] = tensor(dtypes[(c % 10) / 2], c % 2, 1, 1, 1, 1);
            /* Entries past pos hold garbage, as TensorRT promises nothing there. */
            for (int i = pos + 1; i < 4; ++i)
                io[i].dtype = 1000 + i, io[i].linear = 7;
            for (int i = 0; i < pos; ++i)
                ok_prefix &= io[i].linear && io[i].dtype >= 0 && io[i].dtype <= 2 &&
                             io[i].dtype == io[0].dtype;
            if (!ok_prefix)
                continue;
            expect = io[pos].linear && io[pos].dtype >= 0 && io[pos].dtype <= 2 &&
                     io[pos].dtype == io[0].dtype;
            int got = fattn_plugin_supports_format(pos, io, 3, 1);
            CHECK(got == expect);
            accepted_full += pos == 3 && got;
        }
    }
    CHECK(accepted_full > 0);
    fattn_plugin_tensor io[4] = {tensor(0, 1, 1, 1, 1, 1), tensor(0, 1, 1, 1, 1, 1),
                                 tensor(0, 1, 1, 1, 1, 1), tensor(0, 1, 1, 1, 1, 1)};
    CHECK(!fattn_plugin_supports_format(4, io, 3, 1));
    CHECK(!fattn_plugin_supports_format(-1, io, 3, 1));
    CHECK(!fattn_plugin_supports_format(0, io, 2, 1));
    CHECK(!fattn_plugin_supports_format(0, NULL, 3, 1));

    fattn_plugin_error err;
    int32_t out = -5;
    for (int32_t dt = 0; dt <= 2; ++dt) {
        fattn_plugin_tensor in[3] = {tensor(dt, 1, 1, 1, 1, 1), tensor(dt, 1, 1, 1, 1, 1),
                                     tensor(dt, 1, 1, 1, 1, 1)};
        CHECK(fattn_plugin_output_dtype(in, 3, &out, &err) == FATTN_OK && out == dt);
    }
    fattn_plugin_tensor in[3] = {tensor(FATTN_DTYPE_BF16, 1, 1, 1, 1, 1),
                                 tensor(FATTN_DTYPE_F16, 1, 1, 1, 1, 1),
                                 tensor(FATTN_DTYPE_BF16, 1, 1, 1, 1, 1)};
    CHECK_ERR(fattn_plugin_output_dtype(in, 3, &out, &err), FATTN_ERR_UNSUPPORTED, err,
              "k has type f16 but q has bf16");
    in[0].dtype = FATTN_PLUGIN_DTYPE_OTHER;
    in[0].type_name = "INT8";
    CHECK_ERR(fattn_plugin_output_dtype(in, 3, &out, &err), FATTN_ERR_UNSUPPORTED, err,
              "q has type INT8; CustomAttnPlugin takes fp32, fp16 or bf16");
    CHECK_ERR(fattn_plugin_output_dtype(in, 2, &out, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "takes 3 inputs (q, k, v); got 2");
    CHECK_ERR(fattn_plugin_check_io_counts(3, 2, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "has 1 output (o); got 2");

    int32_t ranks[3] = {4, 4, 4};
    CHECK(fattn_plugin_check_ranks(ranks, 3, &err) == FATTN_OK);
    ranks[2] = 3;
    CHECK_ERR(fattn_plugin_check_ranks(ranks, 3, &err), FATTN_ERR_INVALID_ARGUMENT, err,
              "v has 3 dimensions; expected 4");
}

static void test_params(void)
{
    fattn_plugin_error err;
    fattn_params p;
    fattn_plugin_config bshd = {0, 1, 0.1f, FATTN_PLUGIN_LAYOUT_BSHD};
    fattn_plugin_config bhsd = {0, 0, 0.0f, FATTN_PLUGIN_LAYOUT_BHSD};
    /* BSHD, GQA 4:1, Sq != Skv. */
    fattn_plugin_tensor in[3] = {tensor(FATTN_DTYPE_BF16, 1, 2, 7, 8, 64),
                                 tensor(FATTN_DTYPE_BF16, 1, 2, 5, 2, 64),
                                 tensor(FATTN_DTYPE_BF16, 1, 2, 5, 2, 64)};
    fattn_plugin_tensor out[1] = {tensor(FATTN_DTYPE_BF16, 1, 2, 7, 8, 64)};
    /* Buffers of the right sizes, so that fattn_validate's overlap check sees real extents. */
    uint16_t *buf[4] = {calloc(2 * 7 * 8 * 64, 2), calloc(2 * 5 * 2 * 64, 2),
                        calloc(2 * 5 * 2 * 64, 2), calloc(2 * 7 * 8 * 64, 2)};
    const void *ptrs[3] = {buf[0], buf[1], buf[2]};
    void *optr[1] = {buf[3]};
    CHECK(fattn_plugin_make_params(&bshd, in, 3, out, 1, ptrs, optr, &p, &err) == FATTN_OK);
    CHECK(p.batch == 2 && p.seqlen_q == 7 && p.seqlen_kv == 5 && p.heads_q == 8 &&
          p.heads_kv == 2 && p.head_dim == 64 && p.dtype == FATTN_DTYPE_BF16 &&
          p.mode == FATTN_MODE_NATIVE && p.causal == 1 && p.scale == 0.1f && p.lse == NULL);
    CHECK(p.q.data == buf[0] && p.k.data == buf[1] && p.v.data == buf[2] && p.o.data == buf[3]);
    CHECK(p.q.stride_batch == 7 * 8 * 64 && p.q.stride_seq == 8 * 64 && p.q.stride_head == 64);
    CHECK(p.k.stride_batch == 5 * 2 * 64 && p.k.stride_seq == 2 * 64 && p.k.stride_head == 64);
    CHECK(p.o.stride_batch == p.q.stride_batch && p.o.stride_seq == p.q.stride_seq);
    CHECK(fattn_validate(&p) == FATTN_OK || !fprintf(stderr, "%s\n", fattn_last_error()));
    /* BHSD: the same problem with heads before seq. */
    fattn_plugin_tensor in2[3] = {tensor(FATTN_DTYPE_F16, 1, 2, 8, 7, 64),
                                  tensor(FATTN_DTYPE_F16, 1, 2, 2, 5, 64),
                                  tensor(FATTN_DTYPE_F16, 1, 2, 2, 5, 64)};
    fattn_plugin_tensor out2[1] = {tensor(FATTN_DTYPE_F16, 1, 2, 8, 7, 64)};
    CHECK(fattn_plugin_make_params(&bhsd, in2, 3, out2, 1, ptrs, optr, &p, &err) == FATTN_OK);
    CHECK(p.seqlen_q == 7 && p.seqlen_kv == 5 && p.heads_q == 8 && p.heads_kv == 2);
    CHECK(p.q.stride_batch == 8 * 7 * 64 && p.q.stride_head == 7 * 64 && p.q.stride_seq == 64);
    CHECK(p.k.stride_batch == 2 * 5 * 64 && p.k.stride_head == 5 * 64 && p.k.stride_seq == 64);
    CHECK(fattn_validate(&p) == FATTN_OK || !fprintf(stderr, "%s\n", fattn_last_error()));

    /* Shape errors, each named. */
    fattn_plugin_tensor bad[3];
    fattn_plugin_tensor bad_out[1];
#define RESET() (memcpy(bad, in, sizeof bad), memcpy(bad_out, out, sizeof bad_out))
    RESET();
    bad[1].dims.d[0] = 3;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "k's batch (3) differs from q's (2)");
    RESET();
    bad[2].dims.d[3] = 32;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "v's head_dim (32) differs from q's (64)");
    RESET();
    bad[2].dims.d[1] = 6;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "v's seq (6) differs from k's (5)");
    RESET();
    bad[1].dims.d[2] = 3;
    bad[2].dims.d[2] = 3;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "q's heads (8) is not a multiple of k's heads (3)");
    RESET();
    bad[2].dims.d[2] = 1;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "v's heads (1) differs from k's (2)");
    RESET();
    bad_out[0].dims.d[1] = 6;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "o's shape [2, 6, 8, 64] differs from q's [2, 7, 8, 64]");
    RESET();
    bad[0].dims.nb_dims = 3;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "q has 3 dimensions; expected 4: [batch, seq, heads, head_dim]");
    RESET();
    bad[1].dims.d[1] = 0;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "k's seq extent (dimension 1) is 0");
    RESET();
    bad[0].dims.d[1] = -1;
    CHECK_ERR(fattn_plugin_make_params(&bhsd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "q's heads extent (dimension 1) is -1");
    RESET();
    bad[0].dims.d[0] = INT64_C(1) << 40;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "too large");
    RESET();
    bad_out[0].dtype = FATTN_DTYPE_F32;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_UNSUPPORTED, err, "o has type f32 but q has bf16");
    RESET();
    bad[2].linear = 0;
    CHECK_ERR(fattn_plugin_make_params(&bshd, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_UNSUPPORTED, err, "v is not in the linear");
    RESET();
    fattn_plugin_config bad_cfg = {3, 0, 0.0f, 0};
    CHECK_ERR(fattn_plugin_make_params(&bad_cfg, bad, 3, bad_out, 1, NULL, NULL, &p, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "mode (3)");
#undef RESET
    CHECK_ERR(fattn_plugin_enqueue(&bshd, in, 3, out, 1, NULL, optr, NULL, NULL, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "enqueue without input pointers");
    CHECK_ERR(fattn_plugin_enqueue(&bshd, in, 3, out, 1, ptrs, NULL, NULL, NULL, &err),
              FATTN_ERR_INVALID_ARGUMENT, err, "enqueue without output pointers");
    for (int i = 0; i < 4; ++i)
        free(buf[i]);
}

static fattn_plugin_dyn_tensor dyn(int32_t dtype, const int64_t min[4], const int64_t max[4])
{
    fattn_plugin_dyn_tensor t;
    memset(&t, 0, sizeof t);
    t.desc = tensor(dtype, 1, min[0], -1, min[2], min[3]);
    t.min.nb_dims = t.max.nb_dims = 4;
    for (int i = 0; i < 4; ++i)
        t.min.d[i] = min[i], t.max.d[i] = max[i];
    return t;
}

/* configure and workspace agree with libfattn (kernel support, sizes) and fail with its reason. */
static void test_configure(void)
{
    fattn_plugin_error err;
    const int64_t qmin[4] = {1, 1, 8, 64}, qmax[4] = {1, 300, 8, 64};
    const int64_t kmin[4] = {1, 1, 2, 64}, kmax[4] = {1, 300, 2, 64};
    for (int32_t mode = 0; mode <= 1; ++mode) {
        fattn_plugin_config cfg = {mode, 1, 0.0f, FATTN_PLUGIN_LAYOUT_BSHD};
        fattn_plugin_dyn_tensor in[3] = {dyn(FATTN_DTYPE_BF16, qmin, qmax),
                                         dyn(FATTN_DTYPE_BF16, kmin, kmax),
                                         dyn(FATTN_DTYPE_BF16, kmin, kmax)};
        fattn_plugin_dyn_tensor out[1] = {dyn(FATTN_DTYPE_BF16, qmin, qmax)};
        fattn_params pmin, pmax;
        /* Addresses that are never dereferenced: libfattn's support check wants real-looking ones. */
        void *fake[4] = {(void *)((uintptr_t)1 << 44), (void *)((uintptr_t)2 << 44),
                         (void *)((uintptr_t)3 << 44), (void *)((uintptr_t)4 << 44)};
        fattn_params_bshd(&pmin, 1, 1, 1, 8, 2, 64, FATTN_DTYPE_BF16, fake[0], fake[1], fake[2],
                          fake[3]);
        fattn_params_bshd(&pmax, 1, 300, 300, 8, 2, 64, FATTN_DTYPE_BF16, fake[0], fake[1],
                          fake[2], fake[3]);
        pmin.mode = pmax.mode = (fattn_mode)mode;
        pmin.causal = pmax.causal = 1;
        /* The build's rule: some GPU serves both extremes, and so does this device unless it
         * cannot be asked (FATTN_ERR_CUDA: no GPU or driver here). */
        fattn_status want = fattn_cuda_supported_any(&pmin);
        if (want == FATTN_OK)
            want = fattn_cuda_supported_any(&pmax);
        if (want == FATTN_OK) {
            want = fattn_cuda_supported(&pmin);
            if (want == FATTN_OK)
                want = fattn_cuda_supported(&pmax);
            if (want == FATTN_ERR_CUDA)
                want = FATTN_OK;
        }
        char libmsg[256];
        snprintf(libmsg, sizeof libmsg, "%s", fattn_last_error());
        memset(&err, 0, sizeof err);
        fattn_status got = fattn_plugin_configure(&cfg, in, 3, out, 1, &err);
        printf("configure mode %d: %s (%s)\n", (int)mode, fattn_status_name(got), err.message);
        CHECK(got == want);
        if (want != FATTN_OK)
            CHECK(strstr(err.message, libmsg) && strstr(err.message, "no fattn GPU kernel"));

        size_t want_ws = 0, got_ws = 12345;
        fattn_status ws_want = fattn_cuda_workspace_size(&pmax, &want_ws);
        fattn_status ws_got = fattn_plugin_workspace_size(&cfg, in, 3, &got_ws, &err);
        CHECK(ws_got == ws_want);
        if (ws_want == FATTN_OK)
            CHECK(got_ws == want_ws);

        /* Shape errors at either extreme are found before libfattn is asked. */
        fattn_plugin_dyn_tensor bad[3] = {in[0], in[1], in[2]};
        bad[1].max.d[1] = 299;
        CHECK_ERR(fattn_plugin_configure(&cfg, bad, 3, out, 1, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "at the profile's max shapes: v's seq (300) differs from k's (299)");
        bad[1] = in[1];
        bad[0].min.d[3] = 32;
        CHECK_ERR(fattn_plugin_configure(&cfg, bad, 3, out, 1, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "at the profile's min shapes: k's head_dim (64) differs from q's (32)");
        CHECK_ERR(fattn_plugin_configure(&cfg, in, 2, out, 1, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "takes 3 inputs");
        /* Missing arrays are reported, not dereferenced. */
        CHECK_ERR(fattn_plugin_configure(&cfg, NULL, 3, out, 1, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "inputs is NULL");
        CHECK_ERR(fattn_plugin_configure(&cfg, in, 3, NULL, 1, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "outputs is NULL");
        CHECK_ERR(fattn_plugin_workspace_size(&cfg, in, 3, NULL, &err),
                  FATTN_ERR_INVALID_ARGUMENT, err, "bytes is NULL");
        int32_t out_dtype = -1;
        CHECK_ERR(fattn_plugin_output_dtype(NULL, 3, &out_dtype, &err), FATTN_ERR_INVALID_ARGUMENT,
                  err, "inputs is NULL");
        CHECK_ERR(fattn_plugin_check_ranks(NULL, 3, &err), FATTN_ERR_INVALID_ARGUMENT, err,
                  "input_ranks is NULL");
        CHECK(out_dtype == -1);
    }

    /* A head dim no kernel serves on any GPU (36: no multiple of 8 for the Hopper kernel, not one of the
     * portable kernel's) fails the build with libfattn's reason, GPU or not. */
    const int64_t q36[4] = {1, 16, 4, 36}, k36[4] = {1, 16, 4, 36};
    fattn_plugin_config cfg = {0, 0, 0.0f, FATTN_PLUGIN_LAYOUT_BSHD};
    fattn_plugin_dyn_tensor in[3] = {dyn(FATTN_DTYPE_F16, q36, q36), dyn(FATTN_DTYPE_F16, k36, k36),
                                     dyn(FATTN_DTYPE_F16, k36, k36)};
    fattn_plugin_dyn_tensor out[1] = {dyn(FATTN_DTYPE_F16, q36, q36)};
    fattn_params p;
    fattn_params_bshd(&p, 1, 16, 16, 4, 4, 36, FATTN_DTYPE_F16, (void *)((uintptr_t)1 << 44),
                      (void *)((uintptr_t)2 << 44), (void *)((uintptr_t)3 << 44),
                      (void *)((uintptr_t)4 << 44));
    size_t ws = 0;
    const int have_cuda = fattn_cuda_workspace_size(&p, &ws) == FATTN_OK;
    CHECK(fattn_cuda_supported_any(&p) == FATTN_ERR_UNSUPPORTED);
    char libmsg[256];
    snprintf(libmsg, sizeof libmsg, "%s", fattn_last_error());
    CHECK(!have_cuda || strstr(libmsg, "head_dim (36)"));
    CHECK_ERR(fattn_plugin_configure(&cfg, in, 3, out, 1, &err), FATTN_ERR_UNSUPPORTED, err,
              "no fattn GPU kernel for any GPU at the profile's min shapes");
    CHECK(strstr(err.message, libmsg) != NULL);
}

/* Runs libfattn's CPU forward through make_params on BSHD data and on the same data transposed
 * to BHSD; the outputs must agree, and every output element must be written. */
static void test_layouts_compute_the_same(void)
{
    const int64_t B = 2, Sq = 9, Skv = 13, Hq = 4, Hkv = 2, D = 32;
    const size_t nq = (size_t)(B * Sq * Hq * D), nk = (size_t)(B * Skv * Hkv * D);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o = malloc(nq * 4);
    float *qt = malloc(nq * 4), *kt = malloc(nk * 4), *vt = malloc(nk * 4), *ot = malloc(nq * 4);
    if (!q || !k || !v || !o || !qt || !kt || !vt || !ot) {
        CHECK(!"allocation");
        goto done;
    }
    for (size_t i = 0; i < nq; ++i)
        q[i] = rng_uniform();
    for (size_t i = 0; i < nk; ++i)
        k[i] = rng_uniform(), v[i] = rng_uniform();
#define BSHD(b, s, h, d, S, H) ((((b) * (S) + (s)) * (H) + (h)) * D + (d))
#define BHSD(b, s, h, d, S, H) ((((b) * (H) + (h)) * (S) + (s)) * D + (d))
    for (int64_t b = 0; b < B; ++b)
        for (int64_t d = 0; d < D; ++d) {
            for (int64_t s = 0; s < Sq; ++s)
                for (int64_t h = 0; h < Hq; ++h)
                    qt[BHSD(b, s, h, d, Sq, Hq)] = q[BSHD(b, s, h, d, Sq, Hq)];
            for (int64_t s = 0; s < Skv; ++s)
                for (int64_t h = 0; h < Hkv; ++h) {
                    kt[BHSD(b, s, h, d, Skv, Hkv)] = k[BSHD(b, s, h, d, Skv, Hkv)];
                    vt[BHSD(b, s, h, d, Skv, Hkv)] = v[BSHD(b, s, h, d, Skv, Hkv)];
                }
        }
    for (int causal = 0; causal <= 1; ++causal) {
        fattn_plugin_config c0 = {0, causal, 0.0f, FATTN_PLUGIN_LAYOUT_BSHD};
        fattn_plugin_config c1 = {0, causal, 0.0f, FATTN_PLUGIN_LAYOUT_BHSD};
        fattn_plugin_tensor in0[3] = {tensor(0, 1, B, Sq, Hq, D), tensor(0, 1, B, Skv, Hkv, D),
                                      tensor(0, 1, B, Skv, Hkv, D)};
        fattn_plugin_tensor out0[1] = {tensor(0, 1, B, Sq, Hq, D)};
        fattn_plugin_tensor in1[3] = {tensor(0, 1, B, Hq, Sq, D), tensor(0, 1, B, Hkv, Skv, D),
                                      tensor(0, 1, B, Hkv, Skv, D)};
        fattn_plugin_tensor out1[1] = {tensor(0, 1, B, Hq, Sq, D)};
        const void *p0[3] = {q, k, v}, *p1[3] = {qt, kt, vt};
        void *o0[1] = {o}, *o1[1] = {ot};
        fattn_params a, b;
        fattn_plugin_error err;
        for (size_t i = 0; i < nq; ++i)
            o[i] = ot[i] = NAN;
        CHECK(fattn_plugin_make_params(&c0, in0, 3, out0, 1, p0, o0, &a, &err) == FATTN_OK);
        CHECK(fattn_plugin_make_params(&c1, in1, 3, out1, 1, p1, o1, &b, &err) == FATTN_OK);
        CHECK(fattn_cpu_forward(&a, 1) == FATTN_OK);
        CHECK(fattn_cpu_forward(&b, 1) == FATTN_OK);
        double max_diff = 0.0, max_abs = 0.0;
        int unwritten = 0;
        for (int64_t bb = 0; bb < B; ++bb)
            for (int64_t s = 0; s < Sq; ++s)
                for (int64_t h = 0; h < Hq; ++h)
                    for (int64_t d = 0; d < D; ++d) {
                        float x = o[BSHD(bb, s, h, d, Sq, Hq)], y = ot[BHSD(bb, s, h, d, Sq, Hq)];
                        unwritten += isnan(x) || isnan(y);
                        max_diff = fmax(max_diff, fabs((double)x - (double)y));
                        max_abs = fmax(max_abs, fabs((double)x));
                    }
        printf("layouts, causal %d: max |BSHD - BHSD| = %.3g (max |o| %.3g)\n", causal, max_diff,
               max_abs);
        CHECK(unwritten == 0);
        CHECK(max_diff <= 1e-6 && max_abs > 0.01);
    }
#undef BSHD
#undef BHSD
done:
    free(q), free(k), free(v), free(o), free(qt), free(kt), free(vt), free(ot);
}

int main(void)
{
    const char *env = getenv("FATTN_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    printf("seed %llu (set FATTN_TEST_SEED to repeat)\n", (unsigned long long)seed);
    rng_state = seed * 2654435761u + 1;
    test_schema();
    test_fields();
    test_serialization();
    test_formats();
    test_params();
    test_configure();
    test_layouts_compute_the_same();
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all plugin core checks passed\n");
    return 0;
}
