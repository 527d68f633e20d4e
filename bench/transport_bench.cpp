// DDS against client-server (issue 9): the same group command, the same agents, the same Manager
// API, over each transport; only TransportConfig differs.
//
//   BM_GroupCommand/N:n/transport:t/secured:s/paced:p
//     n cloudmgr-agent processes (fork + exec) on simulated hosts (tests/data/hosts/node-small.xml),
//     all in group "bench", monitoring off (--sample-ms 0) so that only command traffic and the
//     transport's own keep-alive traffic move; a Manager in this process.
//     transport: 0 DDS (UDP on 127.0.0.1 only: no shared memory, so that every byte crosses lo and
//     is counted), 1 TCP with a persistent connection per agent, 2 TCP with a connection per request
//     (one host after another, state polled every announce period).
//     secured: DDS-Security (DDS) or TLS 1.3 with mutual authentication (TCP), one PKI per run.
//     paced: 1 = one command a second instead of back to back.
//     Per point: latency of execute(group bench, host.info) until every reply is in, p50/p90/p99;
//     CPU per command of the manager process (getrusage) and of the agents (/proc/PID/stat),
//     net of the same processes' idle CPU (measured over 2 s before); packets and bytes on lo per
//     command, net of the idle traffic over the same 2 s (idle_bytes_per_s: the keep-alive cost);
//     resident memory of the manager and of the agents (VmRSS); start-up: agents spawned until the
//     Manager saw every host (startup_s), and a fresh Manager listing every host (fresh_list_s).
//   BM_GroupOf8InFleet/transport:t: 64 agents, 8 of them in group "g8": bytes on the wire per
//     command to the group against a command to all 64.
//
// The benchmark runs in a network namespace of its own when it may (root: unshare(CLONE_NEWNET),
// then lo is brought up), so the lo counters (/proc/self/net/dev) count this run's traffic only;
// otherwise they include whatever else this machine sends on lo (counter netns = 0).
// CLOUDMGR_BENCH_COMMANDS (default 200) sets the commands per point; CLOUDMGR_BENCH_MAX_N (default
// 16) the largest fleet (64 takes several minutes per transport on 2 cores).
// DDS domains 231-232; TCP agents record their addresses in the run's temporary directory.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloudmgr.h"
#include "cloudmgr/pki.h"

extern char** environ;  // NOLINT(readability-identifier-naming)

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kIdleWindow = milliseconds(2000);
constexpr auto kHostsTimeout = milliseconds(30'000);
constexpr int kWarmupCommands = 10;
constexpr std::uint32_t kDomain = 231;
constexpr std::uint32_t kFleetDomain = 232;
bool g_netns = false;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read before any thread starts
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

double seconds_of(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// utime + stime of another process (/proc/PID/stat fields 14 and 15), in seconds.
double proc_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  if (paren == std::string::npos) {
    return 0;
  }
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) {
      utime = std::stoull(field);
    } else if (i == 15) {
      stime = std::stoull(field);
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// VmRSS of a process ("self" or a pid), in bytes.
double rss_bytes(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtod(line.c_str() + 6, nullptr) * 1024.0;
    }
  }
  return 0;
}

struct Wire {
  double packets = 0;
  double bytes = 0;
};

// What crossed lo so far (transmit side: on lo every packet sent is also received once).
Wire lo_counters() {
  std::ifstream in("/proc/self/net/dev");
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != "lo") {
      continue;
    }
    std::istringstream f(line.substr(colon + 1));
    std::vector<double> v((std::istream_iterator<double>(f)), std::istream_iterator<double>());
    if (v.size() >= 10) {
      return {v[9], v[8]};  // tx packets, tx bytes
    }
  }
  return {};
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
}

// Enters a network namespace of this process's own with lo up; false when not allowed.
bool enter_private_netns() {
  if (unshare(CLONE_NEWNET) != 0) {
    return false;
  }
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  const bool up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 &&
                  (ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING),
                   ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
  if (fd >= 0) {
    close(fd);
  }
  return up;
}

struct Setup {
  int transport = 0;  // 0 dds, 1 tcp persistent, 2 tcp per request
  bool secured = false;
  std::uint32_t domain = kDomain;
};

