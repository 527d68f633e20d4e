// The cloud's PKI over OpenSSL 3 (include/cloudmgr/pki.h).
#include "cloudmgr/pki.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/bus_names.h"
#include "core/errno_status.h"
#include "core/status_macros.h"
#include "crypto/openssl_error.h"
#include "pki/pki_internal.h"

namespace cloudmgr::pki {

namespace fs = std::filesystem;

namespace {

constexpr char kOrganization[] = "cloudmgr";
constexpr char kIdentityCaName[] = "cloudmgr identity CA";
constexpr char kPermissionsCaName[] = "cloudmgr permissions CA";
constexpr std::int64_t kNsPerSecond = 1'000'000'000;
constexpr std::int64_t kSecondsPerDay = 86'400;
// A certificate made now is valid from a little earlier, so that a host whose clock is a
// few minutes behind the issuer's accepts it at once.
constexpr std::int64_t kBackdateSeconds = 300;
// The widest time-zone offset (UTC+14): see issue().
constexpr std::int64_t kZoneSlackSeconds = std::int64_t{14} * 3600;

// --------------------------------------------------------------------------------------------
// OpenSSL objects, owned.

struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free_all(b); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct Pkcs7Free {
  void operator()(PKCS7* p) const noexcept { PKCS7_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const noexcept { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const noexcept { X509_STORE_CTX_free(c); }
};
struct NameFree {
  void operator()(X509_NAME* n) const noexcept { X509_NAME_free(n); }
};
struct BnFree {
  void operator()(BIGNUM* b) const noexcept { BN_free(b); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const noexcept { X509_EXTENSION_free(e); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
using Pkcs7Ptr = std::unique_ptr<PKCS7, Pkcs7Free>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, StoreCtxFree>;
using NamePtr = std::unique_ptr<X509_NAME, NameFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, ExtFree>;

BioPtr memory_bio(std::string_view text) { return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

// --------------------------------------------------------------------------------------------
// Files.

struct Paths {
  std::string dir;
  std::string ca_dir;
  std::string identity_ca() const { return dir + "/identity_ca.pem"; }
  std::string permissions_ca() const { return dir + "/permissions_ca.pem"; }
  std::string governance_xml() const { return dir + "/governance.xml"; }
  std::string governance() const { return dir + "/governance.p7s"; }
  std::string identities() const { return dir + "/identities"; }
  std::string identity_ca_key() const { return ca_dir + "/identity_ca.key"; }
  std::string permissions_ca_key() const { return ca_dir + "/permissions_ca.key"; }
};

Result<Paths> paths_for(const std::string& dir, const std::string& ca_dir) {
  if (dir.empty()) {
    return invalid_argument_error("PKI: the directory must not be empty");
  }
  std::error_code ec;
  const fs::path abs = fs::absolute(dir, ec);
  if (ec) {
    return invalid_argument_error(fmt::format("PKI: bad directory '{}': {}", dir, ec.message()));
  }
  Paths p;
  p.dir = abs.lexically_normal().string();
  while (p.dir.size() > 1 && p.dir.back() == '/') {
    p.dir.pop_back();
  }
  p.ca_dir = ca_dir.empty() ? p.dir + "/private" : fs::absolute(ca_dir, ec).lexically_normal().string();
  while (p.ca_dir.size() > 1 && p.ca_dir.back() == '/') {
    p.ca_dir.pop_back();
  }
  return p;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The whole file, or a Status naming it: kNotFound, kPermissionDenied, ...
Result<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno_error(errno, fmt::format("'{}'", path));
  }
  std::string out;
  std::array<char, 16384> buf{};
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return errno_error(err, fmt::format("reading '{}'", path));
    }
    if (n == 0) {
      break;
    }
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// Creates `path` with `mode` (and its missing parents, 0755 less the umask).
Status make_dir(const std::string& path, mode_t mode) {
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) {
    return errno_error(ec.value(), fmt::format("creating '{}'", fs::path(path).parent_path().string()));
  }
  if (::mkdir(path.c_str(), mode) == 0) {
    return {};
  }
  if (errno != EEXIST) {
    return errno_error(errno, fmt::format("creating '{}'", path));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return failed_precondition_error(fmt::format("'{}' exists and is not a directory", path));
  }
  return {};
}

Status sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return errno_error(errno, fmt::format("opening '{}'", dir));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status() : errno_error(err, fmt::format("syncing '{}'", dir));
}

// Writes `content` to `path` through a temporary file (fsynced, then put in place), with
// `mode`. `replace`: an existing file is replaced atomically; otherwise it stays and the
// call is kAlreadyExists.
Status write_file(const std::string& path, std::string_view content, mode_t mode, bool replace) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return errno_error(errno, fmt::format("creating '{}'", tmp));
  }
  Status status;
  if (::fchmod(fd, mode) != 0) {  // the umask may have taken bits away; never added any
    status = errno_error(errno, fmt::format("setting the mode of '{}'", tmp));
  }
  std::size_t done = 0;
  while (status.ok() && done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      status = errno_error(errno, fmt::format("writing '{}'", tmp));
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = errno_error(errno, fmt::format("syncing '{}'", tmp));
  }
  ::close(fd);
  if (status.ok()) {
    if (replace) {
      if (::rename(tmp.c_str(), path.c_str()) != 0) {
        status = errno_error(errno, fmt::format("renaming '{}' to '{}'", tmp, path));
      }
    } else if (::link(tmp.c_str(), path.c_str()) != 0) {  // never replaces what is there
      status = errno == EEXIST ? already_exists_error(fmt::format("'{}' exists: not overwritten", path))
                               : errno_error(errno, fmt::format("linking '{}' to '{}'", tmp, path));
    }
  }
  ::unlink(tmp.c_str());
  if (status.ok()) {
    status = sync_dir(fs::path(path).parent_path().string());
  }
  return status;
}

// --------------------------------------------------------------------------------------------
// Time.

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

// ISO 8601 in UTC without a zone, as permissions documents write it: 2026-12-02T03:00:00.
std::string iso_utc(std::int64_t seconds) {
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  return buf.data();
}

std::optional<std::int64_t> parse_iso_utc(std::string_view text) {
  std::tm tm{};
  const std::string s(text);
  const char* end = ::strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr || (*end != '\0' && *end != 'Z')) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::optional<std::int64_t> asn1_seconds(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(::timegm(&tm));
}

std::string date_text(std::int64_t seconds) { return iso_utc(seconds) + "Z"; }

// --------------------------------------------------------------------------------------------
// Names.

std::string identity_dir_name(Role role, std::string_view name) { return fmt::format("{}.{}", to_string(role), name); }

// The subject of a certificate, most specific first ("CN=node1, OU=agent, O=cloudmgr").
std::string subject_text(const X509_NAME* name) {
  std::string out;
  for (int i = X509_NAME_entry_count(name) - 1; i >= 0; --i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    const char* key = OBJ_nid2sn(nid);
    unsigned char* utf8 = nullptr;
    const int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    if (n < 0) {
      continue;
    }
    out += out.empty() ? "" : ", ";
    out += fmt::format("{}={}", key != nullptr ? key : "?",
                       std::string_view(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n)));
    OPENSSL_free(utf8);
  }
  return out;
}

Result<NamePtr> make_name(std::string_view common_name, std::optional<Role> role) {
  NamePtr name(X509_NAME_new());
  if (!name) {
    return crypto::openssl_error("PKI: making a name");
  }
  const auto add = [&](const char* field, std::string_view value) {
    return X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!add("O", kOrganization) || (role && !add("OU", to_string(*role))) || !add("CN", common_name)) {
    return crypto::openssl_error("PKI: making a name");
  }
  return name;
}

// --------------------------------------------------------------------------------------------
// Keys and certificates.

Result<KeyPtr> new_key() {
  KeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    return crypto::openssl_error("PKI: generating an EC P-256 key");
  }
  return key;
}

Result<std::string> key_pem(EVP_PKEY* key) {
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return crypto::openssl_error("PKI: encoding a private key");
  }
  return bio_text(out.get());
}

