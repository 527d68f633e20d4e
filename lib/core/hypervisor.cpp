// cloudmgr::Hypervisor: checks arguments, then dispatches to the driver.
#include "cloudmgr/hypervisor.h"

#include <algorithm>

#include <fmt/format.h>

#include "cloudmgr/cloud.h"

#include "core/load_model.h"
#include "core/status_macros.h"

namespace cloudmgr {

struct Hypervisor::Impl {
  HypervisorOptions options;
  std::unique_ptr<spi::HypervisorDriver> driver;
  std::string uri;
  std::unique_ptr<LoadModel> load;  // set when the counters are simulated
};

namespace {

Status check_ref(const VmRef& vm) {
  return vm.kind == VmRef::Kind::kUuid ? validate_uuid(vm.value) : validate_vm_name(vm.value);
}

// Host ids become DDS partition names and file names: see validate_host_id.
Status check_host_id(std::string_view id) { return id.empty() ? Status() : validate_host_id(id); }

// A path as it may appear in a message: checked for control characters first, cut short.
std::string shown(std::string_view path) {
  return path.size() > 120 ? fmt::format("'{}...'", path.substr(0, 120)) : fmt::format("'{}'", path);
}

// An absolute host path, written plainly: no "." or ".." components (which could lead out of
// a pool's directory), no control characters. "//" and a trailing '/' are harmless.
Status check_path(std::string_view what, std::string_view path) {
  constexpr std::size_t kPathMax = 4095;
  if (path.empty()) {
    return invalid_argument_error(fmt::format("{} is empty", what));
  }
  if (std::any_of(path.begin(), path.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return invalid_argument_error(fmt::format("{} contains a control character", what));
  }
  if (path.size() > kPathMax) {
    return invalid_argument_error(
        fmt::format("{} is {} characters long; at most {} are allowed", what, path.size(), kPathMax));
  }
  if (path.front() != '/') {
    return invalid_argument_error(fmt::format("{} {} is not an absolute path", what, shown(path)));
  }
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) {
      end = path.size();
    }
    const std::string_view part = path.substr(start, end - start);
    if (part == "." || part == "..") {
      return invalid_argument_error(fmt::format("{} {} has a '{}' component", what, shown(path), part));
    }
    start = end + 1;
  }
  return {};
}

Status check_format(std::string_view what, std::string_view format) {
  if (format != "qcow2" && format != "raw") {
    return invalid_argument_error(
        fmt::format("{} '{}' is not supported; use \"qcow2\" or \"raw\"", what, format.substr(0, 40)));
  }
  return {};
}

Status check_volume_spec(const VolumeSpec& spec) {
  CLOUDMGR_RETURN_IF_ERROR(validate_volume_name(spec.name));
  CLOUDMGR_RETURN_IF_ERROR(check_format("volume format", spec.format));
  if (spec.backing_path.empty()) {
    if (!spec.backing_format.empty()) {
      return invalid_argument_error("backing_format is set but backing_path is empty");
    }
    if (spec.capacity_bytes == 0) {
      return invalid_argument_error(
          fmt::format("capacity_bytes of volume '{}' is 0; a volume without a backing file needs a size", spec.name));
    }
    return {};
  }
  CLOUDMGR_RETURN_IF_ERROR(check_path("backing_path", spec.backing_path));
  if (spec.backing_format.empty()) {
    return invalid_argument_error(
        "backing_format is empty; give the backing file's format, \"qcow2\" or \"raw\" (it is never probed)");
  }
  CLOUDMGR_RETURN_IF_ERROR(check_format("backing_format", spec.backing_format));
  if (spec.format != "qcow2") {
    return invalid_argument_error(
        fmt::format("volume '{}' is {}; only a qcow2 volume can have a backing file", spec.name, spec.format));
  }
  return {};
}

}  // namespace

