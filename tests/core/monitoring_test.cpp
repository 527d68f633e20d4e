// Monitoring in the core: counters to rates, the load model of simulated hosts, durations,
// and agents + a Manager over the in-process transport (samples, history, offline hosts).
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>

#include "cloudmgr/agent.h"
#include "cloudmgr/manager.h"
#include "cloudmgr/units.h"
#include "core/load_model.h"
#include "core/rates.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr std::int64_t kSec = 1'000'000'000;

VmCounters vm(std::string uuid, std::uint32_t vcpus, std::uint64_t cpu_ns, std::uint64_t rd = 0, std::uint64_t tx = 0) {
  VmCounters c;
  c.name = "vm-" + uuid;
  c.uuid = std::move(uuid);
  c.state = VmState::kRunning;
  c.vcpus = vcpus;
  c.cpu_time_ns = cpu_ns;
  c.memory_bytes = 1024 * kMiB;
  c.memory_used_bytes = 256 * kMiB;
  c.disk_read_bytes = rd;
  c.disk_write_bytes = 0;
  c.disk_read_ops = rd / 4096;
  c.disk_write_ops = 0;
  c.net_rx_bytes = 0;
  c.net_tx_bytes = tx;
  return c;
}

HostCounters host(std::int64_t t, std::uint64_t busy, std::uint64_t total, std::vector<VmCounters> vms) {
  HostCounters h;
  h.taken_ns = t;
  h.cpus = 4;
  h.cpu_busy_ns = busy;
  h.cpu_total_ns = total;
  h.memory_bytes = 8 * kGiB;
  h.memory_free_bytes = 6 * kGiB;
  h.vms = std::move(vms);
  return h;
}

TEST(RateTracker, FirstTickHasNoRatesThenRatesAreExact) {
  RateTracker r("node1");
  auto s0 = r.update(host(10 * kSec, 0, 0, {vm("a", 2, 1 * kSec, 0, 0)}));
  EXPECT_FALSE(s0.rates_valid);
  ASSERT_EQ(s0.vms.size(), 1U);
  EXPECT_FALSE(s0.vms[0].rates_valid);
  EXPECT_EQ(s0.memory_used_bytes, 2 * kGiB);

  // 2 s later: the VM used 1 s of CPU on 2 vCPUs (25%), read 8 MiB, sent 2 MiB.
  auto s1 = r.update(host(12 * kSec, 4 * kSec, 8 * kSec, {vm("a", 2, 2 * kSec, 8 * kMiB, 2 * kMiB)}));
  ASSERT_TRUE(s1.rates_valid);
  EXPECT_EQ(s1.interval_ns, 2 * kSec);
  const VmSample& v = s1.vms[0];
  ASSERT_TRUE(v.rates_valid);
  EXPECT_DOUBLE_EQ(v.cpu_pct, 25.0);
  EXPECT_DOUBLE_EQ(v.cpu_host_pct, 12.5);  // 1 s of 4 CPUs x 2 s
  EXPECT_DOUBLE_EQ(v.disk_read_bytes_per_s, 4.0 * kMiB);
  EXPECT_DOUBLE_EQ(v.disk_read_ops_per_s, 8.0 * kMiB / 4096 / 2);
  EXPECT_DOUBLE_EQ(v.net_tx_bytes_per_s, 1.0 * kMiB);
  EXPECT_EQ(v.memory_used_bytes, 256 * kMiB);
  EXPECT_DOUBLE_EQ(s1.cpu_pct, 50.0);  // host counters: 4 of 8 CPU-seconds busy
  EXPECT_DOUBLE_EQ(s1.disk_read_bytes_per_s, 4.0 * kMiB);
  EXPECT_DOUBLE_EQ(s1.net_tx_bytes_per_s, 1.0 * kMiB);
}

