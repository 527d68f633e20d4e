// Agent and Manager together over the in-process transport, each agent on its own
// simulated host (tests/data/hosts/node-small.xml: db1 running, batch1 shut off).
// The same scenarios run over DDS with agents as separate processes in tests/cloud/.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>

#include "cloudmgr/agent.h"
#include "cloudmgr/manager.h"
#include "support/raw_manager.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

std::atomic<std::uint32_t> g_domain{1};

class CloudTest : public ::testing::Test {
 protected:
  void SetUp() override {
    domain_ = g_domain++;
    root_ = fs::temp_directory_path() / fmt("cloudmgr-agent-test-", getpid(), "-", domain_);
    fs::remove_all(root_);
  }
  void TearDown() override {
    agents_.clear();
    manager_.reset();
    fs::remove_all(root_);
  }

  template <typename... T>
  static std::string fmt(const T&... parts) {
    std::string out;
    ((out += to_text(parts)), ...);
    return out;
  }
  static std::string to_text(const std::string& s) { return s; }
  static std::string to_text(const char* s) { return s; }
  template <typename N>
  static std::string to_text(N n) {
    return std::to_string(n);
  }

  spi::TransportConfig transport() const {
    spi::TransportConfig t;
    t.kind = "inproc";
    t.domain_id = domain_;
    return t;
  }

  AgentOptions agent_options(const std::string& id, std::vector<std::string> groups) {
    AgentOptions o;
    o.hypervisor.uri = std::string("test://") + CLOUDMGR_TEST_DATA_DIR + "/hosts/node-small.xml";
    o.hypervisor.host_id = id;
    o.groups = std::move(groups);
    o.state_dir = (root_ / id).string();
    o.transport = transport();
    o.refresh_ms = 500;
    return o;
  }

  Agent& start_agent(const std::string& id, std::vector<std::string> groups = {}) {
    auto a = Agent::start(agent_options(id, std::move(groups)));
    EXPECT_TRUE(a.ok()) << a.status();
    agents_[id] = std::move(*a);
    return *agents_[id];
  }

  Manager& manager() {
    if (!manager_) {
      auto m = Manager::open({.transport = transport(), .name = "test-manager"});
      EXPECT_TRUE(m.ok()) << m.status();
      manager_ = std::move(*m);
    }
    return *manager_;
  }

  static const HostResult& result_for(const CommandResult& r, const std::string& host) {
    for (const auto& h : r.hosts) {
      if (h.host_id == host) {
        return h;
      }
    }
    static const HostResult kNone;
    ADD_FAILURE() << "no result for " << host;
    return kNone;
  }

  std::uint32_t domain_ = 0;
  fs::path root_;
  std::map<std::string, std::unique_ptr<Agent>> agents_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(CloudTest, ManagerSeesHostsAndVmsPublishedBeforeItStarted) {
  start_agent("node1", {"web"});
  start_agent("node2", {"db"});
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  auto hosts = manager().hosts();
  ASSERT_EQ(hosts.size(), 2U);
  EXPECT_EQ(hosts[0].view.info.id, "node1");
  EXPECT_EQ(hosts[0].view.info.cpu.logical_cpus, 8U);
  EXPECT_EQ(hosts[0].view.groups, std::vector<std::string>{"web"});
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return m.vms().size() == 4; }, milliseconds(5000)).ok());
  auto node1_vms = manager().vms("node1");
  ASSERT_EQ(node1_vms.size(), 2U);
  EXPECT_EQ(node1_vms[0].vm.name, "batch1");
  EXPECT_EQ(node1_vms[1].vm.name, "db1");
  EXPECT_EQ(manager().vms(std::nullopt, "db").size(), 2U);
  auto groups = manager().groups();
  EXPECT_EQ(groups["web"], std::vector<std::string>{"node1"});
}

