// Monitoring: the counters a hypervisor driver reads, the rates an agent derives from them
// each tick, and the history it keeps.
//
// Plain structs, copyable, not synchronized. Units are in the field names: _pct (percent,
// 0-100 per CPU share), _bytes, _bytes_per_s, _ops_per_s, _ns (nanoseconds; times are since
// the Unix epoch, taken by the source: the agent's clock when it read the counters).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/model.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

// ---------------------------------------------------------------------------------------------
// Counters: what a driver reads in one bulk call. Monotonic counters may reset (a VM that
// restarts starts its CPU time again); the rate computation handles that.

struct VmCounters {
  std::string uuid;
  std::string name;
  VmState state = VmState::kUnknown;
  std::uint32_t vcpus = 0;
  std::optional<std::uint64_t> cpu_time_ns;  // total CPU time of the VM (all vCPUs)
  std::uint64_t memory_bytes = 0;            // memory the VM currently has (balloon)
  // Memory in use: the guest's view (available - unused) when its balloon driver reports
  // it, otherwise the hypervisor process's resident set; nullopt when neither is known.
  std::optional<std::uint64_t> memory_used_bytes;
  // Sums over the VM's block devices; nullopt when the driver has no block counters.
  std::optional<std::uint64_t> disk_read_bytes;
  std::optional<std::uint64_t> disk_write_bytes;
  std::optional<std::uint64_t> disk_read_ops;
  std::optional<std::uint64_t> disk_write_ops;
  // Sums over the VM's network interfaces.
  std::optional<std::uint64_t> net_rx_bytes;
  std::optional<std::uint64_t> net_tx_bytes;

  friend bool operator==(const VmCounters&, const VmCounters&) = default;
};

struct HostCounters {
  std::int64_t taken_ns = 0;  // when the counters were read (source clock)
  std::uint32_t cpus = 0;     // logical CPUs
  // Host CPU time, summed over all CPUs: busy (everything but idle and iowait) and total.
  // nullopt when the driver cannot read them.
  std::optional<std::uint64_t> cpu_busy_ns;
  std::optional<std::uint64_t> cpu_total_ns;
  std::uint64_t memory_bytes = 0;       // total memory
  std::uint64_t memory_free_bytes = 0;  // free memory as the host reports it
  // True when the numbers come from a load model rather than real counters (libvirt's
  // test driver has none): every view shows such samples as simulated.
  bool simulated = false;
  std::vector<VmCounters> vms;  // every active VM (shut-off VMs have no counters)

  friend bool operator==(const HostCounters&, const HostCounters&) = default;
};

// ---------------------------------------------------------------------------------------------
// Samples: rates over one tick.

// The metrics kept in history, in a fixed order (part of the history's wire form).
enum class Metric : std::uint8_t {
  kCpuPct = 0,         // host: busy share of all CPUs; VM: share of its vCPUs
  kMemoryUsedBytes,    // memory in use
  kDiskReadBytesPerS,  // disk read rate
  kDiskWriteBytesPerS,
  kDiskReadOpsPerS,
  kDiskWriteOpsPerS,
  kNetRxBytesPerS,  // network receive rate
  kNetTxBytesPerS,
};
inline constexpr std::size_t kMetricCount = 8;
using MetricValues = std::array<double, kMetricCount>;

// "cpu_pct", "memory_used_bytes", "disk_read_bytes_per_s", ...
CLOUDMGR_API std::string_view to_string(Metric metric) noexcept;
// Inverse of to_string; also takes the short names cpu, mem, disk_read, disk_write,
// disk_read_ops, disk_write_ops, net_rx, net_tx. kInvalidArgument naming the text otherwise.
CLOUDMGR_API Result<Metric> parse_metric(std::string_view text);