TEST(RateTracker, CounterResetMakesOneTickInvalidNotASpike) {
  RateTracker r("node1");
  (void)r.update(host(1 * kSec, 0, 0, {vm("a", 1, 50 * kSec)}));
  auto s1 = r.update(host(2 * kSec, 1, 4, {vm("a", 1, 100'000'000)}));  // restarted: CPU time went back
  ASSERT_EQ(s1.vms.size(), 1U);
  EXPECT_FALSE(s1.vms[0].rates_valid);
  EXPECT_EQ(s1.vms[0].cpu_pct, 0);
  auto s2 = r.update(host(3 * kSec, 2, 8, {vm("a", 1, 600'000'000)}));
  ASSERT_TRUE(s2.vms[0].rates_valid);
  EXPECT_DOUBLE_EQ(s2.vms[0].cpu_pct, 50.0);
}

TEST(RateTracker, VmsThatComeAndGo) {
  RateTracker r("node1");
  (void)r.update(host(1 * kSec, 0, 0, {vm("a", 1, 0)}));
  auto s1 = r.update(host(2 * kSec, 0, 4 * kSec, {vm("a", 1, kSec / 2), vm("b", 1, 7 * kSec)}));
  ASSERT_EQ(s1.vms.size(), 2U);
  EXPECT_TRUE(s1.vms[0].rates_valid);   // a
  EXPECT_FALSE(s1.vms[1].rates_valid);  // b is new
  auto s2 = r.update(host(3 * kSec, 0, 8 * kSec, {vm("b", 1, 8 * kSec)}));
  ASSERT_EQ(s2.vms.size(), 1U);
  EXPECT_EQ(s2.vms[0].uuid, "b");
  EXPECT_DOUBLE_EQ(s2.vms[0].cpu_pct, 100.0);
  // a comes back: a fresh VM, no rate against its old counters.
  auto s3 = r.update(host(4 * kSec, 0, 12 * kSec, {vm("a", 1, 1), vm("b", 1, 9 * kSec)}));
  EXPECT_FALSE(s3.vms[0].rates_valid);
}

TEST(RateTracker, CpuIsClampedAndHostFallsBackToTheVmsShare) {
  RateTracker r("node1");
  HostCounters h0 = host(1 * kSec, 0, 0, {vm("a", 1, 0)});
  h0.cpu_busy_ns.reset();
  h0.cpu_total_ns.reset();
  (void)r.update(h0);
  HostCounters h1 = host(2 * kSec, 0, 0, {vm("a", 1, 3 * kSec / 2)});  // 1.5 s of CPU in 1 s on 1 vCPU
  h1.cpu_busy_ns.reset();
  h1.cpu_total_ns.reset();
  auto s = r.update(h1);
  EXPECT_DOUBLE_EQ(s.vms[0].cpu_pct, 100.0);
  EXPECT_DOUBLE_EQ(s.vms[0].cpu_host_pct, 37.5);
  EXPECT_DOUBLE_EQ(s.cpu_pct, 37.5);  // no host counters: the VMs' share
}

TEST(RateTracker, ClockSteppingBackStartsOver) {
  RateTracker r("node1");
  (void)r.update(host(10 * kSec, 0, 0, {vm("a", 1, 0)}));
  auto s = r.update(host(5 * kSec, 1, 2, {vm("a", 1, kSec)}));
  EXPECT_FALSE(s.rates_valid);
  EXPECT_FALSE(s.vms[0].rates_valid);
  auto s2 = r.update(host(6 * kSec, 2, 6, {vm("a", 1, kSec + kSec / 4)}));
  EXPECT_TRUE(s2.rates_valid);
  EXPECT_DOUBLE_EQ(s2.vms[0].cpu_pct, 25.0);
}