TEST_F(CloudTest, CommandToOneHostRunsThereOnly) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  auto r = manager().execute(Target::host("node2"), "vm.start", {{"vm", "batch1"}});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->hosts.size(), 1U);
  EXPECT_EQ(r->hosts[0].host_id, "node2");
  EXPECT_EQ(r->hosts[0].outcome, HostResult::Outcome::kOk) << r->hosts[0].status;
  // The VM's new state reaches the manager; node1's copy is untouched.
  ASSERT_TRUE(manager()
                  .wait_until(
                      [](const Manager& m) {
                        for (const auto& v : m.vms("node2")) {
                          if (v.vm.name == "batch1") return v.vm.state == VmState::kRunning;
                        }
                        return false;
                      },
                      milliseconds(5000))
                  .ok());
  for (const auto& v : manager().vms("node1")) {
    if (v.vm.name == "batch1") {
      EXPECT_EQ(v.vm.state, VmState::kShutOff);
    }
  }
  EXPECT_EQ(agents_["node1"]->commands_executed(), 0U);
  EXPECT_EQ(agents_["node2"]->commands_executed(), 1U);
}

TEST_F(CloudTest, GroupAndAllCommandsWithPerHostResults) {
  start_agent("node1", {"web"});
  start_agent("node2", {"web"});
  start_agent("node3", {"db"});
  ASSERT_TRUE(manager().wait_for_hosts(3, milliseconds(5000)).ok());
  std::atomic<int> progress{0};
  auto r = manager().execute(Target::group("web"), "vm.suspend", {{"vm", "db1"}},
                             {.on_progress = [&](const HostResult&, std::size_t, std::size_t) { ++progress; }});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->hosts.size(), 2U);
  EXPECT_TRUE(r->all_ok());
  EXPECT_EQ(progress, 2);
  EXPECT_EQ(agents_["node3"]->commands_executed(), 0U);
  // To all: web hosts have db1 paused now, so suspending again fails there only.
  auto all = manager().execute(Target::all(), "vm.suspend", {{"vm", "db1"}});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->hosts.size(), 3U);
  EXPECT_EQ(result_for(*all, "node1").outcome, HostResult::Outcome::kError);
  EXPECT_EQ(result_for(*all, "node1").status.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(result_for(*all, "node3").outcome, HostResult::Outcome::kOk);
  // Payloads come back: a process list and a snapshot list.
  auto ps = manager().execute(Target::host("node3"), "host.ps", {});
  ASSERT_TRUE(ps.ok());
  EXPECT_FALSE(ps->hosts[0].reply.processes.empty());
}

TEST_F(CloudTest, BadCommandsAreRefusedBeforeSending) {
  start_agent("node1", {"web"});
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  EXPECT_EQ(manager().execute(Target::host("ghost"), "vm.start", {{"vm", "a"}}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(manager().execute(Target::group("nobody"), "vm.start", {{"vm", "a"}}).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(manager().execute(Target::host("node1"), "vm.fly", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(manager().execute(Target::host("node1"), "vm.start", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(
      manager().execute(Target::host("node1"), "vm.shutdown", {{"vm", "a"}, {"timeout_ms", "-1"}}).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(agents_["node1"]->commands_executed(), 0U);
  // Unknown VM: the host answers NOT_FOUND.
  auto r = manager().execute(Target::host("node1"), "vm.start", {{"vm", "ghost"}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hosts[0].status.code(), StatusCode::kNotFound);
}

TEST_F(CloudTest, PingIsAnsweredByEveryHostAndAudited) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  auto r = manager().execute(Target::all(), "host.ping", {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->hosts.size(), 2U);
  for (const auto& h : r->hosts) {
    EXPECT_EQ(h.outcome, HostResult::Outcome::kOk) << h.host_id << ": " << h.status;
    EXPECT_GT(h.latency_ns, 0) << h.host_id;
  }
  // It goes the whole command path: each agent recorded it, and its outcome.
  for (const char* host : {"node1", "node2"}) {
    auto a = manager().execute(Target::host(host), "host.audit", {});
    ASSERT_TRUE(a.ok() && a->all_ok()) << host;
    const auto& log = a->hosts[0].reply.audit;
    auto it = std::find_if(log.begin(), log.end(), [&](const AuditEntry& e) { return e.command_id == r->command_id; });
    ASSERT_NE(it, log.end()) << host << " did not audit the ping";
    EXPECT_EQ(it->verb, "host.ping");
    EXPECT_GT(it->completed_ns, 0) << host;
    EXPECT_TRUE(it->result.ok()) << it->result;
  }
  // A ping takes no arguments: refused before it is sent, naming the argument.
  auto bad = manager().execute(Target::all(), "host.ping", {{"count", "3"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("count"), std::string::npos) << bad.status();
}

TEST_F(CloudTest, GroupsChangeAtRunTimeAndPersistAcrossRestarts) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  for (const char* h : {"node1", "node2"}) {
    auto r = manager().execute(Target::host(h), "group.join", {{"group", "web"}});
    ASSERT_TRUE(r.ok() && r->all_ok());
  }
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.groups()["web"].size() == 2; }, milliseconds(5000)).ok());
  auto web = manager().execute(Target::group("web"), "host.info", {});
  ASSERT_TRUE(web.ok());
  EXPECT_EQ(web->hosts.size(), 2U);
  EXPECT_TRUE(web->all_ok());
  auto leave = manager().execute(Target::host("node2"), "group.leave", {{"group", "web"}});
  ASSERT_TRUE(leave.ok() && leave->all_ok());
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.groups()["web"].size() == 1; }, milliseconds(5000)).ok());
  // Restart node1: it comes back in "web", from its state directory, not from its options.
  agents_.erase("node1");
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return !m.host("node1"); }, milliseconds(5000)).ok());
  start_agent("node1", {"other"});
  EXPECT_EQ(agents_["node1"]->groups(), std::vector<std::string>{"web"});
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.groups()["web"].size() == 1; }, milliseconds(5000)).ok());
  EXPECT_EQ(manager().groups()["web"], std::vector<std::string>{"node1"});
}

