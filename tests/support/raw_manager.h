// A manager-side transport link driven by hand: tests send commands with fixed ids (to
// resend them, or send them past their deadline) and collect the replies.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "cloudmgr/spi/transport.h"

namespace cloudmgr::testing {

class RawManager {
 public:
  // Opens its own transport participant with `config`.
  static Result<std::unique_ptr<RawManager>> open(const spi::TransportConfig& config) {
    auto raw = std::unique_ptr<RawManager>(new RawManager());
    auto t = spi::open_transport(config);
    if (!t.ok()) {
      return t.status();
    }
    raw->transport_ = std::move(*t);
    spi::ManagerCallbacks cb;
    RawManager* self = raw.get();
    cb.on_reply = [self](const CommandReply& r) {
      {
        const std::lock_guard lock(self->mutex_);
        self->replies_.push_back(r);
      }
      self->cv_.notify_all();
    };
    auto link = raw->transport_->open_manager("raw", cb);
    if (!link.ok()) {
      return link.status();
    }
    raw->link_ = std::move(*link);
    return raw;
  }
  ~RawManager() { link_.reset(); }  // the link goes before its transport
  RawManager(const RawManager&) = delete;
  RawManager& operator=(const RawManager&) = delete;

  Status send(const Command& c, const std::vector<std::string>& expected) { return link_->send(c, expected); }

  // True once `n` replies have arrived, false after `timeout`.
  bool wait_replies(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return replies_.size() >= n; });
  }

  // The i-th reply (a copy).
  CommandReply reply(std::size_t i) {
    const std::lock_guard lock(mutex_);
    return replies_.at(i);
  }

 private:
  RawManager() = default;

  std::unique_ptr<spi::Transport> transport_;
  std::unique_ptr<spi::ManagerLink> link_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<CommandReply> replies_;  // GUARDED_BY(mutex_)
};

}  // namespace cloudmgr::testing
