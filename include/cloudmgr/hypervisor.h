// cloudmgr::Hypervisor: the typed API to drive one hypervisor host.
//
//   auto hv = cloudmgr::Hypervisor::open({.uri = "qemu:///system"});
//   if (!hv.ok()) { std::cerr << hv.status() << "\n"; return 1; }
//   auto vm = (*hv)->define_vm({.name = "web1", .vcpus = 2, .memory_bytes = 1 * cloudmgr::kGiB});
//
// Every argument is validated here (names, uuids, specs) before it reaches the driver,
// so a bad request fails with kInvalidArgument and changes nothing on the hypervisor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/host.h"
#include "cloudmgr/model.h"
#include "cloudmgr/spi/hypervisor_driver.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

struct HypervisorOptions {
  // Any URI a registered driver accepts: "test:///default", "test:///abs/path/host.xml",
  // "qemu:///system", "qemu+ssh://user@host/system", ...
  std::string uri = "test:///default";
  // The host's cloud-wide id; empty = the hostname the hypervisor reports.
  std::string host_id;
  // Where the process list is read from (the agent's machine).
  std::string proc_root = "/proc";
  HostRebootPolicy reboot;
  // Usage counters from a load model instead of the driver's: for simulated hosts, whose
  // hypervisor (libvirt's test driver) keeps no counters. kAuto: on for test:// URIs.
  enum class SimulatedLoad : std::uint8_t { kAuto = 0, kOn, kOff };
  SimulatedLoad simulated_load = SimulatedLoad::kAuto;
};

// Owns one driver connection. Thread-safe: every method may be called concurrently.
class CLOUDMGR_API Hypervisor {
 public:
  // Opens options.uri through the driver registry. kInvalidArgument for a bad URI or host
  // id, kUnavailable when the hypervisor cannot be reached.
  static Result<std::unique_ptr<Hypervisor>> open(HypervisorOptions options);
  // Wraps an already opened driver (tests, decorators, custom drivers).
  static Result<std::unique_ptr<Hypervisor>> wrap(std::unique_ptr<spi::HypervisorDriver> driver,
                                                  HypervisorOptions options);
  ~Hypervisor();
  Hypervisor(const Hypervisor&) = delete;
  Hypervisor& operator=(const Hypervisor&) = delete;

  const std::string& uri() const noexcept;
  const std::string& host_id() const noexcept;

  // Host
  Result<HostInfo> host_info();
  Result<std::uint64_t> free_memory_bytes();
  Result<std::vector<ProcessInfo>> processes();
  Status reboot_host();

  // VMs
  Result<std::vector<VmInfo>> list_vms(const VmFilter& filter = VmFilter::all());
  Result<VmInfo> get_vm(const VmRef& vm);
  Result<VmInfo> define_vm(const VmSpec& spec);
  Status undefine_vm(const VmRef& vm, const UndefineOptions& options = {});
  Status start_vm(const VmRef& vm);
  Result<ShutdownOutcome> shutdown_vm(const VmRef& vm, const ShutdownOptions& options = {});
  Status destroy_vm(const VmRef& vm);
  Status reboot_vm(const VmRef& vm);
  Status reset_vm(const VmRef& vm);
  Status suspend_vm(const VmRef& vm);
  Status resume_vm(const VmRef& vm);
  Status set_autostart(const VmRef& vm, bool autostart);

  // Snapshots
  Result<SnapshotInfo> create_snapshot(const VmRef& vm, const SnapshotSpec& spec = {});
  Result<std::vector<SnapshotInfo>> list_snapshots(const VmRef& vm);
  Status revert_to_snapshot(const VmRef& vm, std::string_view snapshot);
  Status delete_snapshot(const VmRef& vm, std::string_view snapshot);

  // Storage: directory pools and the volumes in them; see spi::HypervisorDriver::ensure_pool
  // and what follows it for what each does. Pool and volume names are checked with
  // validate_pool_name and validate_volume_name; paths must be absolute, without "." or ".."
  // components or control characters; formats "qcow2" or "raw"; a spec as VolumeSpec says.
  // Anything else is kInvalidArgument, and nothing is made.
  Status ensure_pool(std::string_view name, std::string_view path);
  Status refresh_pool(std::string_view name);
  Status remove_pool(std::string_view name);
  Result<VolumeInfo> create_volume(std::string_view pool, const VolumeSpec& spec);
  Result<VolumeInfo> clone_volume(std::string_view pool, std::string_view name, std::string_view source_path);
  Result<VolumeInfo> get_volume(std::string_view pool, std::string_view name);
  Result<std::vector<VolumeInfo>> list_volumes(std::string_view pool);
  Status delete_volume(std::string_view pool, std::string_view name);

  // Usage counters of the host and its active VMs, in one bulk read; see
  // spi::HypervisorDriver::read_counters. With HypervisorOptions::simulated_load the
  // counters come from a load model (HostCounters::simulated is set).
  Result<HostCounters> read_counters();

  // Lifecycle events; see spi::HypervisorDriver::subscribe_lifecycle.
  Result<std::unique_ptr<spi::Subscription>> subscribe_lifecycle(spi::VmEventCallback callback);

 private:
  struct Impl;
  explicit Hypervisor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cloudmgr
