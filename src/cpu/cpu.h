/* The CPU forward's plan, per-thread scratch and the block kernels built once per ISA. */
#ifndef FATTN_CPU_H
#define FATTN_CPU_H

#include "core/internal.h"

/* Key/value rows per inner block. A multiple of every ISA's micro-tile height. */
#define FATTN_CPU_BLOCK_KV 64
/* Head dims are padded to this in scratch tiles: a multiple of every ISA's micro-tile width. */
#define FATTN_CPU_DIM_ALIGN 32

typedef struct fattn_cpu_plan {
    fattn_params p;
    int64_t group;        /* heads_q / heads_kv */
    int64_t dim_padded;   /* head_dim rounded up to FATTN_CPU_DIM_ALIGN */
    int64_t block_q;      /* query rows per work item */
    int64_t q_blocks;     /* ceil(seqlen_q / block_q) */
    int64_t kv_shift;     /* seqlen_kv - seqlen_q: the causal diagonal's offset */
    float scale_log2;     /* softmax scale times log2(e): the kernel works in base 2 */
} fattn_cpu_plan;

/* One thread's tiles, 64-byte aligned, zeroed once at allocation. */
typedef struct fattn_cpu_scratch {
    float *q_t;   /* [head_dim][block_q]: the item's queries, transposed */
    float *k;     /* [BLOCK_KV][dim_padded] */
    float *v;     /* [BLOCK_KV][dim_padded] */
    float *s_t;   /* [BLOCK_KV][block_q]: scores, then probabilities, transposed */
    float *acc;   /* [block_q][dim_padded]: unnormalised output */
    float *m;     /* [block_q]: running row maximum (base-2 units) */
    float *l;     /* [block_q]: running row sum */
    float *alpha; /* [block_q]: rescale factor of the current block */
    float *row;   /* [dim_padded]: one converted row */
} fattn_cpu_scratch;

/* Computes work item `item` (batch, query head, query block) into the output and LSE. */
typedef void (*fattn_cpu_item_fn)(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t item);

void fattn_cpu_item_generic(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t item);
void fattn_cpu_item_avx2(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t item);
void fattn_cpu_item_avx512(const fattn_cpu_plan *plan, fattn_cpu_scratch *ws, int64_t item);

/* The variant fattn_cpu_forward runs in this process ("avx512", "avx2" or "generic"), with
 * FATTN_CPU_ISA applied: lets a test that asks for a variant know whether it got it. */
const char *fattn_cpu_kernel_name(void);

/* Runs run(args + t * arg_size) for t in 0..count, t = 0 on the calling thread, and waits for all.
 * run takes its work from a shared counter, so a thread that cannot start costs only speed. */
void fattn_cpu_parallel(int64_t count, void *(*run)(void *), void *args, size_t arg_size);

/* FATTN_MODE_FP8 (src/cpu/fp8.c) on validated parameters, over up to `threads` threads. */
fattn_status fattn_cpu_forward_fp8(const fattn_params *params, int64_t threads);

#endif