const char* transport_name(int t) { return t == 0 ? "dds" : t == 1 ? "tcp" : "tcp-per-request"; }

// A run's directory: agents' state, the PKI, the TCP address directory. Removed at the end.
class RunDir {
 public:
  RunDir() : path_(fs::temp_directory_path() / ("cloudmgr-transport-bench-" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~RunDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// n agent processes; stopped (SIGTERM, a clean leave) when destroyed.
class Fleet {
 public:
  Fleet(const Setup& s, const fs::path& dir, int n, int in_g8) : setup_(s), dir_(dir) {
    if (s.secured) {
      const fs::path pki = dir / "pki";
      if (!cloudmgr::pki::init({.dir = pki.string()}).ok() ||
          !cloudmgr::pki::issue({.dir = pki.string(), .role = cloudmgr::pki::Role::kManager, .name = "admin"}).ok()) {
        error_ = "PKI init failed";
        return;
      }
      for (int i = 0; i < n; ++i) {
        auto r = cloudmgr::pki::issue(
            {.dir = pki.string(), .role = cloudmgr::pki::Role::kAgent, .name = "bench-" + std::to_string(i)});
        if (!r.ok()) {
          error_ = r.status().to_string();
          return;
        }
      }
    }
    started_ = Clock::now();
    for (int i = 0; i < n; ++i) {
      spawn(i, i < in_g8);
    }
  }
  ~Fleet() {
    for (pid_t p : pids_) {
      kill(p, SIGTERM);
    }
    for (pid_t p : pids_) {
      int st = 0;
      for (int i = 0; i < 200 && waitpid(p, &st, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(milliseconds(100));
      }
      if (waitpid(p, &st, WNOHANG) == 0) {
        kill(p, SIGKILL);
        waitpid(p, &st, 0);
      }
    }
  }
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  const std::string& error() const { return error_; }
  Clock::time_point started() const { return started_; }
  const std::vector<pid_t>& pids() const { return pids_; }

  cloudmgr::spi::TransportConfig transport() const {
    cloudmgr::spi::TransportConfig t;
    t.domain_id = setup_.domain;
    t.shared_memory = false;
    if (setup_.transport != 0) {
      t.kind = "tcp";
      t.tcp.directory = (dir_ / "agents").string();
      t.tcp.per_request = setup_.transport == 2;
    }
    if (setup_.secured) {
      t.pki_dir = (dir_ / "pki").string();
      t.identity = "manager.admin";
    }
    return t;
  }

  double agents_cpu_s() const {
    double sum = 0;
    for (pid_t p : pids_) {
      sum += proc_cpu_s(p);
    }
    return sum;
  }
  double agents_rss() const {
    double sum = 0;
    for (pid_t p : pids_) {
      sum += rss_bytes(std::to_string(p));
    }
    return sum;
  }

 private:
  void spawn(int i, bool in_g8) {
    const std::string id = "bench-" + std::to_string(i);
    const fs::path state = dir_ / id;
    fs::create_directories(state);
    std::ofstream(state / "agent.json") << "{\"shared_memory\": false, \"refresh_ms\": 5000}\n";
    std::vector<std::string> args = {CLOUDMGR_BENCH_AGENT_BIN,
                                     "--config",
                                     (state / "agent.json").string(),
                                     "--host-id",
                                     id,
                                     "--uri",
                                     std::string("test://") + CLOUDMGR_BENCH_HOST_XML,
                                     "--state-dir",
                                     state.string(),
                                     "--domain",
                                     std::to_string(setup_.domain),
                                     "--group",
                                     "bench",
                                     "--sample-ms",
                                     "0"};
    if (in_g8) {
      args.insert(args.end(), {"--group", "g8"});
    }
    if (setup_.transport != 0) {
      args.insert(args.end(), {"--transport", "tcp", "--tcp-directory", (dir_ / "agents").string()});
    }
    if (setup_.secured) {
      args.insert(args.end(), {"--pki", (dir_ / "pki").string()});
    }
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    const std::string log = (state / "agent.log").string();
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0) {
      pids_.push_back(pid);
    } else {
      error_ = "cannot start " + args[0];
    }
    posix_spawn_file_actions_destroy(&fa);
  }

  Setup setup_;
  fs::path dir_;
  std::vector<pid_t> pids_;
  std::string error_;
  Clock::time_point started_;
};

std::unique_ptr<cloudmgr::Manager> open_manager(const Fleet& fleet, const std::string& name) {
  auto m = cloudmgr::Manager::open(
      {.transport = fleet.transport(), .name = name, .samples = false, .inventory_path = "", .template_dir = ""});
  return m.ok() ? std::move(*m) : nullptr;
}

// One command to `target` that every expected host answered ok; its latency in ms (nullopt otherwise).
std::optional<double> command(cloudmgr::Manager& m, const cloudmgr::Target& target) {
  const auto t0 = Clock::now();
  auto r = m.execute(target, "host.info", {}, {.timeout = milliseconds(10'000)});
  const double ms = seconds_of(Clock::now() - t0) * 1e3;
  if (!r.ok() || !r->all_ok()) {
    return std::nullopt;
  }
  return ms;
}

void BM_GroupCommand(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Setup setup{.transport = static_cast<int>(state.range(1)), .secured = state.range(2) != 0};
  const bool paced = state.range(3) != 0;
  if (n > env_int("CLOUDMGR_BENCH_MAX_N", 16)) {
    state.SkipWithError("N above CLOUDMGR_BENCH_MAX_N");
    return;
  }
  const int commands = paced ? std::max(3, env_int("CLOUDMGR_BENCH_COMMANDS", 200) / 20)
                             : env_int("CLOUDMGR_BENCH_COMMANDS", 200);
  for (auto _ : state) {
    RunDir dir;
    Fleet fleet(setup, dir.path(), n, 0);
    if (!fleet.error().empty()) {
      state.SkipWithError(fleet.error().c_str());
      return;
    }
    auto m = open_manager(fleet, "bench");
    if (!m || !m->wait_for_hosts(static_cast<std::size_t>(n), kHostsTimeout).ok()) {
      state.SkipWithError("not every agent was seen in time");
      return;
    }
    const double startup_s = seconds_of(Clock::now() - fleet.started());
    double fresh_list_s = 0;
    {
      const auto t0 = Clock::now();
      auto fresh = open_manager(fleet, "fresh");
      if (!fresh || !fresh->wait_for_hosts(static_cast<std::size_t>(n), kHostsTimeout).ok()) {
        state.SkipWithError("a fresh manager did not see every agent in time");
        return;
      }
      fresh_list_s = seconds_of(Clock::now() - t0);
    }
    const auto group = cloudmgr::Target::group("bench");
    for (int i = 0; i < kWarmupCommands; ++i) {
      if (!command(*m, group)) {
        state.SkipWithError("a warm-up command failed");
        return;
      }
    }
    // Idle: what the processes and the wire cost with nothing to do.
    const double idle_mgr0 = process_cpu_s();
    const double idle_agents0 = fleet.agents_cpu_s();
    const Wire idle0 = lo_counters();
    std::this_thread::sleep_for(kIdleWindow);
    const double idle_s = seconds_of(kIdleWindow);
    const double idle_mgr_per_s = (process_cpu_s() - idle_mgr0) / idle_s;
    const double idle_agents_per_s = (fleet.agents_cpu_s() - idle_agents0) / idle_s;
    const Wire idle1 = lo_counters();
    const double idle_packets_per_s = (idle1.packets - idle0.packets) / idle_s;
    const double idle_bytes_per_s = (idle1.bytes - idle0.bytes) / idle_s;

    std::vector<double> latencies;
    const double mgr0 = process_cpu_s();
    const double agents0 = fleet.agents_cpu_s();
    const Wire w0 = lo_counters();
    const auto t0 = Clock::now();
    for (int i = 0; i < commands; ++i) {
      const auto next = Clock::now() + milliseconds(1000);
      auto ms = command(*m, group);
      if (!ms) {
        state.SkipWithError("a command did not reach every host ok");
        return;
      }
      latencies.push_back(*ms);
      if (paced) {
        std::this_thread::sleep_until(next);
      }
    }
    const double window_s = seconds_of(Clock::now() - t0);
    const Wire w1 = lo_counters();
    const double k = commands;
    state.SetIterationTime(window_s);
    state.counters["p50_ms"] = percentile(latencies, 50);
    state.counters["p90_ms"] = percentile(latencies, 90);
    state.counters["p99_ms"] = percentile(latencies, 99);
    state.counters["mgr_cpu_us"] = ((process_cpu_s() - mgr0) - idle_mgr_per_s * window_s) / k * 1e6;
    state.counters["agents_cpu_us"] = ((fleet.agents_cpu_s() - agents0) - idle_agents_per_s * window_s) / k * 1e6;
    state.counters["packets"] = ((w1.packets - w0.packets) - idle_packets_per_s * window_s) / k;
    state.counters["bytes"] = ((w1.bytes - w0.bytes) - idle_bytes_per_s * window_s) / k;
    state.counters["idle_bytes_per_s"] = idle_bytes_per_s;
    state.counters["idle_packets_per_s"] = idle_packets_per_s;
    state.counters["mgr_rss_mib"] = rss_bytes("self") / (1 << 20);
    state.counters["agents_rss_mib"] = fleet.agents_rss() / (1 << 20);
    state.counters["startup_s"] = startup_s;
    state.counters["fresh_list_s"] = fresh_list_s;
    state.counters["netns"] = g_netns ? 1 : 0;
    state.SetLabel(fmt::format("{}{}{}", transport_name(setup.transport), setup.secured ? " secured" : "",
                               paced ? " paced 1/s" : ""));
    m.reset();
  }
}

void BM_GroupOf8InFleet(benchmark::State& state) {
  constexpr int kFleet = 64;
  const Setup setup{.transport = static_cast<int>(state.range(0)), .secured = false, .domain = kFleetDomain};
  if (kFleet > env_int("CLOUDMGR_BENCH_MAX_N", 16)) {
    state.SkipWithError("64 agents: set CLOUDMGR_BENCH_MAX_N=64");
    return;
  }
  const int commands = std::max(5, env_int("CLOUDMGR_BENCH_COMMANDS", 200) / 10);
  for (auto _ : state) {
    RunDir dir;
    Fleet fleet(setup, dir.path(), kFleet, 8);
    auto m = open_manager(fleet, "bench");
    if (!m || !m->wait_for_hosts(kFleet, milliseconds(60'000)).ok()) {
      state.SkipWithError("not every agent was seen in time");
      return;
    }
    auto bytes_per_command = [&](const cloudmgr::Target& target, std::vector<double>& lat) -> std::optional<double> {
      const Wire w0 = lo_counters();
      for (int i = 0; i < commands; ++i) {
        auto ms = command(*m, target);
        if (!ms) {
          return std::nullopt;
        }
        lat.push_back(*ms);
      }
      return (lo_counters().bytes - w0.bytes) / commands;
    };
    std::vector<double> g8_lat;
    std::vector<double> all_lat;
    command(*m, cloudmgr::Target::group("g8"));
    const auto t0 = Clock::now();
    auto g8 = bytes_per_command(cloudmgr::Target::group("g8"), g8_lat);
    auto all = bytes_per_command(cloudmgr::Target::all(), all_lat);
    state.SetIterationTime(seconds_of(Clock::now() - t0));
    if (!g8 || !all) {
      state.SkipWithError("a command did not reach every host ok");
      return;
    }
    state.counters["g8_bytes"] = *g8;
    state.counters["all64_bytes"] = *all;
    state.counters["g8_p50_ms"] = percentile(g8_lat, 50);
    state.counters["all64_p50_ms"] = percentile(all_lat, 50);
    state.counters["netns"] = g_netns ? 1 : 0;
    state.SetLabel(transport_name(setup.transport));
  }
}

void group_command_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "transport", "secured", "paced"});
  for (int secured : {0, 1}) {
    for (int n : {1, 4, 16, 64}) {
      for (int t : {0, 1, 2}) {
        b->Args({n, t, secured, 0});
      }
    }
  }
  for (int t : {0, 1, 2}) {
    b->Args({16, t, 0, 1});
  }
}

BENCHMARK(BM_GroupCommand)
    ->Apply(group_command_args)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GroupOf8InFleet)
    ->ArgNames({"transport"})
    ->DenseRange(0, 2)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // Before any thread: unshare(CLONE_NEWNET) applies to the calling thread only.
  g_netns = env_int("CLOUDMGR_BENCH_NETNS", 1) != 0 && enter_private_netns();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