Result<std::string> cert_pem(X509* cert) {
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509(out.get(), cert) != 1) {
    return crypto::openssl_error("PKI: encoding a certificate");
  }
  return bio_text(out.get());
}

// Reads a PEM certificate, naming the file when it is missing, unreadable or not one.
Result<X509Ptr> load_cert(const std::string& path) {
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  BioPtr in = memory_bio(text);
  X509Ptr cert(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    crypto::clear_openssl_errors();
    return failed_precondition_error(fmt::format("'{}': not a PEM certificate", path));
  }
  return cert;
}

// Reads a PEM private key; its text is never part of a message.
Result<KeyPtr> load_key(const std::string& path) {
  CLOUDMGR_ASSIGN_OR_RETURN(std::string text, read_file(path));
  BioPtr in = memory_bio(text);
  KeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  OPENSSL_cleanse(text.data(), text.size());
  if (!key) {
    crypto::clear_openssl_errors();
    return failed_precondition_error(fmt::format("'{}': not a PEM private key", path));
  }
  return key;
}

Status add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return crypto::openssl_error(fmt::format("PKI: adding the extension {}", value));
  }
  return {};
}

struct CertRequest {
  const X509_NAME* subject = nullptr;
  EVP_PKEY* key = nullptr;  // the subject's key (its public half goes in)
  X509* issuer = nullptr;   // nullptr: self-signed
  EVP_PKEY* issuer_key = nullptr;
  std::int64_t not_before = 0;  // seconds
  std::int64_t not_after = 0;
  bool ca = false;
};

