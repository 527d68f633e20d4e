// errno as a Status: one mapping for every file operation in the library. Internal.
#pragma once

#include <string_view>

#include "cloudmgr/status.h"

namespace cloudmgr {

// The canonical code for the errno of a failed file operation: a missing file kNotFound, no
// access kPermissionDenied, a full disk or quota (and out of memory or descriptors)
// kResourceExhausted, a file that exists kAlreadyExists, another file system
// kFailedPrecondition, an I/O error kUnavailable, anything else kInternal.
StatusCode status_code_for_errno(int err) noexcept;

// A Status for the failed call that set `err`: `what` (what we were doing, naming the file)
// before the system's text. err 0 becomes kInternal.
Status errno_error(int err, std::string_view what);

}  // namespace cloudmgr
