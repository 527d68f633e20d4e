// The SQLite history store (lib/store/sqlite) against the MetricsStore contract.
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/spi/metrics_store.h"
#include "store/sqlite/sqlite_metrics_store.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kS = 1'000'000'000;
// A multiple of every step and window used here (3600 s).
constexpr std::int64_t kT0 = 1'699'999'200 * kS;

// Metric i of a sample with value v is v * (i + 1): every metric is checked, and sums of
// whole numbers are exact in floating point.
MetricValues scaled(double v) {
  MetricValues out{};
  for (std::size_t i = 0; i < kMetricCount; ++i) {
    out[i] = v * static_cast<double>(i + 1);
  }
  return out;
}

VmSample vm(const std::string& uuid, const std::string& name, double v, bool valid = true) {
  VmSample s;
  s.uuid = uuid;
  s.name = name;
  s.rates_valid = valid;
  s.cpu_pct = v;
  s.memory_used_bytes = static_cast<std::uint64_t>(2 * v);
  s.disk_read_bytes_per_s = 3 * v;
  s.disk_write_bytes_per_s = 4 * v;
  s.disk_read_ops_per_s = 5 * v;
  s.disk_write_ops_per_s = 6 * v;
  s.net_rx_bytes_per_s = 7 * v;
  s.net_tx_bytes_per_s = 8 * v;
  return s;
}

HostSample tick(std::int64_t t, double v, std::vector<VmSample> vms = {}, bool valid = true) {
  HostSample s;
  s.host_id = "node1";
  s.taken_ns = t;
  s.rates_valid = valid;
  s.cpu_pct = v;
  s.memory_used_bytes = static_cast<std::uint64_t>(2 * v);
  s.disk_read_bytes_per_s = 3 * v;
  s.disk_write_bytes_per_s = 4 * v;
  s.disk_read_ops_per_s = 5 * v;
  s.disk_write_ops_per_s = 6 * v;
  s.net_rx_bytes_per_s = 7 * v;
  s.net_tx_bytes_per_s = 8 * v;
  s.vms = std::move(vms);
  return s;
}

HistoryQuery window(std::int64_t since, std::int64_t until, std::int64_t step = 0, const std::string& vm = "") {
  HistoryQuery q;
  q.vm = vm;
  q.since_ns = since;
  q.until_ns = until;
  q.step_ns = step;
  return q;
}