struct VmSample {
  std::string uuid;
  std::string name;
  VmState state = VmState::kUnknown;
  std::uint32_t vcpus = 0;
  // False on a VM's first tick (nothing to take a rate against) and after its counters went
  // backwards (a restart): the rates are 0 then, and history does not record them.
  bool rates_valid = false;
  double cpu_pct = 0;       // of the VM's vCPUs: 100 * vcpus would be every vCPU busy; 0-100 here
  double cpu_host_pct = 0;  // of the host's logical CPUs
  std::uint64_t memory_bytes = 0;
  std::uint64_t memory_used_bytes = 0;
  double disk_read_bytes_per_s = 0;
  double disk_write_bytes_per_s = 0;
  double disk_read_ops_per_s = 0;
  double disk_write_ops_per_s = 0;
  double net_rx_bytes_per_s = 0;
  double net_tx_bytes_per_s = 0;

  MetricValues values() const noexcept;
  friend bool operator==(const VmSample&, const VmSample&) = default;
};

// One tick of one host: the host's own rates and every active VM's.
struct HostSample {
  std::string host_id;
  std::int64_t taken_ns = 0;     // source clock
  std::int64_t interval_ns = 0;  // since the previous tick (0 on the first)
  bool simulated = false;        // from a load model, not real counters
  bool rates_valid = false;      // false on the first tick
  std::uint32_t cpus = 0;
  double cpu_pct = 0;  // busy share of all logical CPUs
  std::uint64_t memory_bytes = 0;
  std::uint64_t memory_used_bytes = 0;
  // Sums of the VMs' rates (a host's own disk and network counters are not read).
  double disk_read_bytes_per_s = 0;
  double disk_write_bytes_per_s = 0;
  double disk_read_ops_per_s = 0;
  double disk_write_ops_per_s = 0;
  double net_rx_bytes_per_s = 0;
  double net_tx_bytes_per_s = 0;
  std::vector<VmSample> vms;  // sorted by name

  MetricValues values() const noexcept;
  friend bool operator==(const HostSample&, const HostSample&) = default;
};

// ---------------------------------------------------------------------------------------------
// History

// How long history is kept and at which resolutions. Defaults: every sample for an hour,
// one-minute rollups (min / avg / max) for 30 days.
struct HistoryRetention {
  std::int64_t raw_ns = 3600LL * 1'000'000'000;
  std::int64_t rollup_step_ns = 60LL * 1'000'000'000;
  std::int64_t rollup_ns = 30LL * 24 * 3600 * 1'000'000'000;

  // kInvalidArgument unless 0 < raw, 0 < step <= rollup, and raw >= step.
  CLOUDMGR_API Status validate() const;
  friend bool operator==(const HistoryRetention&, const HistoryRetention&) = default;
};

struct HistoryQuery {
  std::string vm;  // VM name or uuid; empty: the host itself
  std::int64_t since_ns = 0;
  std::int64_t until_ns = 0;  // 0: now
  // Bucket width; 0 picks the finest resolution still kept for `since_ns`. Buckets are
  // aligned to multiples of the step since the epoch.
  std::int64_t step_ns = 0;
  // At most this many points per series (kInvalidArgument past it, saying which step fits).
  std::uint32_t max_points = 20'000;

  friend bool operator==(const HistoryQuery&, const HistoryQuery&) = default;
};

// One bucket of a series: statistics of the samples that fell into [start_ns, start_ns + step).
struct HistoryPoint {
  std::int64_t start_ns = 0;
  std::uint32_t samples = 0;  // raw samples behind it
  MetricValues min{};
  MetricValues avg{};
  MetricValues max{};

  friend bool operator==(const HistoryPoint&, const HistoryPoint&) = default;
};

struct HistorySeries {
  std::string host_id;
  std::string vm_uuid;  // empty for the host
  std::string vm_name;
  std::int64_t step_ns = 0;          // the bucket width actually used
  bool simulated = false;            // any sample behind it came from a load model
  std::vector<HistoryPoint> points;  // ascending start_ns, empty buckets omitted

  friend bool operator==(const HistorySeries&, const HistorySeries&) = default;
};

}  // namespace cloudmgr
