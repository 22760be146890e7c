/* Small named wrappers over the PTX the sm80+ kernels use: cp.async, ldmatrix, mma.sync and the
 * conversions around them. Device-only; shared by the portable kernel and any other kernel that
 * wants the Ampere-style tensor-core path. */
#ifndef FATTN_CUDA_PTX_CUH
#define FATTN_CUDA_PTX_CUH

#include <stdint.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

/* Element tags for the templates: the I/O type of a kernel is a compile-time constant. */
enum fattn_elem { FATTN_ELEM_F16 = 0, FATTN_ELEM_BF16 = 1, FATTN_ELEM_F32 = 2 };

static __device__ __forceinline__ uint32_t fattn_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte global->shared copy that bypasses L1. src_bytes 0 zero-fills the destination without
 * reading src, which is how rows past a tensor's end become zeros rather than garbage (a zero P
 * times a NaN V would still poison the output). */
static __device__ __forceinline__ void fattn_cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

static __device__ __forceinline__ void fattn_cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> static __device__ __forceinline__ void fattn_cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void fattn_ldmatrix_x4(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void fattn_ldmatrix_x4_trans(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* D += A * B for one m16n8k16 tile, fp32 accumulators; E selects fp16 or bf16 operands. */
template <int E>
static __device__ __forceinline__ void fattn_mma16816(float d[4], const uint32_t a[4],
                                                      uint32_t b0, uint32_t b1)
{
    if (E == FATTN_ELEM_BF16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

/* Two floats to one register of two 16-bit values (lo in the low half), rounding to nearest. */
template <int E> static __device__ __forceinline__ uint32_t fattn_pack2(float lo, float hi)
{
    uint32_t r;
    if (E == FATTN_ELEM_BF16)
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    else
        asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* 2^x through the special-function unit; exp2(-inf) is 0. */
static __device__ __forceinline__ float fattn_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

#endif
