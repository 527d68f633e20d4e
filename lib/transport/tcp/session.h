// One live connection of the client-server transport, run by one thread (run()), fed by any
// thread (post*). Internal to lib/transport/tcp.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "transport/tcp/channel.h"

namespace cloudmgr::tcp {

class Session {
 public:
  struct Options {
    std::chrono::milliseconds tick{500};                    // how often on_tick runs (heartbeats)
    std::chrono::milliseconds silence{0};                   // end when nothing arrived for this long; 0: never
    Clock::time_point deadline = Clock::time_point::max();  // end at this time at the latest
    std::chrono::milliseconds handshake{5000};              // TLS handshake budget
  };
  struct Handler {
    // After the handshake (peer() is set); an error ends the session.
    std::function<Status(Session&)> on_open;
    std::function<void(Session&, Frame&)> on_frame;
    std::function<void(Session&)> on_tick;
  };

  Session(std::unique_ptr<Channel> channel, Options options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Runs the connection on the calling thread until it ends: the peer closed (kUnavailable),
  // silence or deadline (kDeadlineExceeded), stop(), finish() once all is sent (OK), or an
  // error. Once only.
  Status run(const Handler& handler);

  // Thread-safe. Queues a frame; false once the session ended. A peer that does not read
  // (more than kQueueLimit queued) ends the session: it reconnects and gets a fresh state.
  bool post(FrameType type, std::span<const std::uint8_t> payload = {});
  // Queues a frame once fewer than kWindow bytes wait to be sent (flow control), at most until
  // `deadline`: kDeadlineExceeded then, kUnavailable once the session ended.
  Status post_waiting(FrameType type, std::span<const std::uint8_t> payload, Clock::time_point deadline);
  // Ends the session once everything queued is sent.
  void finish();
  // Ends the session now (what is queued is dropped).
  void stop();
  bool ended() const;
  // Waits until everything queued has been handed to the kernel, or the session ended.
  bool wait_sent(Clock::time_point deadline);

  // Set before on_open runs; constant afterwards.
  const std::optional<pki::Subject>& peer() const { return peer_; }
  const std::string& peer_text() const { return peer_text_; }

  static constexpr std::size_t kWindow = 2U << 20U;
  static constexpr std::size_t kQueueLimit = 256U << 20U;

 private:
  void wake() const;
  bool stop_requested() const;

  std::unique_ptr<Channel> channel_;  // used by run() only
  const Options options_;
  const std::string peer_text_;
  std::optional<pki::Subject> peer_;
  int wake_fd_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::uint8_t> outbox_;  // GUARDED_BY(mutex_): encoded frames not yet given to the channel
  std::size_t in_channel_ = 0;        // GUARDED_BY(mutex_): bytes the channel holds unsent
  bool ended_ = false;                // GUARDED_BY(mutex_)
  bool finishing_ = false;            // GUARDED_BY(mutex_)
  bool stopping_ = false;             // GUARDED_BY(mutex_)
};

}  // namespace cloudmgr::tcp
