#include "driver/libvirt/domain_xml.h"

#include <libxml/parser.h>

#include <algorithm>
#include <initializer_list>
#include <limits>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "driver/libvirt/xml_read.h"

namespace cloudmgr::libvirt {
namespace {

std::uint32_t to_u32(const std::string& text) {
  try {
    return text.empty() ? 0U : static_cast<std::uint32_t>(std::stoul(text));
  } catch (...) {
    return 0;
  }
}

std::int64_t to_i64(const std::string& text) {
  try {
    return text.empty() ? 0 : std::stoll(text);
  } catch (...) {
    return 0;
  }
}

std::string_view disk_prefix(DiskBus bus) {
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

std::string next_target(std::string_view prefix, const std::set<std::string>& used) {
  for (char c = 'a'; c <= 'z'; ++c) {
    std::string name = std::string(prefix) + c;
    if (!used.contains(name)) {
      return name;
    }
  }
  for (char c1 = 'a'; c1 <= 'z'; ++c1) {
    for (char c2 = 'a'; c2 <= 'z'; ++c2) {
      std::string name = std::string(prefix) + c1 + c2;
      if (!used.contains(name)) {
        return name;
      }
    }
  }
  return std::string(prefix) + "zz";
}

// For the writer: ` name="escaped value"`.
std::string xattr(std::string_view name, std::string_view value) {
  return fmt::format(" {}=\"{}\"", name, xml_escape(value));
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string domain_xml(const VmSpec& spec, const DomainFlavor& flavor) {
  std::string x;
  x += fmt::format("<domain{}>\n", xattr("type", flavor.domain_type));
  x += fmt::format("  <name>{}</name>\n", xml_escape(spec.name));
  if (!spec.uuid.empty()) {
    x += fmt::format("  <uuid>{}</uuid>\n", xml_escape(spec.uuid));
  }
  if (!spec.description.empty()) {
    x += fmt::format("  <description>{}</description>\n", xml_escape(spec.description));
  }
  if (!spec.origin.empty()) {
    x += fmt::format("  <metadata>\n    <cloudmgr:origin xmlns:cloudmgr=\"{}\"{}{}{}/>\n  </metadata>\n",
                     kOriginNamespace, xattr("template", spec.origin.template_name),
                     xattr("version", std::to_string(spec.origin.template_version)),
                     xattr("image", spec.origin.image_sha256));
  }
  const std::uint64_t kib = spec.memory_bytes / 1024;
  x += fmt::format("  <memory unit=\"KiB\">{}</memory>\n", kib);
  x += fmt::format("  <currentMemory unit=\"KiB\">{}</currentMemory>\n", kib);
  x += fmt::format("  <vcpu placement=\"static\">{}</vcpu>\n", spec.vcpus);
  x += "  <os>\n    <type";
  const std::string& arch = spec.arch.empty() ? flavor.arch : spec.arch;
  if (!arch.empty()) {
    x += xattr("arch", arch);
  }
  if (!spec.machine.empty()) {
    x += xattr("machine", spec.machine);
  }
  x += ">hvm</type>\n";
  for (const std::string& dev : spec.boot_devices) {
    x += fmt::format("    <boot{}/>\n", xattr("dev", dev));
  }
  x += "  </os>\n";
  if (flavor.acpi) {
    x += "  <features>\n    <acpi/>\n    <apic/>\n  </features>\n";
  }
  x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n";
  x += "  <devices>\n";
  std::set<std::string> used;
  for (const DiskSpec& d : spec.disks) {
    if (!d.target.empty()) {
      used.insert(d.target);
    }
  }
  for (const DiskSpec& d : spec.disks) {
    const std::string target = d.target.empty() ? next_target(disk_prefix(d.bus), used) : d.target;
    used.insert(target);
    x += fmt::format("    <disk type=\"file\"{}>\n", xattr("device", to_string(d.device)));
    x += fmt::format("      <driver name=\"qemu\"{}/>\n", xattr("type", d.format));
    if (!d.source_path.empty()) {
      x += fmt::format("      <source{}/>\n", xattr("file", d.source_path));
    }
    x += fmt::format("      <target{}{}/>\n", xattr("dev", target), xattr("bus", to_string(d.bus)));
    if (d.read_only || d.device == DiskDevice::kCdrom) {
      x += "      <readonly/>\n";
    }
    x += "    </disk>\n";
  }
  for (const NicSpec& n : spec.nics) {
    x += fmt::format("    <interface{}>\n", xattr("type", to_string(n.type)));
    if (n.type == NicType::kEthernet) {
      if (!n.source.empty()) {
        x += fmt::format("      <target{}/>\n", xattr("dev", n.source));
      }
    } else {
      x += fmt::format("      <source{}/>\n", xattr(n.type == NicType::kBridge ? "bridge" : "network", n.source));
    }
    if (!n.mac.empty()) {
      x += fmt::format("      <mac{}/>\n", xattr("address", n.mac));
    }
    x += fmt::format("      <model{}/>\n", xattr("type", n.model));
    x += "    </interface>\n";
  }
  x += "  </devices>\n</domain>\n";
  return x;
}

Status parse_domain_xml(std::string_view xml, VmInfo& vm) {
  auto doc = parse_xml(xml, "domain");
  if (!doc.ok()) {
    return doc.status();
  }
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  vm.description = text(child(root, "description"));
  vm.origin = {};
  if (xmlNodePtr origin = child(child(root, "metadata"), "origin");
      origin != nullptr && origin->ns != nullptr &&
      std::string_view(reinterpret_cast<const char*>(origin->ns->href)) == kOriginNamespace) {  // NOLINT
    vm.origin.template_name = attr(origin, "template");
    vm.origin.template_version = to_u32(attr(origin, "version"));
    vm.origin.image_sha256 = attr(origin, "image");
  }
  vm.max_vcpus = to_u32(text(child(root, "vcpu")));
  vm.disks.clear();
  vm.nics.clear();
  xmlNodePtr devices = child(root, "devices");
  for (xmlNodePtr disk : children(devices, "disk")) {
    DiskInfo d;
    d.device = attr(disk, "device");
    xmlNodePtr target = child(disk, "target");
    d.target = attr(target, "dev");
    d.bus = attr(target, "bus");
    d.format = attr(child(disk, "driver"), "type");
    d.source = first_attr(child(disk, "source"), {"file", "dev", "name"});
    d.read_only = child(disk, "readonly") != nullptr;
    vm.disks.push_back(std::move(d));
  }
  for (xmlNodePtr nic : children(devices, "interface")) {
    NicInfo n;
    n.type = attr(nic, "type");
    n.mac = attr(child(nic, "mac"), "address");
    n.source = n.type == "ethernet" ? attr(child(nic, "target"), "dev")
                                    : first_attr(child(nic, "source"), {"network", "bridge", "dev"});
    n.model = attr(child(nic, "model"), "type");
    vm.nics.push_back(std::move(n));
  }
  return {};
}

std::string snapshot_xml(const SnapshotSpec& spec) {
  std::string x = "<domainsnapshot>\n";
  if (!spec.name.empty()) {
    x += fmt::format("  <name>{}</name>\n", xml_escape(spec.name));
  }
  if (!spec.description.empty()) {
    x += fmt::format("  <description>{}</description>\n", xml_escape(spec.description));
  }
  x += "</domainsnapshot>\n";
  return x;
}

Status parse_snapshot_xml(std::string_view xml, SnapshotInfo& snapshot) {
  auto doc = parse_xml(xml, "snapshot");
  if (!doc.ok()) {
    return doc.status();
  }
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  snapshot.name = text(child(root, "name"));
  snapshot.description = text(child(root, "description"));
  snapshot.parent = text(path(root, {"parent", "name"}));
  snapshot.creation_time_ns = to_i64(text(child(root, "creationTime"))) * 1'000'000'000LL;
  const std::string state = text(child(root, "state"));
  // libvirt's snapshot state words: running, blocked, paused, shutdown, shutoff, crashed,
  // pmsuspended, disk-snapshot.
  if (state == "running" || state == "blocked") {
    snapshot.vm_state = VmState::kRunning;
  } else if (state == "paused") {
    snapshot.vm_state = VmState::kPaused;
  } else if (state == "shutoff" || state == "disk-snapshot") {
    snapshot.vm_state = VmState::kShutOff;
  } else if (state == "shutdown") {
    snapshot.vm_state = VmState::kShuttingDown;
  } else if (state == "crashed") {
    snapshot.vm_state = VmState::kCrashed;
  } else if (state == "pmsuspended") {
    snapshot.vm_state = VmState::kPmSuspended;
  } else {
    snapshot.vm_state = VmState::kUnknown;
  }
  if (snapshot.name.empty()) {
    return internal_error("libvirt returned snapshot XML without a name");
  }
  return {};
}

Status parse_capabilities_xml(std::string_view xml, HostCapabilities& caps) {
  auto doc = parse_xml(xml, "capabilities");
  if (!doc.ok()) {
    return doc.status();
  }
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  caps.arch = text(path(root, {"host", "cpu", "arch"}));
  caps.cpu_model = text(path(root, {"host", "cpu", "model"}));
  caps.domain_types.clear();
  for (xmlNodePtr guest : children(root, "guest")) {
    xmlNodePtr arch = child(guest, "arch");
    if (text(child(guest, "os_type")) != "hvm" || attr(arch, "name") != caps.arch) {
      continue;
    }
    for (xmlNodePtr domain : children(arch, "domain")) {
      std::string type = attr(domain, "type");
      if (!type.empty() &&
          std::find(caps.domain_types.begin(), caps.domain_types.end(), type) == caps.domain_types.end()) {
        caps.domain_types.push_back(std::move(type));
      }
    }
  }
  // Prefer hardware acceleration when the host offers it.
  std::stable_sort(caps.domain_types.begin(), caps.domain_types.end(),
                   [](const std::string& a, const std::string& b) { return a == "kvm" && b != "kvm"; });
  return {};
}

}  // namespace cloudmgr::libvirt
