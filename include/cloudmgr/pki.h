// The cloud's own PKI for DDS-Security: two certificate authorities, a signed governance
// document, and one identity per manager and per agent, each with its own signed
// permissions document. Nobody writes a certificate, a governance or a permissions file by
// hand (docs/security.md). OpenSSL does the work behind this OpenSSL-free header.
//
// A PKI directory (DIR) holds what the cloud's participants read:
//   DIR/identity_ca.pem        the identity CA: signs every participant's certificate
//   DIR/permissions_ca.pem     the permissions CA: signs the governance and each permissions
//                              document, and issues no identity certificate (with one CA for
//                              both, Fast DDS 2.9.1 lets any identity sign its own permissions:
//                              CVE-2023-24010)
//   DIR/governance.xml, DIR/governance.p7s         the governance, plain and S/MIME-signed
//   DIR/identities/<role>.<name>/cert.pem          the identity's certificate
//   DIR/identities/<role>.<name>/key.pem           its private key (EC P-256), mode 0600
//   DIR/identities/<role>.<name>/permissions.xml   its permissions, plain and signed
//   DIR/identities/<role>.<name>/permissions.p7s
// The CA private keys live in a CA directory, DIR/private by default (mode 0700), or apart
// from the cloud altogether (InitOptions::ca_dir): only init and issue read them.
// A host needs DIR's three CA files and its own identity directory, nothing else.
//
// Every call is idempotent and never replaces a private key: what exists and is sound is
// kept, what exists and is not sound is an error naming the file. All functions are
// thread-compatible (two processes issuing into one directory at once may collide on a new
// identity: one gets kAlreadyExists).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/status.h"

namespace cloudmgr::pki {

// What an identity may do on the bus (docs/security.md, "Permissions"):
//   kManager  writes commands and image pieces to any host or group; reads every state topic
//   kAgent    reads commands only in "all", "host.<its id>" and "group.*", image pieces only in
//             "host.<its id>"; writes state, samples, replies and image pieces only in
//             "host.<its id>"
enum class Role : std::uint8_t { kManager = 0, kAgent };
CLOUDMGR_API std::string_view to_string(Role role) noexcept;
// "manager" or "agent"; kInvalidArgument naming the text otherwise.
CLOUDMGR_API Result<Role> parse_role(std::string_view text);

// The certificate subject of an identity, most specific first, as DDS-Security compares it
// with a permissions document: "CN=node1, OU=agent, O=cloudmgr".
CLOUDMGR_API std::string subject_for(Role role, std::string_view name);
// An authenticated subject read back: the role and the name, or kInvalidArgument when the
// subject is not one this PKI issues.
struct Subject {
  Role role = Role::kManager;
  std::string name;
};
CLOUDMGR_API Result<Subject> parse_subject(std::string_view subject);

// Names follow the host-id alphabet: 1-64 letters, digits, '.', '_', '-'.
CLOUDMGR_API Status validate_identity_name(std::string_view name);

struct InitOptions {
  std::string dir;     // created if missing
  std::string ca_dir;  // where the CA private keys are; empty = <dir>/private
  std::uint32_t ca_validity_days = 3650;
  // The governance covers DDS domains [domain_min, domain_max].
  std::uint32_t domain_min = 0;
  std::uint32_t domain_max = 232;
};

struct InitResult {
  bool created = false;            // false: the PKI was there already and is sound
  std::vector<std::string> files;  // the files written now (none when created is false)
};

// Creates the two CAs and the signed governance, or checks an existing PKI: both CA
// certificates readable and self-signed, the governance signed by the permissions CA, and,
// when the CA directory is at hand, each CA key matching its certificate. A partial PKI
// (a key without its certificate, say) is kFailedPrecondition naming what is there and
// what is missing; nothing is overwritten. kInvalidArgument for bad options.
CLOUDMGR_API Result<InitResult> init(const InitOptions& options);

struct IssueOptions {
  std::string dir;
  std::string ca_dir;  // empty = <dir>/private
  Role role = Role::kAgent;
  std::string name;  // the manager's name or the agent's host id
  std::uint32_t validity_days = 365;
  // An explicit validity window (both set, not_before_ns < not_after_ns) instead of
  // [now, now + validity_days): for rotation drills and tests of expiry.
  std::int64_t not_before_ns = 0;
  std::int64_t not_after_ns = 0;
  // Re-issue the certificate and permissions of an existing identity for the same key
  // (rotation before expiry). Without it an existing sound identity is kept as it is.
  bool renew = false;
};

// One identity of the PKI, as read back from its files.
struct IdentityInfo {
  Role role = Role::kAgent;
  std::string name;
  std::string subject;  // subject_for(role, name)
  std::string dir;      // its identity directory
  std::int64_t cert_not_before_ns = 0;
  std::int64_t cert_not_after_ns = 0;
  std::int64_t permissions_not_before_ns = 0;
  std::int64_t permissions_not_after_ns = 0;
  // Empty when the identity is usable now; else what is wrong ("expired 2026-01-01 ...",
  // "cert.pem: not signed by the identity CA", ...).
  std::string problem;
};

struct IssueResult {
  IdentityInfo identity;
  bool created = false;  // false: an existing sound identity was kept (renew: re-signed)
  std::vector<std::string> files;
};

// Creates the identity <role>.<name>: a fresh EC P-256 key (0600), a certificate the
// identity CA signs and a permissions document the permissions CA signs, both valid for the
// same window. kNotFound when the PKI or its CA keys are missing (naming where it looked),
// kFailedPrecondition when an existing identity is unsound (renew re-signs it when its key
// is sound), kInvalidArgument for bad options.
CLOUDMGR_API Result<IssueResult> issue(const IssueOptions& options);

// Every identity in the PKI, sorted by role then name, each checked (IdentityInfo::problem).
// kNotFound when dir holds no PKI.
CLOUDMGR_API Result<std::vector<IdentityInfo>> list(const std::string& dir);

// The files a DDS participant needs for one identity, each checked before any participant
// is created: readable, parseable, the certificate signed by the identity CA and inside its
// validity, the key matching the certificate, governance and permissions signed by the
// permissions CA, the permissions naming this certificate's subject and inside their
// validity. A failure is one line naming the file and what is wrong: kNotFound for a missing
// file, kPermissionDenied for an unreadable one, kFailedPrecondition for an expired,
// mismatched or badly signed one.
struct Credentials {
  std::string identity_ca;  // absolute paths
  std::string identity_certificate;
  std::string private_key;
  std::string permissions_ca;
  std::string governance;  // the signed document (.p7s)
  std::string permissions;
  std::string subject;
  std::int64_t not_after_ns = 0;  // the earlier of the certificate's and the permissions' end
};
CLOUDMGR_API Result<Credentials> load_credentials(const std::string& dir, Role role, std::string_view name);

}  // namespace cloudmgr::pki
