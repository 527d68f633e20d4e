// Guarded host reboot: runs an operator-configured command, only when enabled.
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/host.h"
#include "core/errno_text.h"

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace cloudmgr {

Status reboot_host(const HostRebootPolicy& policy) {
  if (!policy.enabled) {
    return failed_precondition_error(
        "host reboot is disabled on this host; an operator must enable it in the agent's configuration");
  }
  if (policy.command.empty() || policy.command.front().empty() || policy.command.front().front() != '/') {
    return invalid_argument_error(
        "host reboot command must be a non-empty argv whose first element is an absolute path");
  }
  std::vector<char*> argv;
  argv.reserve(policy.command.size() + 1);
  for (const std::string& arg : policy.command) {
    argv.push_back(const_cast<char*>(arg.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  }
  argv.push_back(nullptr);
  pid_t pid = 0;
  // posix_spawn (fork + exec), never a bare fork: see shared/FACTS.md on forked DDS participants.
  const int rc = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (rc != 0) {
    return internal_error(
        fmt::format("cannot run host reboot command '{}': {}", policy.command.front(), errno_text(rc)));
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) {
      return internal_error(fmt::format("waiting for host reboot command: {}", errno_text(errno)));
    }
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
    return {};
  }
  if (WIFEXITED(wstatus)) {
    return internal_error(
        fmt::format("host reboot command '{}' exited with status {}", policy.command.front(), WEXITSTATUS(wstatus)));
  }
  return internal_error(
      fmt::format("host reboot command '{}' was killed by signal {}", policy.command.front(), WTERMSIG(wstatus)));
}

}  // namespace cloudmgr
