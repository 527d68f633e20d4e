// DDS-Security cost (issue 7, item 7): group commands and monitoring ingest, unsecured and secured
// side by side in one run, against real cloudmgr-agent processes (fork + exec via posix_spawn) on
// simulated hosts (tests/data/hosts/node-small.xml), every agent in group "bench".
//
//   BM_GroupCommand/N:n/secured:s   n agents (bench-0 .. bench-<n-1>), agents at --sample-ms 1000,
//                                   a Manager (samples off) in this process; 300 x
//                                   execute(Target::group("bench"), "host.info"), each checked
//                                   (all n hosts ok). Latency p50/p90/p99, the manager process's CPU
//                                   per command (getrusage) and the agents' CPU per command
//                                   (/proc/PID/stat), raw and net of the agents' idle CPU (measured
//                                   over 2 s just before).
//   Each also with star:1: the star discovery profile (agents --star 127.0.0.1, the Manager
//   Discovery::kStar), where agents announce only to the managers' reserved ids and never meet
//   each other, against star:0, the default multicast discovery.
//   BM_SampleIngest/secured:s       16 agents at --sample-ms 100 (160 samples/s in all), a Manager
//                                   with samples on counting subscribe_samples callbacks: after 1 s
//                                   of warm-up, one 5 s window: samples/s received, manager and
//                                   agents' CPU per sample.
//
// Secured: one PKI for the whole run (cloudmgr::pki::init + an identity manager.admin and one
// agent.bench-<i> per host), made in this process under its temporary directory.
// Fast DDS 2.9.1 sometimes loses a secure handshake for good when many participants meet (the
// agents also handshake each other in the default multicast discovery). Bring-up: wait 15 s for
// all hosts; if the manager's participant has handshakes pending (Manager::unreached_agents),
// reopen the Manager (a new participant), at most 3 times (counter `reconnects`); hosts still
// missing with no pending handshake get their agent process restarted, at most 3 rounds (counter
// `agent_restarts`). Otherwise the run is skipped saying which hosts are missing.
//
// No bare baseline in this binary: the comparison asked for here is secured against unsecured
// through the same library. A bare Fast DDS group-command baseline comes with issue 9.
//
// DDS participants stay on this machine (the TransportConfig defaults: UDP on 127.0.0.1 + shared
// memory) in domains 212-219 (multicast) and 222-229 (star), one per benchmark configuration, each used by one run at a
// time. Agents are stopped with SIGTERM (a clean leave); one that ignores it for 20 s is killed, and the shared-memory
// files it had open are removed at exit when no live process uses them.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cloudmgr/cloudmgr.h"
#include "cloudmgr/pki.h"

extern char** environ;  // NOLINT(readability-identifier-naming)

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kGroup[] = "bench";
constexpr int kMaxHosts = 16;
constexpr int kCommandIterations = 300;
constexpr int kWarmupCommands = 20;
constexpr auto kCommandTimeout = milliseconds(10'000);
constexpr auto kIdleWindow = milliseconds(2000);
constexpr auto kHostsTimeout = milliseconds(15'000);
constexpr auto kStalledMinAge = milliseconds(1000);
constexpr int kMaxReconnects = 3;
constexpr int kMaxRestartRounds = 3;
constexpr int kIngestHosts = 16;
constexpr int kIngestSampleMs = 100;
constexpr auto kIngestWarmup = milliseconds(1000);
constexpr auto kIngestWindow = milliseconds(5000);
// Domains: group command 212-217 (N = 1, 4, 16 x unsecured, secured), ingest 218-219.
constexpr std::uint32_t kCommandDomainBase = 212;
constexpr std::uint32_t kIngestDomainBase = 218;
// The star profile's runs use the same layout 10 domains up (222-229).
constexpr std::uint32_t kStarDomainOffset = 10;
constexpr char kStarAddress[] = "127.0.0.1";

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double timeval_s(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; }

// CPU time of this whole process (every thread, Fast DDS's included), in seconds.
double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return timeval_s(ru.ru_utime) + timeval_s(ru.ru_stime);
}

// utime + stime of another process, in seconds (/proc/PID/stat fields 14 and 15).
std::optional<double> proc_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // field 3 (state) comes first
    if (i == 14) {
      utime = std::stoull(field);
    } else if (i == 15) {
      stime = std::stoull(field);
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Nearest-rank percentile of a sorted vector.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

std::string host_id(int i) { return "bench-" + std::to_string(i); }

// ---------------------------------------------------------------------------------------------
// Fast DDS shared-memory files (/dev/shm/fastrtps_*, /dev/shm/sem.fastrtps_*), for the cleanup
// after an agent that had to be killed (as in failure_bench.cpp).

bool is_dds_shm(const std::string& path) {
  return path.rfind("/dev/shm/fastrtps_", 0) == 0 || path.rfind("/dev/shm/sem.fastrtps_", 0) == 0;
}

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

// Every DDS shared-memory file some other live process has mapped or open.
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
std::set<std::string> g_shm_killed;  // open in an agent this program had to kill

void remove_killed_agents_shm() {
  if (g_shm_killed.empty()) {
    return;
  }
  const std::set<std::string> in_use = shm_files_in_use();
  int removed = 0;
  for (const auto& f : g_shm_killed) {
    std::error_code ec;
    if (g_shm_before.count(f) == 0 && in_use.count(f) == 0 && std::filesystem::remove(f, ec)) {
      ++removed;
    }
  }
  std::fprintf(stderr, "security_bench: removed %d shared-memory files left by agents it had to kill\n", removed);
}

// ---------------------------------------------------------------------------------------------
// Agent processes. Live pids are registered so that SIGINT/SIGTERM of the benchmark stops them.

// Slots of live agent pids (0: free); lock-free so that the signal handler may read them.
std::array<std::atomic<pid_t>, 4 * kMaxHosts> g_live_agents{};

void register_live(pid_t pid) {
  for (auto& slot : g_live_agents) {
    pid_t free = 0;
    if (slot.compare_exchange_strong(free, pid)) {
      return;
    }
  }
}

void unregister_live(pid_t pid) {
  for (auto& slot : g_live_agents) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) {
      return;
    }
  }
}

