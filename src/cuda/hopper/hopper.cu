/* Host side of the Hopper forward. Not yet implemented: every request is reported unsupported so
 * the dispatcher uses the portable kernel. */
#include "hopper.h"

#include "../../core/internal.h"

extern "C" fattn_status fattn_hopper_supported(const fattn_params *p)
{
    (void)p;
    return fattn_fail(FATTN_ERR_UNSUPPORTED, "the Hopper kernel is not built yet");
}

extern "C" fattn_status fattn_hopper_forward(const fattn_params *p, cudaStream_t stream)
{
    (void)stream;
    return fattn_hopper_supported(p);
}
