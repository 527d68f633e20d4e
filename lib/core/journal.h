// The agent's command journal: at-most-once execution across restarts. Internal.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "cloudmgr/status.h"

namespace cloudmgr {

// Append-only JSON lines in one file; thread-safe. Each command id goes through
// begin() once; a second begin() of the same id reports what became of the first.
class CommandJournal {
 public:
  struct Entry {
    std::int64_t deadline_ns = 0;
    bool done = false;  // false: began but never finished (the agent stopped meanwhile)
    Status status;
  };

  // Loads `path` (creating it if missing), dropping entries whose deadline has passed,
  // and rewrites it compacted. kUnavailable when the file cannot be read or written.
  static Result<std::unique_ptr<CommandJournal>> open(std::string path);
  ~CommandJournal();
  CommandJournal(const CommandJournal&) = delete;
  CommandJournal& operator=(const CommandJournal&) = delete;

  // Records that `id` begins (durably, before it executes). Returns the earlier entry
  // instead when `id` was seen before; then nothing is recorded.
  Result<std::optional<Entry>> begin(const std::string& id, const std::string& verb, const std::string& issuer,
                                     std::int64_t deadline_ns);
  // Records the outcome of a begun command.
  Status finish(const std::string& id, const Status& outcome);

  std::size_t size() const;

 private:
  CommandJournal(std::string path, int fd, std::map<std::string, Entry> entries);
  Status append(const std::string& line);  // REQUIRES(mutex_)

  std::string path_;
  int fd_;
  mutable std::mutex mutex_;
  std::map<std::string, Entry> entries_;  // GUARDED_BY(mutex_)
  bool torn_ = false;                     // GUARDED_BY(mutex_): the last write failed midway
};

// Writes all of `data` to `fd` (retrying short writes); kUnavailable naming `path` otherwise.
Status write_all(int fd, const std::string& data, const std::string& path);

// Writes `content` to `path` atomically: a temporary file, fsync, rename, fsync of the directory.
Status write_file_atomically(const std::string& path, const std::string& content);

}  // namespace cloudmgr
