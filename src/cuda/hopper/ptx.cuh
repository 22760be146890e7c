/* Named inline-PTX helpers for the Hopper kernel: shared-memory addresses, mbarriers, TMA
 * (cp.async.bulk.tensor), wgmma fences and descriptors, register reallocation, named barriers.
 * Every helper is one or a few instructions; the kernel reads as a sequence of these. Only
 * compiled for sm90a (the callers sit behind FATTN_HOPPER_ARCH). */
#ifndef FATTN_HOPPER_PTX_CUH
#define FATTN_HOPPER_PTX_CUH

#include <cuda.h>
#include <stdint.h>

/* True only in the sm90a device pass: wgmma and setmaxnreg exist nowhere else. */
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define FATTN_HOPPER_ARCH 1
#else
#define FATTN_HOPPER_ARCH 0
#endif

static __device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* ---- mbarrier ---- */

static __device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}

/* Makes the initialised barriers visible to the async proxy (TMA) and the other threads. */
static __device__ __forceinline__ void mbar_fence_init(void)
{
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

static __device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes)
                 : "memory");
}

static __device__ __forceinline__ void mbar_arrive(uint32_t bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}

/* Waits until the phase with the given parity has completed. Each try_wait may suspend the thread
 * for up to HOPPER_WAIT_HINT_NS (it wakes when the phase completes): without the hint the
 * producer's waits for free stages spun, ~100M try_wait/branch pairs at the seed shape (ncu),
 * issue slots taken from the consumer warps on the same SM sub-partition. */
#ifndef HOPPER_WAIT_HINT_NS
#define HOPPER_WAIT_HINT_NS 10000000
#endif
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity)
{
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1, %2;\n"
                 "@!done bra WAIT_%=;\n"
                 "}\n" ::"r"(bar),
                 "r"(parity), "n"(HOPPER_WAIT_HINT_NS)
                 : "memory");
}

/* ---- TMA ---- */

/* Loads one box of a 4-D tensor map at coordinates (c0 innermost) into shared memory; completion
 * is counted in bytes on bar. Out-of-bounds elements arrive as zeros. */
static __device__ __forceinline__ void tma_load_4d(uint32_t dst, const CUtensorMap *map, uint32_t bar,
                                                   int c0, int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];" ::"r"(dst),
                 "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
                 : "memory");
}

/* Stores one box from shared memory; elements outside the tensor's bounds are not written. */
static __device__ __forceinline__ void tma_store_4d(const CUtensorMap *map, uint32_t src, int c0, int c1,
                                                    int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];" ::"l"(map),
                 "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}

static __device__ __forceinline__ void tma_store_commit(void)
{
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

/* Waits until the committed stores have finished reading shared memory. */
static __device__ __forceinline__ void tma_store_wait_read(void)
{
    asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
}

/* Waits until the committed stores have completed (before the CTA may exit). */
static __device__ __forceinline__ void tma_store_wait_all(void)
{
    asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
}

static __device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map)
{
    asm volatile("prefetch.tensormap [%0];" ::"l"(map) : "memory");
}

/* ---- shared memory by address ---- */

/* Stores through a 32-bit shared-window address: a generic pointer into the tile made ptxas hoist
 * one 64-bit address per store of the epilogue above the main loop, live through it, which is what
 * spilled the three-consumer kernels at a 64-register O (docs/perf-notes.md, compile facts). */
static __device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v)
{
    asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}

static __device__ __forceinline__ uint32_t ld_shared_u32(uint32_t addr)
{
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

static __device__ __forceinline__ void st_shared_f32x2(uint32_t addr, float lo, float hi)
{
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(lo), "f"(hi) : "memory");
}

/* Orders this thread's ordinary shared-memory writes before later async-proxy (TMA) reads. */
static __device__ __forceinline__ void fence_proxy_async_smem(void)
{
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

/* ---- named barriers (id 0 is __syncthreads) ---- */

static __device__ __forceinline__ void named_bar_sync(uint32_t id, uint32_t threads)
{
    asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

static __device__ __forceinline__ void named_bar_arrive(uint32_t id, uint32_t threads)
{
    asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

/* Whether c holds for any of the `threads` threads meeting at barrier id (barrier.red.or): the same
 * answer for all of them, where a warp vote would differ between the warps of a warpgroup. */
static __device__ __forceinline__ bool named_bar_any(uint32_t id, uint32_t threads, bool c)
{
    uint32_t r;
    asm volatile("{\n"
                 ".reg .pred p, q;\n"
                 "setp.ne.u32 p, %1, 0;\n"
                 "barrier.cta.red.or.pred q, %2, %3, p;\n"
                 "selp.u32 %0, 1, 0, q;\n"
                 "}\n"
                 : "=r"(r)
                 : "r"((uint32_t)c), "r"(id), "r"(threads)
                 : "memory");
    /* the same value in every lane, but ptxas cannot know that: the vote tells it, so a branch on
     * the result stays warp-uniform (no reconvergence points, descriptors in uniform registers) */
    return __any_sync(0xffffffffu, r != 0);
}

/* ---- register reallocation between warpgroups ---- */

template <int N> static __device__ __forceinline__ void regs_increase(void)
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(N));
}

template <int N> static __device__ __forceinline__ void regs_decrease(void)
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(N));
}

/* ---- wgmma ordering ---- */

static __device__ __forceinline__ void wgmma_fence(void)
{
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}

static __device__ __forceinline__ void wgmma_commit(void)
{
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}

template <int N> static __device__ __forceinline__ void wgmma_wait(void)
{
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

/* Keeps the compiler from moving reads or writes of an accumulator register across a wgmma
 * fence, commit or wait: the asynchronous wgmma owns those registers in between. */
static __device__ __forceinline__ void reg_fence(float &r)
{
    asm volatile("" : "+f"(r)::"memory");
}

static __device__ __forceinline__ void reg_fence_u32(uint32_t &r)
{
    asm volatile("" : "+r"(r)::"memory");
}

/* Shared-memory matrix descriptor for the 128-byte swizzle: start address, leading- and
 * stride-dimension byte offsets, each encoded >> 4. */
static __device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
           ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

/* The same descriptor moved `bytes` further on. The start address sits in the low 14 bits and a
 * move stays inside one tile, so only the low word changes: one integer add per wgmma instead
 * of rebuilding the descriptor (which costs four, and in the loops of d256 tipped the consumer
 * warps into being issue-bound). */
static __device__ __forceinline__ uint64_t wgmma_desc_advance(uint64_t desc, uint32_t bytes)
{
    return (desc & 0xFFFFFFFF00000000ull) | (uint32_t)((uint32_t)desc + (bytes >> 4));
}

/* ---- math ---- */

static __device__ __forceinline__ float ex2_approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* x rounded to the nearest tf32 (ties away from zero), as the bits tf32 wgmma reads. Left to the
 * hardware, the low 13 mantissa bits are commonly truncated, a bias that does not cancel in a sum. */
static __device__ __forceinline__ uint32_t tf32_round(float x)
{
    uint32_t y;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(y) : "f"(x));
    return y;
}

#endif
