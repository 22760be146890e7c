#!/usr/bin/env python3
"""Writes wgmma.cuh: one inline-PTX wrapper per wgmma shape the Hopper kernel issues.

wgmma names every accumulator register as its own asm operand, so each shape needs its own
operand list; generating them keeps the 32..128-operand lists correct. The build runs it
(src/cuda/CMakeLists.txt) and writes the header into the build tree:
    python3 gen_wgmma.py OUTPUT
"""
import sys

# SS (S = QK^T): N is the key block (80 for d160..256, 128 otherwise; 64, 112 and 176 are tuning
# alternatives). RS (O += PV): N is the tile width (HOPPER_DT of the kernel's D); SS MN-major the
# same product with P from shared memory (config.cuh's HOPPER_P_SMEM). e4m3 (k32) and
# tf32 (k8) have no transpose immediates: both operands are K-major, which is why V arrives
# transposed (hopper/quantize.cu, hopper/stage.cu).
SS_SHAPES = (64, 80, 112, 128, 176)
RS_SHAPES = (64, 128, 192, 256)
SS_MN_SHAPES = (128,)  # the P tile serves DT 128 kernels only
TYPES = (("bf16", "bf16"), ("f16", "f16"))
# (name, PTX type, k, SS shapes, RS shapes) of the K-major-only types
# e4m3's N = 8: P times the ones tile (config.cuh's HOPPER_L_MMA)
KMAJOR_TYPES = (("e4m3", "e4m3", 32, (8, 128), (8, 128, 256)), ("tf32", "tf32", 8, (64, 128), (64, 128)))

HEADER = """/* Generated at build time by src/cuda/hopper/gen_wgmma.py.
 * wgmma m64nNk16 (bf16, f16), m64nNk32 (e4m3) and m64nNk8 (tf32) with fp32 accumulators d[N/2] in the layout of PTX's wgmma
 * "register fragment D"; scale_d 0 overwrites d, 1 accumulates. SS reads A and B
 * through shared-memory descriptors (both K-major; SS MN-major: B MN-major, transposed); RS takes A
 * from four 32-bit registers and B (MN-major, transposed; K-major for e4m3 and tf32) through a
 * descriptor. */
#ifndef FATTN_HOPPER_WGMMA_CUH
#define FATTN_HOPPER_WGMMA_CUH

#include <stdint.h>

"""


def regs(first, count):
    return ", ".join(f"%{first + i}" for i in range(count))


def accum_operands(n_acc):
    return ",\n          ".join(
        ", ".join(f'"+f"(d[{i + j}])' for j in range(min(8, n_acc - i))) for i in range(0, n_acc, 8))


def wrapper(name, params, n_acc, pred_index, operands_text, inputs):
    return (f"static __device__ __forceinline__ void {name}({params})\n{{\n"
            f"    asm volatile(\"{{\\n.reg .pred p;\\nsetp.ne.b32 p, %{pred_index}, 0;\\n\"\n"
            f"                 \"{operands_text};\\n}}\\n\"\n"
            f"        : {accum_operands(n_acc)}\n"
            f"        : {inputs});\n}}\n\n")


def emit(out):
    out.write(HEADER)
    for tname, ptx in TYPES:
        for n in sorted(set(SS_SHAPES) | set(RS_SHAPES) | set(SS_MN_SHAPES)):
            a = n // 2
            inst = f"wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx}.{ptx}"
            if n in SS_SHAPES:  # d, A desc, B desc, scale-d, scale-a, scale-b, trans-a, trans-b
                out.write(wrapper(f"wgmma_ss_{tname}_n{n}", "float *d, uint64_t da, uint64_t db, int scale_d", a,
                                  a + 2, f"{inst} {{{regs(0, a)}}}, %{a}, %{a + 1}, p, 1, 1, 0, 0",
                                  '"l"(da), "l"(db), "r"(scale_d)'))
            if n in SS_MN_SHAPES:  # P V with P from shared memory: B (V) MN-major, trans-b 1
                out.write(wrapper(f"wgmma_ss_mn_{tname}_n{n}", "float *d, uint64_t da, uint64_t db, int scale_d", a,
                                  a + 2, f"{inst} {{{regs(0, a)}}}, %{a}, %{a + 1}, p, 1, 1, 0, 1",
                                  '"l"(da), "l"(db), "r"(scale_d)'))
            if n in RS_SHAPES:  # d, A regs, B desc, scale-d, scale-a, scale-b, trans-b
                out.write(wrapper(f"wgmma_rs_{tname}_n{n}", "float *d, const uint32_t *a, uint64_t db, int scale_d",
                                  a, a + 5, f"{inst} {{{regs(0, a)}}}, {{{regs(a, 4)}}}, %{a + 4}, p, 1, 1, 1",
                                  '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d)'))
    for tname, ptx, k, ss_shapes, rs_shapes in KMAJOR_TYPES:
        for n in sorted(set(ss_shapes) | set(rs_shapes)):
            a = n // 2
            inst = f"wgmma.mma_async.sync.aligned.m64n{n}k{k}.f32.{ptx}.{ptx}"
            if n in ss_shapes:  # d, A desc, B desc, scale-d, scale-a, scale-b
                out.write(wrapper(f"wgmma_ss_{tname}_n{n}", "float *d, uint64_t da, uint64_t db, int scale_d", a,
                                  a + 2, f"{inst} {{{regs(0, a)}}}, %{a}, %{a + 1}, p, 1, 1",
                                  '"l"(da), "l"(db), "r"(scale_d)'))
            if n in rs_shapes:  # d, A regs, B desc, scale-d, scale-a, scale-b
                out.write(wrapper(f"wgmma_rs_{tname}_n{n}", "float *d, const uint32_t *a, uint64_t db, int scale_d",
                                  a, a + 5, f"{inst} {{{regs(0, a)}}}, {{{regs(a, 4)}}}, %{a + 4}, p, 1, 1",
                                  '"r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(scale_d)'))
    out.write("#endif\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: gen_wgmma.py OUTPUT")
    with open(sys.argv[1], "w") as out:
        emit(out)
