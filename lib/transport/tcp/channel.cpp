#include "transport/tcp/channel.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "core/errno_status.h"
#include "core/errno_text.h"
#include "core/status_macros.h"
#include "crypto/openssl_error.h"

namespace cloudmgr::tcp {
namespace {

SSL* ssl_of(void* p) { return static_cast<SSL*>(p); }
BIO* bio_of(void* p) { return static_cast<BIO*>(p); }

std::string text_of(const sockaddr_in& a) {
  std::array<char, INET_ADDRSTRLEN> buf{};
  inet_ntop(AF_INET, &a.sin_addr, buf.data(), buf.size());
  return fmt::format("{}:{}", buf.data(), ntohs(a.sin_port));
}

Status set_socket_options(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return errno_error(errno, "making a socket non-blocking");
  }
  // Commands and replies are small: send each at once (Nagle would hold it for the ACK of the last).
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    return errno_error(errno, "setting TCP_NODELAY");
  }
  return {};
}

// The text of one attribute of a certificate name ("" when absent).
std::string name_entry(X509_NAME* name, int nid) {
  const int index = X509_NAME_get_index_by_NID(name, nid, -1);
  if (index < 0) {
    return {};
  }
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) {
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

std::string Endpoint::text() const { return fmt::format("{}:{}", address, port); }

Result<Endpoint> parse_endpoint(std::string_view text, bool allow_any_port) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return invalid_argument_error(fmt::format("'{}' is not an address:port (e.g. 127.0.0.1:7001)", text));
  }
  Endpoint e;
  e.address = std::string(text.substr(0, colon));
  in_addr addr{};
  if (inet_pton(AF_INET, e.address.c_str(), &addr) != 1) {
    return invalid_argument_error(fmt::format("'{}': '{}' is not an IPv4 address", text, e.address));
  }
  const std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value > 65535 || (value == 0 && !allow_any_port)) {
    return invalid_argument_error(fmt::format("'{}': '{}' is not a port (1-65535)", text, port));
  }
  e.port = static_cast<std::uint16_t>(value);
  return e;
}

const char* to_string(FrameType type) noexcept {
  switch (type) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kHost:
      return "host";
    case FrameType::kVm:
      return "vm";
    case FrameType::kVmGone:
      return "vm-gone";
    case FrameType::kSample:
      return "sample";
    case FrameType::kImages:
      return "images";
    case FrameType::kSnapshotEnd:
      return "snapshot-end";
    case FrameType::kBye:
      return "bye";
    case FrameType::kHeartbeat:
      return "heartbeat";
    case FrameType::kCommand:
      return "command";
    case FrameType::kReply:
      return "reply";
    case FrameType::kHistoryReply:
      return "history-reply";
    case FrameType::kAuditReply:
      return "audit-reply";
    case FrameType::kChunk:
      return "chunk";
    case FrameType::kPoll:
      return "poll";
    case FrameType::kNotModified:
      return "not-modified";
    case FrameType::kChunkAck:
      return "chunk-ack";
  }
  return "unknown";
}

void append_frame(std::vector<std::uint8_t>& out, FrameType type, std::span<const std::uint8_t> payload) {
  const auto length = static_cast<std::uint32_t>(payload.size() + 1);
  out.push_back(static_cast<std::uint8_t>(length >> 24U));
  out.push_back(static_cast<std::uint8_t>(length >> 16U));
  out.push_back(static_cast<std::uint8_t>(length >> 8U));
  out.push_back(static_cast<std::uint8_t>(length));
  out.push_back(static_cast<std::uint8_t>(type));
  out.insert(out.end(), payload.begin(), payload.end());
}

Status take_frames(const std::vector<std::uint8_t>& in, std::size_t& offset, std::vector<Frame>& frames) {
  while (in.size() - offset >= kFrameHeaderBytes) {
    const std::uint8_t* p = in.data() + offset;
    const std::uint32_t length =
        (std::uint32_t{p[0]} << 24U) | (std::uint32_t{p[1]} << 16U) | (std::uint32_t{p[2]} << 8U) | std::uint32_t{p[3]};
    if (length == 0 || length > kMaxFrameBytes) {
      return invalid_argument_error(fmt::format("a frame of {} bytes (at most {})", length, kMaxFrameBytes));
    }
    const std::uint8_t type = p[4];
    if (type < static_cast<std::uint8_t>(FrameType::kHello) || type > static_cast<std::uint8_t>(FrameType::kChunkAck)) {
      return invalid_argument_error(fmt::format("a frame of unknown type {}", type));
    }
    if (in.size() - offset - 4 < length) {
      return {};  // incomplete
    }
    Frame f;
    f.type = static_cast<FrameType>(type);
    f.payload.assign(p + kFrameHeaderBytes, p + 4 + length);
    frames.push_back(std::move(f));
    offset += 4 + length;
  }
  return {};
}