TEST_F(CloudTest, DeadAgentIsNoReplyThenOffline) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  agents_["node2"]->abandon();  // as a crash looks: no clean leave
  auto r = manager().execute(Target::all(), "host.info", {}, {.timeout = milliseconds(2000)});
  ASSERT_TRUE(r.ok());
  // node2 may still have been expected (its loss not yet seen) or already gone.
  for (const auto& h : r->hosts) {
    if (h.host_id == "node2") {
      EXPECT_EQ(h.outcome, HostResult::Outcome::kNoReply);
    } else {
      EXPECT_EQ(h.outcome, HostResult::Outcome::kOk);
    }
  }
  // It stays in the view, offline, without its VMs.
  ASSERT_TRUE(manager()
                  .wait_until([](const Manager& m) { return m.host("node2") && !m.host("node2")->online(); },
                              milliseconds(5000))
                  .ok());
  EXPECT_TRUE(manager().vms("node2").empty());
}

TEST_F(CloudTest, CleanStopDisposesHostAndVms) {
  start_agent("node1");
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.vms("node1").size() == 2; }, milliseconds(5000)).ok());
  agents_.clear();
  ASSERT_TRUE(manager()
                  .wait_until([](const Manager& m) { return m.hosts().empty() && m.vms().empty(); }, milliseconds(5000))
                  .ok());
}

