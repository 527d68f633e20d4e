// Tests of the transports: one conformance suite (Transport.*) run over Fast DDS and over the
// client-server transport (TCP, persistent and per request), then DDS-only tests (DdsTransport.*).
// Two or more participants in this process, each test in its own DDS domain (100-140) or TCP
// address directory so that test binaries can run in parallel; every participant keeps its
// traffic on 127.0.0.1 (and shared memory). Waits are generous; no test asserts a tight time.
#include <arpa/inet.h>
#include <fastcdr/Cdr.h>
#include <fastcdr/FastBuffer.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloud.h"
#include "cloudmgr/pki.h"
#include "cloudmgr/spi/transport.h"
#include "transport/dds/wire_convert.h"
#include "transport/tcp/channel.h"
#include "transport/tcp/session.h"

extern char** environ;

#if defined(__SANITIZE_ADDRESS__)
// Fast DDS 2.9.1 itself trips AddressSanitizer's new-delete-type-mismatch check when it deletes a
// reader (inside RTPSReader::~RTPSReader, not our code); everything else stays checked.
extern "C" __attribute__((visibility("default"), used)) const char* __asan_default_options() {  // NOLINT
  return "new_delete_type_mismatch=0";
}
#endif

namespace cloudmgr::dds {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kWait = seconds(10);

// The transport the conformance suite runs over now: "dds", "tcp" or "tcp-per-request".
std::string& current_kind() {
  static std::string kind = "dds";
  return kind;
}

std::string tcp_directory(std::uint32_t domain) {
  return fmt::format("/tmp/cloudmgr-tcp-test-{}-{}", getpid(), domain);
}

spi::TransportConfig test_config(std::uint32_t domain, std::uint32_t lease_ms = 6000, std::uint32_t announce_ms = 500) {
  spi::TransportConfig c;
  c.kind = current_kind() == "dds" ? "dds" : "tcp";
  c.tcp.directory = tcp_directory(domain);
  c.tcp.per_request = current_kind() == "tcp-per-request";
  c.domain_id = domain;
  c.interfaces = {"127.0.0.1"};
  c.shared_memory = true;
  c.agent_lease_ms = lease_ms;
  c.announce_period_ms = announce_ms;
  return c;
}

std::unique_ptr<spi::Transport> open(const spi::TransportConfig& c) {
  auto t = spi::open_transport(c);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

// A condition variable with a predicate over state guarded by one mutex.
class Waiter {
 public:
  template <typename F>
  void update(F&& f) {
    {
      const std::lock_guard lock(mutex_);
      f();
    }
    cv_.notify_all();
  }
  template <typename P>
  bool wait(P&& pred, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, std::forward<P>(pred));
  }
  template <typename F>
  auto read(F&& f) {
    const std::lock_guard lock(mutex_);
    return f();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

// Everything a manager link reports.
struct ManagerLog {
  Waiter w;
  std::map<std::string, HostView> hosts;
  std::vector<std::pair<std::string, bool>> gone;
  std::map<std::string, VmView> vms;  // by uuid
  std::vector<std::string> vms_gone;
  std::vector<bool> vms_undefined;      // per vms_gone entry: the host said the VM was undefined
  std::vector<std::string> gone_order;  // "host:<id>" and "vm:<uuid>", as they were reported
  std::vector<CommandReply> replies;

  spi::ManagerCallbacks callbacks() {
    spi::ManagerCallbacks cb;
    cb.on_host = [this](const HostView& h) { w.update([&] { hosts[h.info.id] = h; }); };
    cb.on_host_gone = [this](const std::string& id, bool clean) {
      w.update([&] {
        gone.emplace_back(id, clean);
        gone_order.push_back("host:" + id);
        hosts.erase(id);
      });
    };
    cb.on_vm = [this](const VmView& v) { w.update([&] { vms[v.vm.uuid] = v; }); };
    cb.on_vm_gone = [this](const std::string&, const std::string& uuid, bool undefined) {
      w.update([&] {
        vms_gone.push_back(uuid);
        vms_undefined.push_back(undefined);
        gone_order.push_back("vm:" + uuid);
        vms.erase(uuid);
      });
    };
    cb.on_reply = [this](const CommandReply& r) { w.update([&] { replies.push_back(r); }); };
    return cb;
  }

  bool has_host(const std::string& id) {
    return w.wait([&] { return hosts.count(id) > 0; });
  }
  bool has_reply(const std::string& command_id, const std::string& host) {
    return w.wait([&] {
      return std::any_of(replies.begin(), replies.end(),
                         [&](const CommandReply& r) { return r.command_id == command_id && r.host_id == host; });
    });
  }
};

// An agent: its transport, its link, the commands it received; replies OK to each.
struct TestAgent {
  std::string id;
  std::unique_ptr<spi::Transport> transport;
  std::unique_ptr<spi::AgentLink> link;
  std::atomic<spi::AgentLink*> link_for_replies{nullptr};
  Waiter w;
  std::vector<Command> commands;
  std::function<CommandReply(const Command&)> make_reply;
  // As the real agent does (AgentCallbacks::on_command may run on the thread receiving from the
  // network), on_command only queues; this thread answers.
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Command> queue;
  bool stopping = false;
  std::thread worker;

  TestAgent(const spi::TransportConfig& c, std::string host_id, std::vector<std::string> groups)
      : id(std::move(host_id)), transport(open(c)) {
    if (!transport) {
      return;
    }
    worker = std::thread([this] { answer_loop(); });
    spi::AgentCallbacks cb;
    cb.on_command = [this](const Command& command) {
      w.update([&] { commands.push_back(command); });
      {
        const std::lock_guard lock(queue_mutex);
        queue.push_back(command);
      }
      queue_cv.notify_one();
    };
    auto l = transport->open_agent(id, groups, std::move(cb));
    EXPECT_TRUE(l.ok()) << l.status();
    if (l.ok()) {
      link = std::move(l).value();
      link_for_replies = link.get();
    }
  }
  ~TestAgent() {
    link_for_replies = nullptr;
    {
      const std::lock_guard lock(queue_mutex);
      stopping = true;
    }
    queue_cv.notify_one();
    if (worker.joinable()) {
      worker.join();
    }
    link.reset();
    transport.reset();
  }
  void answer_loop() {
    std::unique_lock lock(queue_mutex);
    for (;;) {
      queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
      if (stopping) {
        return;
      }
      Command command = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      spi::AgentLink* l = link_for_replies.load();
      if (l != nullptr) {
        CommandReply r;
        if (make_reply) {
          r = make_reply(command);
        }
        r.command_id = command.id;
        r.host_id = id;
        r.completed_ns = now_ns();
        EXPECT_TRUE(l->reply(r).ok());
      }
      lock.lock();
    }
  }
  TestAgent(const TestAgent&) = delete;
  TestAgent& operator=(const TestAgent&) = delete;

  Status publish(const std::vector<std::string>& groups) {
    HostView h;
    h.info.id = id;
    h.info.hostname = id + ".example";
    h.info.hypervisor = "QEMU";
    h.info.cpu.logical_cpus = 8;
    h.groups = groups;
    h.updated_ns = now_ns();
    return link->publish_host(h);
  }
  bool received(const std::string& command_id) {
    return w.wait([&] { return has(command_id); });
  }
  bool has(const std::string& command_id) {
    return std::any_of(commands.begin(), commands.end(), [&](const Command& c) { return c.id == command_id; });
  }
  bool ever_received(const std::string& command_id) {
    return w.read([&] { return has(command_id); });
  }
};

struct TestManager {
  std::unique_ptr<spi::Transport> transport;
  ManagerLog log;
  std::unique_ptr<spi::ManagerLink> link;

  explicit TestManager(const spi::TransportConfig& c) : transport(open(c)) {
    if (!transport) {
      return;
    }
    auto l = transport->open_manager("mgr", log.callbacks());
    EXPECT_TRUE(l.ok()) << l.status();
    if (l.ok()) {
      link = std::move(l).value();
    }
  }
  ~TestManager() {
    link.reset();
    transport.reset();
  }
  TestManager(const TestManager&) = delete;
  TestManager& operator=(const TestManager&) = delete;

  Status send(const std::string& id, Target target, std::vector<std::string> expected) {
    Command c;
    c.id = id;
    c.issuer = "mgr";
    c.target = std::move(target);
    c.verb = "host.ps";
    c.arguments = {{"limit", "10"}};
    c.issued_ns = now_ns();
    c.deadline_ns = c.issued_ns + 10'000'000'000;
    return link->send(c, expected);
  }
};

VmInfo sample_vm(const std::string& uuid, const std::string& name) {
  VmInfo vm;
  vm.uuid = uuid;
  vm.name = name;
  vm.state = VmState::kRunning;
  vm.state_reason = "booted";
  vm.vcpus = 2;
  vm.max_vcpus = 4;
  vm.memory_bytes = 512ULL << 20;
  vm.max_memory_bytes = 1ULL << 30;
  vm.cpu_time_ns = 123456789;
  vm.persistent = true;
  vm.autostart = true;
  vm.description = "a test VM";
  vm.disks = {{"vda", "/var/lib/images/" + name + ".qcow2", "disk", "virtio", "qcow2", false},
              {"sda", "", "cdrom", "sata", "raw", true}};
  vm.nics = {{"52:54:00:12:34:56", "network", "default", "virtio"}};
  return vm;
}

std::string uuid_n(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

class Transport : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { current_kind() = GetParam(); }
  void TearDown() override {
    current_kind() = "dds";
    for (std::uint32_t d = 100; d <= 140; ++d) {
      std::error_code ec;
      std::filesystem::remove_all(tcp_directory(d), ec);
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Kinds, Transport, ::testing::Values("dds", "tcp", "tcp-per-request"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string name = param.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// ---------------------------------------------------------------------------------------------
// Wire conversion

TEST(DdsWireConvert, VmStateRoundTrip) {
  for (VmState s : {VmState::kUnknown, VmState::kRunning, VmState::kPaused, VmState::kShuttingDown, VmState::kShutOff,
                    VmState::kCrashed, VmState::kPmSuspended}) {
    EXPECT_EQ(from_wire(to_wire(s)), s);
  }
  // The numbering is part of the contract.
  EXPECT_EQ(static_cast<int>(to_wire(VmState::kPmSuspended)), 6);
  EXPECT_EQ(static_cast<int>(to_wire(VmState::kShutOff)), 4);
}

TEST(DdsWireConvert, HostEveryField) {
  HostView h;
  h.info = HostInfo{.id = "node1",
                    .hostname = "node1.example",
                    .hypervisor = "QEMU",
                    .hypervisor_version = "7.2.0",
                    .uri = "qemu:///system",
                    .cpu = {"EPYC", 64, 2400, 2, 1, 16, 2},
                    .memory_bytes = 1ULL << 40,
                    .free_memory_bytes = 1ULL << 39,
                    .vcpus_allocated = 12,
                    .memory_allocated_bytes = 3ULL << 30,
                    .vms_defined = 9,
                    .vms_active = 7};
  h.groups = {"db", "web"};
  h.agent_version = "0.1.0";
  h.agent_started_ns = 1'700'000'000'000'000'000;
  h.updated_ns = 1'700'000'001'000'000'000;
  EXPECT_EQ(from_wire(to_wire(h)), h);
}

TEST(DdsWireConvert, VmEveryField) {
  VmView v{.host_id = "node1", .vm = sample_vm(uuid_n(1), "web1"), .updated_ns = 42};
  EXPECT_EQ(from_wire(to_wire(v)), v);
  for (VmState s : {VmState::kPaused, VmState::kCrashed}) {
    v.vm.state = s;
    EXPECT_EQ(from_wire(to_wire(v)), v);
  }
}

TEST(DdsWireConvert, CommandEveryField) {
  for (const Target& t : {Target::host("node1"), Target::group("web"), Target::all()}) {
    Command c{.id = uuid_n(7),
              .issuer = "mgr",
              .target = t,
              .verb = "vm.start",
              .arguments = {{"vm", "web1"}, {"force", "true"}},
              .issued_ns = 5,
              .deadline_ns = 6};
    wire::Command w = to_wire(c);
    EXPECT_EQ(w.target(), t.partition());
    auto back = from_wire(w);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, c);
  }
  wire::Command bad;
  bad.target("nowhere");
  EXPECT_EQ(from_wire(bad).status().code(), StatusCode::kInvalidArgument);
}

CommandReply full_reply(const std::string& command_id, const std::string& host) {
  CommandReply r;
  r.command_id = command_id;
  r.host_id = host;
  r.status = not_found_error("domain 'web9' not found");
  r.completed_ns = 77;
  r.processes = {ProcessInfo{.pid = 1,
                             .ppid = 0,
                             .name = "init",
                             .state = 'S',
                             .uid = 0,
                             .user = "root",
                             .threads = 1,
                             .rss_bytes = 4096,
                             .vsize_bytes = 8192,
                             .cpu_time_ns = 99,
                             .start_time_ns = 100,
                             .cmdline = "/sbin/init splash"},
                 ProcessInfo{.pid = 42, .ppid = 1, .name = "kworker", .state = 'I', .uid = 0, .user = "root"}};
  r.snapshots = {SnapshotInfo{.name = "s1",
                              .description = "first",
                              .parent = "",
                              .creation_time_ns = 11,
                              .vm_state = VmState::kShutOff,
                              .current = false},
                 SnapshotInfo{.name = "s2",
                              .description = "second",
                              .parent = "s1",
                              .creation_time_ns = 12,
                              .vm_state = VmState::kRunning,
                              .current = true}};
  r.vms = {sample_vm(uuid_n(3), "web3")};
  return r;
}

void expect_same_reply(const CommandReply& a, const CommandReply& b) {
  EXPECT_EQ(a.command_id, b.command_id);
  EXPECT_EQ(a.host_id, b.host_id);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.completed_ns, b.completed_ns);
  EXPECT_EQ(a.processes, b.processes);
  EXPECT_EQ(a.snapshots, b.snapshots);
  EXPECT_EQ(a.vms, b.vms);
}

TEST(DdsWireConvert, ReplyEveryField) {
  CommandReply r = full_reply(uuid_n(9), "node1");
  expect_same_reply(from_wire(to_wire(r)), r);
  r.status = Status();
  expect_same_reply(from_wire(to_wire(r)), r);

  wire::CommandReply odd = to_wire(r);
  odd.code(99);
  odd.message("from the future");
  const CommandReply back = from_wire(odd);
  EXPECT_EQ(back.status.code(), StatusCode::kUnknown);
  EXPECT_NE(back.status.message().find("99"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Over DDS

TEST_P(Transport, ManagerSeesHostsAndVmsIncludingLateManager) {
  const auto c = test_config(101);
  TestManager early(c);
  TestAgent a(c, "node-a", {"web"});
  ASSERT_TRUE(a.link);
  ASSERT_TRUE(a.publish({"web"}).ok());
  for (int i = 1; i <= 12; ++i) {  // more than Fast DDS's default 10 instances
    ASSERT_TRUE(a.link->publish_vm({.host_id = "node-a", .vm = sample_vm(uuid_n(i), "vm" + std::to_string(i))}).ok());
  }
  ASSERT_TRUE(early.log.has_host("node-a"));
  EXPECT_TRUE(early.log.w.wait([&] { return early.log.vms.size() == 12; }));
  early.log.w.read([&] {
    EXPECT_EQ(early.log.hosts["node-a"].groups, std::vector<std::string>{"web"});
    EXPECT_EQ(early.log.vms[uuid_n(3)].vm, sample_vm(uuid_n(3), "vm3"));
    EXPECT_EQ(early.log.vms[uuid_n(3)].host_id, "node-a");
    return 0;
  });

  TestManager late(c);  // transient-local: the state already published arrives at once
  ASSERT_TRUE(late.log.has_host("node-a"));
  EXPECT_TRUE(late.log.w.wait([&] { return late.log.vms.size() == 12; }));
}

TEST_P(Transport, HostCommandReachesOnlyThatHost) {
  const auto c = test_config(102);
  TestAgent a(c, "node-a", {});
  TestAgent b(c, "node-b", {});
  TestManager m(c);
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(b.publish({}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.log.has_host("node-b"));

  ASSERT_TRUE(m.send("cmd-a", Target::host("node-a"), {"node-a"}).ok());
  EXPECT_TRUE(a.received("cmd-a"));
  EXPECT_TRUE(m.log.has_reply("cmd-a", "node-a"));
  // A later command to all reaches b; by then b has not seen cmd-a and never does.
  ASSERT_TRUE(m.send("cmd-all", Target::all(), {"node-a", "node-b"}).ok());
  EXPECT_TRUE(b.received("cmd-all"));
  EXPECT_TRUE(a.received("cmd-all"));
  EXPECT_TRUE(m.log.has_reply("cmd-all", "node-b"));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(b.ever_received("cmd-a"));
}

TEST_P(Transport, GroupCommandsFollowMembership) {
  const auto c = test_config(103);
  TestAgent a(c, "node-a", {"web"});
  TestAgent b(c, "node-b", {"db"});
  TestManager m(c);
  ASSERT_TRUE(a.publish({"web"}).ok());
  ASSERT_TRUE(b.publish({"db"}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.log.has_host("node-b"));

  ASSERT_TRUE(m.send("web-1", Target::group("web"), {"node-a"}).ok());
  EXPECT_TRUE(a.received("web-1"));
  EXPECT_TRUE(m.log.has_reply("web-1", "node-a"));

  // b joins web through set_groups, a leaves it through a new host record.
  ASSERT_TRUE(b.link->set_groups({"db", "web"}).ok());
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(m.send("web-2", Target::group("web"), {"node-b"}).ok());
  EXPECT_TRUE(b.received("web-2"));
  EXPECT_TRUE(m.log.has_reply("web-2", "node-b"));
  // Probe a afterwards through its own partition: once that arrived, web-2 would have too.
  ASSERT_TRUE(m.send("probe-a", Target::host("node-a"), {"node-a"}).ok());
  EXPECT_TRUE(a.received("probe-a"));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(a.ever_received("web-2"));
  EXPECT_FALSE(b.ever_received("web-1"));
  m.log.w.read([&] {
    for (const auto& r : m.log.replies) {
      EXPECT_FALSE(r.command_id == "web-2" && r.host_id == "node-a");
    }
    return 0;
  });
}

TEST_P(Transport, ReplyRoundTripIsFaithful) {
  const auto c = test_config(104);
  TestAgent a(c, "node-a", {});
  // Large enough to need fragmentation (> 64 KiB).
  CommandReply expected = full_reply("ps-1", "node-a");
  for (int i = 0; i < 600; ++i) {
    expected.processes.push_back(ProcessInfo{.pid = 1000 + i,
                                             .ppid = 1,
                                             .name = "worker",
                                             .state = 'R',
                                             .uid = 1000,
                                             .user = "app",
                                             .threads = 4,
                                             .cmdline = std::string(200, 'x') + std::to_string(i)});
  }
  a.make_reply = [&](const Command&) { return expected; };
  TestManager m(c);
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.send("ps-1", Target::host("node-a"), {"node-a"}).ok());
  ASSERT_TRUE(m.log.has_reply("ps-1", "node-a"));
  m.log.w.read([&] {
    CommandReply got = m.log.replies.front();
    expected.completed_ns = got.completed_ns;  // stamped by the test agent
    expect_same_reply(got, expected);
    return 0;
  });
  a.w.read([&] {
    EXPECT_EQ(a.commands.front().verb, "host.ps");
    EXPECT_EQ(a.commands.front().issuer, "mgr");
    EXPECT_EQ(a.commands.front().arguments, (Arguments{{"limit", "10"}}));
    return 0;
  });
}

// A history reply travels on its own topic (HistoryReply): an hour of raw samples (3600
// points, ~700 KB) arrives whole and exact, also without shared memory (UDP fragments).
TEST_P(Transport, LargeHistoryReplyRoundTripIsExact) {
  for (const bool shm : {true, false}) {
    auto c = test_config(shm ? 114 : 115);
    c.shared_memory = shm;
    TestAgent a(c, "node-a", {});
    CommandReply expected;
    HistorySeries series{.host_id = "node-a", .vm_uuid = uuid_n(1), .vm_name = "web1", .step_ns = 0, .simulated = true};
    for (int i = 0; i < 3600; ++i) {
      HistoryPoint p{.start_ns = 1'800'000'000'000'000'000 + i * 1'000'000'000LL, .samples = 1};
      for (std::size_t m = 0; m < kMetricCount; ++m) {
        p.min[m] = i * 0.5 + static_cast<double>(m);
        p.avg[m] = p.min[m] + 0.25;
        p.max[m] = p.min[m] + 1.0 / 3.0;
      }
      series.points.push_back(p);
    }
    expected.history.push_back(series);
    a.make_reply = [&](const Command&) { return expected; };
    TestManager m(c);
    ASSERT_TRUE(a.publish({}).ok());
    ASSERT_TRUE(m.log.has_host("node-a"));
    ASSERT_TRUE(m.send("hist-1", Target::host("node-a"), {"node-a"}).ok());
    ASSERT_TRUE(m.log.has_reply("hist-1", "node-a")) << (shm ? "with" : "without") << " shared memory";
    m.log.w.read([&] {
      const CommandReply& got = m.log.replies.front();
      EXPECT_TRUE(got.status.ok()) << got.status;
      EXPECT_EQ(got.history, expected.history);
      return 0;
    });
  }
}

// Every field of a tick survives the wire, and a late manager gets the latest tick at once.
TEST_P(Transport, SamplesRoundTripAndLateManagersGetTheLatest) {
  const auto c = test_config(116);
  TestAgent a(c, "node-a", {});
  ASSERT_TRUE(a.publish({}).ok());
  HostSample s{.host_id = "node-a",
               .taken_ns = 1'800'000'000'123'456'789,
               .interval_ns = 1'000'000'007,
               .simulated = true,
               .rates_valid = true,
               .cpus = 16,
               .cpu_pct = 42.5,
               .memory_bytes = 64ULL << 30,
               .memory_used_bytes = 12ULL << 30,
               .disk_read_bytes_per_s = 1.5e6,
               .disk_write_bytes_per_s = 2.5e6,
               .disk_read_ops_per_s = 100.25,
               .disk_write_ops_per_s = 200.5,
               .net_rx_bytes_per_s = 3.25e5,
               .net_tx_bytes_per_s = 4.75e5};
  for (int i = 0; i < 3; ++i) {
    s.vms.push_back(VmSample{.uuid = uuid_n(i),
                             .name = "vm" + std::to_string(i),
                             .state = VmState::kPaused,
                             .vcpus = 2,
                             .rates_valid = i != 1,
                             .cpu_pct = 10.0 * i,
                             .cpu_host_pct = 1.25 * i,
                             .memory_bytes = 1ULL << 30,
                             .memory_used_bytes = 300ULL << 20,
                             .disk_read_bytes_per_s = 1.0 + i,
                             .disk_write_bytes_per_s = 2.0 + i,
                             .disk_read_ops_per_s = 3.0 + i,
                             .disk_write_ops_per_s = 4.0 + i,
                             .net_rx_bytes_per_s = 5.0 + i,
                             .net_tx_bytes_per_s = 6.0 + i});
  }
  ASSERT_TRUE(a.link->publish_sample(s).ok());
  HostSample second = s;
  second.taken_ns += 1'000'000'000;
  second.cpu_pct = 43.5;
  ASSERT_TRUE(a.link->publish_sample(second).ok());
  // Joins after both ticks: keep-last 1, transient-local.
  auto t = open(c);
  ASSERT_TRUE(t);
  Waiter w;
  std::vector<HostSample> got;
  spi::ManagerCallbacks cb;
  cb.on_sample = [&](const HostSample& x) { w.update([&] { got.push_back(x); }); };
  auto link = t->open_manager("late", std::move(cb));
  ASSERT_TRUE(link.ok());
  ASSERT_TRUE(w.wait([&] { return !got.empty(); }));
  std::this_thread::sleep_for(milliseconds(300));
  w.read([&] {
    EXPECT_EQ(got.size(), 1U);
    EXPECT_EQ(got.back(), second);
    return 0;
  });
  // Through another host's link: refused, not published.
  TestAgent b(c, "node-b", {});
  EXPECT_EQ(b.link->publish_sample(s).code(), StatusCode::kInvalidArgument);
  link->reset();
}

TEST_P(Transport, RemoveVmAndLeaveAreSeenAtOnce) {
  const auto c = test_config(105);
  TestManager m(c);
  TestAgent a(c, "node-a", {});
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(a.link->publish_vm({.host_id = "node-a", .vm = sample_vm(uuid_n(1), "vm1")}).ok());
  ASSERT_TRUE(a.link->publish_vm({.host_id = "node-a", .vm = sample_vm(uuid_n(2), "vm2")}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.log.w.wait([&] { return m.log.vms.size() == 2; }));

  ASSERT_TRUE(a.link->remove_vm(uuid_n(1)).ok());
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms_gone == std::vector<std::string>{uuid_n(1)}; }));
  EXPECT_TRUE(a.link->remove_vm(uuid_n(99)).ok());  // never published: nothing to do

  ASSERT_TRUE(a.link->leave().ok());
  EXPECT_TRUE(m.log.w.wait([&] { return !m.log.gone.empty(); }));
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms_gone.size() == 2; }));
  a.link.reset();  // the writers go too: no second "gone"
  a.transport.reset();
  std::this_thread::sleep_for(milliseconds(500));
  m.log.w.read([&] {
    EXPECT_EQ(m.log.gone, (std::vector<std::pair<std::string, bool>>{{"node-a", true}}));
    EXPECT_TRUE(m.log.vms.empty());
    // remove_vm undefines; leave() only stops publishing, after the host's clean leave (so
    // that managers take a VM that stops while its host is in the view for one lost).
    EXPECT_EQ(m.log.vms_undefined, (std::vector<bool>{true, false}));
    EXPECT_EQ(m.log.gone_order, (std::vector<std::string>{"vm:" + uuid_n(1), "host:node-a", "vm:" + uuid_n(2)}));
    return 0;
  });
}

TEST_P(Transport, AgentWithoutLeaveIsGoneUncleanly) {
  const auto c = test_config(106, 2000, 500);
  TestManager m(c);
  {
    TestAgent a(c, "node-a", {});
    ASSERT_TRUE(a.publish({}).ok());
    ASSERT_TRUE(a.link->publish_vm({.host_id = "node-a", .vm = sample_vm(uuid_n(1), "vm1")}).ok());
    ASSERT_TRUE(m.log.has_host("node-a"));
    ASSERT_TRUE(m.log.w.wait([&] { return m.log.vms.size() == 1; }));
  }  // link and transport destroyed, no leave()
  EXPECT_TRUE(m.log.w.wait([&] { return !m.log.gone.empty(); }, seconds(15)));
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms_gone.size() == 1; }, seconds(15)));
  m.log.w.read([&] {
    EXPECT_EQ(m.log.gone, (std::vector<std::pair<std::string, bool>>{{"node-a", false}}));
    EXPECT_EQ(m.log.vms_undefined, std::vector<bool>{false});
    return 0;
  });
}

TEST_P(Transport, ManyCommandsAndRepliesInARow) {
  const auto c = test_config(107);
  TestAgent a(c, "node-a", {"web"});
  TestManager m(c);
  ASSERT_TRUE(a.publish({"web"}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  constexpr int kCommands = 30;  // the default resource limits stop at 10 instances
  for (int i = 0; i < kCommands; ++i) {
    const Target t = i % 2 == 0 ? Target::host("node-a") : Target::group("web");
    ASSERT_TRUE(m.send("many-" + std::to_string(i), t, {"node-a"}).ok()) << i;
  }
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.replies.size() == kCommands; }, seconds(20)));
  m.log.w.read([&] {
    std::set<std::string> ids;
    for (const auto& r : m.log.replies) {
      ids.insert(r.command_id);
    }
    EXPECT_EQ(ids.size(), static_cast<std::size_t>(kCommands));
    return 0;
  });
  a.w.read([&] {
    EXPECT_EQ(a.commands.size(), static_cast<std::size_t>(kCommands));
    return 0;
  });
}

TEST(DdsTransport, WorksWithoutSharedMemory) {
  auto c = test_config(108);
  c.shared_memory = false;
  TestAgent a(c, "node-a", {});
  TestManager m(c);
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.send("noshm-1", Target::host("node-a"), {"node-a"}).ok());
  EXPECT_TRUE(m.log.has_reply("noshm-1", "node-a"));
}

