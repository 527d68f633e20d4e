// The cost of one call through the C ABI against the same call in C++ (issue 8, item 6), in one
// run against the same 4 agent processes on simulated hosts (DDS domain 221, loopback + shared
// memory), each through its own Manager:
//   BM_Hosts/cpp          Manager::hosts()                        (4 hosts, copied out)
//   BM_Hosts/c            cm_manager_hosts() + cm_host_list_free()
//   BM_GroupCommand/cpp   Manager::execute(group "bench", "host.info"), every reply gathered
//   BM_GroupCommand/c     cm_manager_execute(...) + cm_result_free()
// The Python side is bench/binding_bench.py (the same calls through the cloudmgr package and
// the bare ctypes call). Agents are stopped with SIGTERM when the run ends.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cloudmgr.h"
#include "cloudmgr/cloudmgr.h"

extern char** environ;  // NOLINT(readability-identifier-naming)

namespace {

constexpr std::uint32_t kDomain = 221;
constexpr int kAgents = 4;

class Cloud {
 public:
  Cloud() : dir_(std::filesystem::temp_directory_path() / ("cloudmgr-binding-bench-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(dir_);
    for (int i = 0; i < kAgents; ++i) {
      const std::string id = "bench-" + std::to_string(i);
      const auto state = dir_ / id;
      std::filesystem::create_directories(state);
      std::ofstream(state / "agent.json") << R"({"lease_ms": 2000, "announce_ms": 500})"
                                          << "\n";
      std::vector<std::string> args{CLOUDMGR_BENCH_AGENT_BIN,
                                    "--config",
                                    (state / "agent.json").string(),
                                    "--host-id",
                                    id,
                                    "--uri",
                                    std::string("test://") + CLOUDMGR_BENCH_HOST_XML,
                                    "--group",
                                    "bench",
                                    "--state-dir",
                                    state.string(),
                                    "--domain",
                                    std::to_string(kDomain)};
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
      if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
        std::perror("binding_bench: posix_spawn");
        std::abort();
      }
      posix_spawn_file_actions_destroy(&fa);
      pids_.push_back(pid);
    }
    cloudmgr::ManagerOptions o;
    o.transport.domain_id = kDomain;
    o.name = "bench-cpp";
    o.samples = false;
    auto m = cloudmgr::Manager::open(std::move(o));
    if (!m.ok() || !(*m)->wait_for_hosts(kAgents, std::chrono::seconds(20)).ok()) {
      std::fprintf(stderr, "binding_bench: the C++ manager did not see %d hosts\n", kAgents);
      std::abort();
    }
    cpp_ = std::move(*m);
    cm_config* c = nullptr;
    const std::string domain = std::to_string(kDomain);
    if (cm_config_new(&c) != CM_OK || cm_config_set(c, "domain", domain.c_str()) != CM_OK ||
        cm_config_set(c, "name", "bench-c") != CM_OK || cm_config_set(c, "samples", "false") != CM_OK ||
        cm_manager_open(c, &c_) != CM_OK || cm_manager_wait_for_hosts(c_, kAgents, 20000) != CM_OK) {
      std::fprintf(stderr, "binding_bench: C manager: %s\n", cm_last_error());
      std::abort();
    }
    cm_config_free(c);
  }
  ~Cloud() {
    cm_manager_free(c_);
    cpp_.reset();
    for (pid_t p : pids_) {
      kill(p, SIGTERM);
    }
    for (pid_t p : pids_) {
      waitpid(p, nullptr, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Cloud(const Cloud&) = delete;
  Cloud& operator=(const Cloud&) = delete;

  cloudmgr::Manager& cpp() { return *cpp_; }
  cm_manager* c() { return c_; }

 private:
  std::filesystem::path dir_;
  std::vector<pid_t> pids_;
  std::unique_ptr<cloudmgr::Manager> cpp_;
  cm_manager* c_ = nullptr;
};

std::unique_ptr<Cloud> g_cloud;

Cloud& cloud() {
  if (!g_cloud) {
    g_cloud = std::make_unique<Cloud>();
  }
  return *g_cloud;
}

void BM_HostsCpp(benchmark::State& state) {
  auto& m = cloud().cpp();
  for (auto _ : state) {
    auto hosts = m.hosts();
    if (hosts.size() != kAgents) {
      state.SkipWithError("wrong host count");
      break;
    }
    benchmark::DoNotOptimize(hosts);
  }
}
BENCHMARK(BM_HostsCpp)->Name("BM_Hosts/cpp");

void BM_HostsC(benchmark::State& state) {
  cm_manager* m = cloud().c();
  for (auto _ : state) {
    cm_host_list* l = nullptr;
    if (cm_manager_hosts(m, &l) != CM_OK || cm_host_list_size(l) != kAgents) {
      state.SkipWithError(cm_last_error());
      break;
    }
    benchmark::DoNotOptimize(cm_host_list_at(l, 0));
    cm_host_list_free(l);
  }
}
BENCHMARK(BM_HostsC)->Name("BM_Hosts/c");

void BM_GroupCommandCpp(benchmark::State& state) {
  auto& m = cloud().cpp();
  for (auto _ : state) {
    auto r = m.execute(cloudmgr::Target::group("bench"), "host.info", {});
    if (!r.ok() || !r->all_ok() || r->hosts.size() != kAgents) {
      state.SkipWithError("group command failed");
      break;
    }
  }
}
BENCHMARK(BM_GroupCommandCpp)->Name("BM_GroupCommand/cpp")->Unit(benchmark::kMicrosecond)->Iterations(300);

void BM_GroupCommandC(benchmark::State& state) {
  cm_manager* m = cloud().c();
  for (auto _ : state) {
    cm_result* r = nullptr;
    if (cm_manager_execute(m, CM_TARGET_GROUP, "bench", "host.info", nullptr, 0, 30000, &r) != CM_OK ||
        cm_result_count(r, CM_OUTCOME_OK) != kAgents) {
      state.SkipWithError(cm_last_error());
      cm_result_free(r);
      break;
    }
    cm_result_free(r);
  }
}
BENCHMARK(BM_GroupCommandC)->Name("BM_GroupCommand/c")->Unit(benchmark::kMicrosecond)->Iterations(300);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_cloud.reset();
  return 0;
}
