/*
 * Reading and writing ONNX files: protobuf-c over the onnx package's own onnx.proto, external
 * data (read, kept, copied or created), and the temporary-file-and-rename write.
 */
#define _GNU_SOURCE /* SEEK_DATA / SEEK_HOLE */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* ONNX stores tensor data little-endian; typed fields are converted by copying low bytes. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fattn-onnx assumes a little-endian host"
#endif

/* protobuf's own parsers (onnxruntime, TensorRT, the onnx package) refuse messages of 2 GiB. */
#define FO_PROTOBUF_LIMIT 2147483647ull
#define FO_COPY_CHUNK (4u << 20)

size_t fo_dtype_size(int32_t dt)
{
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
        return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
        return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16:
        return 2;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E4M3FN:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E4M3FNUZ:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E5M2:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E5M2FNUZ:
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E8M0:
        return 1;
    default:
        return 0;
    }
}

const char *fo_dtype_name(int32_t dt)
{
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return "float";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return "uint8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return "int8";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return "uint16";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return "int16";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return "int32";
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return "int64";
    case ONNX__TENSOR_PROTO__DATA_TYPE__STRING: return "string";
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return "bool";
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return "float16";
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return "double";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return "uint32";
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return "uint64";
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: return "bfloat16";
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E4M3FN: return "float8e4m3fn";
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT8E5M2: return "float8e5m2";
    default: return "other";
    }
}

int64_t fo_tensor_numel(const Onnx__TensorProto *t)
{
    int64_t n = 1;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0)
            return -1;
        if (t->dims[i] && n > INT64_MAX / t->dims[i])
            return -1;
        n *= t->dims[i];
    }
    return n;
}

const char *fo_external_key(const Onnx__TensorProto *t, const char *key)
{
    for (size_t i = 0; i < t->n_external_data; i++)
        if (fo_streq(t->external_data[i]->key, key))
            return fo_str(t->external_data[i]->value);
    return NULL;
}

static void fo_set_dir(fo_model *m, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        m->dir = fo_strdup(".");
    else if (slash == path)
        m->dir = fo_strdup("/");
    else {
        m->dir = fo_malloc((size_t)(slash - path) + 1);
        memcpy(m->dir, path, (size_t)(slash - path));
        m->dir[slash - path] = '\0';
    }
}

int fo_model_parse(fo_model *m, const uint8_t *data, size_t size, const char *label)
{
    memset(m, 0, sizeof *m);
    m->path = fo_strdup(label);
    m->proto = onnx__model_proto__unpack(NULL, size, data);
    if (!m->proto)
        return fo_fail("%s: not an ONNX model (the protobuf does not parse as onnx.ModelProto)",
                       label);
    if (!m->proto->graph)
        return fo_fail("%s: the model has no graph", label);
    return 0;
}

int fo_model_load(fo_model *m, const char *path)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        m->path = fo_strdup(path);
        return fo_fail("%s: cannot open: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        m->path = fo_strdup(path);
        return fo_fail("%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = fo_malloc(size);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0) {
            int err = r < 0 ? errno : EIO;
            close(fd);
            free(buf);
            m->path = fo_strdup(path);
            return fo_fail("%s: read failed after %zu of %zu bytes: %s", path, got, size,
                           strerror(err));
        }
        got += (size_t)r;
    }
    close(fd);
    int rc = fo_model_parse(m, buf, size, path);
    free(buf);
    if (rc == 0)
        fo_set_dir(m, path);
    return rc;
}