// Expects one bucket: its start, sample count, and min / avg / max of the scaled values.
void expect_point(const HistoryPoint& p, std::int64_t start, std::uint32_t samples, double min, double sum,
                  double max) {
  EXPECT_EQ(p.start_ns, start);
  EXPECT_EQ(p.samples, samples);
  const MetricValues mins = scaled(min);
  const MetricValues sums = scaled(sum);
  const MetricValues maxes = scaled(max);
  for (std::size_t i = 0; i < kMetricCount; ++i) {
    EXPECT_EQ(p.min[i], mins[i]) << "metric " << i << " of bucket " << start;
    EXPECT_EQ(p.avg[i], sums[i] / samples) << "metric " << i << " of bucket " << start;
    EXPECT_EQ(p.max[i], maxes[i]) << "metric " << i << " of bucket " << start;
  }
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class MetricsStoreTest : public ::testing::Test {
 public:
  MetricsStoreTest(const MetricsStoreTest&) = delete;
  MetricsStoreTest& operator=(const MetricsStoreTest&) = delete;

 protected:
  MetricsStoreTest() {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("cloudmgr-store-" + std::to_string(getpid()) + "-" + std::to_string(counter.fetch_add(1)));
    fs::create_directories(dir_);
    options_.path = (dir_ / "metrics.db").string();
    options_.host_id = "node1";
    options_.retention = {.raw_ns = 60 * kS, .rollup_step_ns = 10 * kS, .rollup_ns = 300 * kS};
  }
  ~MetricsStoreTest() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void open() {
    store_.reset();
    auto opened = spi::open_metrics_store(options_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(opened).value();
  }

  void record(const HostSample& s) {
    const Status status = store_->record(s);
    ASSERT_TRUE(status.ok()) << status;
  }

  // 1 s ticks from `from` to `to` inclusive (seconds after kT0), host value = the second.
  void record_seconds(std::int64_t from, std::int64_t to) {
    for (std::int64_t i = from; i <= to; ++i) {
      record(tick(kT0 + i * kS, static_cast<double>(i)));
    }
  }

  HistorySeries query(const HistoryQuery& q) {
    auto r = store_->query(q);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : HistorySeries{};
  }

  spi::MetricsStoreStats stats() {
    auto r = store_->stats();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : spi::MetricsStoreStats{};
  }

  fs::path dir_;
  spi::MetricsStoreOptions options_;
  std::unique_ptr<spi::MetricsStore> store_;
};

TEST_F(MetricsStoreTest, RollupMinAvgMaxAreExactAcrossARestart) {
  open();
  const std::vector<double> before = {3, 1, 4, 1, 5};  // seconds 0-4 of the first bucket
  const std::vector<double> after = {9, 2, 6, 5, 3};   // seconds 5-9, after the restart
  for (std::size_t i = 0; i < before.size(); ++i) {
    record(tick(kT0 + static_cast<std::int64_t>(i) * kS, before[i]));
  }
  open();  // destroys the store, reopens the file
  for (std::size_t i = 0; i < after.size(); ++i) {
    record(tick(kT0 + static_cast<std::int64_t>(i + 5) * kS, after[i]));
  }
  record(tick(kT0 + 10 * kS, 8));
  record(tick(kT0 + 11 * kS, 7));

  const HistorySeries s = query(window(kT0, kT0 + 20 * kS, 10 * kS));
  EXPECT_EQ(s.host_id, "node1");
  EXPECT_EQ(s.vm_uuid, "");
  EXPECT_EQ(s.step_ns, 10 * kS);
  ASSERT_EQ(s.points.size(), 2U);
  expect_point(s.points[0], kT0, 10, 1, 39, 9);
  expect_point(s.points[1], kT0 + 10 * kS, 2, 7, 15, 8);

  // Merging rollup rows weighs each by its count: (39 + 15) / 12, not (3.9 + 7.5) / 2.
  const HistorySeries merged = query(window(kT0, kT0 + 20 * kS, 20 * kS));
  EXPECT_EQ(merged.step_ns, 20 * kS);
  ASSERT_EQ(merged.points.size(), 1U);
  expect_point(merged.points[0], kT0, 12, 1, 54, 9);
}

TEST_F(MetricsStoreTest, RawStepZeroReturnsEverySample) {
  open();
  for (std::int64_t i = 0; i < 5; ++i) {
    record(tick(kT0 + 2 * i * kS, 10.0 + static_cast<double>(i)));
  }
  const HistorySeries s = query(window(kT0 + 2 * kS, kT0 + 8 * kS));
  EXPECT_EQ(s.step_ns, 0);
  ASSERT_EQ(s.points.size(), 3U);  // 2, 4 and 6 s; 8 s is past until
  for (std::size_t i = 0; i < 3; ++i) {
    expect_point(s.points[i], kT0 + 2 * static_cast<std::int64_t>(i + 1) * kS, 1, 11.0 + static_cast<double>(i),
                 11.0 + static_cast<double>(i), 11.0 + static_cast<double>(i));
  }
}

TEST_F(MetricsStoreTest, RawStepOfTenSecondsBucketsTheSamples) {
  options_.retention = {.raw_ns = 600 * kS, .rollup_step_ns = 60 * kS, .rollup_ns = 3600 * kS};
  open();
  record_seconds(5, 34);
  const HistorySeries s = query(window(kT0, kT0 + 40 * kS, 10 * kS));
  EXPECT_EQ(s.step_ns, 10 * kS);
  ASSERT_EQ(s.points.size(), 4U);
  expect_point(s.points[0], kT0, 5, 5, 35, 9);  // 5..9
  expect_point(s.points[1], kT0 + 10 * kS, 10, 10, 145, 19);
  expect_point(s.points[2], kT0 + 20 * kS, 10, 20, 245, 29);
  expect_point(s.points[3], kT0 + 30 * kS, 5, 30, 160, 34);  // 30..34

  // The window cuts samples, not buckets: since 7 s keeps 7, 8, 9 in the first bucket.
  const HistorySeries cut = query(window(kT0 + 7 * kS, kT0 + 12 * kS, 10 * kS));
  ASSERT_EQ(cut.points.size(), 2U);
  expect_point(cut.points[0], kT0, 3, 7, 24, 9);
  expect_point(cut.points[1], kT0 + 10 * kS, 2, 10, 21, 11);
}

TEST_F(MetricsStoreTest, QueryOlderThanTheRawWindowFallsBackToRollups) {
  open();
  record_seconds(0, 199);  // raw window 60 s: raw samples before 140 s are gone
  const HistorySeries old = query(window(kT0, kT0 + 200 * kS));
  EXPECT_EQ(old.step_ns, 10 * kS);
  ASSERT_EQ(old.points.size(), 20U);
  for (std::int64_t b = 0; b < 20; ++b) {
    const double first = static_cast<double>(b * 10);
    expect_point(old.points[static_cast<std::size_t>(b)], kT0 + b * 10 * kS, 10, first, 10 * first + 45, first + 9);
  }
  // A fine step outside the raw window is rounded up to the rollup step.
  EXPECT_EQ(query(window(kT0, kT0 + 200 * kS, 5 * kS)).step_ns, 10 * kS);

  // Inside the raw window, step 0 gives every sample.
  const HistorySeries recent = query(window(kT0 + 150 * kS, kT0 + 200 * kS));
  EXPECT_EQ(recent.step_ns, 0);
  ASSERT_EQ(recent.points.size(), 50U);
  expect_point(recent.points.front(), kT0 + 150 * kS, 1, 150, 150, 150);
  expect_point(recent.points.back(), kT0 + 199 * kS, 1, 199, 199, 199);
}

TEST_F(MetricsStoreTest, StepIsRoundedUpToAMultipleOfTheRollupStep) {
  open();
  record_seconds(0, 59);
  const HistorySeries s = query(window(kT0, kT0 + 60 * kS, 15 * kS));
  EXPECT_EQ(s.step_ns, 20 * kS);
  ASSERT_EQ(s.points.size(), 3U);
  expect_point(s.points[0], kT0, 20, 0, 190, 19);
  expect_point(s.points[1], kT0 + 20 * kS, 20, 20, 590, 39);
  expect_point(s.points[2], kT0 + 40 * kS, 20, 40, 990, 59);
  EXPECT_EQ(query(window(kT0, kT0 + 60 * kS, 25 * kS)).step_ns, 30 * kS);
  EXPECT_EQ(query(window(kT0, kT0 + 60 * kS, 10 * kS)).step_ns, 10 * kS);
}

TEST_F(MetricsStoreTest, TooManyPointsNamesAStepThatFits) {
  options_.retention = {.raw_ns = 600 * kS, .rollup_step_ns = 60 * kS, .rollup_ns = 3600 * kS};
  open();
  record_seconds(0, 99);

  HistoryQuery q = window(kT0, kT0 + 100 * kS, 1 * kS);
  q.max_points = 10;
  auto r = store_->query(q);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "would return 100 points (max 10)")) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "use a step of at least 10000000000 ns (10 s)")) << r.status();
  q.step_ns = 10 * kS;
  EXPECT_EQ(query(q).points.size(), 10U);

  // Step 0 counts raw samples.
  q = window(kT0, kT0 + 100 * kS);
  q.max_points = 50;
  r = store_->query(q);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "would return 100 points (max 50)")) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "at least 2000000000 ns (2 s)")) << r.status();

  // A step past the raw range is a multiple of the rollup step.
  q = window(kT0, kT0 + 3600 * kS, 60 * kS);
  q.max_points = 20;
  r = store_->query(q);
  ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "would return 60 points (max 20)")) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "at least 180000000000 ns (180 s)")) << r.status();
  q.step_ns = 180 * kS;
  EXPECT_EQ(query(q).points.size(), 1U);  // only the first 100 s have samples
}