// ---- TlsContext ----

Result<std::shared_ptr<TlsContext>> TlsContext::open(const std::string& pki_dir, pki::Role role,
                                                     const std::string& name, bool server) {
  Result<pki::Credentials> creds = pki::load_credentials(pki_dir, role, name);
  if (!creds.ok()) {
    return creds.status();
  }
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) {
    return crypto::openssl_error("creating a TLS context");
  }
  auto fail = [&](const std::string& what) {
    Status s = crypto::openssl_error(what);
    SSL_CTX_free(ctx);
    return s;
  };
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return fail("requiring TLS 1.3");
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, creds->identity_certificate.c_str()) != 1) {
    return fail(fmt::format("TLS: loading the certificate {}", creds->identity_certificate));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, creds->private_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return fail(fmt::format("TLS: loading the private key {}", creds->private_key));
  }
  if (SSL_CTX_load_verify_locations(ctx, creds->identity_ca.c_str(), nullptr) != 1) {
    return fail(fmt::format("TLS: loading the identity CA {}", creds->identity_ca));
  }
  // Mutual authentication: each side proves an identity the cloud's identity CA issued.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // Session tickets would be one more message per connection for resumption we never use.
  SSL_CTX_set_num_tickets(ctx, 0);
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, server));
}

TlsContext::~TlsContext() { SSL_CTX_free(static_cast<SSL_CTX*>(ctx_)); }

// ---- Channel ----

Result<std::unique_ptr<Channel>> Channel::connect(const Endpoint& to, const std::shared_ptr<TlsContext>& tls,
                                                  Clock::time_point deadline) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return errno_error(errno, "creating a TCP socket");
  }
  std::unique_ptr<Channel> ch(new Channel(fd, to.text()));
  CLOUDMGR_RETURN_IF_ERROR(set_socket_options(fd));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(to.port);
  inet_pton(AF_INET, to.address.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) {
      return unavailable_error(fmt::format("connecting to {}: {}", to.text(), errno_text(errno)));
    }
    pollfd p{fd, POLLOUT, 0};
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        return deadline_exceeded_error(fmt::format("connecting to {}: no answer in time", to.text()));
      }
      const int n = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left, 1000)));
      if (n > 0) {
        break;
      }
      if (n < 0 && errno != EINTR) {
        return errno_error(errno, "waiting for a connection");
      }
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      return unavailable_error(fmt::format("connecting to {}: {}", to.text(), errno_text(err)));
    }
  }
  if (tls) {
    CLOUDMGR_RETURN_IF_ERROR(ch->start_tls(tls));
  }
  return ch;
}

Result<std::unique_ptr<Channel>> Channel::adopt(int fd, const std::shared_ptr<TlsContext>& tls) {
  sockaddr_in peer{};
  socklen_t len = sizeof peer;
  getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
  std::unique_ptr<Channel> ch(new Channel(fd, text_of(peer)));
  CLOUDMGR_RETURN_IF_ERROR(set_socket_options(fd));
  if (tls) {
    CLOUDMGR_RETURN_IF_ERROR(ch->start_tls(tls));
  }
  return ch;
}

Channel::~Channel() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_of(ssl_));  // frees both BIOs
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status Channel::start_tls(const std::shared_ptr<TlsContext>& tls) {
  tls_ = tls;
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(tls->native()));
  if (ssl == nullptr) {
    return crypto::openssl_error("creating a TLS connection");
  }
  ssl_ = ssl;
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    return crypto::openssl_error("creating TLS buffers");
  }
  // An empty memory BIO reads as "retry later", not end of file.
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl, in, out);
  net_in_ = in;
  net_out_ = out;
  if (tls->server()) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }
  return {};
}

Status Channel::drain_tls_output() {
  BIO* out = bio_of(net_out_);
  std::array<std::uint8_t, 16384> buf{};
  for (;;) {
    const int n = BIO_read(out, buf.data(), static_cast<int>(buf.size()));
    if (n <= 0) {
      break;
    }
    out_.insert(out_.end(), buf.data(), buf.data() + n);
  }
  return flush();
}

