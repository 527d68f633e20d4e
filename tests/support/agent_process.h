// A cloudmgr-agent process (posix_spawn: fork + exec, never a bare fork; see shared/FACTS.md)
// on a simulated host, its output in <state>/agent.log. Stopped when destroyed.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace cloudmgr::testing {

// What an agent logs when it renews its DDS participant (AgentOptions::heal_after_ms).
inline constexpr std::string_view kRenewalLogLine = "renewing this agent's DDS participant";

// Starts `args` (posix_spawn), its stdout and stderr appended to `log`; returns its pid (-1
// when it could not be started, with a test failure).
inline pid_t spawn_logged(std::vector<std::string> args, const std::filesystem::path& log) {
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  EXPECT_EQ(rc, 0) << "spawning " << args[0];
  return rc == 0 ? pid : -1;
}

class AgentProcess {
 public:
  // `extra`: more command-line arguments (e.g. {"--pki", DIR}).
  AgentProcess(const std::string& id, std::uint32_t domain, const std::filesystem::path& state,
               const std::vector<std::string>& groups, std::uint32_t lease_ms,
               const std::vector<std::string>& extra = {}) {
    std::filesystem::create_directories(state);
    config_ = state / "agent.json";
    std::ofstream(config_) << "{\"lease_ms\": " << lease_ms << ", \"announce_ms\": " << lease_ms / 4
                           << ", \"refresh_ms\": 1000}\n";
    std::vector<std::string> args = {CLOUDMGR_AGENT_BIN,
                                     "--config",
                                     config_.string(),
                                     "--host-id",
                                     id,
                                     "--uri",
                                     std::string("test://") + CLOUDMGR_TEST_DATA_DIR + "/hosts/node-small.xml",
                                     "--state-dir",
                                     state.string(),
                                     "--domain",
                                     std::to_string(domain)};
    for (const auto& g : groups) {
      args.emplace_back("--group");
      args.push_back(g);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = spawn_logged(std::move(args), state / "agent.log");
  }
  ~AgentProcess() { stop(SIGTERM); }
  pid_t pid() const { return pid_; }
  // Whether it has exited by itself (reaping it); its exit status in `status`.
  bool exited(int* status = nullptr) {
    if (pid_ <= 0) {
      return true;
    }
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) != pid_) {
      return false;
    }
    pid_ = -1;
    if (status != nullptr) {
      *status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    return true;
  }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  // Signals the agent and reaps it; returns its exit status (or -1).
  int stop(int sig) {
    if (pid_ <= 0) {
      return -1;
    }
    kill(pid_, sig);
    int status = 0;
    // The agent exits by itself within 15 s of a stop signal; SIGKILL it past 20 s.
    pid_t done = 0;
    for (int i = 0; i < 200 && done == 0; ++i) {
      done = waitpid(pid_, &status, WNOHANG);
      if (done == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (done == 0) {
      ADD_FAILURE() << "agent " << pid_ << " did not stop within 20 s of signal " << sig;
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  std::filesystem::path config_;
};

}  // namespace cloudmgr::testing
