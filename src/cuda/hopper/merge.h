/* The second launch of a call whose last round of tiles was split along the keys
 * (HOPPER_SPLIT_TAIL, scheduler.cuh): the pieces' fp32 outputs and log-sum-exps, in the
 * workspace, combined into O and the LSE. */
#ifndef FATTN_HOPPER_MERGE_H
#define FATTN_HOPPER_MERGE_H

#include <cuda_runtime.h>

#include "config.cuh"
#include "fattn.h"

/* Enqueues the merge of the tiles from args->split_from on; n_total: the key blocks of a tile. */
fattn_status fattn_hopper_merge(const fattn_params *p, const hopper_args *args, int n_total, cudaStream_t stream);

#endif
