// cloudmgr::Hypervisor: checks arguments, then dispatches to the driver.
#include "cloudmgr/hypervisor.h"

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

}  // namespace

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
