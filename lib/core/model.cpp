#include <algorithm>
#include <array>
#include <set>

#include <fmt/format.h>

#include "cloudmgr/model.h"
#include "core/text.h"

namespace cloudmgr {
namespace {

bool is_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
bool is_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

Status validate_identifier(std::string_view what, std::string_view name, std::size_t max_length = 64) {
  if (name.empty()) {
    return invalid_argument_error(fmt::format("{} is empty", what));
  }
  if (name.size() > max_length) {
    return invalid_argument_error(fmt::format("{} {} is {} characters long; at most {} are allowed", what,
                                              quote_input(name), name.size(), max_length));
  }
  if (!is_alnum(name.front())) {
    return invalid_argument_error(fmt::format("{} {} must start with a letter or digit", what, quote_input(name)));
  }
  for (const char c : name) {
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-') {
      return invalid_argument_error(fmt::format("{} {} contains {}; only letters, digits, '.', '_' and '-' are allowed",
                                                what, quote_input(name), quote_input(std::string_view(&c, 1))));
    }
  }
  return {};
}

// A libvirt-style network/bridge name: the identifier alphabet. An ethernet NIC's source is a
// Linux interface name (IFNAMSIZ: 15 characters), or empty for one the hypervisor picks.
Status validate_nic_source(std::size_t index, const NicSpec& nic) {
  if (nic.type != NicType::kEthernet || !nic.source.empty()) {
    const std::string what = fmt::format("nics[{}].source", index);
    if (Status s = validate_identifier(what, nic.source); !s.ok()) {
      return s;
    }
    if (nic.type == NicType::kEthernet && nic.source.size() > 15) {
      return invalid_argument_error(fmt::format("{} {} is {} characters long; a host interface name has at most 15",
                                                what, quote_input(nic.source), nic.source.size()));
    }
  }
  if (!nic.mac.empty()) {
    if (Status m = validate_mac(nic.mac); !m.ok()) {
      return m.with_context(fmt::format("nics[{}].mac", index));
    }
  }
  if (nic.model.empty()) {
    return invalid_argument_error(fmt::format("nics[{}].model is empty", index));
  }
  for (const char c : nic.model) {
    if (!is_alnum(c) && c != '-' && c != '_') {
      return invalid_argument_error(
          fmt::format("nics[{}].model {} is not a device model name", index, quote_input(nic.model)));
    }
  }
  return {};
}

std::string_view bus_prefix(DiskBus bus) noexcept {
  switch (bus) {
    case DiskBus::kVirtio:
      return "vd";
    case DiskBus::kIde:
      return "hd";
    case DiskBus::kSata:
    case DiskBus::kScsi:
      return "sd";
  }
  return "vd";
}

Status validate_disk(std::size_t index, const DiskSpec& disk) {
  const std::string field = fmt::format("disks[{}]", index);
  if (disk.source_path.empty()) {
    if (disk.device != DiskDevice::kCdrom) {
      return invalid_argument_error(field + ".source_path is empty; only a CD-ROM drive may be empty");
    }
  } else {
    if (disk.source_path.front() != '/') {
      return invalid_argument_error(
          fmt::format("{}.source_path {} is not an absolute path", field, quote_input(disk.source_path)));
    }
    if (disk.source_path.find('\0') != std::string::npos ||
        std::any_of(disk.source_path.begin(), disk.source_path.end(),
                    [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      return invalid_argument_error(fmt::format("{}.source_path contains a control character", field));
    }
  }
  if (disk.format != "qcow2" && disk.format != "raw") {
    return invalid_argument_error(
        fmt::format("{}.format {} is not supported; use \"qcow2\" or \"raw\"", field, quote_input(disk.format)));
  }
  if (!disk.target.empty()) {
    const std::string_view prefix = bus_prefix(disk.bus);
    const std::string_view target = disk.target;
    const bool letters_ok = target.size() > 2 && target.size() <= 4 &&
                            std::all_of(target.begin() + 2, target.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    if (!target.starts_with(prefix) || !letters_ok) {
      return invalid_argument_error(fmt::format("{}.target {} is not a {} device name like \"{}a\"", field,
                                                quote_input(disk.target), to_string(disk.bus), prefix));
    }
  }
  return {};
}

}  // namespace

std::string_view to_string(VmState state) noexcept {
  switch (state) {
    case VmState::kRunning:
      return "running";
    case VmState::kPaused:
      return "paused";
    case VmState::kShuttingDown:
      return "shutting-down";
    case VmState::kShutOff:
      return "shut-off";
    case VmState::kCrashed:
      return "crashed";
    case VmState::kPmSuspended:
      return "pm-suspended";
    case VmState::kUnknown:
      break;
  }
  return "unknown";
}

std::optional<VmState> parse_vm_state(std::string_view name) noexcept {
  constexpr std::array kStates = {VmState::kUnknown, VmState::kRunning, VmState::kPaused,     VmState::kShuttingDown,
                                  VmState::kShutOff, VmState::kCrashed, VmState::kPmSuspended};
  for (const VmState s : kStates) {
    if (to_string(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

bool is_active(VmState state) noexcept {
  return state == VmState::kRunning || state == VmState::kPaused || state == VmState::kShuttingDown ||
         state == VmState::kPmSuspended;
}

std::string_view to_string(DiskDevice device) noexcept { return device == DiskDevice::kCdrom ? "cdrom" : "disk"; }

std::string_view to_string(DiskBus bus) noexcept {
  switch (bus) {
    case DiskBus::kVirtio:
      return "virtio";
    case DiskBus::kSata:
      return "sata";
    case DiskBus::kScsi:
      return "scsi";
    case DiskBus::kIde:
      return "ide";
  }
  return "virtio";
}

std::string_view to_string(NicType type) noexcept {
  switch (type) {
    case NicType::kBridge:
      return "bridge";
    case NicType::kEthernet:
      return "ethernet";
    case NicType::kNetwork:
      break;
  }
  return "network";
}

std::string_view to_string(VmEventKind kind) noexcept {
  switch (kind) {
    case VmEventKind::kDefined:
      return "defined";
    case VmEventKind::kUndefined:
      return "undefined";
    case VmEventKind::kStarted:
      return "started";
    case VmEventKind::kSuspended:
      return "suspended";
    case VmEventKind::kResumed:
      return "resumed";
    case VmEventKind::kStopped:
      return "stopped";
    case VmEventKind::kShutdown:
      return "shutdown";
    case VmEventKind::kPmSuspended:
      return "pm-suspended";
    case VmEventKind::kCrashed:
      return "crashed";
  }
  return "unknown";
}

VmRef VmRef::parse(std::string_view text) {
  if (validate_uuid(text).ok()) {
    return by_uuid(std::string(text));
  }
  return by_name(std::string(text));
}

std::string to_string(const VmRef& ref) {
  return ref.kind == VmRef::Kind::kUuid ? fmt::format("VM with uuid '{}'", ref.value)
                                        : fmt::format("VM '{}'", ref.value);
}

bool VmFilter::matches(VmState state) const noexcept {
  return states.empty() || std::find(states.begin(), states.end(), state) != states.end();
}

Status validate_vm_name(std::string_view name) { return validate_identifier("VM name", name); }

Status validate_snapshot_name(std::string_view name) { return validate_identifier("snapshot name", name); }

// 255: the longest file name Linux file systems take (NAME_MAX).
Status validate_volume_name(std::string_view name) { return validate_identifier("volume name", name, 255); }

Status validate_pool_name(std::string_view name) { return validate_identifier("pool name", name, 255); }

Status validate_uuid(std::string_view uuid) {
  constexpr std::array<std::size_t, 4> kDashes = {8, 13, 18, 23};
  bool ok = uuid.size() == 36;
  for (std::size_t i = 0; ok && i < uuid.size(); ++i) {
    const bool dash_here = std::find(kDashes.begin(), kDashes.end(), i) != kDashes.end();
    ok = dash_here ? uuid[i] == '-' : is_hex(uuid[i]);
  }
  if (!ok) {
    return invalid_argument_error(
        fmt::format("uuid {} is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", quote_input(uuid)));
  }
  return {};
}

Status validate_mac(std::string_view mac) {
  bool ok = mac.size() == 17;
  for (std::size_t i = 0; ok && i < mac.size(); ++i) {
    ok = (i % 3 == 2) ? mac[i] == ':' : is_hex(mac[i]);
  }
  if (!ok) {
    return invalid_argument_error(fmt::format("MAC address {} is not of the form 52:54:00:xx:xx:xx", quote_input(mac)));
  }
  const auto first = std::stoul(std::string(mac.substr(0, 2)), nullptr, 16);
  if ((first & 1U) != 0) {
    return invalid_argument_error(fmt::format("MAC address {} is a multicast address", quote_input(mac)));
  }
  return {};
}

Status validate_vm_spec(const VmSpec& spec) {
  if (Status s = validate_vm_name(spec.name); !s.ok()) {
    return s;
  }
  if (!spec.uuid.empty()) {
    if (Status s = validate_uuid(spec.uuid); !s.ok()) {
      return s;
    }
  }
  if (spec.vcpus < 1 || spec.vcpus > 4096) {
    return invalid_argument_error(fmt::format("vcpus is {}; it must be between 1 and 4096", spec.vcpus));
  }
  constexpr std::uint64_t kMin = 16 * kMiB;
  constexpr std::uint64_t kMax = 16ULL * 1024ULL * kGiB;
  if (spec.memory_bytes < kMin || spec.memory_bytes > kMax) {
    return invalid_argument_error(fmt::format("memory_bytes is {}; it must be between 16 MiB ({}) and 16 TiB ({})",
                                              spec.memory_bytes, kMin, kMax));
  }
  if (spec.memory_bytes % 1024 != 0) {
    return invalid_argument_error(
        fmt::format("memory_bytes is {}; it must be a whole number of KiB", spec.memory_bytes));
  }
  for (const std::string& part : {spec.arch, spec.machine}) {
    for (const char c : part) {
      if (!is_alnum(c) && c != '-' && c != '_' && c != '.') {
        return invalid_argument_error(
            fmt::format("arch/machine {} contains {}", quote_input(part), quote_input(std::string_view(&c, 1))));
      }
    }
  }
  if (spec.boot_devices.size() > 4) {
    return invalid_argument_error("boot_devices lists more than 4 devices");
  }
  for (const std::string& dev : spec.boot_devices) {
    if (dev != "hd" && dev != "cdrom" && dev != "network" && dev != "fd") {
      return invalid_argument_error(
          fmt::format("boot device {} is not one of \"hd\", \"cdrom\", \"network\", \"fd\"", quote_input(dev)));
    }
  }
  std::set<std::string> targets;
  for (std::size_t i = 0; i < spec.disks.size(); ++i) {
    if (Status s = validate_disk(i, spec.disks[i]); !s.ok()) {
      return s;
    }
    if (!spec.disks[i].target.empty() && !targets.insert(spec.disks[i].target).second) {
      return invalid_argument_error(
          fmt::format("disks[{}].target {} is used by another disk", i, quote_input(spec.disks[i].target)));
    }
  }
  std::set<std::string> macs;
  for (std::size_t i = 0; i < spec.nics.size(); ++i) {
    if (Status s = validate_nic_source(i, spec.nics[i]); !s.ok()) {
      return s;
    }
    if (!spec.nics[i].mac.empty()) {
      std::string mac = spec.nics[i].mac;
      std::transform(mac.begin(), mac.end(), mac.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
      if (!macs.insert(mac).second) {
        return invalid_argument_error(fmt::format("nics[{}].mac {} is used by another NIC", i, quote_input(mac)));
      }
    }
  }
  if (spec.description.size() > 4096) {
    return invalid_argument_error(
        fmt::format("description is {} bytes long; at most 4096 are allowed", spec.description.size()));
  }
  for (const char c : spec.description) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t' && c != '\n' && c != '\r') || u == 0x7f) {
      return invalid_argument_error(fmt::format("description contains the control character \\x{:02x}", u));
    }
  }
  return {};
}

}  // namespace cloudmgr
