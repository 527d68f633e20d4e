// A load model for simulated hosts: libvirt's test driver keeps no usage counters, so a demo
// cloud on it would show no load at all. This model makes plausible, deterministic counters
// for the VMs the driver reports, and every sample built from them is marked simulated.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cloudmgr/metrics.h"
#include "cloudmgr/model.h"

namespace cloudmgr {

// Thread-safe. Counters advance with the time passed to read(): each VM's CPU use follows a
// slow wave around a level derived from its uuid (so two runs of the same cloud look alike),
// and its counters restart from 0 when the VM was not active at the previous read (a restart,
// as on a real hypervisor). Paused VMs use no CPU and do no I/O.
class LoadModel {
 public:
  // `active` are the active VMs now; `host` gives capacity and free memory.
  HostCounters read(const HostInfo& host, const std::vector<VmInfo>& active, std::int64_t now_ns);

  // The modelled CPU share (0-1 of the VM's vCPUs) of a VM at a time: for tests.
  static double cpu_share(const std::string& uuid, std::int64_t t_ns);

 private:
  struct Tracked {
    VmCounters counters;
    std::int64_t last_ns = 0;
  };
  std::mutex mutex_;
  std::map<std::string, Tracked> vms_;  // GUARDED_BY(mutex_)
  std::int64_t last_ns_ = 0;            // GUARDED_BY(mutex_)
  std::uint64_t busy_ns_ = 0;           // GUARDED_BY(mutex_)
  std::uint64_t total_ns_ = 0;          // GUARDED_BY(mutex_)
};

}  // namespace cloudmgr
