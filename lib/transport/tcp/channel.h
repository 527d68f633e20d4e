// The client-server transport's byte pipe: one TCP connection, optionally TLS (mutual
// authentication with the cloud's PKI), carrying length-prefixed frames. Internal to
// lib/transport/tcp; no OpenSSL type appears here.
//
// A Channel is driven by one thread at a time (its Session's). Sockets are non-blocking; TLS
// runs over memory BIOs so that every byte reaches the socket through send(MSG_NOSIGNAL): a
// peer that went away never raises SIGPIPE in the embedding process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/pki.h"
#include "cloudmgr/status.h"

namespace cloudmgr::tcp {

using Clock = std::chrono::steady_clock;

// An IPv4 address and port: "127.0.0.1:7001".
struct Endpoint {
  std::string address;
  std::uint16_t port = 0;

  std::string text() const;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  friend auto operator<=>(const Endpoint&, const Endpoint&) =
      default;  // NOLINT(modernize-use-nullptr): clang-tidy 14 on a defaulted <=>
};
// kInvalidArgument naming the text unless it is "<IPv4 address>:<port>" (port 0 allowed
// only when `allow_any_port`).
Result<Endpoint> parse_endpoint(std::string_view text, bool allow_any_port = false);

// Frames on the wire: a 4-byte big-endian length (of what follows), a 1-byte type, the
// payload (the CDR encoding of the idl/ type the frame names, or as noted).
enum class FrameType : std::uint8_t {
  kHello = 1,        // manager -> agent, first: u8 mode (0 subscribe, 1 request) + the manager's name
  kHost = 2,         // agent -> manager: wire::HostStatus
  kVm = 3,           // wire::VmStatus
  kVmGone = 4,       // wire::VmStatus (key fields): the VM was undefined
  kSample = 5,       // wire::HostMetrics
  kImages = 6,       // wire::HostImages
  kSnapshotEnd = 7,  // the state above is complete: u64 (LE) state version
  kBye = 8,          // the agent leaves cleanly
  kHeartbeat = 9,    // either way, empty
  kCommand = 10,     // manager -> agent: wire::Command
  kReply = 11,       // agent -> manager: wire::CommandReply
  kHistoryReply = 12,
  kAuditReply = 13,
  kChunk = 14,        // either way: wire::ImageChunk
  kPoll = 15,         // manager -> agent (request mode): u64 (LE) state version the manager has
  kNotModified = 16,  // agent -> manager: the state is still at that version
  kChunkAck = 17,     // agent -> manager (request mode): the chunk was taken
};
const char* to_string(FrameType type) noexcept;
// Larger frames end the connection (a history reply of a month of rollups is ~10 MiB).
inline constexpr std::uint32_t kMaxFrameBytes = 64U << 20U;
inline constexpr std::size_t kFrameHeaderBytes = 5;

struct Frame {
  FrameType type = FrameType::kHeartbeat;
  std::vector<std::uint8_t> payload;
};

// One identity's TLS credentials (TLS 1.3, peer certificate required and verified against the
// identity CA). Shared by every connection of one transport; thread-safe once made.
class TlsContext {
 public:
  // Reads the identity's files through pki::load_credentials (each checked, errors naming the
  // file). `server`: the side that accepts (agents).
  static Result<std::shared_ptr<TlsContext>> open(const std::string& pki_dir, pki::Role role, const std::string& name,
                                                  bool server);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool server() const { return server_; }
  void* native() const { return ctx_; }  // SSL_CTX*

 private:
  TlsContext(void* ctx, bool server) : ctx_(ctx), server_(server) {}
  void* ctx_;
  bool server_;
};

// One connection. Not thread-safe: one thread drives it.
class Channel {
 public:
  // Connects to `to` (non-blocking, bounded by `deadline`). TLS: the handshake follows in
  // handshake(). kUnavailable when refused or unreachable, kDeadlineExceeded past the deadline.
  static Result<std::unique_ptr<Channel>> connect(const Endpoint& to, const std::shared_ptr<TlsContext>& tls,
                                                  Clock::time_point deadline);
  // Takes an accepted socket.
  static Result<std::unique_ptr<Channel>> adopt(int fd, const std::shared_ptr<TlsContext>& tls);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_; }
  bool secured() const { return ssl_ != nullptr; }
  const std::string& peer_text() const { return peer_text_; }  // "127.0.0.1:40322"

  // One step of the TLS handshake (plain: true at once). true when done; the peer's certificate
  // is then verified and peer() is its subject. kUnauthenticated-like failures are
  // kPermissionDenied naming the peer.
  Result<bool> handshake();
  // The authenticated peer (TLS, after the handshake).
  const std::optional<pki::Subject>& peer() const { return peer_; }

  // Reads everything the socket has now into `plain` (decrypted); `eof` when the peer closed.
  Status receive(std::vector<std::uint8_t>& plain, bool& eof);
  // Queues bytes for sending (encrypting them), then sends what the socket takes now.
  Status send(std::span<const std::uint8_t> bytes);
  // Sends queued bytes the socket takes now.
  Status flush();
  // Bytes queued that the socket has not taken yet.
  std::size_t pending() const { return out_.size() - out_sent_; }

 private:
  Channel(int fd, std::string peer_text) : fd_(fd), peer_text_(std::move(peer_text)) {}
  Status start_tls(const std::shared_ptr<TlsContext>& tls);
  Status drain_tls_output();

  int fd_ = -1;
  std::string peer_text_;
  std::shared_ptr<TlsContext> tls_;
  void* ssl_ = nullptr;      // SSL*
  void* net_in_ = nullptr;   // BIO*: bytes from the socket for OpenSSL
  void* net_out_ = nullptr;  // BIO*: bytes OpenSSL wants sent
  bool handshake_done_ = false;
  std::optional<pki::Subject> peer_;
  std::vector<std::uint8_t> out_;  // bytes for the socket
  std::size_t out_sent_ = 0;
};

// Appends a frame (header + payload) to `out`.
void append_frame(std::vector<std::uint8_t>& out, FrameType type, std::span<const std::uint8_t> payload);
// Takes the complete frames at the front of `in` (from `offset`, which it advances).
// kInvalidArgument for a frame over kMaxFrameBytes or of an unknown type.
Status take_frames(const std::vector<std::uint8_t>& in, std::size_t& offset, std::vector<Frame>& frames);

}  // namespace cloudmgr::tcp