Result<X509Ptr> make_cert(const CertRequest& r) {
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return crypto::openssl_error("PKI: making a certificate");
  }
  std::array<unsigned char, 16> serial{};
  if (RAND_bytes(serial.data(), static_cast<int>(serial.size())) != 1) {
    return crypto::openssl_error("PKI: drawing a serial number");
  }
  serial[0] &= 0x7F;  // positive
  serial[0] |= 0x01;  // and of full length
  BnPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) {
    return crypto::openssl_error("PKI: setting a serial number");
  }
  X509* issuer = r.issuer != nullptr ? r.issuer : cert.get();
  if (X509_set_subject_name(cert.get(), r.subject) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1 ||
      ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<std::time_t>(r.not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<std::time_t>(r.not_after)) == nullptr ||
      X509_set_pubkey(cert.get(), r.key) != 1) {
    return crypto::openssl_error("PKI: filling a certificate");
  }
  if (r.ca) {
    CLOUDMGR_RETURN_IF_ERROR(add_extension(cert.get(), issuer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    // digitalSignature: the permissions CA signs documents (S/MIME) with this key.
    CLOUDMGR_RETURN_IF_ERROR(
        add_extension(cert.get(), issuer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"));
  } else {
    CLOUDMGR_RETURN_IF_ERROR(add_extension(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE"));
    CLOUDMGR_RETURN_IF_ERROR(
        add_extension(cert.get(), issuer, NID_key_usage, "critical,digitalSignature,keyAgreement"));
    // TLS client and server (the tcp transport: agents accept, managers connect), no
    // emailProtection: OpenSSL's S/MIME check then refuses documents signed with an identity
    // key, a second wall besides the separate permissions CA.
    CLOUDMGR_RETURN_IF_ERROR(add_extension(cert.get(), issuer, NID_ext_key_usage, "clientAuth,serverAuth"));
  }
  CLOUDMGR_RETURN_IF_ERROR(add_extension(cert.get(), issuer, NID_subject_key_identifier, "hash"));
  if (r.issuer != nullptr) {
    CLOUDMGR_RETURN_IF_ERROR(add_extension(cert.get(), issuer, NID_authority_key_identifier, "keyid:always"));
  }
  if (X509_sign(cert.get(), r.issuer_key != nullptr ? r.issuer_key : r.key, EVP_sha256()) <= 0) {
    return crypto::openssl_error("PKI: signing a certificate");
  }
  return cert;
}

// OK when `cert` chains to `ca` and is inside its validity now (`what` names the file).
Status verify_cert(X509* cert, X509* ca, const std::string& what, const std::string& ca_what) {
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert, nullptr) != 1) {
    return crypto::openssl_error(fmt::format("PKI: checking '{}'", what));
  }
  if (X509_verify_cert(ctx.get()) == 1) {
    return {};
  }
  const int err = X509_STORE_CTX_get_error(ctx.get());
  crypto::clear_openssl_errors();
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return failed_precondition_error(fmt::format("'{}': the certificate expired on {}", what,
                                                   date_text(asn1_seconds(X509_get0_notAfter(cert)).value_or(0))));
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return failed_precondition_error(fmt::format("'{}': the certificate is not valid before {}", what,
                                                   date_text(asn1_seconds(X509_get0_notBefore(cert)).value_or(0))));
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return failed_precondition_error(fmt::format("'{}': not signed by the CA in '{}'", what, ca_what));
    default:
      return failed_precondition_error(
          fmt::format("'{}': rejected against '{}': {}", what, ca_what, X509_verify_cert_error_string(err)));
  }
}

Status check_key_matches(EVP_PKEY* key, X509* cert, const std::string& key_path, const std::string& cert_path) {
  if (X509_check_private_key(cert, key) != 1) {
    crypto::clear_openssl_errors();
    return failed_precondition_error(
        fmt::format("'{}': the private key does not belong to the certificate '{}'", key_path, cert_path));
  }
  return {};
}

// A self-signed CA certificate: its own signature checks out and it is valid now.
Status check_ca(X509* ca, const std::string& path) { return verify_cert(ca, ca, path, path); }

// --------------------------------------------------------------------------------------------
// Signed documents (S/MIME, as `openssl smime -sign -text` writes them).

Result<std::string> sign(std::string_view document, X509* signer, EVP_PKEY* key) {
  constexpr int kFlags = PKCS7_TEXT | PKCS7_DETACHED;
  BioPtr in = memory_bio(document);
  Pkcs7Ptr p7(PKCS7_sign(signer, key, nullptr, in.get(), kFlags));
  if (!p7) {
    return crypto::openssl_error("PKI: signing a document");
  }
  BioPtr again = memory_bio(document);  // detached: the content is written again beside the signature
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || SMIME_write_PKCS7(out.get(), p7.get(), again.get(), kFlags) != 1) {
    return crypto::openssl_error("PKI: writing a signed document");
  }
  return bio_text(out.get());
}

// The content of a signed document, when `ca` signed it.
Result<std::string> verify_signed(const std::string& path, X509* ca, const std::string& ca_path) {
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string text, read_file(path));
  BioPtr in = memory_bio(text);
  BIO* content = nullptr;
  Pkcs7Ptr p7(SMIME_read_PKCS7(in.get(), &content));
  BioPtr content_owner(content);
  if (!p7) {
    crypto::clear_openssl_errors();
    return failed_precondition_error(fmt::format("'{}': not an S/MIME signed document", path));
  }
  StorePtr store(X509_STORE_new());
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!store || !out || X509_STORE_add_cert(store.get(), ca) != 1) {
    return crypto::openssl_error(fmt::format("PKI: checking '{}'", path));
  }
  if (PKCS7_verify(p7.get(), nullptr, store.get(), content, out.get(), PKCS7_TEXT) != 1) {
    crypto::clear_openssl_errors();
    return failed_precondition_error(fmt::format("'{}': not signed by the permissions CA in '{}'", path, ca_path));
  }
  return bio_text(out.get());
}

// The text of the first <tag>...</tag> in a document this PKI wrote (and a CA signed).
std::optional<std::string> element(std::string_view doc, std::string_view tag) {
  const std::string open = fmt::format("<{}>", tag);
  const std::string close = fmt::format("</{}>", tag);
  const std::size_t a = doc.find(open);
  if (a == std::string_view::npos) {
    return std::nullopt;
  }
  const std::size_t b = doc.find(close, a + open.size());
  if (b == std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(doc.substr(a + open.size(), b - a - open.size()));
}

std::string domains_xml(std::uint32_t min, std::uint32_t max, const char* indent) {
  return fmt::format(
      "{0}<domains>\n{0}  <id_range>\n{0}    <min>{1}</min>\n{0}    <max>{2}</max>\n{0}  </id_range>\n"
      "{0}</domains>\n",
      indent, min, max);
}

std::string governance_document(std::uint32_t min, std::uint32_t max) {
  std::string doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<!-- cloudmgr governance, made by `cloudctl pki init`: every participant authenticated,\n"
      "     joining checked against its permissions, discovery, liveliness, RTPS messages and every\n"
      "     topic's data encrypted (AES-GCM). Signed by the permissions CA: do not edit. -->\n"
      "<dds xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
      "     "
      "xsi:noNamespaceSchemaLocation=\"http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_governance.xsd\">\n"
      "  <domain_access_rules>\n"
      "    <domain_rule>\n";
  doc += domains_xml(min, max, "      ");
  doc +=
      "      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>\n"
      "      <enable_join_access_control>true</enable_join_access_control>\n"
      "      <discovery_protection_kind>ENCRYPT</discovery_protection_kind>\n"
      "      <liveliness_protection_kind>ENCRYPT</liveliness_protection_kind>\n"
      "      <rtps_protection_kind>ENCRYPT</rtps_protection_kind>\n"
      "      <topic_access_rules>\n"
      "        <topic_rule>\n"
      "          <topic_expression>*</topic_expression>\n"
      "          <enable_discovery_protection>true</enable_discovery_protection>\n"
      "          <enable_liveliness_protection>true</enable_liveliness_protection>\n"
      "          <enable_read_access_control>true</enable_read_access_control>\n"
      "          <enable_write_access_control>true</enable_write_access_control>\n"
      "          <metadata_protection_kind>ENCRYPT</metadata_protection_kind>\n"
      "          <data_protection_kind>ENCRYPT</data_protection_kind>\n"
      "        </topic_rule>\n"
      "      </topic_access_rules>\n"
      "    </domain_rule>\n"
      "  </domain_access_rules>\n"
      "</dds>\n";
  return doc;
}

std::string rule_xml(const char* kind, const std::vector<std::string_view>& topics,
                     const std::vector<std::string>& partitions) {
  std::string out = fmt::format("        <{}>\n          <topics>\n", kind);
  for (std::string_view t : topics) {
    out += fmt::format("            <topic>{}</topic>\n", t);
  }
  out += "          </topics>\n          <partitions>\n";
  for (const std::string& p : partitions) {
    out += fmt::format("            <partition>{}</partition>\n", p);
  }
  out += fmt::format("          </partitions>\n        </{}>\n", kind);
  return out;
}

}  // namespace