// SIGINT/SIGTERM of the benchmark: stop the agents (kill() and _exit() only: async-signal-safe).
void on_fatal_signal(int sig) {
  for (auto& slot : g_live_agents) {
    if (const pid_t pid = slot.load(); pid > 0) {
      kill(pid, SIGTERM);
    }
  }
  _exit(128 + sig);
}

class AgentProcess {
 public:
  AgentProcess(std::vector<std::string> args, std::string log) : args_(std::move(args)), log_(std::move(log)) {
    start();
  }
  ~AgentProcess() {
    signal_stop();
    reap(Clock::now() + std::chrono::seconds(20));
  }
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log() const { return log_; }

  // Whether the process has exited (reaped here).
  bool exited() {
    if (pid_ <= 0) {
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      forget();
      return true;
    }
    return false;
  }

  void signal_stop() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
    }
  }

  // Waits for the process signalled by signal_stop() until `deadline`, then kills it.
  void reap(Clock::time_point deadline) {
    if (pid_ <= 0) {
      return;
    }
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() >= deadline) {
        std::fprintf(stderr, "security_bench: agent %d ignored SIGTERM: killing it\n", pid_);
        shm_files_of(std::to_string(pid_), g_shm_killed);
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    forget();
  }

  void restart() {
    signal_stop();
    reap(Clock::now() + std::chrono::seconds(20));
    start();
  }

  // The last few hundred characters of its log.
  std::string log_tail() const {
    std::ifstream in(log_);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return text.size() > 400 ? text.substr(text.size() - 400) : text;
  }

 private:
  void start() {
    std::vector<char*> argv;
    argv.reserve(args_.size() + 1);
    for (auto& a : args_) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      std::fprintf(stderr, "security_bench: cannot start %s (error %d)\n", argv[0], rc);
      std::abort();
    }
    register_live(pid_);
  }

  void forget() {
    unregister_live(pid_);
    pid_ = -1;
  }

  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = -1;
};

