// Failure detection: the time from SIGKILL of a cloudmgr-agent process to the Manager marking its
// host offline (HostEntry::online() false), over several kills, for the default participant lease
// (TransportConfig: 2000 ms, announcements every 500 ms) and a shorter one (1000 / 250 ms).
//
// Each kill: start the real agent (fork + exec) on a simulated host, wait until the Manager has it
// online with a first sample, SIGKILL it, time until the Manager reports it offline. No baseline
// runs in the framework: the detection is Fast DDS's participant lease (the Manager only reacts to
// the unmatch of the host's HostStatus writer when the lease expires). Measured here, detection
// came at the lease itself (+0-2 ms), not lease minus the time since the last announcement:
// consistent with Fast DDS renewing the lease on any message of the participant (its reliable
// writers' heartbeats go out every 100 ms).
//
// DDS participants stay on this machine (UDP on 127.0.0.1 + shared memory) in domains 210-211.
// Killed agents leave their shared-memory files in /dev/shm; at exit this removes those that its
// own killed agents had open and that no live process uses, and nothing else.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/cloudmgr.h"

extern char** environ;  // NOLINT(readability-identifier-naming)

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kKills = 10;
constexpr auto kStartTimeout = milliseconds(30'000);

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Fast DDS shared-memory files (/dev/shm/fastrtps_*, /dev/shm/sem.fastrtps_*).

bool is_dds_shm(const std::string& path) {
  return path.rfind("/dev/shm/fastrtps_", 0) == 0 || path.rfind("/dev/shm/sem.fastrtps_", 0) == 0;
}

// The DDS shared-memory files process `pid` has mapped or open.
void shm_files_of(const std::string& pid, std::set<std::string>& out) {
  std::ifstream maps("/proc/" + pid + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) {
      continue;
    }
    std::string path = line.substr(slash);
    if (const auto deleted = path.find(" (deleted)"); deleted != std::string::npos) {
      path.erase(deleted);
    }
    if (is_dds_shm(path)) {
      out.insert(path);
    }
  }
  std::error_code ec;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/" + pid + "/fd", ec)) {
    std::error_code link_ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), link_ec).string();
    if (!link_ec && is_dds_shm(target)) {
      out.insert(target);
    }
  }
}

std::set<std::string> shm_files_present() {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    if (is_dds_shm(e.path().string())) {
      out.insert(e.path().string());
    }
  }
  return out;
}

// Every DDS shared-memory file some other live process has mapped or open. This process is left
// out: it calls this with its participants closed, and Fast DDS keeps the segments of the peers it
// read from mapped until exit.
std::set<std::string> shm_files_in_use() {
  std::set<std::string> out;
  const std::string self = std::to_string(getpid());
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && name != self &&
        std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
      shm_files_of(name, out);
    }
  }
  return out;
}

std::set<std::string> g_shm_before;  // present when this program started: never touched
std::set<std::string> g_shm_killed;  // used by an agent this program killed
std::set<std::uint32_t> g_domains;   // the DDS domains this program used (no one else uses them)

// Whether `path` is a shared-memory port file (fastrtps_port<N>, its _el lock, its
// sem.fastrtps_port<N>_mutex) of a port in one of our domains (Fast DDS: 7400 + 250 x domain + ...).
bool is_our_port_file(const std::string& path) {
  const auto at = path.find("fastrtps_port");
  if (at == std::string::npos) {
    return false;
  }
  const unsigned long port = std::strtoul(path.c_str() + at + 13, nullptr, 10);  // NOLINT(google-runtime-int)
  return std::any_of(g_domains.begin(), g_domains.end(), [&](std::uint32_t d) {
    const unsigned long base = 7400UL + 250UL * d;  // NOLINT(google-runtime-int)
    return port >= base && port < base + 250;
  });
}

// Removes what our killed agents left, absent at our start and used by no live process: the files
// they had open (their segments) and the port files of our domains (a killed agent's port
// mutexes, which it did not hold open at the time of the kill).
void remove_killed_agents_shm() {
  std::set<std::string> candidates = g_shm_killed;
  for (const auto& f : shm_files_present()) {
    if (is_our_port_file(f)) {
      candidates.insert(f);
    }
  }
  const std::set<std::string> in_use = shm_files_in_use();
  int removed = 0;
  for (const auto& f : candidates) {
    std::error_code ec;
    if (g_shm_before.count(f) == 0 && in_use.count(f) == 0 && std::filesystem::remove(f, ec)) {
      ++removed;
    }
  }
  std::fprintf(stderr, "failure_bench: removed %d shared-memory files left by the agents it killed\n", removed);
}

