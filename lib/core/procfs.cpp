// Process list from a Linux /proc tree.
#include <dirent.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "cloudmgr/host.h"
#include "core/errno_text.h"

namespace cloudmgr {
namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc() && ptr == end;
}

std::string user_name(std::uint32_t uid, std::unordered_map<std::uint32_t, std::string>& cache) {
  if (auto it = cache.find(uid); it != cache.end()) {
    return it->second;
  }
  std::string name = std::to_string(uid);
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<std::size_t>(size) : 16384U);
  passwd pw{};
  passwd* result = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) == 0 && result != nullptr) {
    name = result->pw_name;
  }
  cache.emplace(uid, name);
  return name;
}

// Boot time in seconds since the epoch, from the "btime" line of <proc>/stat.
std::optional<std::int64_t> boot_time_s(const std::string& proc_root) {
  auto stat = read_file(proc_root + "/stat");
  if (!stat) {
    return std::nullopt;
  }
  std::istringstream lines(*stat);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.starts_with("btime ")) {
      std::int64_t value = 0;
      if (parse_number(std::string_view(line).substr(6), value)) {
        return value;
      }
    }
  }
  return std::nullopt;
}

// Parses /proc/<pid>/stat. The comm field is in parentheses and may itself contain
// spaces and ')' characters: it ends at the last ')'.
bool parse_stat(std::string_view stat, ProcessInfo& p, std::uint64_t& utime, std::uint64_t& stime,
                std::uint64_t& start_ticks, std::uint64_t& rss_pages) {
  const auto open = stat.find('(');
  const auto close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open || close + 2 > stat.size()) {
    return false;
  }
  p.name = std::string(stat.substr(open + 1, close - open - 1));
  std::vector<std::string_view> fields;  // fields[0] is field 3 (state) of proc(5)
  std::string_view rest = stat.substr(close + 2);
  while (!rest.empty()) {
    const auto space = rest.find(' ');
    fields.push_back(rest.substr(0, space));
    if (space == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(space + 1);
  }
  if (fields.size() < 22 || fields[0].size() != 1) {
    return false;
  }
  auto field = [&](int number) { return fields[static_cast<std::size_t>(number - 3)]; };
  p.state = fields[0][0];
  std::int64_t threads = 0;
  std::int64_t rss = 0;
  const bool ok = parse_number(field(4), p.ppid) && parse_number(field(14), utime) && parse_number(field(15), stime) &&
                  parse_number(field(20), threads) && parse_number(field(22), start_ticks) &&
                  parse_number(field(23), p.vsize_bytes) && parse_number(field(24), rss);
  p.threads = threads > 0 ? static_cast<std::uint32_t>(threads) : 0;
  rss_pages = rss > 0 ? static_cast<std::uint64_t>(rss) : 0;
  return ok;
}

std::optional<std::uint32_t> parse_uid(std::string_view status) {
  std::size_t pos = 0;
  if (!status.starts_with("Uid:")) {
    pos = status.find("\nUid:");
    if (pos == std::string_view::npos) {
      return std::nullopt;
    }
    ++pos;
  }
  std::string_view rest = status.substr(pos + 4);
  while (!rest.empty() && (rest.front() == '\t' || rest.front() == ' ')) {
    rest.remove_prefix(1);
  }
  const auto end = rest.find_first_of("\t \n");
  std::uint32_t uid = 0;
  if (!parse_number(rest.substr(0, end), uid)) {
    return std::nullopt;
  }
  return uid;
}

}  // namespace

Result<std::vector<ProcessInfo>> list_processes(const std::string& proc_root) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(proc_root.c_str()), closedir);
  if (!dir) {
    return unavailable_error(fmt::format("cannot read the process list at '{}': {}", proc_root, errno_text(errno)));
  }
  const auto boot_s = boot_time_s(proc_root);
  if (!boot_s) {
    return unavailable_error(fmt::format("cannot read the boot time from '{}/stat'", proc_root));
  }
  const long ticks_per_s = sysconf(_SC_CLK_TCK);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (ticks_per_s <= 0 || page_size <= 0) {
    return internal_error("sysconf(_SC_CLK_TCK/_SC_PAGESIZE) failed");
  }
  const auto ticks = static_cast<std::uint64_t>(ticks_per_s);
  std::unordered_map<std::uint32_t, std::string> users;
  std::vector<ProcessInfo> out;
  // readdir on a stream no other thread uses is safe (glibc locks per stream).
  while (const dirent* entry = readdir(dir.get())) {  // NOLINT(concurrency-mt-unsafe)
    ProcessInfo p;
    if (!parse_number(std::string_view(entry->d_name), p.pid) || p.pid <= 0) {
      continue;
    }
    const std::string base = fmt::format("{}/{}", proc_root, p.pid);
    // A process may exit between readdir and these reads: skip it then.
    auto stat = read_file(base + "/stat");
    auto status = read_file(base + "/status");
    if (!stat || !status) {
      continue;
    }
    std::uint64_t utime = 0;
    std::uint64_t stime = 0;
    std::uint64_t start_ticks = 0;
    std::uint64_t rss_pages = 0;
    if (!parse_stat(*stat, p, utime, stime, start_ticks, rss_pages)) {
      continue;
    }
    const auto uid = parse_uid(*status);
    if (!uid) {
      continue;
    }
    p.uid = *uid;
    p.user = user_name(p.uid, users);
    p.cpu_time_ns = (utime + stime) * (1'000'000'000ULL / ticks);
    p.rss_bytes = rss_pages * static_cast<std::uint64_t>(page_size);
    p.start_time_ns = *boot_s * 1'000'000'000LL + static_cast<std::int64_t>(start_ticks * (1'000'000'000ULL / ticks));
    if (auto cmdline = read_file(base + "/cmdline")) {
      std::string& cmd = *cmdline;
      while (!cmd.empty() && cmd.back() == '\0') {
        cmd.pop_back();
      }
      std::replace(cmd.begin(), cmd.end(), '\0', ' ');
      p.cmdline = std::move(cmd);
    }
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(), [](const ProcessInfo& a, const ProcessInfo& b) { return a.pid < b.pid; });
  return out;
}

}  // namespace cloudmgr
