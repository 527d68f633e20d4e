#include "transport/tcp/session.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include <fmt/format.h>

#include "core/errno_status.h"

namespace cloudmgr::tcp {
namespace {

int poll_timeout_ms(Clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(left + 1, 0, 1000));
}

}  // namespace

Session::Session(std::unique_ptr<Channel> channel, Options options)
    : channel_(std::move(channel)),
      options_(options),
      peer_text_(channel_->peer_text()),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

Session::~Session() {
  if (wake_fd_ >= 0) {
    ::close(wake_fd_);
  }
}

void Session::wake() const {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool Session::post(FrameType type, std::span<const std::uint8_t> payload) {
  {
    const std::lock_guard lock(mutex_);
    if (ended_ || stopping_ || finishing_) {
      return false;
    }
    if (outbox_.size() + in_channel_ + payload.size() > kQueueLimit) {
      stopping_ = true;  // a peer that stopped reading: drop it rather than hold its backlog
    } else {
      append_frame(outbox_, type, payload);
    }
  }
  wake();
  return true;
}

Status Session::post_waiting(FrameType type, std::span<const std::uint8_t> payload, Clock::time_point deadline) {
  {
    std::unique_lock lock(mutex_);
    const bool room = cv_.wait_until(
        lock, deadline, [&] { return ended_ || stopping_ || finishing_ || outbox_.size() + in_channel_ < kWindow; });
    if (ended_ || stopping_ || finishing_) {
      return unavailable_error(fmt::format("the connection to {} ended", peer_text_));
    }
    if (!room) {
      return deadline_exceeded_error(fmt::format("{} did not take the data in time", peer_text_));
    }
    append_frame(outbox_, type, payload);
  }
  wake();
  return {};
}

void Session::finish() {
  {
    const std::lock_guard lock(mutex_);
    finishing_ = true;
  }
  wake();
}

void Session::stop() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  wake();
}

bool Session::stop_requested() const {
  const std::lock_guard lock(mutex_);
  return stopping_;
}

bool Session::ended() const {
  const std::lock_guard lock(mutex_);
  return ended_;
}

bool Session::wait_sent(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return ended_ || (outbox_.empty() && in_channel_ == 0); }) && !ended_;
}

Status Session::run(const Handler& handler) {
  Channel& ch = *channel_;
  auto end = [&](Status s) {
    {
      const std::lock_guard lock(mutex_);
      ended_ = true;
      outbox_.clear();
    }
    cv_.notify_all();
    return s;
  };
  if (wake_fd_ < 0) {
    return end(errno_error(errno, "creating an eventfd"));
  }
  std::vector<std::uint8_t> in;
  bool eof = false;
  // The TLS handshake (plain: done at once).
  const auto handshake_until = std::min(options_.deadline, Clock::now() + options_.handshake);
  for (;;) {
    Result<bool> done = ch.handshake();
    if (!done.ok()) {
      return end(done.status());
    }
    if (*done) {
      break;
    }
    if (Clock::now() >= handshake_until) {
      return end(deadline_exceeded_error(fmt::format("TLS handshake with {}: no answer in time", peer_text_)));
    }
    std::array<pollfd, 2> fds{
        {{ch.fd(), static_cast<short>(POLLIN | (ch.pending() > 0 ? POLLOUT : 0)), 0}, {wake_fd_, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), poll_timeout_ms(handshake_until)) < 0 && errno != EINTR) {
      return end(errno_error(errno, "waiting on a connection"));
    }
    if (stop_requested()) {
      return end(aborted_error("stopped"));
    }
    if ((fds[0].revents & POLLOUT) != 0) {
      if (Status s = ch.flush(); !s.ok()) {
        return end(s);
      }
    }
    if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (Status s = ch.receive(in, eof); !s.ok()) {
        return end(s);
      }
      if (eof) {
        return end(unavailable_error(fmt::format("{} closed the connection during the TLS handshake", peer_text_)));
      }
    }
  }
  peer_ = ch.peer();
  if (handler.on_open) {
    if (Status s = handler.on_open(*this); !s.ok()) {
      return end(s);
    }
  }
  std::size_t offset = 0;
  std::vector<Frame> frames;
  auto last_rx = Clock::now();
  auto next_tick = Clock::now() + options_.tick;
  bool readable = true;  // TLS may hold bytes that arrived with the handshake's last flight
  for (;;) {
    // Hand what was posted to the channel.
    std::vector<std::uint8_t> batch;
    bool finishing = false;
    bool stopping = false;
    {
      const std::lock_guard lock(mutex_);
      stopping = stopping_;
      batch.swap(outbox_);
      finishing = finishing_;
    }
    if (stopping) {
      return end(aborted_error("stopped"));
    }
    if (!batch.empty()) {
      if (Status s = ch.send(batch); !s.ok()) {
        return end(s);
      }
    }
    {
      const std::lock_guard lock(mutex_);
      in_channel_ = ch.pending();
    }
    cv_.notify_all();
    if (finishing && batch.empty() && ch.pending() == 0) {
      return end({});
    }
    if (readable) {
      readable = false;
      if (Status s = ch.receive(in, eof); !s.ok()) {
        return end(s);
      }
      if (Status s = take_frames(in, offset, frames); !s.ok()) {
        return end(s.with_context(fmt::format("from {}", peer_text_)));
      }
      if (!frames.empty()) {
        last_rx = Clock::now();
      }
      for (Frame& f : frames) {
        if (handler.on_frame) {
          handler.on_frame(*this, f);
        }
      }
      frames.clear();
      if (offset == in.size()) {
        in.clear();
        offset = 0;
      } else if (offset > (1U << 20U)) {
        in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(offset));
        offset = 0;
      }
      if (eof) {
        return end(unavailable_error(fmt::format("{} closed the connection", peer_text_)));
      }
      continue;  // frames handled may have posted replies: send them before sleeping
    }
    const auto now = Clock::now();
    if (now >= options_.deadline) {
      return end(deadline_exceeded_error(fmt::format("no answer from {} in time", peer_text_)));
    }
    if (options_.silence.count() > 0 && now - last_rx >= options_.silence) {
      return end(deadline_exceeded_error(
          fmt::format("{} was silent for {} ms", peer_text_,
                      std::chrono::duration_cast<std::chrono::milliseconds>(now - last_rx).count())));
    }
    if (now >= next_tick) {
      next_tick = now + options_.tick;
      if (handler.on_tick) {
        handler.on_tick(*this);
      }
      continue;
    }
    auto until = std::min(next_tick, options_.deadline);
    if (options_.silence.count() > 0) {
      until = std::min(until, last_rx + options_.silence);
    }
    std::array<pollfd, 2> fds{
        {{ch.fd(), static_cast<short>(POLLIN | (ch.pending() > 0 ? POLLOUT : 0)), 0}, {wake_fd_, POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), poll_timeout_ms(until)) < 0 && errno != EINTR) {
      return end(errno_error(errno, "waiting on a connection"));
    }
    if ((fds[1].revents & POLLIN) != 0) {
      std::uint64_t count = 0;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
    }
    if ((fds[0].revents & POLLOUT) != 0) {
      if (Status s = ch.flush(); !s.ok()) {
        return end(s);
      }
    }
    readable = (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
  }
}

}  // namespace cloudmgr::tcp
