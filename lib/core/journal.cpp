#include "core/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloudmgr/cloud.h"
#include "core/errno_text.h"

namespace cloudmgr {
namespace {

// Text from the wire may be invalid UTF-8: never let dump() throw on it.
std::string line_of(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

Status write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return unavailable_error(fmt::format("writing '{}': {}", path, errno_text(errno)));
    }
    off += static_cast<std::size_t>(n);
  }
  return {};
}

Status write_file_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return unavailable_error(fmt::format("creating '{}': {}", tmp, errno_text(errno)));
  }
  Status s = write_all(fd, content, tmp);
  if (s.ok() && ::fsync(fd) != 0) {
    s = unavailable_error(fmt::format("syncing '{}': {}", tmp, errno_text(errno)));
  }
  ::close(fd);
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return unavailable_error(fmt::format("renaming '{}' to '{}': {}", tmp, path, errno_text(err)));
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

CommandJournal::CommandJournal(std::string path, int fd, std::map<std::string, Entry> entries)
    : path_(std::move(path)), fd_(fd), entries_(std::move(entries)) {}

CommandJournal::~CommandJournal() { ::close(fd_); }

Result<std::unique_ptr<CommandJournal>> CommandJournal::open(std::string path) {
  std::map<std::string, Entry> entries;
  const std::int64_t now = now_ns();
  std::size_t bad_lines = 0;
  {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    std::ifstream in(path);
    if (exists && !in) {
      // Never start over on a journal we cannot read: that would run old commands again.
      return unavailable_error(fmt::format("cannot read the command journal '{}'", path));
    }
    std::string line;
    while (std::getline(in, line)) {
      // A line cut short by a crash does not parse: skip it (its command began, at most).
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
        ++bad_lines;
        continue;
      }
      Entry& e = entries[j["id"].get<std::string>()];
      const auto text = [&](const char* key) {
        return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
      };
      if (j.contains("deadline_ns") && j["deadline_ns"].is_number_integer()) {
        e.deadline_ns = j["deadline_ns"].get<std::int64_t>();
      }
      if (text("event") == "done") {
        e.done = true;
        const auto code = parse_status_code(text("code")).value_or(StatusCode::kInternal);
        e.status = Status(code, text("message"));
      }
    }
  }
  std::erase_if(entries, [&](const auto& kv) { return kv.second.deadline_ns < now; });
  // Rewrite compacted: one "begin" (and "done") line per live entry.
  std::string compacted;
  for (const auto& [id, e] : entries) {
    compacted += line_of({{"event", "begin"}, {"id", id}, {"deadline_ns", e.deadline_ns}});
    if (e.done) {
      compacted += line_of({{"event", "done"},
                            {"id", id},
                            {"deadline_ns", e.deadline_ns},
                            {"code", std::string(status_code_name(e.status.code()))},
                            {"message", e.status.message()}});
    }
  }
  if (Status s = write_file_atomically(path, compacted); !s.ok()) {
    return s;
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    return unavailable_error(fmt::format("opening the command journal '{}': {}", path, errno_text(errno)));
  }
  (void)bad_lines;
  return std::unique_ptr<CommandJournal>(new CommandJournal(std::move(path), fd, std::move(entries)));
}

Status CommandJournal::append(const std::string& line) {
  // After a failed write the file may end in half a line: start on a fresh one.
  if (Status s = write_all(fd_, torn_ ? "\n" + line : line, path_); !s.ok()) {
    torn_ = true;
    return s;
  }
  torn_ = false;
  if (::fdatasync(fd_) != 0) {
    return unavailable_error(fmt::format("syncing '{}': {}", path_, errno_text(errno)));
  }
  return {};
}

Result<std::optional<CommandJournal::Entry>> CommandJournal::begin(const std::string& id, const std::string& verb,
                                                                   const std::string& issuer,
                                                                   std::int64_t deadline_ns) {
  const std::lock_guard lock(mutex_);
  if (auto it = entries_.find(id); it != entries_.end()) {
    return std::optional<Entry>(it->second);
  }
  const std::string line = line_of({{"event", "begin"},
                                    {"id", id},
                                    {"verb", verb},
                                    {"issuer", issuer},
                                    {"deadline_ns", deadline_ns},
                                    {"received_ns", now_ns()}});
  if (Status s = append(line); !s.ok()) {
    return s;
  }
  entries_[id] = Entry{deadline_ns, false, {}};
  return std::optional<Entry>();
}

Status CommandJournal::finish(const std::string& id, const Status& outcome) {
  const std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    return internal_error(fmt::format("command '{}' finished without beginning", id));
  }
  it->second.done = true;
  it->second.status = outcome;
  return append(line_of({{"event", "done"},
                         {"id", id},
                         {"deadline_ns", it->second.deadline_ns},
                         {"code", std::string(status_code_name(outcome.code()))},
                         {"message", outcome.message()},
                         {"completed_ns", now_ns()}}));
}

std::size_t CommandJournal::size() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace cloudmgr
