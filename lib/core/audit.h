// The agent's audit log: every command it receives, who sent it, and what became of it.
// Internal (docs/security.md, "Audit trail").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cloudmgr/agent.h"
#include "cloudmgr/cloud.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

// Append-only JSON lines in one file (mode 0600); never rewritten or compacted. Two lines per
// command: "received", synced before the call returns (before the command executes), and
// "result", written but not synced: the next line's sync carries it to the disk, and a crash
// in between leaves the command with no outcome recorded, which readers show as such (one sync
// per command instead of two: bench/README.md, "DDS vs client-server"). Thread-safe.
class AuditLog {
 public:
  // Opens `path` for appending, creating it if missing. kUnavailable when it cannot.
  static Result<std::unique_ptr<AuditLog>> open(std::string path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // `command.authenticated_issuer` is the issuer recorded; `command.issuer` only as claimed.
  Status received(const Command& command, std::int64_t received_ns);
  Status result(const std::string& command_id, const Status& outcome, std::int64_t completed_ns);

 private:
  AuditLog(std::string path, int fd);
  Status append(const std::string& line, bool sync);

  const std::string path_;
  const int fd_;
  std::mutex mutex_;
  bool torn_ = false;  // GUARDED_BY(mutex_): the last write failed midway
};

}  // namespace cloudmgr
