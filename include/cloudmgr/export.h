// Symbol visibility for libcloudmgr. The library is built with -fvisibility=hidden;
// only declarations marked CLOUDMGR_API are part of its ABI.
#pragma once

#if defined(CLOUDMGR_BUILDING_LIBRARY)
#define CLOUDMGR_API [[gnu::visibility("default")]]
#else
#define CLOUDMGR_API
#endif
