#include "core/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <fstream>
#include <map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/errno_status.h"
#include "core/journal.h"

namespace cloudmgr {

Result<std::unique_ptr<AuditLog>> AuditLog::open(std::string path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return unavailable_error(errno_error(err, fmt::format("opening the audit log '{}'", path)).message());
  }
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(path), fd));
}

AuditLog::AuditLog(std::string path, int fd) : path_(std::move(path)), fd_(fd), flusher_([this] { flush_loop(); }) {}

AuditLog::~AuditLog() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  flush_cv_.notify_all();
  flusher_.join();
  {
    const std::lock_guard lock(mutex_);
    if (dirty_) {
      (void)::fdatasync(fd_);  // at exit: nothing to report a failure to
    }
  }
  ::close(fd_);
}

void AuditLog::flush_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    flush_cv_.wait(lock, [&] { return stopping_ || dirty_; });
    // Lines written meanwhile ride along with this sync: at most one per kFlushDelay.
    if (flush_cv_.wait_for(lock, kFlushDelay, [&] { return stopping_; })) {
      return;  // the destructor syncs the rest
    }
    if (!dirty_) {
      continue;  // a synced line carried them
    }
    dirty_ = false;
    lock.unlock();
    if (::fdatasync(fd_) != 0) {
      const int err = errno;
      lock.lock();
      dirty_ = true;  // try again in kFlushDelay
      lock.unlock();
      fmt::print(stderr, "cloudmgr: syncing the audit log '{}' failed: {}\n", path_,
                 errno_error(err, "fdatasync").message());
    }
    lock.lock();
  }
}

bool AuditLog::synced() const {
  const std::lock_guard lock(mutex_);
  return !dirty_;
}

Status AuditLog::append(const std::string& line, bool sync) {
  bool notify = false;
  {
    const std::lock_guard lock(mutex_);
    // After a failed write the file may end in half a line: start on a fresh one.
    if (Status s = write_all(fd_, torn_ ? "\n" + line : line, path_); !s.ok()) {
      torn_ = true;
      return s;
    }
    torn_ = false;
    if (sync) {
      if (::fdatasync(fd_) != 0) {
        const int err = errno;
        dirty_ = true;  // the flusher tries again
        flush_cv_.notify_all();
        return unavailable_error(errno_error(err, fmt::format("syncing '{}'", path_)).message());
      }
      dirty_ = false;
    } else {
      notify = !dirty_;  // the flusher is idle until the first unsynced line
      dirty_ = true;
    }
  }
  if (notify) {
    flush_cv_.notify_all();
  }
  return {};
}

Status AuditLog::received(const Command& c, std::int64_t received_ns, bool sync) {
  nlohmann::json args = nlohmann::json::array();
  for (const auto& [name, value] : c.arguments) {
    args.push_back({name, value});
  }
  const nlohmann::json j{{"event", "received"},
                         {"time_ns", received_ns},
                         {"id", c.id},
                         {"issuer", c.authenticated_issuer},
                         {"claimed_issuer", c.issuer},
                         {"target", c.target.partition()},
                         {"verb", c.verb},
                         {"arguments", args}};
  // Replaced, never thrown: an argument is any text a manager sent.
  return append(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", sync);
}

Status AuditLog::result(const std::string& command_id, const Status& outcome, std::int64_t completed_ns) {
  const nlohmann::json j{{"event", "result"},
                         {"time_ns", completed_ns},
                         {"id", command_id},
                         {"code", static_cast<int>(outcome.code())},
                         {"message", outcome.message()}};
  return append(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n", false);
}

Result<std::vector<AuditEntry>> read_audit_log(const std::string& path, std::int64_t since_ns,
                                               std::size_t max_entries) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    return errno_error(err, fmt::format("reading the audit log '{}'", path));
  }
  std::deque<AuditEntry> entries;
  std::map<std::string, std::size_t> by_id;  // position in `entries` + dropped
  std::size_t dropped = 0;
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("event") || !j.contains("id")) {
      continue;
    }
    const std::string id = j.value("id", "");
    if (j["event"] == "received") {
      AuditEntry e;
      e.received_ns = j.value("time_ns", std::int64_t{0});
      if (e.received_ns < since_ns) {
        continue;
      }
      e.command_id = id;
      e.issuer = j.value("issuer", "");
      e.claimed_issuer = j.value("claimed_issuer", "");
      Result<Target> target = Target::parse(j.value("target", "all"));
      e.target = target.ok() ? *target : Target::all();
      e.verb = j.value("verb", "");
      if (j.contains("arguments") && j["arguments"].is_array()) {
        for (const auto& a : j["arguments"]) {
          if (a.is_array() && a.size() == 2 && a[0].is_string() && a[1].is_string()) {
            e.arguments.emplace_back(a[0].get<std::string>(), a[1].get<std::string>());
          }
        }
      }
      by_id[id] = dropped + entries.size();
      entries.push_back(std::move(e));
      if (max_entries > 0 && entries.size() > max_entries) {
        by_id.erase(entries.front().command_id);
        entries.pop_front();
        ++dropped;
      }
    } else if (j["event"] == "result") {
      auto it = by_id.find(id);
      if (it == by_id.end() || it->second < dropped) {
        continue;
      }
      AuditEntry& e = entries[it->second - dropped];
      e.completed_ns = j.value("time_ns", std::int64_t{0});
      const int code = j.value("code", 0);
      const StatusCode sc = code > 0 && code <= static_cast<int>(StatusCode::kUnauthenticated)
                                ? static_cast<StatusCode>(code)
                                : StatusCode::kUnknown;
      e.result = code == 0 ? Status() : Status(sc, j.value("message", ""));
    }
  }
  return std::vector<AuditEntry>(entries.begin(), entries.end());
}

}  // namespace cloudmgr