TEST(LoadModel, CountersGrowWithTheModelledShareAndRestartWithTheVm) {
  LoadModel model;
  HostInfo h;
  h.cpu.logical_cpus = 8;
  h.memory_bytes = 16 * kGiB;
  h.free_memory_bytes = 8 * kGiB;
  VmInfo v;
  v.uuid = "6a1b1c62-0000-4000-8000-000000000001";
  v.name = "web1";
  v.state = VmState::kRunning;
  v.vcpus = 2;
  v.memory_bytes = 2 * kGiB;
  const std::int64_t t0 = 1'800'000'000 * kSec;
  auto c0 = model.read(h, {v}, t0);
  EXPECT_TRUE(c0.simulated);
  ASSERT_EQ(c0.vms.size(), 1U);
  EXPECT_EQ(*c0.vms[0].cpu_time_ns, 0U);
  auto c1 = model.read(h, {v}, t0 + kSec);
  const double share = LoadModel::cpu_share(v.uuid, t0 + kSec / 2);
  EXPECT_NEAR(static_cast<double>(*c1.vms[0].cpu_time_ns), share * 2 * kSec, 2.0);
  EXPECT_GT(*c1.cpu_total_ns, 0U);
  EXPECT_GE(*c1.cpu_busy_ns, *c1.vms[0].cpu_time_ns);
  ASSERT_TRUE(c1.vms[0].memory_used_bytes.has_value());
  EXPECT_LE(*c1.vms[0].memory_used_bytes, v.memory_bytes);
  // Rates from the model agree with the model.
  RateTracker r("n");
  (void)r.update(c0);
  auto s = r.update(c1);
  EXPECT_NEAR(s.vms[0].cpu_pct, share * 100, 1e-6);
  // Not active at one read: its counters start again from 0.
  (void)model.read(h, {}, t0 + 2 * kSec);
  auto c3 = model.read(h, {v}, t0 + 3 * kSec);
  EXPECT_EQ(*c3.vms[0].cpu_time_ns, 0U);
  // Paused: no CPU.
  v.state = VmState::kPaused;
  auto c4 = model.read(h, {v}, t0 + 4 * kSec);
  EXPECT_EQ(*c4.vms[0].cpu_time_ns, 0U);
}

