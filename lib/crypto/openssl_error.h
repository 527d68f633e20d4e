// OpenSSL's error queue as a Status: the one conversion every OpenSSL user in the library
// goes through (the template store's hashing, the PKI). Internal; includes no OpenSSL header.
#pragma once

#include <string_view>

#include "cloudmgr/status.h"

namespace cloudmgr::crypto {

// A Status for a failed OpenSSL call: `what` before the texts of OpenSSL's error queue,
// which it drains (so that a later call does not report this failure). kResourceExhausted
// when OpenSSL ran out of memory, kInternal otherwise.
Status openssl_error(std::string_view what);

// Empties OpenSSL's error queue of this thread (after a failure that was expected and handled).
void clear_openssl_errors() noexcept;

}  // namespace cloudmgr::crypto