TEST_F(MetricsStoreTest, RetentionKeepsExactlyTheWindows) {
  open();
  // Two VMs throughout, one only during the first 100 s; 3x the rollup window.
  for (std::int64_t i = 0; i <= 900; ++i) {
    std::vector<VmSample> vms = {vm("a-uuid", "a", 1), vm("b-uuid", "b", 2)};
    if (i < 100) {
      vms.push_back(vm("gone-uuid", "gone", 3));
    }
    record(tick(kT0 + i * kS, static_cast<double>(i), std::move(vms)));
  }
  // The last tick (900 s) opens a rollup step, so the cleanup ran on it: raw samples from
  // 840 s (900 - 60) on, rollups whose bucket ends after 600 s (900 - 300): 600 s .. 900 s.
  const spi::MetricsStoreStats st = stats();
  EXPECT_EQ(st.raw_rows, 3U * 61U);
  EXPECT_EQ(st.rollup_rows, 3U * 31U);
  auto vms = store_->vms();
  ASSERT_TRUE(vms.ok()) << vms.status();
  ASSERT_EQ(vms->size(), 2U);
  EXPECT_EQ(store_->query(window(kT0, kT0 + 100 * kS, 0, "gone")).status().code(), StatusCode::kNotFound);

  const HistorySeries s = query(window(kT0, kT0 + 901 * kS, 10 * kS));
  ASSERT_EQ(s.points.size(), 31U);
  EXPECT_EQ(s.points.front().start_ns, kT0 + 600 * kS);
  EXPECT_EQ(s.points.back().start_ns, kT0 + 900 * kS);
}