std::string permissions_document(Role role, std::string_view name, std::int64_t not_before_s, std::int64_t not_after_s,
                                 std::uint32_t domain_min, std::uint32_t domain_max) {
  const std::string own = std::string(bus::kHostPartitionPrefix) + std::string(name);
  std::string rules;
  if (role == Role::kManager) {
    rules += rule_xml("publish", {bus::kCommandTopic},
                      {bus::kAllPartition, bus::kAnyHostPartition, bus::kAnyGroupPartition});
    rules += rule_xml("publish", {bus::kChunkTopic}, {bus::kAnyHostPartition});
    rules += rule_xml("subscribe",
                      {bus::kHostTopic, bus::kVmTopic, bus::kMetricsTopic, bus::kImagesTopic, bus::kReplyTopic,
                       bus::kHistoryTopic, bus::kAuditTopic, bus::kChunkTopic},
                      {bus::kAnyHostPartition});
  } else {
    rules += rule_xml("publish",
                      {bus::kHostTopic, bus::kVmTopic, bus::kMetricsTopic, bus::kImagesTopic, bus::kReplyTopic,
                       bus::kHistoryTopic, bus::kAuditTopic, bus::kChunkTopic},
                      {own});
    rules += rule_xml("subscribe", {bus::kCommandTopic}, {bus::kAllPartition, own, bus::kAnyGroupPartition});
    rules += rule_xml("subscribe", {bus::kChunkTopic}, {own});
  }
  std::string doc = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<!-- cloudmgr permissions of {role} '{name}', made by `cloudctl pki issue`. Signed by the\n"
      "     permissions CA: do not edit. -->\n"
      "<dds xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
      "     "
      "xsi:noNamespaceSchemaLocation=\"http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_permissions.xsd\">\n"
      "  <permissions>\n"
      "    <grant name=\"{dir}\">\n"
      "      <subject_name>{subject}</subject_name>\n"
      "      <validity>\n"
      "        <not_before>{from}</not_before>\n"
      "        <not_after>{until}</not_after>\n"
      "      </validity>\n"
      "      <allow_rule>\n",
      fmt::arg("role", to_string(role)), fmt::arg("name", name), fmt::arg("dir", identity_dir_name(role, name)),
      fmt::arg("subject", subject_for(role, name)), fmt::arg("from", iso_utc(not_before_s)),
      fmt::arg("until", iso_utc(not_after_s)));
  doc += domains_xml(domain_min, domain_max, "        ");
  doc += rules;
  doc +=
      "      </allow_rule>\n"
      "      <default>DENY</default>\n"
      "    </grant>\n"
      "  </permissions>\n"
      "</dds>\n";
  return doc;
}

Result<std::string> sign_document(std::string_view document, const std::string& signer_cert_path,
                                  const std::string& signer_key_path) {
  CLOUDMGR_ASSIGN_OR_RETURN(X509Ptr cert, load_cert(signer_cert_path));
  CLOUDMGR_ASSIGN_OR_RETURN(KeyPtr key, load_key(signer_key_path));
  return sign(document, cert.get(), key.get());
}

Result<std::array<std::uint8_t, 6>> participant_key_prefix(Role role, std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_identity_name(name));
  CLOUDMGR_ASSIGN_OR_RETURN(NamePtr subject, make_name(name, role));
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (X509_NAME_digest(subject.get(), EVP_sha256(), md.data(), &len) != 1 || len < 6) {
    return crypto::openssl_error("PKI: hashing a subject");
  }
  // PKI-DH: a 1 bit, then the first 47 bits of the hash.
  std::array<std::uint8_t, 6> out{};
  out[0] = static_cast<std::uint8_t>(0x80U | (md[0] >> 1U));
  for (std::size_t i = 1; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(((static_cast<unsigned>(md[i - 1]) << 7U) | (md[i] >> 1U)) & 0xFFU);
  }
  return out;
}

