// Secured at scale (issue 7; shared/FACTS.md: Fast DDS 2.9.1 loses some secure handshakes for
// good when many participants meet). 32 secured cloudmgr-agent processes on simulated hosts,
// started all at once in the star discovery profile (agents announce only to the managers' ids,
// so they never handshake each other) with their self-heal on (an agent that does not reach a
// manager renews its participant), and a long-lived manager in this process. Asserted: every
// agent matched with the manager and answering a group command; then, with a long-lived local
// manager (`cloudctl daemon`) started, fresh cloudctl calls (a new process each, as a user's shell
// would run them) list every host and reach every member of the group, every time. One call with
// a manager of its own (--no-daemon) is measured and printed, not asserted: that path can lose
// handshakes. The time to all matched, the daemon's warm-up and the renewals are printed (and
// recorded as test properties). DDS domain 190, loopback and shared memory only.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cloudmgr/cloudmgr.h"
#include "support/agent_process.h"
#include "support/text.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr std::uint32_t kDomain = 190;
constexpr int kAgents = 32;
constexpr int kCloudctlRuns = 3;
constexpr std::uint32_t kLeaseMs = 4000;  // agents announce every kLeaseMs / 4

using testing::lines_with;
using testing::occurrences;
using testing::slurp;

// Runs a command line, returns its exit status and standard output (standard error goes to
// `err_file`).
int run(const std::string& command, std::string& out, const fs::path& err_file) {
  out.clear();
  FILE* p = ::popen((command + " 2>>" + err_file.string()).c_str(), "r");
  if (p == nullptr) {
    return -1;
  }
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    out.append(buf, n);
  }
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// `cloudctl daemon` (posix_spawn, never a bare fork: this process has a DDS participant), its
// output in `log`; stopped with SIGTERM when destroyed.
class DaemonProcess {
 public:
  DaemonProcess(std::vector<std::string> args, fs::path log)
      : log_(std::move(log)), pid_(testing::spawn_logged(std::move(args), log_)) {}
  ~DaemonProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the daemon's exit status " << status;
    }
  }
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // Until its log holds `text` (false at the deadline, or when it exited).
  bool wait_for_log(const std::string& text, milliseconds limit) {
    const auto end = steady_clock::now() + limit;
    while (steady_clock::now() < end) {
      if (slurp(log_).find(text) != std::string::npos) {
        return true;
      }
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
};

class SecuredScale : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("cloudmgr-scale-" + std::to_string(getpid()));
    fs::remove_all(root_);
    pki_ = (root_ / "pki").string();
    ASSERT_TRUE(pki::init({.dir = pki_}).ok());
    ASSERT_TRUE(pki::issue({.dir = pki_, .role = pki::Role::kManager, .name = "admin"}).ok());
    for (int i = 0; i < kAgents; ++i) {
      ids_.push_back((i < 10 ? "node0" : "node") + std::to_string(i));
      ASSERT_TRUE(pki::issue({.dir = pki_, .role = pki::Role::kAgent, .name = ids_.back()}).ok());
    }
  }
  void TearDown() override {
    daemon_.reset();
    manager_.reset();
    agents_.clear();
    if (HasFailure()) {
      for (const auto& id : ids_) {
        const fs::path log = root_ / id / "agent.log";
        if (fs::exists(log)) {
          std::cerr << "---- " << log << "\n" << slurp(log) << "\n";
        }
      }
      std::cerr << "---- cloudctl stderr\n" << slurp(root_ / "cloudctl.err") << "\n";
      std::cerr << "---- daemon log\n" << slurp(root_ / "daemon.log") << "\n";
    }
    fs::remove_all(root_);
  }

  std::size_t online() const {
    const auto hosts = manager_->hosts();
    return static_cast<std::size_t>(
        std::count_if(hosts.begin(), hosts.end(), [](const HostEntry& h) { return h.online(); }));
  }

  std::size_t renewals() const {
    std::size_t n = 0;
    for (const auto& id : ids_) {
      n += lines_with(slurp(root_ / id / "agent.log"), testing::kRenewalLogLine).size();
    }
    return n;
  }

  // cloudctl's command line for this cloud, its daemon's socket in the test's directory.
  std::vector<std::string> cloudctl_args(const std::vector<std::string>& args) const {
    std::vector<std::string> out = {CLOUDMGR_CLOUDCTL_BIN,
                                    "--domain",
                                    std::to_string(kDomain),
                                    "--pki",
                                    pki_,
                                    "--star",
                                    "127.0.0.1",
                                    "--inventory",
                                    "none",
                                    "--store",
                                    (root_ / "templates").string(),
                                    "--daemon",
                                    (root_ / "run" / "cloudctl.sock").string(),
                                    "--json"};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }
  std::string cloudctl(const std::string& args) const {
    std::string line;
    for (const auto& a : cloudctl_args({})) {
      line += a + " ";
    }
    return line + args;
  }

  static std::size_t count_online(const std::string& hosts_json) {
    const auto hosts = nlohmann::json::parse(hosts_json, nullptr, false);
    if (!hosts.is_array()) {
      return 0;
    }
    return static_cast<std::size_t>(std::count_if(
        hosts.begin(), hosts.end(), [](const nlohmann::json& h) { return h.value("state", "") == "online"; }));
  }

  struct Fresh {
    std::size_t listed_online = 0;
    std::size_t reached = 0;
  };

  // One fresh `cloudctl hosts` and one group command (through the daemon or with --no-daemon);
  // prints what each reached, and for a host the command missed, which leg was lost.
  Fresh fresh_call(int run_no, const fs::path& err, bool daemon) {
    Fresh f;
    const std::string how = daemon ? "" : "--no-daemon ";
    std::string out;
    const auto call_started = steady_clock::now();
    EXPECT_EQ(run(cloudctl(how + "hosts"), out, err), 0) << "run " << run_no << ": " << out;
    const double hosts_s = std::chrono::duration<double>(steady_clock::now() - call_started).count();
    f.listed_online = count_online(out);
    const auto command_started = steady_clock::now();
    (void)run(cloudctl(how + "vm autostart db1 on --group fleet"), out, err);
    const double command_s = std::chrono::duration<double>(steady_clock::now() - command_started).count();
    const auto replies = nlohmann::json::parse(out, nullptr, false);
    EXPECT_TRUE(replies.is_object() && replies.contains("hosts")) << out;
    if (!replies.is_object() || !replies.contains("hosts")) {
      return f;
    }
    const std::string command_id = replies.value("command_id", "");
    const auto& hs = replies["hosts"];
    for (const auto& h : hs) {
      if (h.value("outcome", "") == "ok") {
        ++f.reached;
        continue;
      }
      // Which leg was lost: an agent that logged the command received it (its reply was lost).
      const std::string host = h.value("host", "");
      const bool received = slurp(root_ / host / "audit.jsonl").find(command_id) != std::string::npos;
      std::printf("run %d: %s %s (%s), the agent %s the command\n", run_no, host.c_str(),
                  h.value("outcome", "").c_str(), h.value("message", "").c_str(),
                  received ? "received" : "never received");
    }
    for (const auto& id : ids_) {
      if (std::none_of(hs.begin(), hs.end(), [&](const nlohmann::json& h) { return h.value("host", "") == id; })) {
        std::printf("run %d: %s not among the command's hosts (this cloudctl never saw it)\n", run_no, id.c_str());
      }
    }
    std::printf("%s cloudctl run %d: hosts listed %zu online in %.2f s; the group command reached %zu in %.2f s\n",
                daemon ? "through the daemon," : "without a daemon (measured, not asserted),", run_no, f.listed_online,
                hosts_s, f.reached, command_s);
    return f;
  }

  fs::path root_;
  std::string pki_;
  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<testing::AgentProcess>> agents_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(SecuredScale, ThirtyTwoAgentsAllMatchAndAnswerEveryTime) {
  spi::TransportConfig t;
  t.domain_id = kDomain;
  t.discovery = spi::TransportConfig::Discovery::kStar;
  t.initial_peers = {"127.0.0.1"};
  t.agent_lease_ms = kLeaseMs;
  t.announce_period_ms = kLeaseMs / 4;
  t.pki_dir = pki_;
  auto m = Manager::open({.transport = t, .name = "admin"});
  ASSERT_TRUE(m.ok()) << m.status();
  manager_ = std::move(*m);

  const auto started = steady_clock::now();
  for (const auto& id : ids_) {
    agents_.push_back(
        std::make_unique<testing::AgentProcess>(id, kDomain, root_ / id, std::vector<std::string>{"fleet"}, kLeaseMs,
                                                std::vector<std::string>{"--pki", pki_, "--star", "127.0.0.1"}));
  }
  const Status all = manager_->wait_until(
      [&](const Manager& mm) {
        const auto hosts = mm.hosts();
        return std::count_if(hosts.begin(), hosts.end(), [](const HostEntry& h) { return h.online(); }) == kAgents;
      },
      milliseconds(120'000));
  const double matched_s = std::chrono::duration<double>(steady_clock::now() - started).count();
  ASSERT_TRUE(all.ok()) << online() << " of " << kAgents << " agents online after " << matched_s << " s";
  std::printf("all %d secured agents matched with the manager %.1f s after they were started (%zu renewals)\n", kAgents,
              matched_s, renewals());
  RecordProperty("all_matched_ms", static_cast<int>(matched_s * 1000));

  auto r = manager_->execute(Target::group("fleet"), "host.info", {}, {.timeout = milliseconds(30'000)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->hosts.size(), static_cast<std::size_t>(kAgents));
  EXPECT_EQ(r->count(HostResult::Outcome::kOk), static_cast<std::size_t>(kAgents));

  // Fresh cloudctl calls through the long-lived local manager (`cloudctl daemon`, a secured
  // participant of its own, started now that the agents run): every call lists every host and
  // reaches every member of the group.
  const fs::path err = root_ / "cloudctl.err";
  daemon_ = std::make_unique<DaemonProcess>(cloudctl_args({"daemon"}), root_ / "daemon.log");
  const auto daemon_started = steady_clock::now();
  ASSERT_TRUE(daemon_->wait_for_log("serving", milliseconds(120'000))) << slurp(root_ / "daemon.log");
  // Warm: its manager has every host (agents heal a handshake it lost: they renew their
  // participant when they see a manager they are not matched with).
  std::size_t daemon_online = 0;
  while (steady_clock::now() - daemon_started < milliseconds(120'000)) {
    std::string out;
    if (run(cloudctl("hosts"), out, err) == 0) {
      daemon_online = count_online(out);
      if (daemon_online == static_cast<std::size_t>(kAgents)) {
        break;
      }
    }
    std::this_thread::sleep_for(milliseconds(500));
  }
  const double warm_s = std::chrono::duration<double>(steady_clock::now() - daemon_started).count();
  ASSERT_EQ(daemon_online, static_cast<std::size_t>(kAgents))
      << "the daemon saw " << daemon_online << " after " << warm_s << " s";
  std::printf("the daemon had all %d hosts %.1f s after it started\n", kAgents, warm_s);
  RecordProperty("daemon_warm_ms", static_cast<int>(warm_s * 1000));

  for (int run_no = 1; run_no <= kCloudctlRuns; ++run_no) {
    const Fresh f = fresh_call(run_no, err, /*daemon=*/true);
    EXPECT_EQ(f.listed_online, static_cast<std::size_t>(kAgents)) << "run " << run_no;
    EXPECT_EQ(f.reached, static_cast<std::size_t>(kAgents)) << "run " << run_no;
  }
  EXPECT_GE(occurrences(slurp(root_ / "daemon.log"), "-> exit 0"), static_cast<std::size_t>(2 * kCloudctlRuns))
      << "the calls did not go through the daemon:\n"
      << slurp(root_ / "daemon.log");

  // The same, measured (not asserted) with a manager of the call's own (--no-daemon): a fresh
  // secured participant meets the 32 agents at once and Fast DDS 2.9.1 may lose some of its
  // handshakes for good (shared/FACTS.md); cloudctl reconnects when it sees one stall.
  (void)fresh_call(0, err, /*daemon=*/false);

  const std::string errors = slurp(err);
  std::printf("cloudctl reconnects for stalled handshakes: %zu; agent renewals in all: %zu\n",
              occurrences(errors, "reconnecting"), renewals());
  RecordProperty("agent_renewals", static_cast<int>(renewals()));
  for (const auto& id : ids_) {
    for (const auto& line : lines_with(slurp(root_ / id / "agent.log"), testing::kRenewalLogLine)) {
      std::printf("%s: %s\n", id.c_str(), line.c_str());
    }
  }
}

}  // namespace
}  // namespace cloudmgr
