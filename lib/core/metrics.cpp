// Monitoring value types: metric names, the values kept in history, retention checks.
#include "cloudmgr/metrics.h"

#include <fmt/format.h>

namespace cloudmgr {

namespace {

struct MetricName {
  Metric metric;
  std::string_view name;
  std::string_view short_name;
};

constexpr std::array<MetricName, kMetricCount> kMetricNames{{
    {Metric::kCpuPct, "cpu_pct", "cpu"},
    {Metric::kMemoryUsedBytes, "memory_used_bytes", "mem"},
    {Metric::kDiskReadBytesPerS, "disk_read_bytes_per_s", "disk_read"},
    {Metric::kDiskWriteBytesPerS, "disk_write_bytes_per_s", "disk_write"},
    {Metric::kDiskReadOpsPerS, "disk_read_ops_per_s", "disk_read_ops"},
    {Metric::kDiskWriteOpsPerS, "disk_write_ops_per_s", "disk_write_ops"},
    {Metric::kNetRxBytesPerS, "net_rx_bytes_per_s", "net_rx"},
    {Metric::kNetTxBytesPerS, "net_tx_bytes_per_s", "net_tx"},
}};

}  // namespace

std::string_view to_string(Metric metric) noexcept {
  const auto i = static_cast<std::size_t>(metric);
  return i < kMetricNames.size() ? kMetricNames[i].name : "unknown";
}

Result<Metric> parse_metric(std::string_view text) {
  for (const auto& m : kMetricNames) {
    if (text == m.name || text == m.short_name) {
      return m.metric;
    }
  }
  if (text == "memory") {
    return Metric::kMemoryUsedBytes;
  }
  return invalid_argument_error(fmt::format(
      "unknown metric '{}' (cpu, mem, disk_read, disk_write, disk_read_ops, disk_write_ops, net_rx, net_tx)",
      text.substr(0, 64)));
}

namespace {

// Hosts and VMs keep the same metrics under the same names.
template <typename Sample>
MetricValues values_of(const Sample& s) noexcept {
  return {s.cpu_pct,
          static_cast<double>(s.memory_used_bytes),
          s.disk_read_bytes_per_s,
          s.disk_write_bytes_per_s,
          s.disk_read_ops_per_s,
          s.disk_write_ops_per_s,
          s.net_rx_bytes_per_s,
          s.net_tx_bytes_per_s};
}

}  // namespace

MetricValues VmSample::values() const noexcept { return values_of(*this); }
MetricValues HostSample::values() const noexcept { return values_of(*this); }

Status HistoryRetention::validate() const {
  if (raw_ns <= 0) {
    return invalid_argument_error("history retention: the raw window must be positive");
  }
  if (rollup_step_ns <= 0) {
    return invalid_argument_error("history retention: the rollup step must be positive");
  }
  if (rollup_ns < rollup_step_ns) {
    return invalid_argument_error("history retention: the rollup window must hold at least one rollup step");
  }
  if (raw_ns < rollup_step_ns) {
    return invalid_argument_error("history retention: the raw window must be at least one rollup step");
  }
  return {};
}

}  // namespace cloudmgr