TEST_F(MetricsStoreTest, FileSizeIsBoundedByTheRetention) {
  options_.retention = {.raw_ns = 300 * kS, .rollup_step_ns = 10 * kS, .rollup_ns = 1200 * kS};
  open();
  const auto run = [&](std::int64_t from, std::int64_t to) {
    for (std::int64_t i = from; i < to; ++i) {
      std::vector<VmSample> vms;
      vms.reserve(5);
      for (int v = 0; v < 5; ++v) {
        vms.push_back(vm("uuid-" + std::to_string(v), "vm" + std::to_string(v), static_cast<double>(i % 97 + v)));
      }
      record(tick(kT0 + i * kS, static_cast<double>(i % 89), std::move(vms)));
    }
  };
  run(0, 1201);  // one rollup window: both windows full
  const spi::MetricsStoreStats once = stats();
  const std::uintmax_t db_once = fs::file_size(options_.path);
  run(1201, 2401);
  const spi::MetricsStoreStats twice = stats();
  const std::uintmax_t db_twice = fs::file_size(options_.path);
  EXPECT_EQ(twice.raw_rows, once.raw_rows);
  EXPECT_EQ(twice.rollup_rows, once.rollup_rows);
  // The WAL (reused, at most about 1000 pages) is most of file_bytes at this size, so the
  // database file is checked on its own too: its freed pages must be reused.
  EXPECT_LE(static_cast<double>(twice.file_bytes), 1.3 * static_cast<double>(once.file_bytes))
      << once.file_bytes << " -> " << twice.file_bytes;
  EXPECT_LE(static_cast<double>(db_twice), 1.3 * static_cast<double>(db_once)) << db_once << " -> " << db_twice;
}

TEST_F(MetricsStoreTest, VmSeriesByNameAndUuid) {
  open();
  // rates_valid false (a VM's first tick) is not recorded; neither is the host's.
  record(tick(kT0, 1, {vm("u-web-old", "web", 100, false), vm("u-db", "db", 5, false)}, false));
  record(tick(kT0 + 1 * kS, 2, {vm("u-web-old", "web", 10), vm("u-db", "db", 5)}));
  record(tick(kT0 + 2 * kS, 3, {vm("u-web-old", "web", 11), vm("u-db", "db", 6, false)}));
  // The old web is gone and a new VM takes its name; db is renamed.
  record(tick(kT0 + 3 * kS, 4, {vm("u-web-new", "web", 20), vm("u-db", "db2", 7)}));

  const HistorySeries host = query(window(kT0, kT0 + 10 * kS));
  ASSERT_EQ(host.points.size(), 3U);
  EXPECT_EQ(host.points[0].start_ns, kT0 + 1 * kS);

  const HistorySeries db = query(window(kT0, kT0 + 10 * kS, 0, "db2"));
  EXPECT_EQ(db.vm_uuid, "u-db");
  EXPECT_EQ(db.vm_name, "db2");
  ASSERT_EQ(db.points.size(), 2U);
  expect_point(db.points[0], kT0 + 1 * kS, 1, 5, 5, 5);
  expect_point(db.points[1], kT0 + 3 * kS, 1, 7, 7, 7);

  const HistorySeries web = query(window(kT0, kT0 + 10 * kS, 0, "web"));  // the most recent "web"
  EXPECT_EQ(web.vm_uuid, "u-web-new");
  ASSERT_EQ(web.points.size(), 1U);
  expect_point(web.points[0], kT0 + 3 * kS, 1, 20, 20, 20);

  const HistorySeries old = query(window(kT0, kT0 + 10 * kS, 0, "u-web-old"));
  EXPECT_EQ(old.vm_name, "web");
  ASSERT_EQ(old.points.size(), 2U);
  expect_point(old.points[0], kT0 + 1 * kS, 1, 10, 10, 10);
  expect_point(old.points[1], kT0 + 2 * kS, 1, 11, 11, 11);
  EXPECT_FALSE(old.simulated);

  auto vms = store_->vms();
  ASSERT_TRUE(vms.ok()) << vms.status();
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"u-db", "db2"}, {"u-web-new", "web"}, {"u-web-old", "web"}};
  EXPECT_EQ(*vms, expected);

  const auto missing = store_->query(window(kT0, kT0 + 10 * kS, 0, "nope"));
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "no history for VM 'nope' on host 'node1'");
}