// ---------------------------------------------------------------------------------------------
// An agent process (posix_spawn: fork + exec), output to a log file.
class AgentProcess {
 public:
  explicit AgentProcess(std::vector<std::string> args, const std::string& log) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      std::fprintf(stderr, "failure_bench: cannot start %s (error %d)\n", argv[0], rc);
      std::abort();
    }
  }
  ~AgentProcess() { stop(SIGTERM); }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Signals the agent and reaps it; SIGKILL after 20 s.
  void stop(int sig) {
    if (pid_ <= 0) {
      return;
    }
    if (sig == SIGKILL) {
      g_shm_killed.merge(shm_files());
    }
    kill(pid_, sig);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 4000 && done == 0; ++i) {
      done = waitpid(pid_, &status, WNOHANG);
      if (done == 0) {
        std::this_thread::sleep_for(milliseconds(5));
      }
    }
    if (done == 0) {
      g_shm_killed.merge(shm_files());
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }

 private:
  std::set<std::string> shm_files() const {
    std::set<std::string> files;
    shm_files_of(std::to_string(pid_), files);
    return files;
  }

  pid_t pid_ = -1;
};

struct TempDir {
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "failure_bench.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::abort();
    }
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::filesystem::path path;
};

// range(0): the agents' participant lease (ms), range(1): their announcement period (ms),
// range(2): the DDS domain.
void kill_to_offline(benchmark::State& state) {
  const auto lease_ms = static_cast<std::uint32_t>(state.range(0));
  const auto announce_ms = static_cast<std::uint32_t>(state.range(1));
  const auto domain = static_cast<std::uint32_t>(state.range(2));
  g_domains.insert(domain);
  TempDir dir;
  auto manager = cloudmgr::Manager::open(
      {.transport = {.domain_id = domain, .agent_lease_ms = lease_ms, .announce_period_ms = announce_ms}});
  if (!manager.ok()) {
    state.SkipWithError(manager.status().to_string().c_str());
    return;
  }
  cloudmgr::Manager& m = **manager;
  std::vector<double> detect_ms;
  std::vector<double> startup_ms;
  int misses = 0;
  for (auto _ : state) {
    (void)_;
    for (int i = 0; i < kKills; ++i) {
      const std::string id = "kill" + std::to_string(lease_ms) + "-" + std::to_string(i);
      const auto started = Clock::now();
      AgentProcess agent(
          {CLOUDMGR_BENCH_AGENT_BIN, "--host-id", id, "--uri", std::string("test://") + CLOUDMGR_BENCH_HOST_XML,
           "--state-dir", (dir.path / id).string(), "--domain", std::to_string(domain), "--lease-ms",
           std::to_string(lease_ms), "--announce-ms", std::to_string(announce_ms), "--sample-ms", "1000"},
          (dir.path / (id + ".log")).string());
      const bool up = m.wait_until(
                           [&](const cloudmgr::Manager& mm) {
                             auto h = mm.host(id);
                             return h && h->online() && mm.sample(id).has_value();
                           },
                           kStartTimeout)
                          .ok();
      if (!up) {
        ++misses;
        continue;  // stopped cleanly by its destructor
      }
      startup_ms.push_back(ms_since(started));
      const auto killed = Clock::now();
      agent.stop(SIGKILL);
      const bool offline = m.wait_until(
                                [&](const cloudmgr::Manager& mm) {
                                  auto h = mm.host(id);
                                  return h && !h->online();
                                },
                                milliseconds(4 * lease_ms + 5000))
                               .ok();
      if (offline) {
        detect_ms.push_back(ms_since(killed));
      } else {
        ++misses;
      }
    }
    state.SetIterationTime(median(detect_ms) / 1e3);
  }
  manager->reset();
  if (detect_ms.empty()) {
    state.SkipWithError("no kill was detected");
    return;
  }
  state.counters["kills"] = static_cast<double>(detect_ms.size());
  state.counters["misses"] = misses;
  state.counters["min_ms"] = *std::min_element(detect_ms.begin(), detect_ms.end());
  state.counters["median_ms"] = median(detect_ms);
  state.counters["max_ms"] = *std::max_element(detect_ms.begin(), detect_ms.end());
  state.counters["startup_median_ms"] = median(startup_ms);
  state.counters["startup_max_ms"] = *std::max_element(startup_ms.begin(), startup_ms.end());
}

BENCHMARK(kill_to_offline)
    ->ArgNames({"lease_ms", "announce_ms", "domain"})
    ->Args({2000, 500, 210})
    ->Args({1000, 250, 211})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  g_shm_before = shm_files_present();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  remove_killed_agents_shm();
  return 0;
}
