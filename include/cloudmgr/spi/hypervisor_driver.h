// Plug-in interface: how an agent acts on its hypervisor.
//
// One implementation ships with the library (libvirt: any libvirt URI). Others can be
// registered with register_hypervisor_driver(). Applications normally use
// cloudmgr::Hypervisor, which validates arguments before they reach a driver.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/metrics.h"
#include "cloudmgr/model.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

// ---------------------------------------------------------------------------------------------
// Storage: volumes in directory pools. The hypervisor's own storage API makes and removes
// them (libvirt: virStorageVolCreateXML...), so it knows every file it may be asked to open.

// A storage volume in a pool, as the hypervisor reports it.
struct VolumeInfo {
  std::string name;                    // unique in its pool; in a directory pool, the file name
  std::string path;                    // absolute path on the host
  std::uint64_t capacity_bytes = 0;    // the size the guest sees
  std::uint64_t allocation_bytes = 0;  // host storage it takes now (a new overlay: a few hundred KiB)
  std::string format;                  // "qcow2", "raw", or what the hypervisor names another format
  std::string backing_path;            // the file a copy-on-write overlay reads through to; empty when it stands alone
  std::string backing_format;          // that file's format; empty without one

  friend bool operator==(const VolumeInfo&, const VolumeInfo&) = default;
};

// A volume to create: blank, or a copy-on-write overlay over a backing file.
struct VolumeSpec {
  std::string name;  // see validate_volume_name; an extension (".qcow2") is part of the name
  // Blank: more than 0. Overlay: 0 = the backing file's size. QEMU rounds it up to whole
  // 512-byte sectors.
  std::uint64_t capacity_bytes = 0;
  std::string format = "qcow2";  // "qcow2" or "raw"; an overlay is qcow2
  // Set: a copy-on-write overlay over this file, which must be a volume of an active pool (any
  // pool; a file put in a pool's directory counts after refresh_pool). The overlay takes
  // host storage only for what the guest writes; the backing file is never written.
  std::string backing_path;
  std::string backing_format;  // "qcow2" or "raw": the backing file's format, never probed; set with backing_path only

  friend bool operator==(const VolumeSpec&, const VolumeSpec&) = default;
};

}  // namespace cloudmgr

namespace cloudmgr::spi {

using VmEventCallback = std::function<void(const VmEvent&)>;

// Keeps a lifecycle subscription alive; destroying it unsubscribes. After the destructor
// returns the callback is not running and is never called again (unless the destructor
// runs on the callback's own thread, in which case only the second holds).
class CLOUDMGR_API Subscription {
 public:
  Subscription() = default;
  virtual ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
};

// One connection to one hypervisor.
//
// Thread safety: implementations must allow concurrent calls from several threads.
// Arguments reach a driver already validated by cloudmgr::Hypervisor (names, specs),
// but a driver must still fail cleanly, never crash, on anything it is given.
// Every failing call leaves the hypervisor unchanged unless its comment says otherwise.
class CLOUDMGR_API HypervisorDriver {
 public:
  HypervisorDriver() = default;
  virtual ~HypervisorDriver();
  HypervisorDriver(const HypervisorDriver&) = delete;
  HypervisorDriver& operator=(const HypervisorDriver&) = delete;

  // The URI the driver was opened with.
  virtual std::string uri() const = 0;

  // Identity, capacity and allocation of the host. HostInfo::id is left empty: the
  // caller owns host ids.
  virtual Result<HostInfo> host_info() = 0;
  virtual Result<std::uint64_t> free_memory_bytes() = 0;

  virtual Result<std::vector<VmInfo>> list_vms(const VmFilter& filter) = 0;
  // kNotFound when no VM has that name or uuid.
  virtual Result<VmInfo> get_vm(const VmRef& vm) = 0;

  // Defines (does not start) a persistent VM. kAlreadyExists when the name or uuid is taken.
  virtual Result<VmInfo> define_vm(const VmSpec& spec) = 0;
  // Removes the VM's definition and its snapshot metadata (disk images are kept).
  virtual Status undefine_vm(const VmRef& vm, const UndefineOptions& options) = 0;

  // Verbs in the wrong state fail with kFailedPrecondition: start on an active VM, suspend
  // on a paused or shut-off VM, resume on a VM that is not paused, and so on.
  virtual Status start_vm(const VmRef& vm) = 0;
  // Asks the guest to power off and waits up to options.timeout_ms for it to do so.
  virtual Result<ShutdownOutcome> shutdown_vm(const VmRef& vm, const ShutdownOptions& options) = 0;
  virtual Status destroy_vm(const VmRef& vm) = 0;  // immediate power-off
  virtual Status reboot_vm(const VmRef& vm) = 0;   // graceful: asks the guest
  virtual Status reset_vm(const VmRef& vm) = 0;    // hard reset, like the reset button
  virtual Status suspend_vm(const VmRef& vm) = 0;
  virtual Status resume_vm(const VmRef& vm) = 0;
  virtual Status set_autostart(const VmRef& vm, bool autostart) = 0;

