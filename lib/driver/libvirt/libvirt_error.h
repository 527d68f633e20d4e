// Conversion of libvirt errors into cloudmgr::Status: the one place where libvirt's error
// numbers meet the canonical codes.
#pragma once

#include <string_view>

#include <libvirt/virterror.h>

#include "cloudmgr/status.h"

namespace cloudmgr::libvirt {

// The canonical code for a libvirt error number (virErrorNumber).
StatusCode status_code_for(int vir_error_code) noexcept;

// A Status for `error`, with `context` (what we were doing) before libvirt's own message.
// A null error (libvirt reported failure without details) becomes kInternal.
Status status_from_error(const virError* error, std::string_view context);

// status_from_error for this thread's last libvirt error, which it then resets.
Status last_error(std::string_view context);

}  // namespace cloudmgr::libvirt
