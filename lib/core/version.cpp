#include "cloudmgr/version.h"

namespace cloudmgr {
std::string_view version() noexcept { return CLOUDMGR_VERSION_STRING; }
}  // namespace cloudmgr