TEST(DdsTransport, StarDiscoveryWithUnicastPeers) {
  auto c = test_config(109);
  c.discovery = spi::TransportConfig::Discovery::kStar;
  c.initial_peers = {"127.0.0.1"};
  c.shared_memory = false;
  TestManager m(c);
  TestAgent a(c, "node-a", {});
  TestAgent b(c, "node-b", {});
  ASSERT_TRUE(a.publish({}).ok());
  ASSERT_TRUE(b.publish({}).ok());
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.log.has_host("node-b"));
  ASSERT_TRUE(m.send("star-1", Target::all(), {"node-a", "node-b"}).ok());
  EXPECT_TRUE(m.log.has_reply("star-1", "node-a"));
  EXPECT_TRUE(m.log.has_reply("star-1", "node-b"));
}

// Like cloudctl: a manager that starts, sends at once and goes. The agent must not reply before it
// has discovered that manager's reply reader (replies are volatile).
TEST_P(Transport, ShortLivedManagersGetTheirReplies) {
  const auto c = test_config(113);
  TestAgent a(c, "node-a", {});
  ASSERT_TRUE(a.publish({}).ok());
  for (int i = 0; i < 8; ++i) {
    TestManager m(c);
    ASSERT_TRUE(m.log.has_host("node-a"));
    const std::string id = "short-" + std::to_string(i);
    ASSERT_TRUE(m.send(id, Target::host("node-a"), {"node-a"}).ok());
    EXPECT_TRUE(m.log.has_reply(id, "node-a")) << id;
  }
}

