// Counters to rates: one agent's sampler turns successive HostCounters into HostSamples.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "cloudmgr/metrics.h"

namespace cloudmgr {

// Not thread-safe: one sampler owns it.
//
// Rules (docs/monitoring.md):
// - a rate needs two readings: a VM's first tick (new, or just started) has rates_valid false;
// - a counter that went backwards means the VM restarted (or lost a device) between the two
//   readings: that VM's tick is invalid rather than a spike, and the next one is valid again;
// - CPU shares are clamped to 0-100 (jitter between the clock and the counters);
// - a clock that did not move forward makes the whole tick invalid and starts over.
class RateTracker {
 public:
  explicit RateTracker(std::string host_id) : host_id_(std::move(host_id)) {}

  HostSample update(const HostCounters& counters);

 private:
  std::string host_id_;
  std::optional<HostCounters> previous_;  // without its VMs
  std::map<std::string, VmCounters> previous_vms_;
};

}  // namespace cloudmgr
