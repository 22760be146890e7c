/*
 * libFuzzer target over the model reader and every pass that reads a model: parse, inspect,
 * fuse (which also runs prepare) and serialise again, all in memory.
 */
#include <stdlib.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    fo_report = NULL;
    fo_model m;
    if (fo_model_parse(&m, data, size, "<fuzz>") == 0 && sink) {
        fo_inspect(&m, sink);
        size_t fused;
        if (fo_fuse(&m, 0, &fused) == 0) {
            size_t n = protobuf_c_message_get_packed_size(&m.proto->base);
            uint8_t *buf = fo_malloc(n);
            protobuf_c_message_pack(&m.proto->base, buf);
            free(buf);
        }
    }
    fo_model_free(&m);
    return 0;
}