TEST_P(Transport, SendToAnUnreachableHostReturnsByTheDeadline) {
  const auto c = test_config(110);
  TestManager m(c);
  Command cmd{.id = "nobody", .issuer = "mgr", .target = Target::host("ghost"), .verb = "host.ps"};
  cmd.issued_ns = now_ns();
  cmd.deadline_ns = cmd.issued_ns + 300'000'000;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(m.link->send(cmd, {"ghost"}).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(5));
}

TEST_P(Transport, RejectsBadInput) {
  const auto c = test_config(111);
  auto t = open(c);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->open_agent("bad id!", {}, {}).status().code(), StatusCode::kInvalidArgument);
  auto l = t->open_agent("node-a", {}, {});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)->set_groups({"no spaces"}).code(), StatusCode::kInvalidArgument);
  HostView other;
  other.info.id = "node-b";
  EXPECT_EQ((*l)->publish_host(other).code(), StatusCode::kInvalidArgument);
}

// The agent half of AgentInAnotherProcess, run in a child process (the test binary executed
// again, never a bare fork): publishes node-x, answers commands, waits to be killed.
TEST(DdsChild, DISABLED_AgentProcess) {
  const char* domain = std::getenv("CLOUDMGR_DDS_CHILD_DOMAIN");
  ASSERT_NE(domain, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  auto c = test_config(static_cast<std::uint32_t>(std::atoi(domain)), 2000, 500);
  c.shared_memory = false;  // a killed process would leave its segments behind
  TestAgent a(c, "node-x", {"web"});
  ASSERT_TRUE(a.link);
  // Replies carry the ids of every command received so far; "groups.set" sets the groups.
  a.make_reply = [&a](const Command& command) {
    CommandReply r;
    if (command.verb == "groups.set") {
      std::vector<std::string> groups;
      for (const auto& [name, value] : command.arguments) {
        groups.push_back(value);
      }
      r.status = a.link->set_groups(groups);
    }
    const std::string ids = a.w.read([&a] {
      std::string out;
      for (const auto& received : a.commands) {  // on_command appended this one before replying
        out += received.id + ",";
      }
      return out;
    });
    r.status = Status(r.status.code(), r.status.ok() ? "" : r.status.message());

    r.snapshots.push_back(SnapshotInfo{.name = "received", .description = ids});
    return r;
  };
  ASSERT_TRUE(a.publish({"web"}).ok());
  ASSERT_TRUE(a.link->publish_vm({.host_id = "node-x", .vm = sample_vm(uuid_n(5), "vm5")}).ok());
  std::this_thread::sleep_for(seconds(60));  // killed long before
}

// Kills and reaps a child process when the test ends, however it ends.
struct ChildProcess {
  pid_t pid = 0;
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { kill(); }
  void kill() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      pid = 0;
    }
  }
};

