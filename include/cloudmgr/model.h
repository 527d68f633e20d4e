// Value types of libcloudmgr's model: hosts, VMs, VM specs, snapshots, processes, events.
//
// Plain structs: copyable, comparable, no invariants beyond what the validate_*
// functions check; not synchronized. Units are in the field names (_bytes, _ns, _mhz).
// No hypervisor-specific type appears here: drivers translate to and from these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/status.h"
#include "cloudmgr/units.h"

namespace cloudmgr {

// ---------------------------------------------------------------------------------------------
// Hosts

// Physical CPU layout of a host.
struct CpuTopology {
  std::string model;               // e.g. "x86_64" or the CPU model name the hypervisor reports
  std::uint32_t logical_cpus = 0;  // CPUs the hypervisor can schedule on
  std::uint32_t mhz = 0;           // nominal clock
  std::uint32_t numa_nodes = 0;
  std::uint32_t sockets_per_node = 0;
  std::uint32_t cores_per_socket = 0;
  std::uint32_t threads_per_core = 0;

  friend bool operator==(const CpuTopology&, const CpuTopology&) = default;
};

// A hypervisor host: identity, capacity and what is currently free.
struct HostInfo {
  std::string id;                  // cloud-wide host id (configured; defaults to the hostname)
  std::string hostname;            // as the hypervisor reports it
  std::string hypervisor;          // hypervisor type, e.g. "QEMU", "Test"
  std::string hypervisor_version;  // e.g. "7.2.0"
  std::string uri;                 // the driver URI it was reached through
  CpuTopology cpu;
  std::uint64_t memory_bytes = 0;       // total physical memory
  std::uint64_t free_memory_bytes = 0;  // free physical memory as the host reports it
  // Allocation to active (running or paused) VMs, for placement.
  std::uint32_t vcpus_allocated = 0;
  std::uint64_t memory_allocated_bytes = 0;
  std::uint32_t vms_defined = 0;  // all VMs, active or not
  std::uint32_t vms_active = 0;

  // Logical CPUs not allocated to active VMs (0 when overcommitted).
  std::uint32_t vcpus_free() const noexcept {
    return vcpus_allocated >= cpu.logical_cpus ? 0 : cpu.logical_cpus - vcpus_allocated;
  }

  friend bool operator==(const HostInfo&, const HostInfo&) = default;
};

// One process on a host, read from /proc on the machine the library runs on.
struct ProcessInfo {
  std::int32_t pid = 0;
  std::int32_t ppid = 0;
  std::string name;       // the kernel's comm (at most 15 characters)
  char state = '?';       // R, S, D, Z, T, I, ...
  std::uint32_t uid = 0;  // real uid
  std::string user;       // user name for uid, or the number when unknown
  std::uint32_t threads = 0;
  std::uint64_t rss_bytes = 0;
  std::uint64_t vsize_bytes = 0;
  std::uint64_t cpu_time_ns = 0;   // user + system time consumed
  std::int64_t start_time_ns = 0;  // start time, nanoseconds since the Unix epoch
  std::string cmdline;             // arguments joined by spaces; empty for kernel threads

  friend bool operator==(const ProcessInfo&, const ProcessInfo&) = default;
};

// ---------------------------------------------------------------------------------------------
// VMs

enum class VmState : std::uint8_t {
  kUnknown = 0,
  kRunning,       // running (or blocked on a resource, which the hypervisor still counts as running)
  kPaused,        // suspended by an operator or the hypervisor
  kShuttingDown,  // a graceful shutdown is in progress
  kShutOff,       // defined, not running
  kCrashed,
  kPmSuspended,  // suspended by the guest's power management
};

// "running", "paused", "shutting-down", "shut-off", "crashed", "pm-suspended", "unknown".
CLOUDMGR_API std::string_view to_string(VmState state) noexcept;
CLOUDMGR_API std::optional<VmState> parse_vm_state(std::string_view name) noexcept;
// True for states in which the VM holds host resources (running, paused, shutting down, pm-suspended).
CLOUDMGR_API bool is_active(VmState state) noexcept;

enum class DiskDevice : std::uint8_t { kDisk = 0, kCdrom };
enum class DiskBus : std::uint8_t { kVirtio = 0, kSata, kScsi, kIde };
CLOUDMGR_API std::string_view to_string(DiskDevice device) noexcept;
CLOUDMGR_API std::string_view to_string(DiskBus bus) noexcept;

// A disk attached to a VM, as the hypervisor reports it.
struct DiskInfo {
  std::string target;  // guest device name, e.g. "vda"
  std::string source;  // host path of the image (empty for an empty CD-ROM drive)
  std::string device;  // "disk", "cdrom", ...
  std::string bus;     // "virtio", "sata", ...
  std::string format;  // image format, e.g. "qcow2", "raw"
  bool read_only = false;

