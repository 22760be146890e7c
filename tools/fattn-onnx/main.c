/* fattn-onnx: inspect, prepare and fuse ONNX graphs for the CustomAttnPlugin TensorRT plugin. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char usage[] =
    "usage: fattn-onnx inspect MODEL\n"
    "       fattn-onnx prepare IN OUT [options]\n"
    "       fattn-onnx fuse IN OUT [--mode 0|1] [options]\n"
    "\n"
    "inspect  print opsets, graph inputs/outputs, node counts and every attention site\n"
    "prepare  normalise CustomAttnPlugin nodes (op_type, plugin_version \"1\", plugin_namespace\n"
    "         \"\", INT mode), give nodes unique names, sort topologically, remove dead nodes\n"
    "         and unused initializers, make opset imports consistent\n"
    "fuse     rewrite ONNX Attention nodes and MatMul-Softmax-MatMul attention into\n"
    "         CustomAttnPlugin nodes (mode from --mode, default 0), then prepare\n"
    "\n"
    "options:\n"
    "  --external-data              store initializers of >= 1024 bytes in OUT.data\n"
    "  --external-data-threshold N  the size limit for --external-data, in bytes\n"
    "  --quiet                      do not print the report of changes\n"
    "\n"
    "Output is written to a temporary file and renamed. External data beside the output is\n"
    "referenced in place; other external data is copied into OUT.data.\n";

static int fo_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "fattn-onnx: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 2;
}

static int fo_parse_size(const char *s, uint64_t *v)
{
    char *end;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno == ERANGE)
        return -1;
    *v = x;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc < 2)
        return fo_usage_error("%s", "no command given");
    const char *cmd = argv[1];
    int is_inspect = !strcmp(cmd, "inspect"), is_prepare = !strcmp(cmd, "prepare"),
        is_fuse = !strcmp(cmd, "fuse");
    if (!is_inspect && !is_prepare && !is_fuse)
        return fo_usage_error("unknown command '%s'", cmd);
    const char *paths[2] = {NULL, NULL};
    size_t n_paths = 0;
    int mode = 0, quiet = 0;
    fo_save_options opt = {0, 1024};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--mode") && is_fuse) {
            if (i + 1 >= argc || (strcmp(argv[i + 1], "0") && strcmp(argv[i + 1], "1")))
                return fo_usage_error("--mode takes 0 (native) or 1 (fp8), got '%s'",
                                      i + 1 < argc ? argv[i + 1] : "");
            mode = argv[++i][0] - '0';
        } else if (!strcmp(a, "--external-data") && !is_inspect) {
            opt.external_data = 1;
        } else if (!strcmp(a, "--external-data-threshold") && !is_inspect) {
            if (i + 1 >= argc || fo_parse_size(argv[i + 1], &opt.external_threshold) != 0)
                return fo_usage_error("--external-data-threshold takes a byte count, got '%s'",
                                      i + 1 < argc ? argv[i + 1] : "");
            opt.external_data = 1;
            i++;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return fo_usage_error("unknown option '%s'", a);
        } else if (n_paths < 2) {
            paths[n_paths++] = a;
        } else {
            return fo_usage_error("unexpected argument '%s'", a);
        }
    }
    if (n_paths != (is_inspect ? 1u : 2u))
        return fo_usage_error("%s", is_inspect ? "inspect takes one MODEL"
                                               : "prepare and fuse take IN and OUT");
    fo_report = quiet ? NULL : stdout;
    fo_model m;
    int rc = fo_model_load(&m, paths[0]);
    if (rc == 0) {
        if (is_inspect) {
            rc = fo_inspect(&m, stdout);
        } else {
            fo_prepare_stats st;
            size_t fused;
            rc = is_fuse ? fo_fuse(&m, mode, &fused) : fo_prepare(&m, &st);
            if (rc == 0)
                rc = fo_model_save(&m, paths[1], &opt);
            if (rc == 0)
                fo_note("wrote %s", paths[1]);
        }
    }
    fo_model_free(&m);
    if (rc != 0) {
        fflush(stdout);
        fprintf(stderr, "fattn-onnx: error: %s\n", fo_error());
        if (!is_inspect)
            fprintf(stderr, "fattn-onnx: nothing written to %s\n", paths[1]);
        return 1;
    }
    return 0;
}
