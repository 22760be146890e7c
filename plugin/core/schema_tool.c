/*
 * fattn-plugin-schema: prints CustomAttnPlugin's field schema as JSON, or with --check FILE,
 * exits non-zero unless FILE holds exactly that text. The committed plugin/core/field_schema.json
 * is what Python reads without TensorRT or a build; this check keeps it equal to the C table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fattn_plugin.h"

static char *schema_text(void)
{
    size_t n = fattn_plugin_schema_json(NULL, 0);
    char *text = malloc(n + 1);
    if (text)
        fattn_plugin_schema_json(text, n + 1);
    return text;
}

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger)
                free(buf);
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        *size = len;
    }
    return buf;
}

int main(int argc, char **argv)
{
    char *text = schema_text();
    if (!text) {
        fprintf(stderr, "fattn-plugin-schema: out of memory\n");
        return 2;
    }
    if (argc == 1) {
        fputs(text, stdout);
        free(text);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "--check") != 0) {
        fprintf(stderr, "usage: %s [--check FILE]\n", argv[0]);
        free(text);
        return 2;
    }
    size_t size = 0;
    char *file = read_file(argv[2], &size);
    if (!file) {
        fprintf(stderr, "fattn-plugin-schema: cannot read %s\n", argv[2]);
        free(text);
        return 1;
    }
    int same = size == strlen(text) && memcmp(file, text, size) == 0;
    if (!same)
        fprintf(stderr,
                "fattn-plugin-schema: %s differs from the C schema table; regenerate it with\n"
                "  %s > %s\nexpected:\n%s",
                argv[2], argv[0], argv[2], text);
    else
        printf("%s matches the C schema table\n", argv[2]);
    free(file);
    free(text);
    return same ? 0 : 1;
}
