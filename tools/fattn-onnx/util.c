/* Errors, the change report, allocation and the string map shared by every pass. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static char fo_message[4096];
FILE *fo_report;

int fo_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fo_message, sizeof fo_message, fmt, ap);
    va_end(ap);
    return -1;
}

const char *fo_error(void)
{
    return fo_message;
}

void fo_note(const char *fmt, ...)
{
    if (!fo_report)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(fo_report, fmt, ap);
    va_end(ap);
    fputc('\n', fo_report);
}

static void fo_out_of_memory(size_t n)
{
    fprintf(stderr, "fattn-onnx: error: out of memory (allocating %zu bytes); nothing written\n", n);
    exit(1);
}

void *fo_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fo_out_of_memory(n);
    return p;
}

void *fo_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        fo_out_of_memory(count * size);
    return p;
}

void *fo_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        fo_out_of_memory(n);
    return q;
}

char *fo_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fo_malloc(n);
    memcpy(d, s, n);
    return d;
}

char *fo_sprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = fo_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void fo_push_ptr(void ***array, size_t *n, void *item)
{
    *array = fo_realloc(*array, (*n + 1) * sizeof **array);
    (*array)[(*n)++] = item;
}

const char *fo_str(const char *s)
{
    return s ? s : "";
}

int fo_streq(const char *a, const char *b)
{
    return strcmp(fo_str(a), fo_str(b)) == 0;
}

/* FNV-1a: names are short and this is far from any hot path. */
static uint64_t fo_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void fo_map_init(fo_map *m)
{
    memset(m, 0, sizeof *m);
}

void fo_map_free(fo_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t fo_map_slot(const fo_map *m, const char *key)
{
    size_t i = (size_t)fo_hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

int64_t *fo_map_get(const fo_map *m, const char *key)
{
    if (!m->cap || !key)
        return NULL;
    size_t i = fo_map_slot(m, key);
    return m->keys[i] ? &m->vals[i] : NULL;
}

int64_t *fo_map_put(fo_map *m, const char *key, int64_t val)
{
    if ((m->len + 1) * 2 > m->cap) {
        fo_map old = *m;
        m->cap = old.cap ? old.cap * 2 : 64;
        m->keys = fo_calloc(m->cap, sizeof *m->keys);
        m->vals = fo_calloc(m->cap, sizeof *m->vals);
        m->len = 0;
        for (size_t i = 0; i < old.cap; i++) {
            if (old.keys[i]) {
                size_t j = fo_map_slot(m, old.keys[i]);
                m->keys[j] = old.keys[i];
                m->vals[j] = old.vals[i];
                m->len++;
            }
        }
        free(old.keys);
        free(old.vals);
    }
    size_t i = fo_map_slot(m, key);
    if (!m->keys[i]) {
        m->keys[i] = fo_strdup(key);
        m->len++;
    }
    m->vals[i] = val;
    return &m->vals[i];
}
