// Guarded host reboot: runs an operator-configured command, only when enabled.
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>
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
  // The child starts with no blocked signals (the agent blocks SIGINT/SIGTERM to sigwait for
  // them; an inherited mask would make the command unkillable).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  // posix_spawn (fork + exec), never a bare fork: see shared/FACTS.md on forked DDS participants.
  const int rc = posix_spawn(&pid, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return internal_error(
        fmt::format("cannot run host reboot command '{}': {}", policy.command.front(), errno_text(rc)));
  }
  // A reboot command returns at once (the reboot itself follows); one that hangs is killed.
  int wstatus = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    const pid_t done = waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) {
      break;
    }
    if (done < 0 && errno != EINTR) {
      return internal_error(fmt::format("waiting for host reboot command: {}", errno_text(errno)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      return deadline_exceeded_error(
          fmt::format("host reboot command '{}' did not finish within 60 s and was killed", policy.command.front()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