// Defaults of the storage verbs of spi::HypervisorDriver (its other defaults are in
// driver_registry.cpp): a driver without storage says so.
namespace spi {

Status HypervisorDriver::ensure_pool(std::string_view /*name*/, std::string_view /*path*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage pools", uri()));
}
Status HypervisorDriver::refresh_pool(std::string_view /*name*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage pools", uri()));
}
Status HypervisorDriver::remove_pool(std::string_view /*name*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage pools", uri()));
}
Result<VolumeInfo> HypervisorDriver::create_volume(std::string_view /*pool*/, const VolumeSpec& /*spec*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage volumes", uri()));
}
Result<VolumeInfo> HypervisorDriver::clone_volume(std::string_view /*pool*/, std::string_view /*name*/,
                                                  std::string_view /*source_path*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage volumes", uri()));
}
Result<VolumeInfo> HypervisorDriver::get_volume(std::string_view /*pool*/, std::string_view /*name*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage volumes", uri()));
}
Result<std::vector<VolumeInfo>> HypervisorDriver::list_volumes(std::string_view /*pool*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage volumes", uri()));
}
Status HypervisorDriver::delete_volume(std::string_view /*pool*/, std::string_view /*name*/) {
  return unimplemented_error(fmt::format("driver for '{}' does not manage storage volumes", uri()));
}

}  // namespace spi

Hypervisor::Hypervisor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Hypervisor::~Hypervisor() = default;

Result<std::unique_ptr<Hypervisor>> Hypervisor::open(HypervisorOptions options) {
  CLOUDMGR_RETURN_IF_ERROR(check_host_id(options.host_id));
  CLOUDMGR_ASSIGN_OR_RETURN(auto driver, spi::open_hypervisor_driver(options.uri));
  return wrap(std::move(driver), std::move(options));
}

Result<std::unique_ptr<Hypervisor>> Hypervisor::wrap(std::unique_ptr<spi::HypervisorDriver> driver,
                                                     HypervisorOptions options) {
  if (!driver) {
    return invalid_argument_error("Hypervisor::wrap needs a driver");
  }
  CLOUDMGR_RETURN_IF_ERROR(check_host_id(options.host_id));
  auto impl = std::make_unique<Impl>();
  impl->uri = driver->uri();
  if (options.host_id.empty()) {
    CLOUDMGR_ASSIGN_OR_RETURN(const HostInfo info, driver->host_info());
    // Hostnames may hold characters host ids do not allow; fall back to a safe form.
    std::string id = info.hostname;
    for (char& c : id) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
        c = '-';
      }
    }
    options.host_id = check_host_id(id).ok() ? id : "host";
  }
  using Sim = HypervisorOptions::SimulatedLoad;
  if (options.simulated_load == Sim::kOn || (options.simulated_load == Sim::kAuto && impl->uri.starts_with("test:"))) {
    impl->load = std::make_unique<LoadModel>();
  }
  impl->options = std::move(options);
  impl->driver = std::move(driver);
  return std::unique_ptr<Hypervisor>(new Hypervisor(std::move(impl)));
}

const std::string& Hypervisor::uri() const noexcept { return impl_->uri; }
const std::string& Hypervisor::host_id() const noexcept { return impl_->options.host_id; }

Result<HostInfo> Hypervisor::host_info() {
  CLOUDMGR_ASSIGN_OR_RETURN(HostInfo info, impl_->driver->host_info());
  info.id = impl_->options.host_id;
  info.uri = impl_->uri;
  return info;
}

Result<std::uint64_t> Hypervisor::free_memory_bytes() { return impl_->driver->free_memory_bytes(); }

Result<std::vector<ProcessInfo>> Hypervisor::processes() { return list_processes(impl_->options.proc_root); }

Status Hypervisor::reboot_host() { return cloudmgr::reboot_host(impl_->options.reboot); }

Result<std::vector<VmInfo>> Hypervisor::list_vms(const VmFilter& filter) { return impl_->driver->list_vms(filter); }

Result<VmInfo> Hypervisor::get_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->get_vm(vm);
}

Result<VmInfo> Hypervisor::define_vm(const VmSpec& spec) {
  CLOUDMGR_RETURN_IF_ERROR(validate_vm_spec(spec));
  return impl_->driver->define_vm(spec);
}

Status Hypervisor::undefine_vm(const VmRef& vm, const UndefineOptions& options) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->undefine_vm(vm, options);
}

Status Hypervisor::start_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->start_vm(vm);
}

Result<ShutdownOutcome> Hypervisor::shutdown_vm(const VmRef& vm, const ShutdownOptions& options) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  constexpr std::uint64_t kMaxTimeoutMs = 24ULL * 3600 * 1000;
  if (options.timeout_ms > kMaxTimeoutMs) {
    return invalid_argument_error(
        fmt::format("shutdown timeout_ms is {}; at most {} (one day) is allowed", options.timeout_ms, kMaxTimeoutMs));
  }
  return impl_->driver->shutdown_vm(vm, options);
}

