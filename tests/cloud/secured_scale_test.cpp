// Secured at scale (issue 7; shared/FACTS.md: Fast DDS 2.9.1 loses some secure handshakes for
// good when many participants meet). 32 secured cloudmgr-agent processes on simulated hosts,
// started all at once in the star discovery profile (agents announce only to the managers' ids,
// so they never handshake each other) with their self-heal on (an agent that does not reach a
// manager renews its participant), and a long-lived manager in this process. Asserted: every
// agent matched with the manager and answering a group command; then fresh cloudctl calls (a new
// participant each, as a user's shell would run them) list every host and reach every member of
// the group, every time. The time to all matched and the renewals are printed (and recorded as
// test properties). DDS domain 190, loopback and shared memory only.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
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

  std::string cloudctl(const std::string& args) const {
    return "CLOUDMGR_TEMPLATES=" + (root_ / "templates").string() + " " + CLOUDMGR_CLOUDCTL_BIN + " --domain " +
           std::to_string(kDomain) + " --pki " + pki_ + " --star 127.0.0.1 --inventory none --json " + args;
  }

  fs::path root_;
  std::string pki_;
  std::vector<std::string> ids_;
  std::vector<std::unique_ptr<testing::AgentProcess>> agents_;
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

  // Fresh cloudctl calls: each its own secured participant, meeting the 32 agents at once.
  const fs::path err = root_ / "cloudctl.err";
  for (int run_no = 1; run_no <= kCloudctlRuns; ++run_no) {
    std::string out;
    const auto call_started = steady_clock::now();
    ASSERT_EQ(run(cloudctl("hosts"), out, err), 0) << "run " << run_no << ": " << out;
    const double hosts_s = std::chrono::duration<double>(steady_clock::now() - call_started).count();
    const auto hosts = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(hosts.is_array()) << out;
    std::size_t listed_online = 0;
    for (const auto& h : hosts) {
      if (h.value("state", "") == "online") {
        ++listed_online;
      }
    }
    EXPECT_EQ(listed_online, static_cast<std::size_t>(kAgents)) << "run " << run_no;

    ASSERT_EQ(run(cloudctl("vm autostart db1 on --group fleet"), out, err), 0) << "run " << run_no << ": " << out;
    const auto replies = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(replies.is_object()) << out;
    std::size_t ok = 0;
    for (const auto& h : replies["hosts"]) {
      if (h.value("outcome", "") == "ok") {
        ++ok;
      }
    }
    EXPECT_EQ(ok, static_cast<std::size_t>(kAgents)) << "run " << run_no;
    std::printf("fresh cloudctl run %d: hosts listed %zu online in %.1f s; the group command reached %zu\n", run_no,
                listed_online, hosts_s, ok);
  }
  const std::string errors = slurp(err);
  std::printf("cloudctl reconnects for stalled handshakes in %d runs: %zu; agent renewals in all: %zu\n", kCloudctlRuns,
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