TEST(Durations, ParseAndFormat) {
  EXPECT_EQ(*parse_duration_ns("90s"), 90 * kSec);
  EXPECT_EQ(*parse_duration_ns("1h30m"), 5400 * kSec);
  EXPECT_EQ(*parse_duration_ns("250ms"), 250'000'000);
  EXPECT_EQ(*parse_duration_ns("30d"), 30LL * 86400 * kSec);
  for (const char* bad : {"", "5", "1.5h", "-1s", "3w", "s", "99999999999999999999d"}) {
    auto r = parse_duration_ns(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(parse_duration_ns("3w").status().message().find("'3w'"), std::string::npos);
  EXPECT_EQ(format_duration_ns(5400 * kSec), "1h30m");
  EXPECT_EQ(format_duration_ns(250'000'000), "250ms");
  EXPECT_EQ(format_duration_ns(0), "0s");
}

TEST(Metrics, NamesRoundTrip) {
  for (std::size_t i = 0; i < kMetricCount; ++i) {
    const auto m = static_cast<Metric>(i);
    EXPECT_EQ(*parse_metric(to_string(m)), m);
  }
  EXPECT_EQ(*parse_metric("cpu"), Metric::kCpuPct);
  EXPECT_EQ(*parse_metric("mem"), Metric::kMemoryUsedBytes);
  EXPECT_EQ(parse_metric("load").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HistoryRetention{.raw_ns = 0}.validate().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((HistoryRetention{.raw_ns = kSec, .rollup_step_ns = 60 * kSec, .rollup_ns = 3600 * kSec}.validate().code()),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(HistoryRetention{}.validate().ok());
}

// ---- agents and a manager, in process ----------------------------------------------------

std::atomic<std::uint32_t> g_domain{100};

class MonitoringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    domain_ = g_domain++;
    root_ = fs::temp_directory_path() /
            ("cloudmgr-monitoring-test-" + std::to_string(getpid()) + "-" + std::to_string(domain_));
    fs::remove_all(root_);
  }
  void TearDown() override {
    agents_.clear();
    manager_.reset();
    fs::remove_all(root_);
  }

  spi::TransportConfig transport() const {
    spi::TransportConfig t;
    t.kind = "inproc";
    t.domain_id = domain_;
    return t;
  }

  AgentOptions agent_options(const std::string& id) {
    AgentOptions o;
    o.hypervisor.uri = std::string("test://") + CLOUDMGR_TEST_DATA_DIR + "/hosts/node-small.xml";
    o.hypervisor.host_id = id;
    o.state_dir = (root_ / id).string();
    o.transport = transport();
    o.sample_ms = 100;
    o.retention = {.raw_ns = 60 * kSec, .rollup_step_ns = 10 * kSec, .rollup_ns = 600 * kSec};
    return o;
  }

  Agent& start_agent(const std::string& id) {
    auto a = Agent::start(agent_options(id));
    EXPECT_TRUE(a.ok()) << a.status();
    agents_[id] = std::move(*a);
    return *agents_[id];
  }

  Manager& manager() {
    if (!manager_) {
      auto m = Manager::open({.transport = transport(), .name = "monitor-test"});
      EXPECT_TRUE(m.ok()) << m.status();
      manager_ = std::move(*m);
    }
    return *manager_;
  }

  // Waits for a sample of `host` with valid rates.
  std::optional<HostSample> valid_sample(const std::string& host) {
    std::optional<HostSample> out;
    (void)manager().wait_until(
        [&](const Manager& m) {
          out = m.sample(host);
          return out && out->rates_valid && !out->vms.empty() && out->vms[0].rates_valid;
        },
        milliseconds(5000));
    return out;
  }

  std::uint32_t domain_ = 0;
  fs::path root_;
  std::map<std::string, std::unique_ptr<Agent>> agents_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(MonitoringTest, SamplesArriveWithTheHostsVmsAndAreMarkedSimulated) {
  start_agent("node1");
  auto s = valid_sample("node1");
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->simulated);     // test:// host: load model
  EXPECT_EQ(s->cpus, 8U);        // node-small.xml: 1 node x 2 sockets x 2 cores x 2 threads
  ASSERT_EQ(s->vms.size(), 1U);  // db1 runs, batch1 is shut off
  EXPECT_EQ(s->vms[0].name, "db1");
  EXPECT_GT(s->vms[0].cpu_pct, 0);
  EXPECT_LE(s->vms[0].cpu_pct, 100);
  EXPECT_GT(s->interval_ns, 0);
  EXPECT_GE(s->cpu_pct, s->vms[0].cpu_host_pct);  // host busy >= its VMs' share
  auto v = manager().vm_sample("db1");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->name, "db1");
  EXPECT_GE(agents_["node1"]->samples_published(), 1U);
}

TEST_F(MonitoringTest, SubscribersGetEveryTickUntilTheyUnsubscribe) {
  start_agent("node1");
  std::atomic<int> ticks{0};
  auto sub = manager().subscribe_samples([&](const HostSample& s) {
    EXPECT_EQ(s.host_id, "node1");
    ++ticks;
  });
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_TRUE(manager().wait_until([&](const Manager&) { return ticks.load() >= 3; }, milliseconds(5000)).ok());
  sub->reset();
  const int seen = ticks.load();
  std::this_thread::sleep_for(milliseconds(400));  // four more ticks go by
  EXPECT_EQ(ticks.load(), seen);
  EXPECT_EQ(manager().subscribe_samples({}).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(MonitoringTest, HistoryThroughTheManagerAndAcrossAnAgentRestart) {
  start_agent("node1");
  ASSERT_TRUE(valid_sample("node1").has_value());
  std::this_thread::sleep_for(milliseconds(500));
  // Well inside the 60 s raw window: at its very edge, a tick taken after `since` was computed
  // moves the window past it and the store answers from rollups (seen under load in CI).
  const std::int64_t since = now_ns() - 30 * kSec;
  auto r = manager().history(Target::host("node1"), {.since_ns = since});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->hosts.size(), 1U);
  ASSERT_TRUE(r->hosts[0].status.ok()) << r->hosts[0].status;
  ASSERT_EQ(r->hosts[0].reply.history.size(), 1U);
  const HistorySeries& host_series = r->hosts[0].reply.history[0];
  EXPECT_EQ(host_series.host_id, "node1");
  EXPECT_TRUE(host_series.simulated);
  const std::size_t before = host_series.points.size();
  EXPECT_GE(before, 3U);
  for (const auto& p : host_series.points) {
    EXPECT_EQ(p.samples, 1U);  // raw
    EXPECT_LE(p.min[0], p.max[0]);
  }

  // A VM's series, by name, in 10 s buckets (the rollup step): min <= avg <= max.
  auto vr = manager().history(Target::host("node1"), {.vm = "db1", .since_ns = since, .step_ns = 10 * kSec});
  ASSERT_TRUE(vr.ok()) << vr.status();
  ASSERT_TRUE(vr->hosts[0].status.ok()) << vr->hosts[0].status;
  const HistorySeries& vs = vr->hosts[0].reply.history[0];
  EXPECT_EQ(vs.vm_name, "db1");
  ASSERT_FALSE(vs.points.empty());
  for (const auto& p : vs.points) {
    EXPECT_LE(p.min[0], p.avg[0]);
    EXPECT_LE(p.avg[0], p.max[0]);
  }

  // Unknown VM: the host's error, by code.
  auto nr = manager().history(Target::host("node1"), {.vm = "nope", .since_ns = since});
  ASSERT_TRUE(nr.ok());
  EXPECT_EQ(nr->hosts[0].status.code(), StatusCode::kNotFound) << nr->hosts[0].status;

  // Restart on the same state directory: the old samples are still there.
  agents_.clear();
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return !m.host("node1"); }, milliseconds(5000)).ok());
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  auto r2 = manager().history(Target::host("node1"), {.since_ns = since});
  ASSERT_TRUE(r2.ok()) << r2.status();
  ASSERT_TRUE(r2->hosts[0].status.ok()) << r2->hosts[0].status;
  EXPECT_GE(r2->hosts[0].reply.history[0].points.size(), before);
}