Result<Subject> subject_of_participant(std::string_view claimed, const std::array<std::uint8_t, 6>& prefix) {
  // "/O=cloudmgr/OU=<role>/CN=<name>": OpenSSL's one-line form, fields in certificate order.
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  std::string_view rest = claimed;
  while (!rest.empty()) {
    if (rest.front() != '/') {
      return invalid_argument_error(fmt::format("participant subject '{}' is not in one-line form", claimed));
    }
    rest.remove_prefix(1);
    const std::size_t end = std::min(rest.find('/'), rest.size());
    const std::string_view field = rest.substr(0, end);
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) {
      return invalid_argument_error(fmt::format("participant subject '{}' is not in one-line form", claimed));
    }
    fields.emplace_back(field.substr(0, eq), field.substr(eq + 1));
    rest.remove_prefix(end);
  }
  if (fields.size() != 3 || fields[0].first != "O" || fields[0].second != kOrganization || fields[1].first != "OU" ||
      fields[2].first != "CN") {
    return invalid_argument_error(fmt::format("participant subject '{}' is not a cloudmgr identity", claimed));
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const Role role, parse_role(fields[1].second));
  Subject out{role, std::string(fields[2].second)};
  CLOUDMGR_ASSIGN_OR_RETURN(const auto expected, participant_key_prefix(out.role, out.name));
  if (expected != prefix) {
    return permission_denied_error(
        fmt::format("participant claims '{}' but its GUID was not derived from that subject", claimed));
  }
  return out;
}

std::string_view to_string(Role role) noexcept { return role == Role::kManager ? "manager" : "agent"; }

Result<Role> parse_role(std::string_view text) {
  if (text == "manager") {
    return Role::kManager;
  }
  if (text == "agent") {
    return Role::kAgent;
  }
  return invalid_argument_error(fmt::format("unknown role '{}' (expected manager or agent)", text));
}

std::string subject_for(Role role, std::string_view name) {
  return fmt::format("CN={}, OU={}, O={}", name, to_string(role), kOrganization);
}

Result<Subject> parse_subject(std::string_view subject) {
  const auto bad = [&] {
    return invalid_argument_error(
        fmt::format("'{}' is not a cloudmgr identity (CN=<name>, OU=<role>, O={})", subject, kOrganization));
  };
  if (!subject.starts_with("CN=")) {
    return bad();
  }
  const std::size_t ou = subject.find(", OU=");
  if (ou == std::string_view::npos) {
    return bad();
  }
  const std::size_t org = subject.find(", O=", ou + 5);
  if (org == std::string_view::npos || subject.substr(org + 4) != kOrganization) {
    return bad();
  }
  Subject out;
  out.name = std::string(subject.substr(3, ou - 3));
  Result<Role> role = parse_role(subject.substr(ou + 5, org - ou - 5));
  if (!role.ok() || !validate_identity_name(out.name).ok()) {
    return bad();
  }
  out.role = *role;
  return out;
}

Status validate_identity_name(std::string_view name) {
  if (name.empty() || name.size() > 64) {
    return invalid_argument_error(fmt::format("identity name '{}': must be 1-64 characters", name));
  }
  for (const char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return invalid_argument_error(
          fmt::format("identity name '{}': only letters, digits, '.', '_' and '-' are allowed", name));
    }
  }
  return {};
}

// --------------------------------------------------------------------------------------------
// init

namespace {

struct CaFiles {
  X509Ptr identity_ca;
  X509Ptr permissions_ca;
};

// The two CA certificates, each checked.
Result<CaFiles> load_cas(const Paths& p) {
  CaFiles out;
  CLOUDMGR_ASSIGN_OR_RETURN(out.identity_ca, load_cert(p.identity_ca()));
  CLOUDMGR_RETURN_IF_ERROR(check_ca(out.identity_ca.get(), p.identity_ca()));
  CLOUDMGR_ASSIGN_OR_RETURN(out.permissions_ca, load_cert(p.permissions_ca()));
  CLOUDMGR_RETURN_IF_ERROR(check_ca(out.permissions_ca.get(), p.permissions_ca()));
  if (X509_cmp(out.identity_ca.get(), out.permissions_ca.get()) == 0) {
    return failed_precondition_error(fmt::format(
        "'{}' and '{}' are the same certificate: the permissions CA must be a CA of its own (CVE-2023-24010)",
        p.identity_ca(), p.permissions_ca()));
  }
  return out;
}

struct CaKeys {
  KeyPtr identity_ca;
  KeyPtr permissions_ca;
};

Result<CaKeys> load_ca_keys(const Paths& p, const CaFiles& cas) {
  if (!exists(p.identity_ca_key()) || !exists(p.permissions_ca_key())) {
    return not_found_error(
        fmt::format("the CA keys are not in '{}' (expected identity_ca.key and permissions_ca.key; "
                    "give the CA directory with --ca-dir)",
                    p.ca_dir));
  }
  CaKeys out;
  CLOUDMGR_ASSIGN_OR_RETURN(out.identity_ca, load_key(p.identity_ca_key()));
  CLOUDMGR_RETURN_IF_ERROR(
      check_key_matches(out.identity_ca.get(), cas.identity_ca.get(), p.identity_ca_key(), p.identity_ca()));
  CLOUDMGR_ASSIGN_OR_RETURN(out.permissions_ca, load_key(p.permissions_ca_key()));
  CLOUDMGR_RETURN_IF_ERROR(check_key_matches(out.permissions_ca.get(), cas.permissions_ca.get(), p.permissions_ca_key(),
                                             p.permissions_ca()));
  return out;
}

Status check_governance(const Paths& p, const CaFiles& cas) {
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string doc,
                            verify_signed(p.governance(), cas.permissions_ca.get(), p.permissions_ca()));
  if (doc.find("<domain_access_rules>") == std::string::npos) {
    return failed_precondition_error(fmt::format("'{}': not a governance document", p.governance()));
  }
  return {};
}

Result<InitResult> check_existing(const Paths& p) {
  CLOUDMGR_ASSIGN_OR_RETURN(const CaFiles cas, load_cas(p));
  CLOUDMGR_RETURN_IF_ERROR(check_governance(p, cas));
  if (exists(p.identity_ca_key()) || exists(p.permissions_ca_key())) {
    CLOUDMGR_RETURN_IF_ERROR(load_ca_keys(p, cas).status());
  }
  return InitResult{};
}

}  // namespace

