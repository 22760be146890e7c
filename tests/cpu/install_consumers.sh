#!/usr/bin/env bash
# install_consumers.sh BUILD_DIR WORK_DIR
# Installs the build into WORK_DIR/prefix, then builds and runs a tiny C program against it
# four ways (find_package(fattn) with fattn::fattn and with fattn::fattn_static, pkg-config shared
# and static); each must compute a small attention problem to within 1e-5 of its own reference.
set -euo pipefail
build=$1
work=$2
rm -rf "$work"
mkdir -p "$work/src"
cmake --install "$build" --prefix "$work/prefix" >/dev/null

cat >"$work/src/main.c" <<'C'
#include <fattn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
/* Runs a 4-query, 4-key, head_dim 2 problem through the installed library and checks each output
 * against softmax(Q K^T / sqrt(2)) V computed here in double: linking is not enough, the library
 * must compute. */
int main(void)
{
    float q[8] = {1, 0, 0, 1, 0.5f, 0.5f, 1, 1}, k[8] = {1, 0, 0, 1, 1, 1, 0, 0};
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, o[8];
    fattn_params p;
    fattn_params_bshd(&p, 1, 4, 4, 1, 1, 2, FATTN_DTYPE_F32, q, k, v, o);
    fattn_status st = fattn_cpu_forward(&p, 1);
    printf("fattn %s: %s %s\n", fattn_version_string(), fattn_status_name(st), fattn_last_error());
    if (st != FATTN_OK || strcmp(fattn_version_string(), FATTN_VERSION_STRING_EXPECTED) != 0)
        return 1;
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        double s[4], max = -INFINITY, sum = 0;
        for (int t = 0; t < 4; t++) {
            s[t] = (q[2 * i] * k[2 * t] + q[2 * i + 1] * k[2 * t + 1]) / sqrt(2.0);
            max = s[t] > max ? s[t] : max;
        }
        for (int t = 0; t < 4; t++)
            sum += s[t] = exp(s[t] - max);
        for (int d = 0; d < 2; d++) {
            double ref = 0;
            for (int t = 0; t < 4; t++)
                ref += s[t] / sum * v[2 * t + d];
            double err = fabs(o[2 * i + d] - ref);
            worst = err > worst ? err : worst;
        }
    }
    printf("max |o - reference| = %.3g\n", worst);
    return worst > 1e-5;
}
C
version=$(sed -n 's/^Version: //p' "$work/prefix"/lib*/pkgconfig/fattn.pc)
cat >"$work/src/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.24)
project(consumer C)
find_package(fattn ${version} REQUIRED)
add_executable(use_shared main.c)
target_link_libraries(use_shared PRIVATE fattn::fattn m)
add_executable(use_static main.c)
target_link_libraries(use_static PRIVATE fattn::fattn_static m)
target_compile_definitions(use_shared PRIVATE FATTN_VERSION_STRING_EXPECTED="${version}")
target_compile_definitions(use_static PRIVATE FATTN_VERSION_STRING_EXPECTED="${version}")
CM
cmake -S "$work/src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/use_shared"
"$work/build/use_static"

pc_dir=$(dirname "$work/prefix"/lib*/pkgconfig/fattn.pc)
export PKG_CONFIG_PATH=$pc_dir
# shellcheck disable=SC2046
cc -DFATTN_VERSION_STRING_EXPECTED="\"$version\"" "$work/src/main.c" -o "$work/use_pc" \
   $(pkg-config --cflags --libs fattn) -lm -Wl,-rpath,"$(pkg-config --variable=libdir fattn)"
"$work/use_pc"
# shellcheck disable=SC2046
cc -DFATTN_VERSION_STRING_EXPECTED="\"$version\"" "$work/src/main.c" -o "$work/use_pc_static" \
   $(pkg-config --cflags fattn) $(pkg-config --libs --static fattn | sed 's/-lfattn/-l:libfattn.a/') -lm
"$work/use_pc_static"
echo "install consumers: find_package shared+static and pkg-config shared+static all computed the reference"
