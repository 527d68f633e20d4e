// Placement: which hosts take a batch of new VMs.
//
// A pure function of the request and of what the manager sees of each host (capacity,
// what its VMs already hold, whether the base image is cached there): no I/O, no clock,
// the same answer for the same input. The Manager feeds it from the data space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

enum class PlacementPolicy : std::uint8_t {
  kPack = 0,  // fill the busiest host that fits first, so idle hosts stay idle (power, maintenance)
  kSpread,    // the least loaded host that fits first, so one host's failure takes few VMs
};
CLOUDMGR_API std::string_view to_string(PlacementPolicy policy) noexcept;
// "pack" or "spread"; kInvalidArgument naming the text otherwise.
CLOUDMGR_API Result<PlacementPolicy> parse_placement_policy(std::string_view text);

// How far a host may be promised beyond its hardware.
struct Overcommit {
  double cpu = 4.0;                         // vCPUs per logical CPU
  double memory = 1.0;                      // bytes of VM memory per byte of host memory (after the reserve)
  std::uint64_t memory_reserved_bytes = 0;  // kept for the host itself, never given to VMs

  // kInvalidArgument naming the field: cpu outside [0.1, 64], memory outside [0.1, 8], or
  // not finite.
  CLOUDMGR_API Status validate() const;
  friend bool operator==(const Overcommit&, const Overcommit&) = default;
};

// One host, as placement sees it.
struct PlacementCandidate {
  std::string host_id;
  bool online = true;                        // offline hosts never take VMs
  std::uint32_t cpus = 0;                    // logical CPUs
  std::uint64_t memory_bytes = 0;            // physical memory
  std::uint32_t vcpus_allocated = 0;         // held by the VMs already on it (every defined VM)
  std::uint64_t memory_allocated_bytes = 0;  // likewise
  std::uint32_t vms = 0;                     // VMs already on it
  bool has_image = false;                    // the template's base image is cached there: preferred among equals

  friend bool operator==(const PlacementCandidate&, const PlacementCandidate&) = default;
};

struct PlacementRequest {
  std::uint32_t vcpus = 1;         // per VM, at least 1
  std::uint64_t memory_bytes = 0;  // per VM, more than 0
  std::uint32_t count = 1;         // VMs in the batch, 1-1000
  PlacementPolicy policy = PlacementPolicy::kPack;
  Overcommit overcommit;
};

// A host's capacity under an overcommit policy: floor(cpus x cpu) vCPUs and
// floor((memory - reserved) x memory) bytes (0 when the reserve equals or exceeds the
// memory). The ratios count in millionths, exactly (floor(10 x 0.7) is 7, not 6); the
// results saturate at the type's maximum. A ratio that is not positive and finite gives 0.
CLOUDMGR_API std::uint32_t vcpu_capacity(const PlacementCandidate& host, const Overcommit& overcommit) noexcept;
CLOUDMGR_API std::uint64_t memory_capacity(const PlacementCandidate& host, const Overcommit& overcommit) noexcept;

// Places the whole batch or none of it. Returns the host of each VM, in order (a host may
// appear several times). VMs are placed one at a time, each seeing the ones placed before:
//   pack:   among the hosts that fit, those that hold VMs (vms > 0, or a VM of this batch)
//           before idle ones; among those, the one whose larger share (vCPUs or memory) of
//           its capacity is highest after taking the VM;
//   spread: the one whose larger share is lowest after taking the VM, then the one with
//           fewer VMs;
// then, in both, a host with the image cached, then the smaller host id (deterministic).
// Errors:
//   kInvalidArgument for a bad request (naming the field), no candidates, or a host id
//     that is empty or given twice;
//   kResourceExhausted when the batch does not fit: the message says how many fit and, for
//     every host, why it took no more, e.g. "node-b: 2 of 64 vCPUs free (4x overcommit),
//     needs 4", "node-c: offline".
CLOUDMGR_API Result<std::vector<std::string>> place(const PlacementRequest& request,
                                                    const std::vector<PlacementCandidate>& hosts);

}  // namespace cloudmgr
