// The PKI's document makers, internal: the DDS transport's tests and the security tests use
// them to make documents the PKI never would (self-signed permissions, say).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloudmgr/pki.h"
#include "cloudmgr/status.h"

namespace cloudmgr::pki {

// The permissions document of an identity, valid [not_before_s, not_after_s) (seconds since
// the epoch), for DDS domains [domain_min, domain_max]. Unsigned.
std::string permissions_document(Role role, std::string_view name, std::int64_t not_before_s, std::int64_t not_after_s,
                                 std::uint32_t domain_min = 0, std::uint32_t domain_max = 232);

// `document` S/MIME-signed (as `openssl smime -sign -text` does) by the certificate and key
// in these PEM files.
Result<std::string> sign_document(std::string_view document, const std::string& signer_cert_path,
                                  const std::string& signer_key_path);

}  // namespace cloudmgr::pki
