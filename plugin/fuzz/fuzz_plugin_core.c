/*
 * libFuzzer target over the plugin core's untrusted inputs: engine bytes (deserialisation) and
 * field collections (build-time and runtime-phase parsing). The first input byte picks the path;
 * the rest is decoded into that path's input with every buffer sized exactly, so AddressSanitizer
 * sees any read past what the caller provides.
 *
 * Beyond "no crash", accepted inputs must be canonical: re-serialising an accepted configuration
 * reproduces the accepted bytes, and fields accepted at build time survive a serialise /
 * deserialise round trip unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn_plugin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A violated invariant is a finding: abort so libFuzzer (or the replay driver) stops on it. */
static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz invariant violated: %s\n", what);
        abort();
    }
}

static void require_canonical(const fattn_plugin_config *c)
{
    char text[128];
    require(fattn_plugin_config_validate(c, NULL) == FATTN_OK, "accepted config validates");
    fattn_plugin_config_describe(c, text, sizeof text);
    uint8_t blob[FATTN_PLUGIN_SERIAL_SIZE];
    require(fattn_plugin_config_serialize(c, blob, sizeof blob, NULL) == FATTN_OK,
            "accepted config serialises");
    fattn_plugin_config back;
    require(fattn_plugin_config_deserialize(blob, sizeof blob, &back, NULL) == FATTN_OK,
            "serialised config deserialises");
    require(memcmp(&back, c, sizeof back) == 0, "round trip keeps the config");
}

static void fuzz_deserialize(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return;
    memcpy(copy, data, size);
    fattn_plugin_config c;
    fattn_plugin_error err;
    if (fattn_plugin_config_deserialize(size ? copy : NULL, size, &c, &err) == FATTN_OK) {
        require_canonical(&c);
        uint8_t again[FATTN_PLUGIN_SERIAL_SIZE];
        fattn_plugin_config_serialize(&c, again, sizeof again, NULL);
        require(size == sizeof again && memcmp(again, copy, size) == 0,
                "accepted bytes are the canonical serialisation");
    } else {
        require(err.message[0] != '\0', "rejection has a message");
    }
    free(copy);
}

/* Bytes per element of each field type; invalid types are given 1. */
static size_t element_size(int32_t type)
{
    switch (type) {
    case FATTN_PLUGIN_FIELD_FLOAT16: case FATTN_PLUGIN_FIELD_INT16: case FATTN_PLUGIN_FIELD_BF16:
        return 2;
    case FATTN_PLUGIN_FIELD_FLOAT32: case FATTN_PLUGIN_FIELD_INT32: return 4;
    case FATTN_PLUGIN_FIELD_FLOAT64: case FATTN_PLUGIN_FIELD_INT64: return 8;
    case FATTN_PLUGIN_FIELD_DIMS: return sizeof(fattn_plugin_dims);
    default: return 1;
    }
}

enum { MAX_FIELDS = 8 };

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

static uint8_t take(reader *r)
{
    if (!r->left)
        return 0;
    r->left--;
    return *r->p++;
}

/* Decodes up to MAX_FIELDS fields; each owns an exactly sized copy of its data. */
static int32_t decode_fields(reader *r, fattn_plugin_field *fields, void **owned)
{
    static const char *const names[] = {"mode",   "causal", "scale", "layout",
                                        FATTN_PLUGIN_SERIAL_FIELD, "",  "Mode", NULL};
    int32_t count = 0;
    while (r->left && count < MAX_FIELDS) {
        uint8_t head = take(r), type = take(r), len = take(r);
        fattn_plugin_field *f = &fields[count];
        f->name = names[head & 7];
        f->type = (int32_t)(type % 16);
        f->length = (head & 0x80) ? -1 : (int32_t)(len % 4);
        if (f->type == FATTN_PLUGIN_FIELD_BYTES && !(head & 0x80))
            f->length = (int32_t)len % 40;
        size_t bytes = f->length > 0 ? (size_t)f->length * element_size(f->type) : 0;
        owned[count] = NULL;
        if (!(head & 0x40)) {
            owned[count] = malloc(bytes ? bytes : 1);
            if (!owned[count])
                return count;
            for (size_t i = 0; i < bytes; ++i)
                ((uint8_t *)owned[count])[i] = take(r);
        }
        f->data = owned[count];
        ++count;
    }
    return count;
}

static void fuzz_fields(const uint8_t *data, size_t size, int runtime)
{
    reader r = {data, size};
    fattn_plugin_field fields[MAX_FIELDS];
    void *owned[MAX_FIELDS];
    int32_t count = decode_fields(&r, fields, owned);
    fattn_plugin_config c;
    fattn_plugin_error err;
    fattn_status st = runtime ? fattn_plugin_config_from_serialized_fields(fields, count, &c, &err)
                              : fattn_plugin_config_from_fields(fields, count, &c, &err);
    if (st == FATTN_OK)
        require_canonical(&c);
    else
        require(err.message[0] != '\0', "rejection has a message");
    for (int32_t i = 0; i < count; ++i)
        free(owned[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0: fuzz_deserialize(data + 1, size - 1); break;
    case 1: fuzz_fields(data + 1, size - 1, 0); break;
    default: fuzz_fields(data + 1, size - 1, 1); break;
    }
    return 0;
}