struct TempDir {
  explicit TempDir(const std::filesystem::path& parent) {
    std::string pattern = (parent / "security_bench.XXXXXX").string();
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

// The run's directory (the PKI, and each benchmark run's agent state), removed at exit.
std::unique_ptr<TempDir> g_root;

// The PKI, made once per process on first use; its directory, or empty after an error (in `error`).
const std::string& pki_dir(std::string& error) {
  static std::string dir;
  static std::string failure;
  static bool made = false;
  if (!made) {
    made = true;
    const std::string d = (g_root->path / "pki").string();
    auto fail = [&](const std::string& what, const cloudmgr::Status& s) { failure = what + ": " + s.to_string(); };
    if (auto r = cloudmgr::pki::init({.dir = d}); !r.ok()) {
      fail("pki::init", r.status());
    } else if (auto m = cloudmgr::pki::issue({.dir = d, .role = cloudmgr::pki::Role::kManager, .name = "admin"});
               !m.ok()) {
      fail("pki::issue manager.admin", m.status());
    } else {
      for (int i = 0; i < kMaxHosts && failure.empty(); ++i) {
        if (auto a = cloudmgr::pki::issue({.dir = d, .role = cloudmgr::pki::Role::kAgent, .name = host_id(i)});
            !a.ok()) {
          fail("pki::issue agent." + host_id(i), a.status());
        }
      }
    }
    if (failure.empty()) {
      dir = d;
    }
  }
  error = failure;
  return dir;
}

// ---------------------------------------------------------------------------------------------
// N agents in group "bench" and a Manager, all online.

struct FleetOptions {
  int hosts = 1;
  bool secured = false;
  bool star = false;  // star discovery (shared/DESIGN.md) instead of multicast
  std::uint32_t domain = 0;
  int sample_ms = 1000;
  bool manager_samples = false;
};

class Fleet {
 public:
  explicit Fleet(FleetOptions options) : o_(options), dir_(g_root->path) {}
  ~Fleet() { stop(); }
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Starts the agents and the Manager and waits until every host is online. Empty, or what failed.
  std::string start() {
    if (o_.secured) {
      std::string error;
      pki_ = pki_dir(error);
      if (pki_.empty()) {
        return "PKI: " + error;
      }
    }
    for (int i = 0; i < o_.hosts; ++i) {
      const std::string id = host_id(i);
      std::vector<std::string> args{CLOUDMGR_BENCH_AGENT_BIN,
                                    "--host-id",
                                    id,
                                    "--uri",
                                    std::string("test://") + CLOUDMGR_BENCH_HOST_XML,
                                    "--group",
                                    kGroup,
                                    "--state-dir",
                                    (dir_.path / id).string(),
                                    "--domain",
                                    std::to_string(o_.domain),
                                    "--sample-ms",
                                    std::to_string(o_.sample_ms)};
      if (o_.secured) {
        args.insert(args.end(), {"--pki", pki_});
      }
      if (o_.star) {
        args.insert(args.end(), {"--star", kStarAddress});
      }
      agents_.push_back(std::make_unique<AgentProcess>(std::move(args), (dir_.path / (id + ".log")).string()));
    }
    if (std::string e = open_manager(); !e.empty()) {
      return e;
    }
    int restart_rounds = 0;
    for (;;) {
      if (manager_->wait_for_hosts(static_cast<std::size_t>(o_.hosts), kHostsTimeout).ok()) {
        return {};
      }
      for (auto& a : agents_) {
        if (a->exited()) {
          return "agent exited (" + a->log() + "): " + a->log_tail();
        }
      }
      std::vector<int> missing;
      for (int i = 0; i < o_.hosts; ++i) {
        auto h = manager_->host(host_id(i));
        if (!h || !h->online()) {
          missing.push_back(i);
        }
      }
      const std::vector<std::string> stalled = manager_->unreached_agents(kStalledMinAge);
      std::string names;
      for (const auto& s : stalled) {
        names += " " + s;
      }
      if (!stalled.empty() && reconnects_ < kMaxReconnects) {
        std::fprintf(stderr, "security_bench: %zu hosts missing, handshakes pending with%s: reopening the Manager\n",
                     missing.size(), names.c_str());
        manager_.reset();
        ++reconnects_;
        if (std::string e = open_manager(); !e.empty()) {
          return e;
        }
        continue;
      }
      if (!missing.empty() && restart_rounds < kMaxRestartRounds) {
        ++restart_rounds;
        for (int i : missing) {
          std::fprintf(stderr, "security_bench: host %s not online: restarting its agent\n", host_id(i).c_str());
          agents_[static_cast<std::size_t>(i)]->restart();
          ++agent_restarts_;
        }
        continue;
      }
      std::string text;
      for (int i : missing) {
        text += " " + host_id(i);
      }
      return std::to_string(o_.hosts - static_cast<int>(missing.size())) + " of " + std::to_string(o_.hosts) +
             " hosts online after " + std::to_string(reconnects_) + " reconnects and " +
             std::to_string(agent_restarts_) + " agent restarts; missing:" + text +
             (names.empty() ? "" : "; handshakes pending:" + names);
    }
  }

  // Closes the Manager, then stops every agent (SIGTERM to all, then reaps them).
  void stop() {
    manager_.reset();
    for (auto& a : agents_) {
      a->signal_stop();
    }
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    for (auto& a : agents_) {
      a->reap(deadline);
    }
    agents_.clear();
  }

  cloudmgr::Manager& manager() { return *manager_; }
  int reconnects() const { return reconnects_; }
  int agent_restarts() const { return agent_restarts_; }

  // The agents' total CPU (seconds).
  double agents_cpu_s() const {
    double total = 0;
    for (const auto& a : agents_) {
      total += proc_cpu_s(a->pid()).value_or(0);
    }
    return total;
  }

 private:
  std::string open_manager() {
    cloudmgr::ManagerOptions mo;
    mo.transport.domain_id = o_.domain;
    mo.transport.pki_dir = pki_;
    if (o_.star) {
      mo.transport.discovery = cloudmgr::spi::TransportConfig::Discovery::kStar;
      mo.transport.initial_peers = {kStarAddress};
    }
    mo.name = "admin";
    mo.samples = o_.manager_samples;
    auto m = cloudmgr::Manager::open(std::move(mo));
    if (!m.ok()) {
      return "Manager::open: " + m.status().to_string();
    }
    manager_ = std::move(*m);
    return {};
  }

  FleetOptions o_;
  TempDir dir_;
  std::string pki_;
  std::vector<std::unique_ptr<AgentProcess>> agents_;
  std::unique_ptr<cloudmgr::Manager> manager_;
  int reconnects_ = 0;
  int agent_restarts_ = 0;
};

// One group command, checked: empty, or what went wrong.
std::string group_command(cloudmgr::Manager& m, int hosts) {
  auto r = m.execute(cloudmgr::Target::group(kGroup), "host.info", {}, {.timeout = kCommandTimeout});
  if (!r.ok()) {
    return "execute: " + r.status().to_string();
  }
  if (r->hosts.size() != static_cast<std::size_t>(hosts) || !r->all_ok()) {
    std::string text = std::to_string(r->count(cloudmgr::HostResult::Outcome::kOk)) + " of " +
                       std::to_string(r->hosts.size()) + " results ok (expected " + std::to_string(hosts) + ")";
    for (const auto& h : r->hosts) {
      if (h.outcome != cloudmgr::HostResult::Outcome::kOk) {
        text += "; " + h.host_id + ": " + h.status.to_string();
        break;
      }
    }
    return text;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// range(0): hosts, range(1): secured (0/1), range(2): star discovery (0: multicast, 1: star).
void BM_GroupCommand(benchmark::State& state) {
  const int hosts = static_cast<int>(state.range(0));
  const bool secured = state.range(1) != 0;
  const bool star = state.range(2) != 0;
  const std::uint32_t index = hosts == 1 ? 0 : hosts == 4 ? 1 : 2;
  Fleet fleet({.hosts = hosts,
               .secured = secured,
               .star = star,
               .domain = (star ? kStarDomainOffset : 0) + kCommandDomainBase + 2 * index + (secured ? 1 : 0),
               .sample_ms = 1000,
               .manager_samples = false});
  const auto bring_up = Clock::now();
  if (std::string e = fleet.start(); !e.empty()) {
    state.SkipWithError(e.c_str());
    return;
  }
  const double bring_up_s = seconds(Clock::now() - bring_up);
  cloudmgr::Manager& m = fleet.manager();
  for (int i = 0; i < kWarmupCommands; ++i) {
    if (std::string e = group_command(m, hosts); !e.empty()) {
      state.SkipWithError(("warm-up command: " + e).c_str());
      return;
    }
  }
  // The agents' and the manager's CPU while idle (monitoring ticks, announcements, heartbeats).
  const double idle_agents0 = fleet.agents_cpu_s();
  const double idle_mgr0 = process_cpu_s();
  const auto idle_start = Clock::now();
  std::this_thread::sleep_for(kIdleWindow);
  const double idle_s = seconds(Clock::now() - idle_start);
  const double agents_idle_rate = (fleet.agents_cpu_s() - idle_agents0) / idle_s;  // CPU s per s
  const double mgr_idle_rate = (process_cpu_s() - idle_mgr0) / idle_s;

  std::vector<double> latency_us;
  latency_us.reserve(kCommandIterations);
  const double agents0 = fleet.agents_cpu_s();
  const double mgr0 = process_cpu_s();
  const auto start = Clock::now();
  for (auto _ : state) {
    (void)_;
    const auto t0 = Clock::now();
    std::string e = group_command(m, hosts);
    latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!e.empty()) {
      state.SkipWithError(e.c_str());
      break;
    }
  }
  const double elapsed_s = seconds(Clock::now() - start);
  const double mgr_cpu = process_cpu_s() - mgr0;
  const double agents_cpu = fleet.agents_cpu_s() - agents0;
  const auto n = static_cast<double>(latency_us.size());
  std::sort(latency_us.begin(), latency_us.end());
  state.counters["p50_us"] = percentile(latency_us, 50);
  state.counters["p90_us"] = percentile(latency_us, 90);
  state.counters["p99_us"] = percentile(latency_us, 99);
  state.counters["mgr_cpu_us_per_cmd"] = mgr_cpu / n * 1e6;
  state.counters["mgr_net_cpu_us_per_cmd"] = (mgr_cpu - mgr_idle_rate * elapsed_s) / n * 1e6;
  state.counters["agents_cpu_us_per_cmd"] = agents_cpu / n * 1e6;
  state.counters["agents_net_cpu_us_per_cmd"] = (agents_cpu - agents_idle_rate * elapsed_s) / n * 1e6;
  state.counters["agents_idle_cpu_pct"] = agents_idle_rate * 100;
  state.counters["mgr_idle_cpu_pct"] = mgr_idle_rate * 100;
  state.counters["bring_up_s"] = bring_up_s;
  state.counters["reconnects"] = fleet.reconnects();
  state.counters["agent_restarts"] = fleet.agent_restarts();
}

BENCHMARK(BM_GroupCommand)
    ->ArgNames({"N", "secured", "star"})
    // Each unsecured run next to its secured one (ArgsProduct would run all unsecured first).
    ->Args({1, 0, 0})
    ->Args({1, 1, 0})
    ->Args({4, 0, 0})
    ->Args({4, 1, 0})
    ->Args({16, 0, 0})
    ->Args({16, 1, 0})
    ->Args({1, 0, 1})
    ->Args({1, 1, 1})
    ->Args({4, 0, 1})
    ->Args({4, 1, 1})
    ->Args({16, 0, 1})
    ->Args({16, 1, 1})
    ->Iterations(kCommandIterations)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// range(0): secured (0/1), range(1): star discovery (0/1).
void BM_SampleIngest(benchmark::State& state) {
  const bool secured = state.range(0) != 0;
  const bool star = state.range(1) != 0;
  Fleet fleet({.hosts = kIngestHosts,
               .secured = secured,
               .star = star,
               .domain = (star ? kStarDomainOffset : 0) + kIngestDomainBase + (secured ? 1 : 0),
               .sample_ms = kIngestSampleMs,
               .manager_samples = true});
  if (std::string e = fleet.start(); !e.empty()) {
    state.SkipWithError(e.c_str());
    return;
  }
  std::atomic<std::uint64_t> received{0};
  auto sub = fleet.manager().subscribe_samples([&](const cloudmgr::HostSample&) { received.fetch_add(1); });
  if (!sub.ok()) {
    state.SkipWithError(("subscribe_samples: " + sub.status().to_string()).c_str());
    return;
  }
  std::this_thread::sleep_for(kIngestWarmup);
  double samples_per_s = 0;
  double mgr_us_per_sample = 0;
  double agents_us_per_sample = 0;
  for (auto _ : state) {
    (void)_;
    const std::uint64_t n0 = received.load();
    const double mgr0 = process_cpu_s();
    const double agents0 = fleet.agents_cpu_s();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(kIngestWindow);
    const double window_s = seconds(Clock::now() - t0);
    const double mgr_cpu = process_cpu_s() - mgr0;
    const double agents_cpu = fleet.agents_cpu_s() - agents0;
    const auto samples = static_cast<double>(received.load() - n0);
    state.SetIterationTime(window_s);
    if (samples <= 0) {
      state.SkipWithError("no sample arrived in the window");
      break;
    }
    samples_per_s = samples / window_s;
    mgr_us_per_sample = mgr_cpu / samples * 1e6;
    agents_us_per_sample = agents_cpu / samples * 1e6;
  }
  sub->reset();
  state.counters["samples_per_s"] = samples_per_s;
  state.counters["expected_per_s"] = kIngestHosts * 1000.0 / kIngestSampleMs;
  state.counters["mgr_cpu_us_per_sample"] = mgr_us_per_sample;
  state.counters["agents_cpu_us_per_sample"] = agents_us_per_sample;
  state.counters["reconnects"] = fleet.reconnects();
  state.counters["agent_restarts"] = fleet.agent_restarts();
}

BENCHMARK(BM_SampleIngest)
    ->ArgNames({"secured", "star"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  g_shm_before = shm_files_present();
  g_root = std::make_unique<TempDir>(std::filesystem::temp_directory_path());
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_root.reset();
  remove_killed_agents_shm();
  return 0;
}