// Collects a subscription's events; waits for a given one.
class EventLog {
 public:
  void add(const CloudEvent& e) {
    {
      const std::lock_guard lock(mutex_);
      events_.push_back(e);
    }
    cv_.notify_all();
  }
  // Waits until an event matching `pred` arrived after position `from`; returns its position.
  std::optional<std::size_t> wait_for(const std::function<bool(const CloudEvent&)>& pred, std::size_t from = 0) {
    std::unique_lock lock(mutex_);
    std::optional<std::size_t> found;
    cv_.wait_for(lock, milliseconds(5000), [&] {
      for (std::size_t i = from; i < events_.size(); ++i) {
        if (pred(events_[i])) {
          found = i;
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::vector<CloudEvent> events() const {
    const std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<CloudEvent> events_;
};

auto is(CloudEvent::Kind kind, const std::string& host, const std::string& vm = {}) {
  return [=](const CloudEvent& e) { return e.kind == kind && e.host_id == host && (vm.empty() || e.vm_name == vm); };
}

TEST_F(CloudTest, EventsReplayTheViewThenFollowEveryChange) {
  start_agent("node1", {"web"});
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.vms("node1").size() == 2; }, milliseconds(5000)).ok());
  EventLog log;
  std::atomic<int> calls_ok{0};
  Manager& m = manager();
  auto sub = m.subscribe_events(
      [&](const CloudEvent& e) {
        // The callback may use the manager, a command included.
        if (e.kind == CloudEvent::Kind::kHostOnline && e.host_id == "node2") {
          auto r = m.execute(Target::host("node2"), "host.info", {}, {.timeout = milliseconds(5000)});
          calls_ok += r.ok() && r->all_ok() ? 1 : 0;
        }
        log.add(e);
      },
      {.replay = true});
  ASSERT_TRUE(sub.ok()) << sub.status();

  // The replay: the host, then its VMs in name order.
  ASSERT_TRUE(log.wait_for(is(CloudEvent::Kind::kVmAdded, "node1", "db1")));
  auto replay = log.events();
  ASSERT_EQ(replay.size(), 3U);
  EXPECT_EQ(replay[0].kind, CloudEvent::Kind::kHostOnline);
  EXPECT_EQ(replay[0].groups, std::vector<std::string>{"web"});
  EXPECT_EQ(replay[1].vm_name, "batch1");
  EXPECT_EQ(replay[1].state, VmState::kShutOff);
  EXPECT_EQ(replay[2].vm_name, "db1");
  EXPECT_EQ(replay[2].state, VmState::kRunning);

  // A state change.
  ASSERT_TRUE(m.execute(Target::host("node1"), "vm.start", {{"vm", "batch1"}})->all_ok());
  auto started = log.wait_for(is(CloudEvent::Kind::kVmStateChanged, "node1", "batch1"));
  ASSERT_TRUE(started);
  auto e = log.events()[*started];
  EXPECT_EQ(e.old_state, VmState::kShutOff);
  EXPECT_EQ(e.state, VmState::kRunning);
  EXPECT_EQ(e.reason, "booted");
  EXPECT_GT(e.time_ns, 0);

  // Groups.
  ASSERT_TRUE(m.execute(Target::host("node1"), "group.join", {{"group", "db"}})->all_ok());
  auto joined = log.wait_for(is(CloudEvent::Kind::kHostGroupsChanged, "node1"));
  ASSERT_TRUE(joined);
  EXPECT_EQ(log.events()[*joined].groups, (std::vector<std::string>{"db", "web"}));

  // A VM undefined.
  ASSERT_TRUE(m.execute(Target::host("node1"), "vm.destroy", {{"vm", "batch1"}})->all_ok());
  ASSERT_TRUE(m.execute(Target::host("node1"), "vm.undefine", {{"vm", "batch1"}})->all_ok());
  auto removed = log.wait_for(is(CloudEvent::Kind::kVmRemoved, "node1", "batch1"));
  ASSERT_TRUE(removed);
  EXPECT_EQ(log.events()[*removed].reason, "undefined");
  EXPECT_EQ(log.events()[*removed].old_state, VmState::kShutOff);

  // A new host (the callback runs a command on it), then its crash, then forgetting it.
  start_agent("node2");
  ASSERT_TRUE(log.wait_for(is(CloudEvent::Kind::kHostOnline, "node2")));
  ASSERT_TRUE(log.wait_for(is(CloudEvent::Kind::kVmAdded, "node2", "db1")));
  EXPECT_EQ(calls_ok.load(), 1);
  agents_["node2"]->abandon();
  auto offline = log.wait_for(is(CloudEvent::Kind::kHostOffline, "node2"));
  ASSERT_TRUE(offline);
  for (const char* vm : {"batch1", "db1"}) {
    auto gone = log.wait_for(is(CloudEvent::Kind::kVmRemoved, "node2", vm), *offline);
    ASSERT_TRUE(gone) << vm;
    EXPECT_EQ(log.events()[*gone].reason, "host offline");
  }
  ASSERT_TRUE(m.forget_host("node2").ok());
  auto forgotten = log.wait_for(is(CloudEvent::Kind::kHostLeft, "node2"));
  ASSERT_TRUE(forgotten);
  EXPECT_EQ(log.events()[*forgotten].reason, "forgotten");

  // A clean stop: the host leaves, with its remaining VM.
  agents_.erase("node1");
  auto left = log.wait_for(is(CloudEvent::Kind::kHostLeft, "node1"));
  ASSERT_TRUE(left);
  EXPECT_EQ(log.events()[*left].reason, "stopped");
  // Its VM leaves with it, after it, for "host left" (a VM gone while its host is still in the
  // view is one lost with a crashed host: "host offline", above).
  auto db1 = log.wait_for(is(CloudEvent::Kind::kVmRemoved, "node1", "db1"), *left);
  ASSERT_TRUE(db1);
  EXPECT_EQ(log.events()[*db1].reason, "host left");
  // Nothing was lost, and no event came after its subscription ended.
  sub->reset();
  const std::size_t n = log.events().size();
  for (const auto& ev : log.events()) {
    EXPECT_NE(ev.kind, CloudEvent::Kind::kEventsLost);
  }
  start_agent("node3");
  ASSERT_TRUE(m.wait_for_hosts(1, milliseconds(5000)).ok());
  EXPECT_EQ(log.events().size(), n);
}

TEST_F(CloudTest, ASlowEventSubscriberLosesEventsAndIsToldHowMany) {
  start_agent("node1");
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.vms("node1").size() == 2; }, milliseconds(5000)).ok());
  EventLog log;
  std::mutex gate;
  std::unique_lock hold(gate);  // the callback blocks on its first event until released
  auto sub = manager().subscribe_events(
      [&](const CloudEvent& e) {
        const std::lock_guard pass(gate);
        log.add(e);
      },
      {.replay = true, .max_queued = 1});
  ASSERT_TRUE(sub.ok()) << sub.status();
  // While the subscriber is stuck, batch1 starts (queued) and is destroyed (dropped: the
  // queue holds one event).
  ASSERT_TRUE(manager().execute(Target::host("node1"), "vm.start", {{"vm", "batch1"}})->all_ok());
  ASSERT_TRUE(manager().execute(Target::host("node1"), "vm.destroy", {{"vm", "batch1"}})->all_ok());
  ASSERT_TRUE(manager()
                  .wait_until(
                      [](const Manager& m) {
                        for (const auto& v : m.vms("node1")) {
                          if (v.vm.name == "batch1") return v.vm.state == VmState::kShutOff;
                        }
                        return false;
                      },
                      milliseconds(5000))
                  .ok());
  hold.unlock();
  auto lost = log.wait_for([](const CloudEvent& e) { return e.kind == CloudEvent::Kind::kEventsLost; });
  ASSERT_TRUE(lost);
  auto events = log.events();
  // The replay (never dropped), the first change, then the loss report.
  ASSERT_EQ(*lost, 4U);
  EXPECT_EQ(events[0].kind, CloudEvent::Kind::kHostOnline);
  EXPECT_EQ(events[3].kind, CloudEvent::Kind::kVmStateChanged);
  EXPECT_EQ(events[3].state, VmState::kRunning);
  EXPECT_EQ(events[4].lost, 1U);
  // Events flow again afterwards.
  ASSERT_TRUE(manager().execute(Target::host("node1"), "vm.start", {{"vm", "batch1"}})->all_ok());
  auto again = log.wait_for(is(CloudEvent::Kind::kVmStateChanged, "node1", "batch1"), 5);
  ASSERT_TRUE(again);
  EXPECT_EQ(log.events()[*again].state, VmState::kRunning);
}

