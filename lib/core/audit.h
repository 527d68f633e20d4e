// The agent's audit log: every command it receives, who sent it, and what became of it.
// Internal (docs/security.md, "Audit trail").
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/agent.h"
#include "cloudmgr/cloud.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

// Append-only JSON lines in one file (mode 0600); never rewritten or compacted. Two lines per
// command: "received", written before the command executes, and "result", written after it.
// A line is synced before the call returns when asked (the arrival of a command that changes
// the host: it is on the disk before the command runs); every other line is in the kernel's
// page cache at once (an agent crash loses nothing) and on the disk within kFlushDelay (a
// thread of the log's own syncs it), or with the next synced line. A power loss may so lose
// the last second of read-only arrivals and of outcomes, never the arrival of a command that
// changed something; a crash between a command's two lines leaves it with no outcome, which
// readers show as such. One sync per mutating command, none on a read-only one's path
// (bench/README.md, "DDS vs client-server"). Thread-safe.
class AuditLog {
 public:
  static constexpr std::chrono::milliseconds kFlushDelay{1000};

  // Opens `path` for appending, creating it if missing. kUnavailable when it cannot.
  static Result<std::unique_ptr<AuditLog>> open(std::string path);
  ~AuditLog();  // syncs what is not on the disk yet
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // `command.authenticated_issuer` is the issuer recorded; `command.issuer` only as claimed.
  // `sync`: on the disk before this returns (see above).
  Status received(const Command& command, std::int64_t received_ns, bool sync);
  Status result(const std::string& command_id, const Status& outcome, std::int64_t completed_ns);
  // Whether every line written so far has been synced (for tests).
  bool synced() const;

 private:
  AuditLog(std::string path, int fd);
  Status append(const std::string& line, bool sync);
  void flush_loop();

  const std::string path_;
  const int fd_;
  mutable std::mutex mutex_;
  std::condition_variable flush_cv_;
  bool torn_ = false;      // GUARDED_BY(mutex_): the last write failed midway
  bool dirty_ = false;     // GUARDED_BY(mutex_): a line is written but not synced
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread flusher_;    // last: started once the rest is ready
};

}  // namespace cloudmgr
