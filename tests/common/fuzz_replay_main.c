/*
 * A main() for libFuzzer targets in builds without libFuzzer: runs LLVMFuzzerTestOneInput over
 * every file named on the command line or found (not hidden) in a named directory, so CTest
 * replays the committed corpora with the default compiler. Shared by the plugin core's and
 * fattn-onnx's fuzz targets.
 *
 * Each input is passed in an exactly sized buffer, as libFuzzer does, so AddressSanitizer sees a
 * read past its end; then its prefixes of 1/2, 1/6, 1/18, ... of the length, which take the
 * targets' truncation paths on real inputs. A file or directory that cannot be read, or finding
 * no input at all, fails the run.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 0 when replayed, 1 when the file cannot be read. */
static int replay_file(const char *path, off_t size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    size_t got = f && buf ? fread(buf, 1, (size_t)size, f) : 0;
    if (f)
        fclose(f);
    if (!f || !buf || got != (size_t)size) {
        fprintf(stderr, "cannot read %s (%lld bytes)\n", path, (long long)size);
        free(buf);
        return 1;
    }
    LLVMFuzzerTestOneInput(buf, got);
    for (size_t cut = got / 2; cut > 0; cut /= 3)
        LLVMFuzzerTestOneInput(buf, cut);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0, failures = 0;
    for (int i = 1; i < argc; ++i) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "cannot stat %s\n", argv[i]);
            ++failures;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failures += replay_file(argv[i], st.st_size);
            ++files;
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            fprintf(stderr, "cannot open directory %s\n", argv[i]);
            ++failures;
            continue;
        }
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            char *path = malloc(len);
            if (!path) {
                ++failures;
                break;
            }
            snprintf(path, len, "%s/%s", argv[i], e->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                failures += replay_file(path, st.st_size);
                ++files;
            }
            free(path);
        }
        closedir(dir);
    }
    printf("replayed %d input file(s), %d failure(s) to read\n", files, failures);
    if (files == 0)
        fprintf(stderr, "no corpus files found\n");
    return files > 0 && failures == 0 ? 0 : 1;
}