TEST_F(CloudTest, EventSubscriptionsRefuseBadOptions) {
  EXPECT_EQ(manager().subscribe_events({}).status().code(), StatusCode::kInvalidArgument);
  auto zero = manager().subscribe_events([](const CloudEvent&) {}, {.max_queued = 0});
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("max_queued"), std::string::npos);
}

// Duplicate delivery (a retransmission, a second manager replaying an id) runs once; the
// journal keeps that true across an agent restart.
TEST_F(CloudTest, DuplicateCommandIdsExecuteOnceEvenAfterRestart) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  // Drive an agent link directly, with a fixed command id.
  auto raw = testing::RawManager::open(transport());
  ASSERT_TRUE(raw.ok()) << raw.status();
  Command c{.id = "11111111-2222-4333-8444-555555555555",
            .issuer = "raw",
            .target = Target::host("node1"),
            .verb = "vm.start",
            .arguments = {{"vm", "batch1"}},
            .issued_ns = now_ns(),
            .deadline_ns = now_ns() + 60'000'000'000LL};
  auto wait_replies = [&](std::size_t n) { return (*raw)->wait_replies(n); };
  ASSERT_TRUE((*raw)->send(c, {"node1"}).ok());
  ASSERT_TRUE(wait_replies(1));
  ASSERT_TRUE((*raw)->send(c, {"node1"}).ok());
  ASSERT_TRUE(wait_replies(2));
  EXPECT_EQ(agents_["node1"]->commands_executed(), 1U);
  EXPECT_TRUE((*raw)->reply(0).status.ok()) << (*raw)->reply(0).status;
  EXPECT_TRUE((*raw)->reply(1).status.ok()) << (*raw)->reply(1).status;  // the first outcome, repeated
  // Restart: the journal in the state directory still knows the id.
  agents_.erase("node1");
  start_agent("node1");
  ASSERT_TRUE((*raw)->send(c, {"node1"}).ok());
  ASSERT_TRUE(wait_replies(3));
  EXPECT_EQ(agents_["node1"]->commands_executed(), 0U);
  // An expired command is rejected and not executed.
  Command late = c;
  late.id = random_uuid();
  late.deadline_ns = now_ns() - 1'000'000'000LL;
  ASSERT_TRUE((*raw)->send(late, {"node1"}).ok());
  ASSERT_TRUE(wait_replies(4));
  EXPECT_EQ((*raw)->reply(3).status.code(), StatusCode::kDeadlineExceeded) << (*raw)->reply(3).status;
  EXPECT_EQ(agents_["node1"]->commands_executed(), 0U);
}