Result<InitResult> init(const InitOptions& options) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Paths p, paths_for(options.dir, options.ca_dir));
  if (options.ca_validity_days == 0 || options.ca_validity_days > 36500) {
    return invalid_argument_error(
        fmt::format("PKI: ca_validity_days must be 1-36500 (got {})", options.ca_validity_days));
  }
  if (options.domain_min > options.domain_max || options.domain_max > 232) {
    return invalid_argument_error(
        fmt::format("PKI: bad domain range {}-{} (0-232, min <= max)", options.domain_min, options.domain_max));
  }
  const std::vector<std::string> parts{p.identity_ca(), p.permissions_ca(), p.governance(), p.identity_ca_key(),
                                       p.permissions_ca_key()};
  std::vector<std::string> present;
  std::vector<std::string> missing;
  for (const std::string& f : parts) {
    (exists(f) ? present : missing).push_back(f);
  }
  // The keys may live elsewhere (apart from the cloud): then the public files are the PKI.
  const bool public_complete = exists(p.identity_ca()) && exists(p.permissions_ca()) && exists(p.governance());
  const bool no_keys = !exists(p.identity_ca_key()) && !exists(p.permissions_ca_key());
  if (public_complete && (missing.empty() || no_keys)) {
    return check_existing(p);
  }
  if (!present.empty()) {
    std::string what;
    for (const std::string& f : missing) {
      what += what.empty() ? "" : ", ";
      what += f;
    }
    return failed_precondition_error(fmt::format(
        "PKI in '{}' is incomplete: {} missing (nothing was overwritten; restore the files, or remove the PKI and "
        "start again)",
        p.dir, what));
  }

  CLOUDMGR_RETURN_IF_ERROR(make_dir(p.dir, 0755));
  CLOUDMGR_RETURN_IF_ERROR(make_dir(p.identities(), 0755));
  CLOUDMGR_RETURN_IF_ERROR(make_dir(p.ca_dir, 0700));

  const std::int64_t now = now_seconds();
  const std::int64_t until = now + static_cast<std::int64_t>(options.ca_validity_days) * kSecondsPerDay;
  InitResult out;
  out.created = true;
  const auto make_ca = [&](const char* cn, const std::string& key_path,
                           const std::string& cert_path) -> Result<X509Ptr> {
    CLOUDMGR_ASSIGN_OR_RETURN(KeyPtr key, new_key());
    CLOUDMGR_ASSIGN_OR_RETURN(NamePtr name, make_name(cn, std::nullopt));
    CLOUDMGR_ASSIGN_OR_RETURN(X509Ptr cert, make_cert({.subject = name.get(),
                                                       .key = key.get(),
                                                       .not_before = now - kBackdateSeconds,
                                                       .not_after = until,
                                                       .ca = true}));
    CLOUDMGR_ASSIGN_OR_RETURN(std::string pem, key_pem(key.get()));
    const Status written = write_file(key_path, pem, 0600, false);
    OPENSSL_cleanse(pem.data(), pem.size());
    CLOUDMGR_RETURN_IF_ERROR(written);
    out.files.push_back(key_path);
    CLOUDMGR_ASSIGN_OR_RETURN(const std::string cert_text, cert_pem(cert.get()));
    CLOUDMGR_RETURN_IF_ERROR(write_file(cert_path, cert_text, 0644, false));
    out.files.push_back(cert_path);
    return cert;
  };
  CLOUDMGR_RETURN_IF_ERROR(make_ca(kIdentityCaName, p.identity_ca_key(), p.identity_ca()).status());
  CLOUDMGR_ASSIGN_OR_RETURN(X509Ptr permissions_ca,
                            make_ca(kPermissionsCaName, p.permissions_ca_key(), p.permissions_ca()));
  CLOUDMGR_ASSIGN_OR_RETURN(KeyPtr permissions_key, load_key(p.permissions_ca_key()));
  const std::string governance = governance_document(options.domain_min, options.domain_max);
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string signed_governance,
                            sign(governance, permissions_ca.get(), permissions_key.get()));
  CLOUDMGR_RETURN_IF_ERROR(write_file(p.governance_xml(), governance, 0644, false));
  out.files.push_back(p.governance_xml());
  CLOUDMGR_RETURN_IF_ERROR(write_file(p.governance(), signed_governance, 0644, false));
  out.files.push_back(p.governance());
  return out;
}

// --------------------------------------------------------------------------------------------
// Identities

