#include "core/rates.h"

#include <algorithm>

namespace cloudmgr {

namespace {

constexpr double kNsPerS = 1e9;

// The rate of a counter between two readings, or nullopt when it went backwards (reset).
// A counter the driver does not read (either side nullopt) has rate 0.
std::optional<double> rate(const std::optional<std::uint64_t>& before, const std::optional<std::uint64_t>& now,
                           double seconds) {
  if (!before || !now) {
    return 0.0;
  }
  if (*now < *before) {
    return std::nullopt;
  }
  return static_cast<double>(*now - *before) / seconds;
}

double pct(double part, double whole) { return whole <= 0 ? 0 : std::clamp(100.0 * part / whole, 0.0, 100.0); }

}  // namespace

HostSample RateTracker::update(const HostCounters& counters) {
  HostSample s;
  s.host_id = host_id_;
  s.taken_ns = counters.taken_ns;
  s.simulated = counters.simulated;
  s.cpus = counters.cpus;
  s.memory_bytes = counters.memory_bytes;
  s.memory_used_bytes =
      counters.memory_bytes > counters.memory_free_bytes ? counters.memory_bytes - counters.memory_free_bytes : 0;

  const std::int64_t interval = previous_ ? counters.taken_ns - previous_->taken_ns : 0;
  if (previous_ && interval <= 0) {
    previous_vms_.clear();  // the clock stepped back: start over
  }
  const bool have_interval = previous_ && interval > 0;
  s.interval_ns = have_interval ? interval : 0;
  s.rates_valid = have_interval;
  const double seconds = static_cast<double>(interval) / kNsPerS;
  const double interval_ns = static_cast<double>(interval);

  std::map<std::string, VmCounters> next_vms;
  double vms_cpu_host_pct = 0;
  s.vms.reserve(counters.vms.size());
  for (const VmCounters& c : counters.vms) {
    VmSample v;
    v.uuid = c.uuid;
    v.name = c.name;
    v.state = c.state;
    v.vcpus = c.vcpus;
    v.memory_bytes = c.memory_bytes;
    v.memory_used_bytes = c.memory_used_bytes.value_or(c.memory_bytes);
    auto prev = previous_vms_.find(c.uuid);
    if (have_interval && prev != previous_vms_.end()) {
      const VmCounters& p = prev->second;
      const auto cpu = rate(p.cpu_time_ns, c.cpu_time_ns, 1.0);  // ns of CPU over the interval
      const auto rd = rate(p.disk_read_bytes, c.disk_read_bytes, seconds);
      const auto wr = rate(p.disk_write_bytes, c.disk_write_bytes, seconds);
      const auto rd_ops = rate(p.disk_read_ops, c.disk_read_ops, seconds);
      const auto wr_ops = rate(p.disk_write_ops, c.disk_write_ops, seconds);
      const auto rx = rate(p.net_rx_bytes, c.net_rx_bytes, seconds);
      const auto tx = rate(p.net_tx_bytes, c.net_tx_bytes, seconds);
      if (cpu && rd && wr && rd_ops && wr_ops && rx && tx) {
        v.rates_valid = true;
        v.cpu_pct = pct(*cpu, interval_ns * c.vcpus);
        v.cpu_host_pct = pct(*cpu, interval_ns * counters.cpus);
        v.disk_read_bytes_per_s = *rd;
        v.disk_write_bytes_per_s = *wr;
        v.disk_read_ops_per_s = *rd_ops;
        v.disk_write_ops_per_s = *wr_ops;
        v.net_rx_bytes_per_s = *rx;
        v.net_tx_bytes_per_s = *tx;
        vms_cpu_host_pct += v.cpu_host_pct;
        s.disk_read_bytes_per_s += v.disk_read_bytes_per_s;
        s.disk_write_bytes_per_s += v.disk_write_bytes_per_s;
        s.disk_read_ops_per_s += v.disk_read_ops_per_s;
        s.disk_write_ops_per_s += v.disk_write_ops_per_s;
        s.net_rx_bytes_per_s += v.net_rx_bytes_per_s;
        s.net_tx_bytes_per_s += v.net_tx_bytes_per_s;
      }
    }
    next_vms.emplace(c.uuid, c);
    s.vms.push_back(std::move(v));
  }
  std::sort(s.vms.begin(), s.vms.end(), [](const VmSample& a, const VmSample& b) { return a.name < b.name; });

  if (have_interval) {
    const auto busy = rate(previous_->cpu_busy_ns, counters.cpu_busy_ns, 1.0);
    const auto total = rate(previous_->cpu_total_ns, counters.cpu_total_ns, 1.0);
    if (counters.cpu_busy_ns && counters.cpu_total_ns && busy && total && *total > 0) {
      s.cpu_pct = pct(*busy, *total);
    } else {
      // No usable host counters (a driver without them, or a reset): the VMs' share is the
      // best lower bound there is.
      s.cpu_pct = std::clamp(vms_cpu_host_pct, 0.0, 100.0);
    }
  }

  previous_ = counters;
  previous_->vms.clear();
  previous_vms_ = std::move(next_vms);
  return s;
}

}  // namespace cloudmgr
