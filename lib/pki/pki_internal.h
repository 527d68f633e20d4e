// The PKI's document makers, internal: the DDS transport's tests and the security tests use
// them to make documents the PKI never would (self-signed permissions, say).
#pragma once

#include <array>
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

// Who a DDS participant is. Fast DDS's PKI-DH derives the first six bytes of a participant's
// GUID prefix from its certificate's subject (a 1 bit, then the first 47 bits of the SHA-256
// of the DER subject) and checks them against the certificate during the handshake, so an
// authenticated participant's prefix names its subject.
Result<std::array<std::uint8_t, 6>> participant_key_prefix(Role role, std::string_view name);

// The identity a participant claims in its identity token (the property "dds.cert.sn",
// OpenSSL's one-line form "/O=cloudmgr/OU=agent/CN=node1"), when it is one this PKI issues and
// `prefix` (the first six bytes of the participant's GUID prefix) was derived from it.
// kInvalidArgument for a subject that is not ours, kPermissionDenied when the prefix disagrees.
Result<Subject> subject_of_participant(std::string_view claimed, const std::array<std::uint8_t, 6>& prefix);

}  // namespace cloudmgr::pki