TEST_F(MetricsStoreTest, SimulatedSamplesMarkTheSeries) {
  open();
  HostSample s = tick(kT0, 1, {vm("u1", "v1", 1)});
  s.simulated = true;
  record(s);
  record(tick(kT0 + 1 * kS, 2, {vm("u1", "v1", 1)}));
  EXPECT_TRUE(query(window(kT0, kT0 + 2 * kS)).simulated);
  EXPECT_TRUE(query(window(kT0, kT0 + 2 * kS, 0, "v1")).simulated);
}

TEST_F(MetricsStoreTest, ClockSteppingBackIsIgnored) {
  open();
  record(tick(kT0 + 10 * kS, 1));
  record(tick(kT0 + 5 * kS, 2));   // earlier: ignored
  record(tick(kT0 + 10 * kS, 3));  // same time: ignored
  open();
  record(tick(kT0 + 7 * kS, 4));  // still earlier after a restart
  const HistorySeries s = query(window(kT0, kT0 + 20 * kS));
  ASSERT_EQ(s.points.size(), 1U);
  expect_point(s.points[0], kT0 + 10 * kS, 1, 1, 1, 1);
  EXPECT_EQ(stats().rollup_rows, 1U);
}

TEST_F(MetricsStoreTest, BadSamplesAreRejectedWithoutWriting) {
  open();
  HostSample s = tick(kT0, 1, {vm("u1", "v1", 1), vm("u1", "v2", 1)});
  EXPECT_EQ(store_->record(s).code(), StatusCode::kInvalidArgument);
  s = tick(kT0, 1, {vm("", "v1", 1)});
  EXPECT_EQ(store_->record(s).code(), StatusCode::kInvalidArgument);
  s = tick(kT0, std::numeric_limits<double>::quiet_NaN());
  const Status nan = store_->record(s);
  EXPECT_EQ(nan.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(nan.message(), "cpu_pct of host 'node1'")) << nan;
  s = tick(kT0, 1);
  s.host_id = "node2";
  EXPECT_EQ(store_->record(s).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(stats().raw_rows, 0U);
  record(tick(kT0, 1));  // the same tick, now valid, is not "in the past"
  EXPECT_EQ(stats().raw_rows, 1U);
}

TEST_F(MetricsStoreTest, QueryValidatesItsArguments) {
  open();
  record(tick(kT0, 1));
  auto r = store_->query(window(kT0, kT0));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "since_ns")) << r.status();
  r = store_->query(window(kT0, kT0 + kS, -1));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "step_ns")) << r.status();
  // until 0 is now: the tick above is in the past.
  EXPECT_EQ(query(window(kT0, 0, 86400 * kS)).points.size(), 1U);
}

TEST_F(MetricsStoreTest, CorruptFileIsUnavailableNamingIt) {
  {
    std::ofstream out(options_.path, std::ios::binary);
    out << std::string(8192, 'x');
  }
  auto r = spi::open_metrics_store(options_);
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(r.status().message(), options_.path)) << r.status();
  EXPECT_EQ(fs::file_size(options_.path), 8192U);
}

TEST_F(MetricsStoreTest, ForeignSqliteDatabaseIsUnavailableAndLeftAlone) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(options_.path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto r = spi::open_metrics_store(options_);
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(r.status().message(), options_.path)) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "not a cloudmgr history")) << r.status();
  EXPECT_FALSE(fs::exists(options_.path + "-wal"));  // not switched to WAL
}