Result<bool> Channel::handshake() {
  if (ssl_ == nullptr || handshake_done_) {
    return true;
  }
  SSL* ssl = ssl_of(ssl_);
  const int rc = SSL_do_handshake(ssl);
  CLOUDMGR_RETURN_IF_ERROR(drain_tls_output());
  if (rc != 1) {
    const int err = SSL_get_error(ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      crypto::clear_openssl_errors();
      return false;
    }
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      crypto::clear_openssl_errors();
      return permission_denied_error(fmt::format(
          "TLS with {}: the peer's certificate was refused: {}{}", peer_text_, X509_verify_cert_error_string(verify),
          verify == X509_V_ERR_INVALID_PURPOSE
              ? " (an identity issued before the tcp transport existed has no TLS server use: renew it with "
                "`cloudctl pki issue ROLE NAME --renew`)"
              : ""));
    }
    Status s = crypto::openssl_error(fmt::format("TLS handshake with {}", peer_text_));
    return permission_denied_error(s.message());
  }
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) {
    return permission_denied_error(fmt::format("TLS with {}: the peer showed no certificate", peer_text_));
  }
  X509_NAME* name = X509_get_subject_name(cert);
  const std::string subject =
      fmt::format("CN={}, OU={}, O={}", name_entry(name, NID_commonName), name_entry(name, NID_organizationalUnitName),
                  name_entry(name, NID_organizationName));
  X509_free(cert);
  Result<pki::Subject> who = pki::parse_subject(subject);
  if (!who.ok()) {
    return permission_denied_error(
        fmt::format("TLS with {}: certificate subject '{}' is not one of this cloud's", peer_text_, subject));
  }
  peer_ = std::move(*who);
  handshake_done_ = true;
  return true;
}

Status Channel::receive(std::vector<std::uint8_t>& plain, bool& eof) {
  std::array<std::uint8_t, 65536> buf{};
  for (;;) {
    const ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n == 0) {
      eof = true;
      break;
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      if (errno == ECONNRESET) {
        eof = true;
        break;
      }
      return errno_error(errno, fmt::format("reading from {}", peer_text_));
    }
    if (ssl_ == nullptr) {
      plain.insert(plain.end(), buf.data(), buf.data() + n);
    } else if (BIO_write(bio_of(net_in_), buf.data(), static_cast<int>(n)) != n) {
      return crypto::openssl_error("buffering TLS input");
    }
    if (static_cast<std::size_t>(n) < buf.size()) {
      break;
    }
  }
  if (ssl_ == nullptr || !handshake_done_) {
    return {};
  }
  SSL* ssl = ssl_of(ssl_);
  for (;;) {
    const int n = SSL_read(ssl, buf.data(), static_cast<int>(buf.size()));
    if (n > 0) {
      plain.insert(plain.end(), buf.data(), buf.data() + n);
      continue;
    }
    const int err = SSL_get_error(ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      break;
    }
    if (err == SSL_ERROR_ZERO_RETURN) {
      eof = true;
      break;
    }
    return crypto::openssl_error(fmt::format("TLS read from {}", peer_text_));
  }
  crypto::clear_openssl_errors();
  // Reading may have produced protocol messages (key updates) for the peer.
  return drain_tls_output();
}

Status Channel::send(std::span<const std::uint8_t> bytes) {
  if (ssl_ == nullptr) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
    return flush();
  }
  SSL* ssl = ssl_of(ssl_);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const int chunk = static_cast<int>(std::min<std::size_t>(bytes.size() - done, 1U << 20U));
    const int n = SSL_write(ssl, bytes.data() + done, chunk);
    if (n <= 0) {
      return crypto::openssl_error(fmt::format("TLS write to {}", peer_text_));
    }
    done += static_cast<std::size_t>(n);
  }
  return drain_tls_output();
}

Status Channel::flush() {
  while (out_sent_ < out_.size()) {
    const ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      return unavailable_error(fmt::format("writing to {}: {}", peer_text_, errno_text(errno)));
    }
    out_sent_ += static_cast<std::size_t>(n);
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  } else if (out_sent_ > (1U << 20U)) {
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_sent_));
    out_sent_ = 0;
  }
  return {};
}

}  // namespace cloudmgr::tcp