namespace {

struct IdentityPaths {
  std::string dir;
  std::string cert() const { return dir + "/cert.pem"; }
  std::string key() const { return dir + "/key.pem"; }
  std::string permissions_xml() const { return dir + "/permissions.xml"; }
  std::string permissions() const { return dir + "/permissions.p7s"; }
};

IdentityPaths identity_paths(const Paths& p, Role role, std::string_view name) {
  return {p.identities() + "/" + identity_dir_name(role, name)};
}

// Reads an identity back and checks all of it against the CAs; `info.problem` says what
// is wrong (empty when sound), the Status only fails for a missing PKI.
IdentityInfo inspect(const Paths& p, const CaFiles& cas, Role role, const std::string& name, Status* status = nullptr,
                     bool* outdated = nullptr) {
  IdentityInfo info;
  info.role = role;
  info.name = name;
  info.subject = subject_for(role, name);
  const IdentityPaths ip = identity_paths(p, role, name);
  info.dir = ip.dir;
  const auto fail = [&](const Status& s) {
    info.problem = std::string(s.message());
    if (status != nullptr) {
      *status = s;
    }
    return info;
  };
  Result<X509Ptr> cert = load_cert(ip.cert());
  if (!cert.ok()) {
    return fail(cert.status());
  }
  info.cert_not_before_ns = asn1_seconds(X509_get0_notBefore(cert->get())).value_or(0) * kNsPerSecond;
  info.cert_not_after_ns = asn1_seconds(X509_get0_notAfter(cert->get())).value_or(0) * kNsPerSecond;
  if (const std::string subject = subject_text(X509_get_subject_name(cert->get())); subject != info.subject) {
    return fail(failed_precondition_error(
        fmt::format("'{}': the certificate is for '{}', not '{}'", ip.cert(), subject, info.subject)));
  }
  if (Status s = verify_cert(cert->get(), cas.identity_ca.get(), ip.cert(), p.identity_ca()); !s.ok()) {
    return fail(s);
  }
  Result<KeyPtr> key = load_key(ip.key());
  if (!key.ok()) {
    return fail(key.status());
  }
  if (Status s = check_key_matches(key->get(), cert->get(), ip.key(), ip.cert()); !s.ok()) {
    return fail(s);
  }
  struct stat st {};
  if (::stat(ip.key().c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return fail(failed_precondition_error(fmt::format(
        "'{}': the private key is readable by others (mode {:o}; chmod 600 it)", ip.key(), st.st_mode & 0777)));
  }
  Result<std::string> doc = verify_signed(ip.permissions(), cas.permissions_ca.get(), p.permissions_ca());
  if (!doc.ok()) {
    return fail(doc.status());
  }
  const std::optional<std::string> subject = element(*doc, "subject_name");
  const std::optional<std::int64_t> from = parse_iso_utc(element(*doc, "not_before").value_or(""));
  const std::optional<std::int64_t> until = parse_iso_utc(element(*doc, "not_after").value_or(""));
  if (!subject || !from || !until) {
    return fail(failed_precondition_error(
        fmt::format("'{}': not a permissions document (no subject_name or validity)", ip.permissions())));
  }
  info.permissions_not_before_ns = *from * kNsPerSecond;
  info.permissions_not_after_ns = *until * kNsPerSecond;
  if (*subject != info.subject) {
    return fail(failed_precondition_error(
        fmt::format("'{}': the permissions are for '{}', not '{}'", ip.permissions(), *subject, info.subject)));
  }
  const std::int64_t now = now_seconds();
  if (now >= *until) {
    return fail(failed_precondition_error(
        fmt::format("'{}': the permissions expired on {}", ip.permissions(), date_text(*until))));
  }
  if (now < *from) {
    return fail(failed_precondition_error(
        fmt::format("'{}': the permissions are not valid before {}", ip.permissions(), date_text(*from))));
  }
  // Signed rules this version would not write (an older cloudmgr's, without a topic added
  // since): Fast DDS would refuse that topic's endpoints with a line nobody connects to this.
  std::string signed_text = *doc;
  std::erase(signed_text, '\r');
  if (signed_text != permissions_document(role, name, *from, *until)) {
    if (outdated != nullptr) {
      *outdated = true;
    }
    return fail(failed_precondition_error(fmt::format(
        "'{}': the permissions were made by another cloudmgr version (their rules differ from this one's); update "
        "them with `cloudctl pki issue {} {}`",
        ip.permissions(), to_string(role), name)));
  }
  return info;
}

Status check_issue_options(const IssueOptions& o) {
  CLOUDMGR_RETURN_IF_ERROR(validate_identity_name(o.name));
  if (o.role != Role::kManager && o.role != Role::kAgent) {
    return invalid_argument_error("PKI: unknown role");
  }
  if ((o.not_before_ns == 0) != (o.not_after_ns == 0)) {
    return invalid_argument_error("PKI: give both ends of the validity window, or neither");
  }
  if (o.not_before_ns != 0 && o.not_before_ns >= o.not_after_ns) {
    return invalid_argument_error("PKI: the validity window must end after it begins");
  }
  if (o.not_before_ns == 0 && (o.validity_days == 0 || o.validity_days > 36500)) {
    return invalid_argument_error(fmt::format("PKI: validity_days must be 1-36500 (got {})", o.validity_days));
  }
  return {};
}

}  // namespace

Result<IssueResult> issue(const IssueOptions& options) {
  CLOUDMGR_RETURN_IF_ERROR(check_issue_options(options));
  CLOUDMGR_ASSIGN_OR_RETURN(const Paths p, paths_for(options.dir, options.ca_dir));
  if (!exists(p.identity_ca()) || !exists(p.permissions_ca())) {
    return not_found_error(fmt::format("no PKI in '{}' (run `cloudctl pki init {}` first)", p.dir, p.dir));
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const CaFiles cas, load_cas(p));
  const IdentityPaths ip = identity_paths(p, options.role, options.name);

  IssueResult out;
  const bool had_key = exists(ip.key());
  if (had_key && !options.renew) {
    bool outdated = false;
    IdentityInfo info = inspect(p, cas, options.role, options.name, nullptr, &outdated);
    if (outdated) {
      // Only the rules are old: re-signed for the same window; key and certificate stay.
      CLOUDMGR_ASSIGN_OR_RETURN(const CaKeys keys, load_ca_keys(p, cas));
      const std::string document =
          permissions_document(options.role, options.name, info.permissions_not_before_ns / kNsPerSecond,
                               info.permissions_not_after_ns / kNsPerSecond);
      CLOUDMGR_ASSIGN_OR_RETURN(const std::string signed_document,
                                sign(document, cas.permissions_ca.get(), keys.permissions_ca.get()));
      CLOUDMGR_RETURN_IF_ERROR(write_file(ip.permissions_xml(), document, 0644, true));
      CLOUDMGR_RETURN_IF_ERROR(write_file(ip.permissions(), signed_document, 0644, true));
      out.files = {ip.permissions_xml(), ip.permissions()};
      info = inspect(p, cas, options.role, options.name);
    }
    if (!info.problem.empty()) {
      return failed_precondition_error(
          fmt::format("identity {} exists and is not sound: {} (renew it to re-sign it for its key, or remove '{}')",
                      identity_dir_name(options.role, options.name), info.problem, ip.dir));
    }
    out.identity = std::move(info);
    return out;
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const CaKeys keys, load_ca_keys(p, cas));

  std::int64_t from = now_seconds() - kBackdateSeconds;
  std::int64_t until = from + kBackdateSeconds + static_cast<std::int64_t>(options.validity_days) * kSecondsPerDay;
  if (options.not_before_ns != 0) {
    from = options.not_before_ns / kNsPerSecond;
    until = options.not_after_ns / kNsPerSecond;
  }
  CLOUDMGR_RETURN_IF_ERROR(make_dir(p.identities(), 0755));
  CLOUDMGR_RETURN_IF_ERROR(make_dir(ip.dir, 0755));

  KeyPtr key;
  if (had_key) {
    CLOUDMGR_ASSIGN_OR_RETURN(key, load_key(ip.key()));
  } else {
    CLOUDMGR_ASSIGN_OR_RETURN(key, new_key());
    CLOUDMGR_ASSIGN_OR_RETURN(std::string pem, key_pem(key.get()));
    const Status written = write_file(ip.key(), pem, 0600, false);
    OPENSSL_cleanse(pem.data(), pem.size());
    CLOUDMGR_RETURN_IF_ERROR(written);
    out.files.push_back(ip.key());
    out.created = true;
  }
  CLOUDMGR_ASSIGN_OR_RETURN(NamePtr name, make_name(options.name, options.role));
  CLOUDMGR_ASSIGN_OR_RETURN(X509Ptr cert, make_cert({.subject = name.get(),
                                                     .key = key.get(),
                                                     .issuer = cas.identity_ca.get(),
                                                     .issuer_key = keys.identity_ca.get(),
                                                     .not_before = from,
                                                     .not_after = until,
                                                     .ca = false}));
  // Fast DDS 2.9.1 reads the permissions' dates in the local time zone of each node: a document
  // valid from now would not be valid yet for up to 14 hours west of UTC. Its window opens 14 hours
  // earlier than the certificate's (the certificate still bounds the identity), unless the caller
  // gave the window.
  const std::int64_t document_from = options.not_before_ns != 0 ? from : from - kZoneSlackSeconds;
  const std::string document = permissions_document(options.role, options.name, document_from, until);
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string signed_document,
                            sign(document, cas.permissions_ca.get(), keys.permissions_ca.get()));
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string cert_text, cert_pem(cert.get()));
  // The permissions first: a crash in between leaves a new document for an old certificate
  // of the same subject, which inspect() reports and a renew repairs.
  CLOUDMGR_RETURN_IF_ERROR(write_file(ip.permissions_xml(), document, 0644, true));
  CLOUDMGR_RETURN_IF_ERROR(write_file(ip.permissions(), signed_document, 0644, true));
  CLOUDMGR_RETURN_IF_ERROR(write_file(ip.cert(), cert_text, 0644, true));
  out.files.push_back(ip.cert());
  out.files.push_back(ip.permissions_xml());
  out.files.push_back(ip.permissions());
  out.identity = inspect(p, cas, options.role, options.name);
  return out;
}