TEST_F(MetricsStoreTest, OtherHostIdIsFailedPrecondition) {
  open();
  record(tick(kT0, 1));
  store_.reset();
  options_.host_id = "node2";
  auto r = spi::open_metrics_store(options_);
  ASSERT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(r.status().message(), "'node1'")) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "'node2'")) << r.status();
}

TEST_F(MetricsStoreTest, OtherRollupStepIsFailedPrecondition) {
  open();
  store_.reset();
  options_.retention.rollup_step_ns = 20 * kS;
  auto r = spi::open_metrics_store(options_);
  ASSERT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(contains(r.status().message(), "10 s")) << r.status();
  EXPECT_TRUE(contains(r.status().message(), "20 s")) << r.status();
  // The windows may change: only the rollup step is part of the file.
  options_.retention = {.raw_ns = 30 * kS, .rollup_step_ns = 10 * kS, .rollup_ns = 600 * kS};
  open();
}

TEST_F(MetricsStoreTest, BadOptionsAreInvalidArgument) {
  spi::MetricsStoreOptions o = options_;
  o.retention.raw_ns = 0;
  EXPECT_EQ(spi::open_metrics_store(o).status().code(), StatusCode::kInvalidArgument);
  o = options_;
  o.retention.rollup_ns = 5 * kS;  // shorter than the step
  EXPECT_EQ(spi::open_metrics_store(o).status().code(), StatusCode::kInvalidArgument);
  o = options_;
  o.path.clear();
  EXPECT_EQ(spi::open_metrics_store(o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(options_.path));
}

TEST_F(MetricsStoreTest, MissingDirectoryIsUnavailable) {
  options_.path = (dir_ / "no-such-dir" / "metrics.db").string();
  auto r = spi::open_metrics_store(options_);
  ASSERT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(contains(r.status().message(), options_.path)) << r.status();
}

TEST_F(MetricsStoreTest, RecordAndQueryRunConcurrently) {
  open();
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::mutex first_mutex;
  Status first;  // the first failure, to name it
  const auto note = [&](const Status& s) {
    if (!s.ok()) {
      ++failures;
      const std::lock_guard lock(first_mutex);
      if (first.ok()) {
        first = s;
      }
    }
  };
  // A host with no history yet is NotFound: the first tick goes in before the reader starts.
  note(store_->record(tick(kT0, 1, {vm("u1", "v1", 2)})));
  std::thread reader([&] {
    while (!done) {
      note(store_->query(window(kT0, kT0 + 1000 * kS, 10 * kS)).status());
      note(store_->stats().status());
    }
  });
  for (std::int64_t i = 1; i < 300; ++i) {
    note(store_->record(tick(kT0 + i * kS, 1, {vm("u1", "v1", 2)})));
  }
  done = true;
  reader.join();
  EXPECT_EQ(failures, 0) << first;
  EXPECT_EQ(query(window(kT0, kT0 + 300 * kS, 300 * kS)).points.at(0).samples, 300U);
}

TEST(SqliteError, MapsCodesAndKeepsSqliteText) {
  using sqlite::status_code_for;
  EXPECT_EQ(status_code_for(SQLITE_BUSY), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(SQLITE_BUSY_SNAPSHOT), StatusCode::kUnavailable);  // extended codes too
  EXPECT_EQ(status_code_for(SQLITE_LOCKED), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(SQLITE_FULL), StatusCode::kResourceExhausted);
  EXPECT_EQ(status_code_for(SQLITE_CORRUPT), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(SQLITE_NOTADB), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(SQLITE_CANTOPEN), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(SQLITE_CONSTRAINT), StatusCode::kInternal);
  EXPECT_EQ(status_code_for(SQLITE_ERROR), StatusCode::kInternal);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  const int rc = sqlite3_exec(db, "SELEC 1", nullptr, nullptr, nullptr);
  const Status s = sqlite::sqlite_error(db, rc, "history 'x': testing");
  sqlite3_close(db);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_TRUE(contains(s.message(), "history 'x': testing: ")) << s;
  EXPECT_TRUE(contains(s.message(), "syntax error")) << s;

  EXPECT_EQ(sqlite::sqlite_error(nullptr, SQLITE_FULL, "w").message(), "w: database or disk is full");
  EXPECT_EQ(sqlite::sqlite_error(nullptr, SQLITE_OK, "w").code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace cloudmgr