TEST_F(CloudTest, AgentOptionsAreValidated) {
  auto o = agent_options("bad id", {});
  EXPECT_EQ(Agent::start(o).status().code(), StatusCode::kInvalidArgument);
  o = agent_options("node1", {"bad group"});
  EXPECT_EQ(Agent::start(o).status().code(), StatusCode::kInvalidArgument);
  o = agent_options("node1", {});
  o.state_dir.clear();
  EXPECT_EQ(Agent::start(o).status().code(), StatusCode::kInvalidArgument);
  o = agent_options("node1", {});
  fs::create_directories(root_ / "node1");
  std::ofstream(root_ / "node1" / "groups.json") << "{\"groups\": [\"a b\"]}";
  auto bad = Agent::start(o);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("groups.json"), std::string::npos) << bad.status();
}

}  // namespace
}  // namespace cloudmgr

namespace cloudmgr {
namespace {

// Regression: text off the wire that is not UTF-8 once made the journal's JSON writer throw
// and took the agent down. It is journaled with replacement characters and answered.
TEST_F(CloudTest, InvalidUtf8OnTheWireIsAnsweredNotFatal) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  auto raw = testing::RawManager::open(transport());
  ASSERT_TRUE(raw.ok()) << raw.status();
  Command c{.id = random_uuid(),
            .issuer = "\xff\xfe issuer",
            .target = Target::host("node1"),
            .verb = "vm.\xc3",
            .arguments = {{"vm", "caf\xc3"}},
            .issued_ns = now_ns(),
            .deadline_ns = now_ns() + 60'000'000'000LL};
  ASSERT_TRUE((*raw)->send(c, {"node1"}).ok());
  ASSERT_TRUE((*raw)->wait_replies(1));
  EXPECT_EQ((*raw)->reply(0).status.code(), StatusCode::kInvalidArgument) << (*raw)->reply(0).status;
  auto after = manager().execute(Target::host("node1"), "host.info", {});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->all_ok());
}

}  // namespace
}  // namespace cloudmgr