  friend bool operator==(const DiskInfo&, const DiskInfo&) = default;
};

// A network interface of a VM, as the hypervisor reports it.
struct NicInfo {
  std::string mac;     // "52:54:00:12:34:56"
  std::string type;    // "network", "bridge", "user", ...
  std::string source;  // network or bridge name; for "ethernet", the tap device on the host
  std::string model;   // "virtio", "e1000", ...

  friend bool operator==(const NicInfo&, const NicInfo&) = default;
};

// Where a VM came from when it was provisioned from a template (empty otherwise). Kept with
// the VM's definition on its hypervisor (libvirt: the domain's <metadata>).
struct VmOrigin {
  std::string template_name;
  std::uint32_t template_version = 0;
  std::string image_sha256;  // the base image its first disk is a copy-on-write clone of

  bool empty() const noexcept { return template_name.empty() && image_sha256.empty(); }
  friend bool operator==(const VmOrigin&, const VmOrigin&) = default;
};

struct VmInfo {
  std::string uuid;  // canonical lower-case 8-4-4-4-12 form
  std::string name;
  VmState state = VmState::kUnknown;
  // Why the VM is in this state, e.g. "booted", "user", "destroyed", "shutdown", "crashed",
  // "from-snapshot", "unknown". Vendor-neutral words, not hypervisor codes.
  std::string state_reason;
  std::uint32_t vcpus = 0;  // current vCPUs
  std::uint32_t max_vcpus = 0;
  std::uint64_t memory_bytes = 0;  // current memory
  std::uint64_t max_memory_bytes = 0;
  std::uint64_t cpu_time_ns = 0;  // CPU time consumed by the VM so far
  bool persistent = false;        // defined (survives shutdown) rather than transient
  bool autostart = false;         // started when the host boots
  std::string description;
  std::vector<DiskInfo> disks;
  std::vector<NicInfo> nics;
  VmOrigin origin;

  friend bool operator==(const VmInfo&, const VmInfo&) = default;
};

// What to attach as a disk when defining a VM.
struct DiskSpec {
  std::string source_path;  // absolute host path of an existing image (empty only for a CD-ROM drive)
  std::string target;       // guest device, e.g. "vda"; empty = next free name for the bus
  DiskDevice device = DiskDevice::kDisk;
  DiskBus bus = DiskBus::kVirtio;
  std::string format = "qcow2";  // "qcow2" or "raw"
  bool read_only = false;

  friend bool operator==(const DiskSpec&, const DiskSpec&) = default;
};

// kNetwork: a libvirt virtual network. kBridge: an existing host bridge. kEthernet: a tap
// device that the hypervisor creates for the VM and attaches to nothing (routing, or a bridge
// the host's own tooling manages, is the operator's).
enum class NicType : std::uint8_t { kNetwork = 0, kBridge, kEthernet };
CLOUDMGR_API std::string_view to_string(NicType type) noexcept;

// What to attach as a network interface when defining a VM.
struct NicSpec {
  NicType type = NicType::kNetwork;
  // kNetwork: network name; kBridge: host bridge name; kEthernet: the tap device's name on the
  // host (at most 15 characters; empty = the hypervisor names it).
  std::string source = "default";
  std::string mac;  // empty = the hypervisor assigns one
  std::string model = "virtio";

  friend bool operator==(const NicSpec&, const NicSpec&) = default;
};

// What to create: everything a driver needs to define a VM. The driver writes the
// hypervisor's configuration from it; callers never pass raw hypervisor XML.
struct VmSpec {
  std::string name;  // see validate_vm_name
  std::string uuid;  // empty = generated by the hypervisor
  std::uint32_t vcpus = 1;
  std::uint64_t memory_bytes = 0;               // whole KiB, at least 16 MiB
  std::string arch;                             // empty = the host's architecture
  std::string machine;                          // empty = the hypervisor's default machine type
  std::vector<std::string> boot_devices{"hd"};  // in order; each "hd", "cdrom", "network" or "fd"
  std::vector<DiskSpec> disks;
  std::vector<NicSpec> nics;
  std::string description;  // free text, stored with the VM
  bool autostart = false;
  VmOrigin origin;  // set by template provisioning