TEST_F(MonitoringTest, ADeadAgentsHostIsOfflineAndItsLateTicksDoNotRevive_it) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(valid_sample("node2").has_value());
  agents_["node2"]->abandon();  // as a crash looks
  ASSERT_TRUE(manager()
                  .wait_until([](const Manager& m) { return m.host("node2") && !m.host("node2")->online(); },
                              milliseconds(5000))
                  .ok());
  const auto h = manager().host("node2");
  EXPECT_EQ(h->state, HostEntry::State::kOffline);
  EXPECT_GT(h->offline_since_ns, 0);
  EXPECT_GT(h->last_seen_ns, 0);
  EXPECT_LE(h->last_seen_ns, h->offline_since_ns);
  EXPECT_FALSE(manager().sample("node2").has_value());
  EXPECT_TRUE(manager().vms("node2").empty());
  // Commands skip it: to all, only node1 is expected; to it, a clear refusal.
  auto expected = manager().expected_hosts(Target::all());
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(*expected, std::vector<std::string>{"node1"});
  auto direct = manager().execute(Target::host("node2"), "host.info", {});
  ASSERT_FALSE(direct.ok());
  EXPECT_EQ(direct.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(direct.status().message().find("offline"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(manager().host("node2")->online());
  EXPECT_FALSE(manager().sample("node2").has_value());
}

TEST_F(MonitoringTest, BadMonitoringOptionsAreRefusedByName) {
  auto o = agent_options("node1");
  o.sample_ms = 50;
  auto a = Agent::start(o);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("sample_ms"), std::string::npos);
  o = agent_options("node1");
  o.retention.rollup_ns = 1;
  a = Agent::start(o);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("retention"), std::string::npos);
}

}  // namespace
}  // namespace cloudmgr