  // Snapshots. The defaults return kUnimplemented.
  virtual Result<SnapshotInfo> create_snapshot(const VmRef& vm, const SnapshotSpec& spec);
  virtual Result<std::vector<SnapshotInfo>> list_snapshots(const VmRef& vm);
  virtual Status revert_to_snapshot(const VmRef& vm, std::string_view snapshot);
  virtual Status delete_snapshot(const VmRef& vm, std::string_view snapshot);

  // Storage pools and volumes. The defaults return kUnimplemented. Names and paths reach a
  // driver validated (validate_pool_name, validate_volume_name, absolute paths).
  //
  // Defines (if missing), builds (creates the directory, if missing; an existing one keeps
  // its mode), starts and refreshes a directory pool named `name` over `path`. Idempotent.
  // kFailedPrecondition when a pool of that name exists over another path or is not a
  // directory pool, or when another pool uses `path`. On failure a pool this call defined is
  // undefined again (a directory it created may remain).
  virtual Status ensure_pool(std::string_view name, std::string_view path);
  // Rescans the pool's directory, e.g. after a file was put there. kNotFound for an unknown
  // pool; kFailedPrecondition for one that is not active (ensure_pool starts it).
  virtual Status refresh_pool(std::string_view name);
  // Stops and undefines the pool. Its directory and files stay where they are. kNotFound.
  virtual Status remove_pool(std::string_view name);

  // The volume calls below answer kNotFound for an unknown pool and kFailedPrecondition for an
  // inactive one.
  //
  // Creates a volume: blank (sparse: a raw one takes no storage until written) or an overlay.
  // kAlreadyExists when the name is taken (also by a file libvirt has not scanned yet);
  // kNotFound when the backing file is no volume of an active pool. On failure nothing is left.
  // The test driver (test:///) keeps volumes in memory only and never checks a backing file.
  virtual Result<VolumeInfo> create_volume(std::string_view pool, const VolumeSpec& spec);
  // A full, standalone qcow2 copy of the volume at `source_path` (in any active pool), named `name`:
  // the backing chain is flattened, so the copy needs no other file. The source should not
  // change meanwhile (a VM using it is best shut off). kAlreadyExists for a taken name,
  // kNotFound when no active pool has a volume at `source_path`. On failure nothing is left.
  virtual Result<VolumeInfo> clone_volume(std::string_view pool, std::string_view name, std::string_view source_path);
  // kNotFound when the pool has no volume of that name.
  virtual Result<VolumeInfo> get_volume(std::string_view pool, std::string_view name);
  // Every volume of the pool, by name.
  virtual Result<std::vector<VolumeInfo>> list_volumes(std::string_view pool);
  // Deletes the volume and its file. kNotFound; kFailedPrecondition when another volume of
  // the same pool is an overlay over it (volumes in other pools are not checked). A VM using
  // it is not checked either: remove the VM first.
  virtual Status delete_volume(std::string_view pool, std::string_view name);

  // Calls `callback` for every VM lifecycle event on this hypervisor, on a thread owned
  // by the driver, one event at a time, until the returned Subscription is destroyed.
  // The callback must not block for long. Default: kUnimplemented.
  virtual Result<std::unique_ptr<Subscription>> subscribe_lifecycle(VmEventCallback callback);

  // Usage counters of the host and of every active VM, read in one bulk call where the
  // hypervisor has one (libvirt: virConnectGetAllDomainStats), never one call per VM.
  // Counters the hypervisor does not keep are nullopt (libvirt's test driver keeps none).
  // Default: kUnimplemented.
  virtual Result<HostCounters> read_counters();
};

// A driver factory is asked to open a URI. It returns nullopt to decline the URI (it is
// not for this driver), or a Result: the opened driver or why opening failed.
using HypervisorDriverFactory =
    std::function<std::optional<Result<std::unique_ptr<HypervisorDriver>>>(std::string_view uri)>;

// Registers a factory under a unique name; registered factories are asked before the
// built-in libvirt driver, most recent first. kAlreadyExists if the name is taken.
// Thread-safe.
CLOUDMGR_API Status register_hypervisor_driver(std::string name, HypervisorDriverFactory factory);
// kNotFound if no factory has that name. Thread-safe.
CLOUDMGR_API Status unregister_hypervisor_driver(std::string_view name);

// Opens `uri` with the first factory that accepts it. kInvalidArgument for an empty or
// malformed URI, kUnavailable when the hypervisor cannot be reached.
CLOUDMGR_API Result<std::unique_ptr<HypervisorDriver>> open_hypervisor_driver(std::string_view uri);

}  // namespace cloudmgr::spi