void fo_model_free(fo_model *m)
{
    if (m->proto)
        protobuf_c_message_free_unpacked(&m->proto->base, NULL);
    free(m->path);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

static int fo_parse_u64(const char *s, uint64_t *v)
{
    if (!s || !*s)
        return -1;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *v = x;
    return 0;
}

/* Rejects locations that could reach outside the model's directory, as onnx's checker does. */
static int fo_safe_location(const char *loc)
{
    if (!loc || !*loc || loc[0] == '/')
        return 0;
    for (const char *p = loc; *p;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += len;
        if (*p == '/')
            p++;
    }
    return 1;
}

/* Expected byte size of a tensor's data, failing with a message that names the tensor. */
static int fo_tensor_size(const fo_model *m, const Onnx__TensorProto *t, size_t *bytes)
{
    size_t es = fo_dtype_size(t->data_type);
    if (!es)
        return fo_fail("%s: tensor '%s': data type %d (%s) cannot be read by fattn-onnx", m->path,
                       fo_str(t->name), t->data_type, fo_dtype_name(t->data_type));
    int64_t n = fo_tensor_numel(t);
    if (n < 0 || (uint64_t)n > SIZE_MAX / es)
        return fo_fail("%s: tensor '%s': invalid dims (negative or overflowing)", m->path,
                       fo_str(t->name));
    *bytes = (size_t)n * es;
    return 0;
}

typedef struct fo_extref {
    const char *location;
    uint64_t offset;
    uint64_t length;
} fo_extref;

static int fo_external_ref(const fo_model *m, const Onnx__TensorProto *t, fo_extref *r)
{
    size_t bytes = 0;
    const char *loc = fo_external_key(t, "location");
    const char *off = fo_external_key(t, "offset");
    const char *len = fo_external_key(t, "length");
    if (!fo_safe_location(loc))
        return fo_fail("%s: tensor '%s': external data location '%s' is empty, absolute or "
                       "leaves the model's directory", m->path, fo_str(t->name), fo_str(loc));
    r->location = loc;
    r->offset = 0;
    if (off && fo_parse_u64(off, &r->offset) != 0)
        return fo_fail("%s: tensor '%s': external data offset '%s' is not a number", m->path,
                       fo_str(t->name), off);
    if (len) {
        if (fo_parse_u64(len, &r->length) != 0)
            return fo_fail("%s: tensor '%s': external data length '%s' is not a number",
                           m->path, fo_str(t->name), len);
        if (fo_dtype_size(t->data_type) && fo_tensor_size(m, t, &bytes) == 0 &&
            r->length != bytes)
            return fo_fail("%s: tensor '%s': external data length %s does not match its "
                           "dims (%zu bytes)", m->path, fo_str(t->name), len, bytes);
    } else {
        if (fo_tensor_size(m, t, &bytes) != 0)
            return -1;
        r->length = bytes;
    }
    return 0;
}

/* Opens the file holding a tensor's external data, checking that its range is inside it. */
static int fo_open_external(const fo_model *m, const Onnx__TensorProto *t, fo_extref *r, int *fd)
{
    if (fo_external_ref(m, t, r) != 0)
        return -1;
    if (!m->dir)
        return fo_fail("%s: tensor '%s': external data '%s' is not available for a model read "
                       "from memory", m->path, fo_str(t->name), r->location);
    char *path = fo_sprintf("%s/%s", m->dir, r->location);
    *fd = open(path, O_RDONLY);
    if (*fd < 0) {
        int err = errno;
        fo_fail("%s: tensor '%s': cannot open external data '%s': %s", m->path, fo_str(t->name),
                path, strerror(err));
        free(path);
        return -1;
    }
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        int err = errno;
        fo_fail("%s: tensor '%s': cannot stat external data '%s': %s", m->path, fo_str(t->name),
                path, strerror(err));
        free(path);
        close(*fd);
        return -1;
    }
    if (r->offset > (uint64_t)st.st_size || r->length > (uint64_t)st.st_size - r->offset) {
        fo_fail("%s: tensor '%s': external data '%s' holds %lld bytes; the tensor needs "
                "offset %llu + length %llu", m->path, fo_str(t->name), path,
                (long long)st.st_size, (unsigned long long)r->offset,
                (unsigned long long)r->length);
        free(path);
        close(*fd);
        return -1;
    }
    free(path);
    return 0;
}