  friend bool operator==(const VmSpec&, const VmSpec&) = default;
};

// Names a VM by name or by uuid.
struct VmRef {
  enum class Kind : std::uint8_t { kName, kUuid };
  Kind kind = Kind::kName;
  std::string value;

  static VmRef by_name(std::string name) { return {Kind::kName, std::move(name)}; }
  static VmRef by_uuid(std::string uuid) { return {Kind::kUuid, std::move(uuid)}; }
  // A well-formed UUID is taken as a uuid, anything else as a name.
  CLOUDMGR_API static VmRef parse(std::string_view text);

  friend bool operator==(const VmRef&, const VmRef&) = default;
};
CLOUDMGR_API std::string to_string(const VmRef& ref);

// Which VMs list_vms returns: every VM when states is empty, otherwise those in one of them.
struct VmFilter {
  std::vector<VmState> states;

  static VmFilter all() { return {}; }
  static VmFilter active() {
    return {{VmState::kRunning, VmState::kPaused, VmState::kShuttingDown, VmState::kPmSuspended}};
  }
  CLOUDMGR_API bool matches(VmState state) const noexcept;
};

struct ShutdownOptions {
  // How long to wait for the guest to power off after asking it to.
  std::uint64_t timeout_ms = 60'000;
  // When the guest has not powered off by the timeout, power it off (like destroy)
  // instead of failing with kDeadlineExceeded.
  bool force_off_after_timeout = false;
};

struct ShutdownOutcome {
  bool forced = false;          // true when the force-off fallback was used
  std::uint64_t waited_ms = 0;  // time until the VM was off
};

struct UndefineOptions {
  // Destroy a VM that is still active before undefining it. Without it, undefining an
  // active VM fails with kFailedPrecondition and changes nothing.
  bool force = false;
};

// ---------------------------------------------------------------------------------------------
// Snapshots

struct SnapshotSpec {
  std::string name;  // see validate_snapshot_name; empty = the hypervisor picks one
  std::string description;
};

struct SnapshotInfo {
  std::string name;
  std::string description;
  std::string parent;                    // empty for a root snapshot
  std::int64_t creation_time_ns = 0;     // nanoseconds since the Unix epoch
  VmState vm_state = VmState::kUnknown;  // the VM's state when the snapshot was taken
  bool current = false;                  // the snapshot the VM was last created from or reverted to

  friend bool operator==(const SnapshotInfo&, const SnapshotInfo&) = default;
};

// ---------------------------------------------------------------------------------------------
// Lifecycle events

enum class VmEventKind : std::uint8_t {
  kDefined = 0,
  kUndefined,
  kStarted,
  kSuspended,
  kResumed,
  kStopped,
  kShutdown,  // the guest has begun or finished shutting down
  kPmSuspended,
  kCrashed,
};
CLOUDMGR_API std::string_view to_string(VmEventKind kind) noexcept;

struct VmEvent {
  std::string vm_uuid;
  std::string vm_name;
  VmEventKind kind = VmEventKind::kDefined;
  std::string detail;        // e.g. "booted", "destroyed", "paused", "added", "updated"
  std::int64_t time_ns = 0;  // when the library received it, nanoseconds since the Unix epoch
};

// ---------------------------------------------------------------------------------------------
// Validation. Each returns OK or kInvalidArgument naming the field and what was wrong.

// 1-64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit.
CLOUDMGR_API Status validate_vm_name(std::string_view name);
// Canonical 36-character form, hex digits in either case.
CLOUDMGR_API Status validate_uuid(std::string_view uuid);
// Six colon-separated hex octets, unicast (the low bit of the first octet clear).
CLOUDMGR_API Status validate_mac(std::string_view mac);
// Same alphabet as VM names, 1-64 characters.
CLOUDMGR_API Status validate_snapshot_name(std::string_view name);
// Storage volume names (a directory pool's file names): 1-255 characters of the same
// alphabet, starting with a letter or digit, extension included ("web1-data0.qcow2").
CLOUDMGR_API Status validate_volume_name(std::string_view name);
// Storage pool names: the same rules as volume names.
CLOUDMGR_API Status validate_pool_name(std::string_view name);
// The whole spec: name, uuid, vcpus (1-4096), memory (16 MiB - 16 TiB, whole KiB), boot
// devices, disks (absolute paths, formats, unique targets) and NICs (source names, MACs).
CLOUDMGR_API Status validate_vm_spec(const VmSpec& spec);

}  // namespace cloudmgr
