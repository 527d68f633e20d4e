// Placement: a pure function from a request and the hosts' allocation to a host per VM.
#include "cloudmgr/placement.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "cloudmgr/units.h"
#include "core/text.h"

namespace cloudmgr {
namespace {

constexpr std::uint32_t kMaxBatch = 1000;
constexpr std::uint64_t kMicro = 1'000'000;

// A ratio in millionths. Counting in whole millionths makes floor(10 x 0.7) 7, as written,
// rather than 6 (0.7 is 0.6999... in binary). Only called on validated ratios (<= 64).
std::uint64_t micro(double ratio) noexcept { return static_cast<std::uint64_t>(std::llround(ratio * 1e6)); }

// floor(amount x ratio_micro / 10^6) without overflow, saturating at the type's maximum.
std::uint64_t scale(std::uint64_t amount, std::uint64_t ratio_micro) noexcept {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t whole = amount / kMicro;
  const std::uint64_t rest = amount % kMicro;
  if (ratio_micro != 0 && whole > kMax / ratio_micro) {
    return kMax;
  }
  const std::uint64_t high = whole * ratio_micro;  // whole millionths of `amount`, times the ratio
  const std::uint64_t low = rest * ratio_micro / kMicro;
  return high > kMax - low ? kMax : high + low;
}

// "4x", "1.5x".
std::string ratio_text(double ratio) { return fmt::format("{:g}x", ratio); }

// What placement tracks of one host while it places a batch.
struct HostState {
  const PlacementCandidate* host = nullptr;
  std::uint64_t vcpu_cap = 0;
  std::uint64_t memory_cap = 0;
  std::uint64_t vcpus_used = 0;  // 64 bits: existing allocation plus up to 1000 VMs of the batch
  std::uint64_t memory_used = 0;
  std::uint64_t vms = 0;

  bool vcpus_fit(std::uint32_t vcpus) const noexcept {
    return vcpus_used <= vcpu_cap && vcpus <= vcpu_cap - vcpus_used;
  }
  bool memory_fits(std::uint64_t bytes) const noexcept {
    return memory_used <= memory_cap && bytes <= memory_cap - memory_used;
  }
  bool fits(const PlacementRequest& r) const noexcept {
    return host->online && vcpus_fit(r.vcpus) && memory_fits(r.memory_bytes);
  }
  // The larger of the vCPU and memory shares of capacity once the VM is taken; only for a
  // host that fits (so both capacities are positive).
  double share_after(const PlacementRequest& r) const noexcept {
    const double cpu = static_cast<double>(vcpus_used + r.vcpus) / static_cast<double>(vcpu_cap);
    const double mem = static_cast<double>(memory_used + r.memory_bytes) / static_cast<double>(memory_cap);
    return std::max(cpu, mem);
  }
  void take(const PlacementRequest& r) noexcept {
    vcpus_used += r.vcpus;
    memory_used += r.memory_bytes;
    ++vms;
  }
};

// True when `a` is the better host for the next VM (both fit).
bool better(const HostState& a, const HostState& b, const PlacementRequest& r) {
  if (r.policy == PlacementPolicy::kPack) {
    const bool a_busy = a.vms > 0;
    const bool b_busy = b.vms > 0;
    if (a_busy != b_busy) {
      return a_busy;
    }
  }
  const double sa = a.share_after(r);
  const double sb = b.share_after(r);
  if (sa != sb) {
    return r.policy == PlacementPolicy::kPack ? sa > sb : sa < sb;
  }
  if (r.policy == PlacementPolicy::kSpread && a.vms != b.vms) {
    return a.vms < b.vms;
  }
  if (a.host->has_image != b.host->has_image) {
    return a.host->has_image;
  }
  return a.host->host_id < b.host->host_id;
}

// Why a host takes no more VMs of the request.
std::string refusal(const HostState& h, const PlacementRequest& r) {
  if (!h.host->online) {
    return fmt::format("{}: offline", h.host->host_id);
  }
  std::vector<std::string> why;
  if (!h.vcpus_fit(r.vcpus)) {
    const std::uint64_t free = h.vcpus_used >= h.vcpu_cap ? 0 : h.vcpu_cap - h.vcpus_used;
    why.push_back(fmt::format("{} of {} vCPUs free ({} overcommit), needs {}", free, h.vcpu_cap,
                              ratio_text(r.overcommit.cpu), r.vcpus));
  }
  if (!h.memory_fits(r.memory_bytes)) {
    const std::uint64_t free = h.memory_used >= h.memory_cap ? 0 : h.memory_cap - h.memory_used;
    std::string policy = ratio_text(r.overcommit.memory) + " overcommit";
    if (r.overcommit.memory_reserved_bytes > 0) {
      policy += fmt::format(", {} reserved", format_bytes(r.overcommit.memory_reserved_bytes));
    }
    why.push_back(fmt::format("{} of {} memory free ({}), needs {}", format_bytes(free), format_bytes(h.memory_cap),
                              policy, format_bytes(r.memory_bytes)));
  }
  return fmt::format("{}: {}", h.host->host_id, fmt::join(why, " and "));
}

Status validate_request(const PlacementRequest& r) {
  if (r.vcpus < 1) {
    return invalid_argument_error("vcpus is 0; each VM needs at least 1");
  }
  if (r.memory_bytes == 0) {
    return invalid_argument_error("memory_bytes is 0; each VM needs some memory");
  }
  if (r.count < 1 || r.count > kMaxBatch) {
    return invalid_argument_error(fmt::format("count is {}; a batch holds 1 to {} VMs", r.count, kMaxBatch));
  }
  if (r.policy != PlacementPolicy::kPack && r.policy != PlacementPolicy::kSpread) {
    return invalid_argument_error(
        fmt::format("policy {} is not a placement policy", static_cast<unsigned int>(r.policy)));
  }
  return r.overcommit.validate();
}

}  // namespace

std::string_view to_string(PlacementPolicy policy) noexcept {
  return policy == PlacementPolicy::kSpread ? "spread" : "pack";
}

Result<PlacementPolicy> parse_placement_policy(std::string_view text) {
  if (text == "pack") {
    return PlacementPolicy::kPack;
  }
  if (text == "spread") {
    return PlacementPolicy::kSpread;
  }
  return invalid_argument_error(
      fmt::format("placement policy {} is not one of \"pack\", \"spread\"", quote_input(text)));
}

Status Overcommit::validate() const {
  if (!std::isfinite(cpu) || cpu < 0.1 || cpu > 64.0) {
    return invalid_argument_error(fmt::format("overcommit.cpu is {}; it must be between 0.1 and 64", cpu));
  }
  if (!std::isfinite(memory) || memory < 0.1 || memory > 8.0) {
    return invalid_argument_error(fmt::format("overcommit.memory is {}; it must be between 0.1 and 8", memory));
  }
  return {};
}

std::uint32_t vcpu_capacity(const PlacementCandidate& host, const Overcommit& overcommit) noexcept {
  if (!std::isfinite(overcommit.cpu) || overcommit.cpu <= 0) {
    return 0;
  }
  const std::uint64_t vcpus = scale(host.cpus, micro(std::min(overcommit.cpu, 64.0)));
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(vcpus, std::numeric_limits<std::uint32_t>::max()));
}

