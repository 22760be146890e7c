/* Runs the fuzz target once per file of the given directories (no libFuzzer needed). */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    size_t got = buf ? fread(buf, 1, (size_t)(n > 0 ? n : 0), f) : 0;
    fclose(f);
    if (!buf || (long)got != n) {
        free(buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, got);
    /* Truncations exercise the parser's error paths on real models as well. */
    for (size_t cut = got / 2; cut > 0; cut /= 3)
        LLVMFuzzerTestOneInput(buf, cut);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d)
            continue;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            char *path = malloc(len);
            snprintf(path, len, "%s/%s", argv[a], e->d_name);
            if (replay_file(path) == 0)
                files++;
            free(path);
        }
        closedir(d);
    }
    printf("replayed %d file(s)\n", files);
    if (files == 0) {
        fprintf(stderr, "no corpus files found\n");
        return 1;
    }
    return 0;
}