static int fo_pread_all(int fd, uint8_t *buf, size_t n, uint64_t offset)
{
    while (n) {
        ssize_t r = pread(fd, buf, n, (off_t)offset);
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

/* How many values a tensor's typed field holds (the field its data type is stored in). */
static size_t fo_typed_count(const Onnx__TensorProto *t)
{
    switch (t->data_type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return t->n_float_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return t->n_double_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return t->n_int64_data;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return t->n_uint64_data;
    default: return t->n_int32_data; /* every narrower type: one element per int32 */
    }
}

int fo_tensor_bytes(const fo_model *m, const Onnx__TensorProto *t, uint8_t **data, size_t *size)
{
    size_t bytes;
    if (fo_tensor_size(m, t, &bytes) != 0)
        return -1;
    size_t es = fo_dtype_size(t->data_type);
    size_t n = bytes / es;
    uint8_t *out;
    /* Sizes are checked against what is stored before allocating what the dims claim. */
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        fo_extref r;
        int fd;
        if (fo_open_external(m, t, &r, &fd) != 0)
            return -1;
        out = fo_malloc(bytes);
        int rc = fo_pread_all(fd, out, bytes, r.offset);
        close(fd);
        if (rc != 0) {
            free(out);
            return fo_fail("%s: tensor '%s': reading external data '%s' failed", m->path,
                           fo_str(t->name), r.location);
        }
    } else if (t->has_raw_data) {
        if (t->raw_data.len != bytes)
            return fo_fail("%s: tensor '%s': raw_data holds %zu bytes; its dims need %zu",
                           m->path, fo_str(t->name), t->raw_data.len, bytes);
        out = fo_malloc(bytes);
        if (bytes)
            memcpy(out, t->raw_data.data, bytes);
    } else {
        if (fo_typed_count(t) != n)
            return fo_fail("%s: tensor '%s': holds %zu values; its dims need %zu", m->path,
                           fo_str(t->name), fo_typed_count(t), n);
        out = fo_malloc(bytes);
        for (size_t i = 0; i < n; i++) {
            /* little-endian host: an element's bytes are the low bytes of its field value */
            switch (t->data_type) {
            case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
                memcpy(out + i * es, &t->float_data[i], es);
                break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
                memcpy(out + i * es, &t->double_data[i], es);
                break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
                memcpy(out + i * es, &t->int64_data[i], es);
                break;
            case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64:
            case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
                memcpy(out + i * es, &t->uint64_data[i], es);
                break;
            default: {
                uint32_t v = (uint32_t)t->int32_data[i];
                memcpy(out + i * es, &v, es);
                break;
            }
            }
        }
    }
    *data = out;
    *size = bytes;
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------- */

typedef struct fo_writer {
    const fo_model *m;
    const char *out;
    uint64_t threshold;
    int externalize;
    int keep_refs;      /* output beside the input: external references stay valid */
    char *data_name;    /* "<basename(out)>.data" */
    char *data_path;
    char *data_tmp;
    int data_fd;
    uint64_t data_end;
    uint8_t *chunk;
    size_t copied;
    size_t moved;
} fo_writer;

static const char *fo_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *fo_dirname(const char *path)
{
    fo_model tmp = {0};
    fo_set_dir(&tmp, path);
    return tmp.dir;
}

static int fo_make_temp(const char *final_path, char **tmp_path, int *fd)
{
    char *dir = fo_dirname(final_path);
    *tmp_path = fo_sprintf("%s/.%s.tmp-XXXXXX", dir, fo_basename(final_path));
    free(dir);
    *fd = mkstemp(*tmp_path);
    if (*fd < 0) {
        int err = errno;
        fo_fail("%s: cannot create a temporary file beside it: %s", final_path, strerror(err));
        free(*tmp_path);
        *tmp_path = NULL;
        return -1;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(*fd, 0666 & ~mask) != 0) {
        int err = errno;
        close(*fd);
        unlink(*tmp_path);
        free(*tmp_path);
        *tmp_path = NULL;
        return fo_fail("%s: cannot set permissions: %s", final_path, strerror(err));
    }
    return 0;
}

/* Offsets aligned so that large tensors can be memory-mapped (64 KiB covers every page size). */
static uint64_t fo_align(uint64_t offset, uint64_t length)
{
    uint64_t a = length >= (1u << 20) ? 65536 : 64;
    return (offset + a - 1) / a * a;
}

static int fo_data_open(fo_writer *w)
{
    if (w->data_fd >= 0)
        return 0;
    return fo_make_temp(w->data_path, &w->data_tmp, &w->data_fd);
}

static int fo_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Writes at an offset; zero chunks are left as holes so that sparse data stays sparse. */
static int fo_data_write(fo_writer *w, const uint8_t *p, size_t n, uint64_t offset)
{
    if (fo_all_zero(p, n))
        return 0;
    while (n) {
        ssize_t r = pwrite(w->data_fd, p, n, (off_t)offset);
        if (r <= 0)
            return fo_fail("%s: write failed: %s", w->data_path, strerror(r < 0 ? errno : EIO));
        p += r;
        n -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

static void fo_set_external(Onnx__TensorProto *t, const char *location, uint64_t offset,
                            uint64_t length)
{
    for (size_t i = 0; i < t->n_external_data; i++)
        protobuf_c_message_free_unpacked(&t->external_data[i]->base, NULL);
    free(t->external_data);
    t->external_data = NULL;
    t->n_external_data = 0;
    const char *keys[3] = {"location", "offset", "length"};
    char *vals[3] = {fo_strdup(location), fo_sprintf("%llu", (unsigned long long)offset),
                     fo_sprintf("%llu", (unsigned long long)length)};
    for (int i = 0; i < 3; i++) {
        Onnx__StringStringEntryProto *e = fo_malloc(sizeof *e);
        onnx__string_string_entry_proto__init(e);
        e->key = fo_strdup(keys[i]);
        e->value = vals[i];
        fo_push_ptr((void ***)&t->external_data, &t->n_external_data, e);
    }
    t->has_data_location = 1;
    t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

static void fo_clear_inline(Onnx__TensorProto *t)
{
    free(t->raw_data.data);
    t->raw_data.data = NULL;
    t->raw_data.len = 0;
    t->has_raw_data = 0;
    free(t->float_data);
    free(t->int32_data);
    free(t->int64_data);
    free(t->double_data);
    free(t->uint64_data);
    t->float_data = NULL;
    t->int32_data = NULL;
    t->int64_data = NULL;
    t->double_data = NULL;
    t->uint64_data = NULL;
    t->n_float_data = t->n_int32_data = t->n_int64_data = t->n_double_data = t->n_uint64_data = 0;
}

static int fo_copy_external(fo_writer *w, Onnx__TensorProto *t)
{
    fo_extref r;
    int src;
    if (fo_open_external(w->m, t, &r, &src) != 0)
        return -1;
    if (fo_data_open(w) != 0) {
        close(src);
        return -1;
    }
    uint64_t dst = fo_align(w->data_end, r.length);
    for (uint64_t done = 0; done < r.length;) {
        uint64_t left = r.length - done;
        size_t n = (size_t)(left < FO_COPY_CHUNK ? left : FO_COPY_CHUNK);
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
        /* Holes in the source read as zeros and stay holes in the copy: skip them unread. */
        off_t pos = (off_t)(r.offset + done);
        off_t data = lseek(src, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;
        if (data > pos) {
            done += (uint64_t)(data - pos) < left ? (uint64_t)(data - pos) : left;
            continue;
        }
        off_t hole = data == pos ? lseek(src, pos, SEEK_HOLE) : -1;
        if (hole > pos && (uint64_t)(hole - pos) < n)
            n = (size_t)(hole - pos);
#endif
        if (fo_pread_all(src, w->chunk, n, r.offset + done) != 0) {
            close(src);
            return fo_fail("%s: tensor '%s': reading external data '%s' failed", w->m->path,
                           fo_str(t->name), r.location);
        }
        if (fo_data_write(w, w->chunk, n, dst + done) != 0) {
            close(src);
            return -1;
        }
        done += n;
    }
    close(src);
    fo_set_external(t, w->data_name, dst, r.length);
    w->data_end = dst + r.length;
    w->copied++;
    return 0;
}

static int fo_externalize(fo_writer *w, Onnx__TensorProto *t)
{
    uint8_t *bytes;
    size_t n;
    if (fo_tensor_bytes(w->m, t, &bytes, &n) != 0 || fo_data_open(w) != 0)
        return -1;
    uint64_t dst = fo_align(w->data_end, n);
    int rc = fo_data_write(w, bytes, n, dst);
    free(bytes);
    if (rc != 0)
        return -1;
    fo_clear_inline(t);
    fo_set_external(t, w->data_name, dst, n);
    w->data_end = dst + n;
    w->moved++;
    return 0;
}

static int fo_place_tensor(fo_writer *w, Onnx__TensorProto *t)
{
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        const char *loc = fo_external_key(t, "location");
        if (w->keep_refs && fo_safe_location(loc) && !fo_streq(loc, w->data_name))
            return 0;
        return fo_copy_external(w, t);
    }
    if (!w->externalize || !t->has_data_type || !fo_dtype_size(t->data_type) || t->segment)
        return 0;
    int64_t numel = fo_tensor_numel(t);
    if (numel < 0 || (uint64_t)numel * fo_dtype_size(t->data_type) < w->threshold)
        return 0;
    return fo_externalize(w, t);
}

static int fo_place_graph(fo_writer *w, Onnx__GraphProto *g);

static int fo_place_nodes(fo_writer *w, Onnx__NodeProto **nodes, size_t n_nodes)
{
    for (size_t i = 0; i < n_nodes; i++) {
        Onnx__NodeProto *n = nodes[i];
        for (size_t a = 0; a < n->n_attribute; a++) {
            Onnx__AttributeProto *at = n->attribute[a];
            if (at->t && fo_place_tensor(w, at->t) != 0)
                return -1;
            for (size_t k = 0; k < at->n_tensors; k++)
                if (fo_place_tensor(w, at->tensors[k]) != 0)
                    return -1;
            if (at->g && fo_place_graph(w, at->g) != 0)
                return -1;
            for (size_t k = 0; k < at->n_graphs; k++)
                if (fo_place_graph(w, at->graphs[k]) != 0)
                    return -1;
        }
    }
    return 0;
}

static int fo_place_graph(fo_writer *w, Onnx__GraphProto *g)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (fo_place_tensor(w, g->initializer[i]) != 0)
            return -1;
    return fo_place_nodes(w, g->node, g->n_node);
}

static int fo_place_all(fo_writer *w, Onnx__ModelProto *p)
{
    if (fo_place_graph(w, p->graph) != 0)
        return -1;
    for (size_t i = 0; i < p->n_functions; i++)
        if (fo_place_nodes(w, p->functions[i]->node, p->functions[i]->n_node) != 0)
            return -1;
    return 0;
}

typedef struct fo_file_buffer {
    ProtobufCBuffer base;
    int fd;
    int failed;
    int err;
} fo_file_buffer;

static void fo_file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    fo_file_buffer *f = (fo_file_buffer *)b;
    while (!f->failed && len) {
        ssize_t r = write(f->fd, data, len);
        if (r <= 0) {
            f->failed = 1;
            f->err = r < 0 ? errno : EIO;
            return;
        }
        data += r;
        len -= (size_t)r;
    }
}

static int fo_same_dir(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra);
    free(rb);
    return same;
}

static void fo_writer_cleanup(fo_writer *w, char *model_tmp, int model_fd)
{
    if (model_fd >= 0)
        close(model_fd);
    if (model_tmp)
        unlink(model_tmp);
    free(model_tmp);
    if (w->data_fd >= 0)
        close(w->data_fd);
    if (w->data_tmp)
        unlink(w->data_tmp);
    free(w->data_tmp);
    free(w->data_name);
    free(w->data_path);
    free(w->chunk);
}

int fo_model_save(fo_model *m, const char *out, const fo_save_options *opt)
{
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return fo_fail("%s: is a directory; give the output model's file name", out);
    char *out_dir = fo_dirname(out);
    fo_writer w = {0};
    w.m = m;
    w.out = out;
    w.data_fd = -1;
    w.externalize = opt->external_data;
    w.threshold = opt->external_threshold;
    w.keep_refs = m->dir && fo_same_dir(m->dir, out_dir);
    w.data_name = fo_sprintf("%s.data", fo_basename(out));
    w.data_path = fo_sprintf("%s/%s", out_dir, w.data_name);
    w.chunk = fo_malloc(FO_COPY_CHUNK);
    free(out_dir);

    size_t packed = protobuf_c_message_get_packed_size(&m->proto->base);
    if (packed > FO_PROTOBUF_LIMIT && !w.externalize) {
        fo_note("save: the model is %zu bytes with its initializers inline, over protobuf's "
                "2 GiB limit; moving initializers of %llu bytes or more to %s", packed,
                (unsigned long long)w.threshold, w.data_name);
        w.externalize = 1;
    }
    char *model_tmp = NULL;
    int model_fd = -1;
    if (fo_place_all(&w, m->proto) != 0) {
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return -1;
    }
    packed = protobuf_c_message_get_packed_size(&m->proto->base);
    if (packed > FO_PROTOBUF_LIMIT) {
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: the graph itself is %zu bytes even with initializers external, over "
                       "protobuf's 2 GiB limit", out, packed);
    }
    if (w.data_fd >= 0 && ftruncate(w.data_fd, (off_t)w.data_end) != 0) {
        int err = errno;
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: cannot size the data file: %s", w.data_path, strerror(err));
    }
    if (w.data_fd >= 0 && fsync(w.data_fd) != 0) {
        int err = errno;
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: fsync failed: %s", w.data_path, strerror(err));
    }
    if (fo_make_temp(out, &model_tmp, &model_fd) != 0) {
        fo_writer_cleanup(&w, NULL, -1);
        return -1;
    }
    fo_file_buffer fb = {{fo_file_append}, model_fd, 0, 0};
    protobuf_c_message_pack_to_buffer(&m->proto->base, &fb.base);
    if (fb.failed || fsync(model_fd) != 0) {
        int err = fb.failed ? fb.err : errno;
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: write failed: %s", out, strerror(err));
    }
    close(model_fd);
    model_fd = -1;
    /* Data first: a model never names data that is not in place yet. */
    if (w.data_tmp && rename(w.data_tmp, w.data_path) != 0) {
        int err = errno;
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: rename failed: %s", w.data_path, strerror(err));
    }
    if (w.data_tmp) {
        free(w.data_tmp);
        w.data_tmp = NULL;
    }
    if (rename(model_tmp, out) != 0) {
        int err = errno;
        fo_writer_cleanup(&w, model_tmp, model_fd);
        return fo_fail("%s: rename failed: %s", out, strerror(err));
    }
    free(model_tmp);
    if (w.moved)
        fo_note("save: moved %zu initializer(s) to external data %s", w.moved, w.data_name);
    if (w.copied)
        fo_note("save: copied %zu external tensor(s) into %s", w.copied, w.data_name);
    fo_writer_cleanup(&w, NULL, -1);
    return 0;
}