std::uint64_t memory_capacity(const PlacementCandidate& host, const Overcommit& overcommit) noexcept {
  if (!std::isfinite(overcommit.memory) || overcommit.memory <= 0 ||
      overcommit.memory_reserved_bytes >= host.memory_bytes) {
    return 0;
  }
  return scale(host.memory_bytes - overcommit.memory_reserved_bytes, micro(std::min(overcommit.memory, 8.0)));
}

Result<std::vector<std::string>> place(const PlacementRequest& request, const std::vector<PlacementCandidate>& hosts) {
  if (Status s = validate_request(request); !s.ok()) {
    return s;
  }
  if (hosts.empty()) {
    return invalid_argument_error("hosts is empty: there is no candidate host");
  }
  std::set<std::string_view> ids;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (hosts[i].host_id.empty()) {
      return invalid_argument_error(fmt::format("hosts[{}].host_id is empty", i));
    }
    if (!ids.insert(hosts[i].host_id).second) {
      return invalid_argument_error(
          fmt::format("hosts[{}].host_id {} is given twice", i, quote_input(hosts[i].host_id)));
    }
  }

  // In host id order, so that the result and the message never depend on the input's order.
  std::vector<HostState> state;
  state.reserve(hosts.size());
  for (const PlacementCandidate& h : hosts) {
    state.push_back({.host = &h,
                     .vcpu_cap = vcpu_capacity(h, request.overcommit),
                     .memory_cap = memory_capacity(h, request.overcommit),
                     .vcpus_used = h.vcpus_allocated,
                     .memory_used = h.memory_allocated_bytes,
                     .vms = h.vms});
  }
  std::sort(state.begin(), state.end(),
            [](const HostState& a, const HostState& b) { return a.host->host_id < b.host->host_id; });

  std::vector<std::string> out;
  out.reserve(request.count);
  while (out.size() < request.count) {
    HostState* best = nullptr;
    for (HostState& h : state) {
      if (h.fits(request) && (best == nullptr || better(h, *best, request))) {
        best = &h;
      }
    }
    if (best == nullptr) {
      std::vector<std::string> reasons;
      reasons.reserve(state.size());
      for (const HostState& h : state) {
        reasons.push_back(refusal(h, request));
      }
      return resource_exhausted_error(fmt::format(
          "only {} of {} VMs ({} vCPUs, {} each, {} placement) fit: {}", out.size(), request.count, request.vcpus,
          format_bytes(request.memory_bytes), to_string(request.policy), fmt::join(reasons, "; ")));
    }
    best->take(request);
    out.push_back(best->host->host_id);
  }
  return out;
}

}  // namespace cloudmgr
