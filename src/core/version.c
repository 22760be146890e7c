#include "internal.h"

#define FATTN_STR2(x) #x
#define FATTN_STR(x) FATTN_STR2(x)

int fattn_version(void)
{
    return FATTN_VERSION_MAJOR * 10000 + FATTN_VERSION_MINOR * 100 + FATTN_VERSION_PATCH;
}

const char *fattn_version_string(void)
{
    return FATTN_STR(FATTN_VERSION_MAJOR) "." FATTN_STR(FATTN_VERSION_MINOR) "." FATTN_STR(
        FATTN_VERSION_PATCH);
}
