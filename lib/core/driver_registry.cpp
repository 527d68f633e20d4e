// The hypervisor driver registry: custom factories first (most recent first), then the
// built-in libvirt driver, which accepts every URI.
#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/spi/hypervisor_driver.h"
#include "driver/libvirt/libvirt_factory.h"

namespace cloudmgr::spi {
namespace {

struct Registry {
  std::mutex mutex;
  std::vector<std::pair<std::string, HypervisorDriverFactory>> factories;  // GUARDED_BY(mutex)
};

Registry& registry() {
  static Registry instance;
  return instance;
}

Status validate_uri(std::string_view uri) {
  if (uri.empty()) {
    return invalid_argument_error("hypervisor URI is empty");
  }
  const auto colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument_error(
        fmt::format("hypervisor URI '{}' has no scheme; expected e.g. \"qemu:///system\" or \"test:///default\"", uri));
  }
  for (const char c : uri) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return invalid_argument_error(fmt::format("hypervisor URI '{}' contains a space or control character", uri));
    }
  }
  return {};
}

}  // namespace

Subscription::~Subscription() = default;
HypervisorDriver::~HypervisorDriver() = default;

Result<SnapshotInfo> HypervisorDriver::create_snapshot(const VmRef& /*vm*/, const SnapshotSpec& /*spec*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not support snapshots", uri()));
}
Result<std::vector<SnapshotInfo>> HypervisorDriver::list_snapshots(const VmRef& /*vm*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not support snapshots", uri()));
}
Status HypervisorDriver::revert_to_snapshot(const VmRef& /*vm*/, std::string_view /*snapshot*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not support snapshots", uri()));
}
Status HypervisorDriver::delete_snapshot(const VmRef& /*vm*/, std::string_view /*snapshot*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not support snapshots", uri()));
}
// NOLINTNEXTLINE(performance-unnecessary-value-param): the interface takes the callback by value (a sink)
Result<std::unique_ptr<Subscription>> HypervisorDriver::subscribe_lifecycle(VmEventCallback /*callback*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not support lifecycle events", uri()));
}
Result<HostCounters> HypervisorDriver::read_counters() {
  return unimplemented_error(fmt::format("driver for '{}' does not read usage counters", uri()));
}

Status register_hypervisor_driver(std::string name, HypervisorDriverFactory factory) {
  if (name.empty() || !factory) {
    return invalid_argument_error("a driver registration needs a name and a factory");
  }
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  for (const auto& entry : r.factories) {
    if (entry.first == name) {
      return already_exists_error(fmt::format("hypervisor driver '{}' is already registered", name));
    }
  }
  r.factories.emplace_back(std::move(name), std::move(factory));
  return {};
}

Status unregister_hypervisor_driver(std::string_view name) {
  Registry& r = registry();
  const std::lock_guard lock(r.mutex);
  const auto it = std::find_if(r.factories.begin(), r.factories.end(), [&](const auto& e) { return e.first == name; });
  if (it == r.factories.end()) {
    return not_found_error(fmt::format("hypervisor driver '{}' is not registered", name));
  }
  r.factories.erase(it);
  return {};
}

Result<std::unique_ptr<HypervisorDriver>> open_hypervisor_driver(std::string_view uri) {
  if (Status s = validate_uri(uri); !s.ok()) {
    return s;
  }
  std::vector<HypervisorDriverFactory> factories;
  {
    Registry& r = registry();
    const std::lock_guard lock(r.mutex);
    for (auto it = r.factories.rbegin(); it != r.factories.rend(); ++it) {
      factories.push_back(it->second);
    }
  }
  // Factories run outside the lock: opening a connection may take seconds.
  for (const auto& factory : factories) {
    if (auto opened = factory(uri)) {
      return std::move(*opened);
    }
  }
  return libvirt::open_libvirt_driver(uri);
}

}  // namespace cloudmgr::spi