Status Hypervisor::destroy_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->destroy_vm(vm);
}

Status Hypervisor::reboot_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->reboot_vm(vm);
}

Status Hypervisor::reset_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->reset_vm(vm);
}

Status Hypervisor::suspend_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->suspend_vm(vm);
}

Status Hypervisor::resume_vm(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->resume_vm(vm);
}

Status Hypervisor::set_autostart(const VmRef& vm, bool autostart) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->set_autostart(vm, autostart);
}

Result<SnapshotInfo> Hypervisor::create_snapshot(const VmRef& vm, const SnapshotSpec& spec) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  if (!spec.name.empty()) {
    CLOUDMGR_RETURN_IF_ERROR(validate_snapshot_name(spec.name));
  }
  if (spec.description.size() > 4096) {
    return invalid_argument_error("snapshot description is longer than 4096 bytes");
  }
  return impl_->driver->create_snapshot(vm, spec);
}

Result<std::vector<SnapshotInfo>> Hypervisor::list_snapshots(const VmRef& vm) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  return impl_->driver->list_snapshots(vm);
}

Status Hypervisor::revert_to_snapshot(const VmRef& vm, std::string_view snapshot) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  CLOUDMGR_RETURN_IF_ERROR(validate_snapshot_name(snapshot));
  return impl_->driver->revert_to_snapshot(vm, snapshot);
}

Status Hypervisor::delete_snapshot(const VmRef& vm, std::string_view snapshot) {
  CLOUDMGR_RETURN_IF_ERROR(check_ref(vm));
  CLOUDMGR_RETURN_IF_ERROR(validate_snapshot_name(snapshot));
  return impl_->driver->delete_snapshot(vm, snapshot);
}

Status Hypervisor::ensure_pool(std::string_view name, std::string_view path) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(name));
  CLOUDMGR_RETURN_IF_ERROR(check_path("pool path", path));
  if (path.find_first_not_of('/') == std::string_view::npos) {
    return invalid_argument_error("pool path '/' is the root directory; give a directory of its own");
  }
  return impl_->driver->ensure_pool(name, path);
}

Status Hypervisor::refresh_pool(std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(name));
  return impl_->driver->refresh_pool(name);
}

Status Hypervisor::remove_pool(std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(name));
  return impl_->driver->remove_pool(name);
}

Result<VolumeInfo> Hypervisor::create_volume(std::string_view pool, const VolumeSpec& spec) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(pool));
  CLOUDMGR_RETURN_IF_ERROR(check_volume_spec(spec));
  return impl_->driver->create_volume(pool, spec);
}

Result<VolumeInfo> Hypervisor::clone_volume(std::string_view pool, std::string_view name,
                                            std::string_view source_path) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(pool));
  CLOUDMGR_RETURN_IF_ERROR(validate_volume_name(name));
  CLOUDMGR_RETURN_IF_ERROR(check_path("source_path", source_path));
  return impl_->driver->clone_volume(pool, name, source_path);
}

Result<VolumeInfo> Hypervisor::get_volume(std::string_view pool, std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(pool));
  CLOUDMGR_RETURN_IF_ERROR(validate_volume_name(name));
  return impl_->driver->get_volume(pool, name);
}

Result<std::vector<VolumeInfo>> Hypervisor::list_volumes(std::string_view pool) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(pool));
  return impl_->driver->list_volumes(pool);
}

Status Hypervisor::delete_volume(std::string_view pool, std::string_view name) {
  CLOUDMGR_RETURN_IF_ERROR(validate_pool_name(pool));
  CLOUDMGR_RETURN_IF_ERROR(validate_volume_name(name));
  return impl_->driver->delete_volume(pool, name);
}

Result<HostCounters> Hypervisor::read_counters() {
  if (!impl_->load) {
    return impl_->driver->read_counters();
  }
  CLOUDMGR_ASSIGN_OR_RETURN(const HostInfo host, impl_->driver->host_info());
  CLOUDMGR_ASSIGN_OR_RETURN(const auto active, impl_->driver->list_vms(VmFilter::active()));
  return impl_->load->read(host, active, now_ns());
}

Result<std::unique_ptr<spi::Subscription>> Hypervisor::subscribe_lifecycle(spi::VmEventCallback callback) {
  if (!callback) {
    return invalid_argument_error("subscribe_lifecycle needs a callback");
  }
  return impl_->driver->subscribe_lifecycle(std::move(callback));
}

}  // namespace cloudmgr