// An agent in another process: commands and replies over UDP (no shared memory), a group left
// and a group joined at run time, then the agent is killed (SIGKILL: nothing disposed, nothing
// said) and the manager reports it gone, uncleanly, once its 2 s participant lease runs out.
TEST(DdsTransport, AgentInAnotherProcess) {
  constexpr std::uint32_t kDomain = 112;
  auto c = test_config(kDomain, 2000, 500);
  c.shared_memory = false;
  TestManager m(c);

  std::string filter = "--gtest_filter=DdsChild.DISABLED_AgentProcess";
  std::string disabled = "--gtest_also_run_disabled_tests";
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), filter.data(), disabled.data(), nullptr};
  std::string domain_env = "CLOUDMGR_DDS_CHILD_DOMAIN=" + std::to_string(kDomain);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    envp.push_back(*e);
  }
  envp.push_back(domain_env.data());
  envp.push_back(nullptr);
  ChildProcess child;
  ASSERT_EQ(posix_spawn(&child.pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()), 0);

  ASSERT_TRUE(m.log.has_host("node-x"));
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms.size() == 1; }));
  ASSERT_TRUE(m.send("x-1", Target::group("web"), {"node-x"}).ok());
  EXPECT_TRUE(m.log.has_reply("x-1", "node-x"));
  // Leave "web", join "db" (the agent calls set_groups from its on_command callback).
  Command regroup{.id = "x-2",
                  .issuer = "mgr",
                  .target = Target::host("node-x"),
                  .verb = "groups.set",
                  .arguments = {{"group", "db"}}};
  regroup.deadline_ns = now_ns() + 10'000'000'000;
  ASSERT_TRUE(m.link->send(regroup, {"node-x"}).ok());
  EXPECT_TRUE(m.log.has_reply("x-2", "node-x"));
  ASSERT_TRUE(m.send("x-3", Target::group("web"), {}).ok());  // no wait: the writer may still match
  ASSERT_TRUE(m.send("x-4", Target::host("node-x"), {"node-x"}).ok());
  EXPECT_TRUE(m.log.has_reply("x-4", "node-x"));
  // Joining works too: the manager's "group.db" writer matches the reader's new partition.
  ASSERT_TRUE(m.send("x-5", Target::group("db"), {"node-x"}).ok());
  EXPECT_TRUE(m.log.has_reply("x-5", "node-x"));
  m.log.w.read([&] {
    for (const auto& r : m.log.replies) {
      if (r.command_id == "x-4") {  // every command the agent had received by then
        EXPECT_EQ(r.snapshots.at(0).description, "x-1,x-2,x-4,");
      }
      if (r.command_id == "x-5") {
        EXPECT_EQ(r.snapshots.at(0).description, "x-1,x-2,x-4,x-5,");
      }
      EXPECT_NE(r.command_id, "x-3");
    }
    return 0;
  });

  child.kill();
  EXPECT_TRUE(m.log.w.wait([&] { return !m.log.gone.empty(); }, seconds(15)));
  EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms_gone.size() == 1; }, seconds(15)));
  m.log.w.read([&] {
    EXPECT_EQ(m.log.gone, (std::vector<std::pair<std::string, bool>>{{"node-x", false}}));
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// The client-server transport only: TLS, its own configuration, hostile peers.

class TcpTransport : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fmt::format("/tmp/cloudmgr-tcp-unit-{}-{}", getpid(),
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(root_);
    ASSERT_TRUE(pki::init({.dir = root_ + "/pki"}).ok());
    for (const auto& [role, name] : std::vector<std::pair<pki::Role, std::string>>{
             {pki::Role::kManager, "admin"}, {pki::Role::kAgent, "node-a"}, {pki::Role::kAgent, "node-b"}}) {
      auto r = pki::issue({.dir = root_ + "/pki", .role = role, .name = name});
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  spi::TransportConfig config(const std::string& identity, bool secured = true, bool per_request = false) const {
    spi::TransportConfig c;
    c.kind = "tcp";
    c.agent_lease_ms = 4000;
    c.announce_period_ms = 250;
    c.tcp.directory = root_ + "/agents";
    c.tcp.per_request = per_request;
    if (secured) {
      c.pki_dir = root_ + "/pki";
      c.identity = identity;
    }
    return c;
  }

  // The address agent `host` recorded.
  tcp::Endpoint address_of(const std::string& host) const {
    std::ifstream in(root_ + "/agents/" + host + ".addr");
    std::string line;
    std::getline(in, line);
    auto e = tcp::parse_endpoint(line);
    EXPECT_TRUE(e.ok()) << line;
    return e.ok() ? *e : tcp::Endpoint{};
  }

  std::string root_;
};

TEST_F(TcpTransport, TlsCarriesStateAndCommandsWithTheAuthenticatedIssuer) {
  for (const bool per_request : {false, true}) {
    SCOPED_TRACE(per_request ? "per request" : "persistent");
    TestAgent a(config("agent.node-a", true, per_request), "node-a", {"web"});
    ASSERT_TRUE(a.link);
    ASSERT_TRUE(a.publish({"web"}).ok());
    ASSERT_TRUE(a.link->publish_vm({.host_id = "node-a", .vm = sample_vm(uuid_n(1), "vm1")}).ok());
    TestManager m(config("manager.admin", true, per_request));
    ASSERT_TRUE(m.link);
    ASSERT_TRUE(m.log.has_host("node-a"));
    EXPECT_TRUE(m.log.w.wait([&] { return m.log.vms.size() == 1; }));
    const std::string id = per_request ? "tls-request" : "tls-persistent";
    ASSERT_TRUE(m.send(id, Target::group("web"), {"node-a"}).ok());
    ASSERT_TRUE(a.received(id));
    EXPECT_TRUE(m.log.has_reply(id, "node-a"));
    a.w.read([&] {
      EXPECT_EQ(a.commands.back().authenticated_issuer, "CN=admin, OU=manager, O=cloudmgr");
      EXPECT_EQ(a.commands.back().issuer, "mgr");  // claimed, not verified
      return 0;
    });
    ASSERT_TRUE(a.link->leave().ok());
    EXPECT_TRUE(m.log.w.wait([&] { return !m.log.gone.empty(); }));
    m.log.w.read([&] {
      EXPECT_EQ(m.log.gone, (std::vector<std::pair<std::string, bool>>{{"node-a", true}}));
      return 0;
    });
  }
}

TEST_F(TcpTransport, IdentitiesAreCheckedWhenLinksOpen) {
  // An agent identity cannot act as another host, nor as a manager; a manager not as an agent.
  auto t = open(config("agent.node-a"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->open_agent("node-b", {}, {}).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(t->open_manager("x", {}).status().code(), StatusCode::kPermissionDenied);
  auto m = open(config("manager.admin"));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->open_agent("node-a", {}, {}).status().code(), StatusCode::kPermissionDenied);
  // An identity the PKI never issued: the file is named.
  auto ghost = open(config("manager.ghost"));
  ASSERT_TRUE(ghost);
  const Status s = ghost->open_manager("ghost", {}).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("manager.ghost"), std::string::npos) << s;
}

TEST_F(TcpTransport, AnAgentRefusesPeersThatAreNotManagers) {
  TestAgent a(config("agent.node-a"), "node-a", {});
  ASSERT_TRUE(a.link);
  ASSERT_TRUE(a.publish({}).ok());
  const tcp::Endpoint at = address_of("node-a");
  // Another agent's identity, as a client: authenticated, then refused before any state.
  auto tls = tcp::TlsContext::open(root_ + "/pki", pki::Role::kAgent, "node-b", false);
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto ch = tcp::Channel::connect(at, *tls, tcp::Clock::now() + seconds(5));
  ASSERT_TRUE(ch.ok()) << ch.status();
  tcp::Session::Options o;
  o.deadline = tcp::Clock::now() + seconds(5);
  tcp::Session s(std::move(*ch), o);
  std::vector<tcp::FrameType> got;
  tcp::Session::Handler h;
  h.on_open = [](tcp::Session& session) -> Status {
    const std::vector<std::uint8_t> hello{0, 'x'};
    session.post(tcp::FrameType::kHello, hello);
    return {};
  };
  h.on_frame = [&](tcp::Session&, tcp::Frame& f) { got.push_back(f.type); };
  const Status ended = s.run(h);
  EXPECT_EQ(ended.code(), StatusCode::kUnavailable) << ended;  // the agent closed it
  EXPECT_TRUE(got.empty());
  // Plain TCP to a TLS agent: no frame is ever taken as one.
  auto plain = tcp::Channel::connect(at, nullptr, tcp::Clock::now() + seconds(5));
  ASSERT_TRUE(plain.ok());
  tcp::Session p(std::move(*plain), o);
  got.clear();
  EXPECT_FALSE(p.run(h).ok());
  EXPECT_TRUE(got.empty());
  // The agent still serves its managers.
  TestManager m(config("manager.admin"));
  EXPECT_TRUE(m.log.has_host("node-a"));
}

TEST_F(TcpTransport, AManagerTakesAHostsStateOnlyFromThatHostsIdentity) {
  // A rogue agent with the identity agent.node-b publishes the state of node-a.
  auto tls = tcp::TlsContext::open(root_ + "/pki", pki::Role::kAgent, "node-b", true);
  ASSERT_TRUE(tls.ok());
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::filesystem::create_directories(root_ + "/agents");
  std::ofstream(root_ + "/agents/node-a.addr") << "127.0.0.1:" << ntohs(addr.sin_port) << "\n";
  std::atomic<int> served{0};
  std::thread rogue([&] {
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    auto ch = tcp::Channel::adopt(fd, *tls);
    ASSERT_TRUE(ch.ok());
    tcp::Session::Options o;
    o.deadline = tcp::Clock::now() + seconds(5);
    tcp::Session s(std::move(*ch), o);
    tcp::Session::Handler h;
    h.on_frame = [&](tcp::Session& session, tcp::Frame& f) {
      if (f.type != tcp::FrameType::kHello) {
        return;
      }
      HostView v;
      v.info.id = "node-a";
      const wire::HostStatus w = to_wire(v);
      std::vector<std::uint8_t> b(wire::HostStatus::getCdrSerializedSize(w) + 4);
      eprosima::fastcdr::FastBuffer fb(reinterpret_cast<char*>(b.data()), b.size());
      eprosima::fastcdr::Cdr ser(fb, eprosima::fastcdr::Cdr::DEFAULT_ENDIAN, eprosima::fastcdr::Cdr::DDS_CDR);
      ser.serialize_encapsulation();
      w.serialize(ser);
      b.resize(ser.getSerializedDataLength());
      session.post(tcp::FrameType::kHost, b);
      ++served;
    };
    EXPECT_FALSE(s.run(h).ok());  // the manager hangs up on it
  });
  {
    TestManager m(config("manager.admin"));
    ASSERT_TRUE(m.link);
    rogue.join();
    EXPECT_EQ(served.load(), 1);
    std::this_thread::sleep_for(milliseconds(300));
    m.log.w.read([&] {
      EXPECT_TRUE(m.log.hosts.empty());
      return 0;
    });
  }
  close(listener);
}

TEST_F(TcpTransport, MalformedFramesEndOnlyTheirConnection) {
  TestAgent a(config("", false), "node-a", {});
  ASSERT_TRUE(a.link);
  ASSERT_TRUE(a.publish({}).ok());
  const tcp::Endpoint at = address_of("node-a");
  for (const std::vector<std::uint8_t>& junk :
       {std::vector<std::uint8_t>{0xff, 0xff, 0xff, 0xff, 1}, std::vector<std::uint8_t>{0, 0, 0, 2, 99, 0},
        std::vector<std::uint8_t>{0, 0, 0, 5, 10, 0, 1, 0, 0}}) {  // too long, unknown type, truncated command
    auto ch = tcp::Channel::connect(at, nullptr, tcp::Clock::now() + seconds(5));
    ASSERT_TRUE(ch.ok());
    ASSERT_TRUE((*ch)->send(junk).ok());
    tcp::Session::Options o;
    o.deadline = tcp::Clock::now() + milliseconds(500);
    tcp::Session s(std::move(*ch), o);
    std::vector<tcp::FrameType> got;
    tcp::Session::Handler h;
    h.on_frame = [&](tcp::Session&, tcp::Frame& f) { got.push_back(f.type); };
    EXPECT_FALSE(s.run(h).ok());  // closed by the agent, or our deadline
    EXPECT_TRUE(got.empty());
  }
  a.w.read([&] {
    EXPECT_TRUE(a.commands.empty());
    return 0;
  });
  TestManager m(config("", false));
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.send("after-junk", Target::host("node-a"), {"node-a"}).ok());
  EXPECT_TRUE(m.log.has_reply("after-junk", "node-a"));
}

TEST_F(TcpTransport, BadConfigurationIsRefusedNamingTheField) {
  auto c = config("", false);
  c.tcp.listen = "localhost:80";
  auto t = spi::open_transport(c);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("tcp.listen"), std::string::npos) << t.status();
  c = config("", false);
  c.tcp.peers = {"127.0.0.1"};
  t = spi::open_transport(c);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tcp.peers"), std::string::npos) << t.status();
  c = config("", false);
  c.tcp.directory.clear();
  auto ok = spi::open_transport(c);
  ASSERT_TRUE(ok.ok());
  const Status s = (*ok)->open_manager("m", {}).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("tcp.peers"), std::string::npos) << s;
}

TEST_F(TcpTransport, ExplicitPeersWorkWithoutADirectory) {
  auto ac = config("", false);
  TestAgent a(ac, "node-a", {});
  ASSERT_TRUE(a.link);
  ASSERT_TRUE(a.publish({}).ok());
  auto mc = config("", false);
  mc.tcp.directory.clear();
  mc.tcp.peers = {address_of("node-a").text()};
  TestManager m(mc);
  ASSERT_TRUE(m.log.has_host("node-a"));
  ASSERT_TRUE(m.send("by-peer", Target::all(), {"node-a"}).ok());
  EXPECT_TRUE(m.log.has_reply("by-peer", "node-a"));
}

}  // namespace
}  // namespace cloudmgr::dds
