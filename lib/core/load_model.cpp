#include "core/load_model.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace cloudmgr {

namespace {

// FNV-1a: a stable hash (std::hash may differ between builds).
std::uint64_t stable_hash(const std::string& s, std::uint64_t salt) {
  std::uint64_t h = 1469598103934665603ULL ^ salt;
  for (const char c : s) {
    h ^= static_cast<std::uint64_t>(static_cast<unsigned char>(c));
    h *= 1099511628211ULL;
  }
  return h;
}

// A number in [0, 1) from a VM's uuid and a salt.
double unit(const std::string& uuid, std::uint64_t salt) {
  return static_cast<double>(stable_hash(uuid, salt) >> 11) / static_cast<double>(1ULL << 53);
}

// A slow wave in [0, 1] with a per-VM period (5-15 min) and phase.
double wave(const std::string& uuid, std::uint64_t salt, std::int64_t t_ns) {
  const double period_s = 300 + 600 * unit(uuid, salt + 1);
  const double phase = 2 * std::numbers::pi * unit(uuid, salt + 2);
  const double t = static_cast<double>(t_ns) / 1e9;
  return 0.5 + 0.5 * std::sin(2 * std::numbers::pi * t / period_s + phase);
}

constexpr double kMebi = 1024.0 * 1024.0;

}  // namespace

double LoadModel::cpu_share(const std::string& uuid, std::int64_t t_ns) {
  const double level = 0.05 + 0.6 * unit(uuid, 10);
  return std::clamp(level * (0.5 + wave(uuid, 20, t_ns)), 0.0, 1.0);
}

HostCounters LoadModel::read(const HostInfo& host, const std::vector<VmInfo>& active, std::int64_t now_ns) {
  const std::lock_guard lock(mutex_);
  HostCounters out;
  out.taken_ns = now_ns;
  out.cpus = host.cpu.logical_cpus;
  out.memory_bytes = host.memory_bytes;
  out.memory_free_bytes = host.free_memory_bytes;
  out.simulated = true;

  const double host_dt_ns = last_ns_ > 0 && now_ns > last_ns_ ? static_cast<double>(now_ns - last_ns_) : 0;
  double vm_busy_ns = 0;
  std::map<std::string, Tracked> next;
  for (const VmInfo& vm : active) {
    Tracked st;
    auto it = vms_.find(vm.uuid);
    if (it != vms_.end()) {
      st = it->second;  // was active at the previous read: counters continue
    } else {
      st.counters.cpu_time_ns = 0;
      st.counters.disk_read_bytes = 0;
      st.counters.disk_write_bytes = 0;
      st.counters.disk_read_ops = 0;
      st.counters.disk_write_ops = 0;
      st.counters.net_rx_bytes = 0;
      st.counters.net_tx_bytes = 0;
      st.last_ns = now_ns;
    }
    VmCounters& c = st.counters;
    c.uuid = vm.uuid;
    c.name = vm.name;
    c.state = vm.state;
    c.vcpus = vm.vcpus;
    c.memory_bytes = vm.memory_bytes;
    const double dt_ns = now_ns > st.last_ns ? static_cast<double>(now_ns - st.last_ns) : 0;
    const std::int64_t mid_ns = st.last_ns + static_cast<std::int64_t>(dt_ns / 2);
    if (vm.state == VmState::kRunning && dt_ns > 0) {
      const double dt_s = dt_ns / 1e9;
      const double cpu = cpu_share(vm.uuid, mid_ns) * vm.vcpus * dt_ns;
      vm_busy_ns += cpu;
      *c.cpu_time_ns += static_cast<std::uint64_t>(cpu);
      const double io = wave(vm.uuid, 30, mid_ns);
      const double rd = unit(vm.uuid, 40) * 20 * kMebi * io * dt_s;
      const double wr = unit(vm.uuid, 41) * 8 * kMebi * io * dt_s;
      *c.disk_read_bytes += static_cast<std::uint64_t>(rd);
      *c.disk_write_bytes += static_cast<std::uint64_t>(wr);
      *c.disk_read_ops += static_cast<std::uint64_t>(rd / (16 * 1024));
      *c.disk_write_ops += static_cast<std::uint64_t>(wr / (8 * 1024));
      const double net = wave(vm.uuid, 50, mid_ns);
      *c.net_rx_bytes += static_cast<std::uint64_t>(unit(vm.uuid, 60) * 12 * kMebi * net * dt_s);
      *c.net_tx_bytes += static_cast<std::uint64_t>(unit(vm.uuid, 61) * 6 * kMebi * net * dt_s);
    }
    const double used = 0.3 + 0.5 * unit(vm.uuid, 70) + 0.1 * (wave(vm.uuid, 80, now_ns) - 0.5);
    c.memory_used_bytes = static_cast<std::uint64_t>(static_cast<double>(vm.memory_bytes) * std::clamp(used, 0.0, 1.0));
    st.last_ns = now_ns;
    out.vms.push_back(c);
    next.emplace(vm.uuid, std::move(st));
  }
  vms_ = std::move(next);

  if (host_dt_ns > 0) {
    const double capacity = host_dt_ns * out.cpus;
    const double overhead = 0.02 * capacity;  // the host's own work
    busy_ns_ += static_cast<std::uint64_t>(std::min(capacity, vm_busy_ns + overhead));
    total_ns_ += static_cast<std::uint64_t>(capacity);
  }
  last_ns_ = now_ns;
  out.cpu_busy_ns = busy_ns_;
  out.cpu_total_ns = total_ns_;
  return out;
}

}  // namespace cloudmgr