Result<std::vector<IdentityInfo>> list(const std::string& dir) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Paths p, paths_for(dir, ""));
  if (!exists(p.identity_ca()) || !exists(p.permissions_ca())) {
    return not_found_error(fmt::format("no PKI in '{}' (run `cloudctl pki init {}` first)", p.dir, p.dir));
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const CaFiles cas, load_cas(p));
  std::vector<IdentityInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(p.identities(), ec)) {
    const std::string leaf = entry.path().filename().string();
    const std::size_t dot = leaf.find('.');
    if (!entry.is_directory() || dot == std::string::npos) {
      continue;
    }
    Result<Role> role = parse_role(leaf.substr(0, dot));
    const std::string name = leaf.substr(dot + 1);
    if (!role.ok() || !validate_identity_name(name).ok()) {
      continue;
    }
    out.push_back(inspect(p, cas, *role, name));
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return errno_error(ec.value(), fmt::format("listing '{}'", p.identities()));
  }
  std::sort(out.begin(), out.end(), [](const IdentityInfo& a, const IdentityInfo& b) {
    return std::pair(a.role, a.name) < std::pair(b.role, b.name);
  });
  return out;
}

Result<Credentials> load_credentials(const std::string& dir, Role role, std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_identity_name(name));
  CLOUDMGR_ASSIGN_OR_RETURN(const Paths p, paths_for(dir, ""));
  if (!exists(p.dir)) {
    return not_found_error(fmt::format("PKI directory '{}' does not exist", p.dir));
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const CaFiles cas, load_cas(p));
  CLOUDMGR_RETURN_IF_ERROR(check_governance(p, cas));
  const IdentityPaths ip = identity_paths(p, role, std::string(name));
  if (!exists(ip.dir)) {
    return not_found_error(fmt::format("no identity {} in '{}' (run `cloudctl pki issue {} {}`)",
                                       identity_dir_name(role, name), p.dir, to_string(role), name));
  }
  Status problem;
  const IdentityInfo info = inspect(p, cas, role, std::string(name), &problem);
  CLOUDMGR_RETURN_IF_ERROR(problem);
  Credentials out;
  out.identity_ca = p.identity_ca();
  out.identity_certificate = ip.cert();
  out.private_key = ip.key();
  out.permissions_ca = p.permissions_ca();
  out.governance = p.governance();
  out.permissions = ip.permissions();
  out.subject = info.subject;
  out.not_after_ns = std::min(info.cert_not_after_ns, info.permissions_not_after_ns);
  return out;
}

}  // namespace cloudmgr::pki
