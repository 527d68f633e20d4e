#include "driver/libvirt/domain_xml.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <algorithm>
#include <memory>
#include <set>

#include <fmt/format.h>

namespace cloudmgr::libvirt {
namespace {

// A parsed XML document with XPath helpers. libxml2 objects are freed on destruction.
class XmlDoc {
 public:
  static Result<XmlDoc> parse(std::string_view xml, std::string_view what) {
    if (xml.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      return invalid_argument_error(fmt::format("{} XML is too large", what));
    }
    xmlDocPtr doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == nullptr) {
      return internal_error(fmt::format("libvirt returned {} XML that does not parse", what));
    }
    return XmlDoc(doc);
  }

  // The string value of an XPath expression ("string(...)", "count(...)" or a node set's first node).
  std::string string(const std::string& expr, xmlNodePtr node = nullptr) const {
    xmlXPathObjectPtr obj = eval(expr, node);
    if (obj == nullptr) {
      return {};
    }
    xmlChar* value = xmlXPathCastToString(obj);
    std::string out = value != nullptr ? reinterpret_cast<const char*>(value) : "";  // NOLINT
    xmlFree(value);
    xmlXPathFreeObject(obj);
    return out;
  }

  std::vector<xmlNodePtr> nodes(const std::string& expr) const {
    std::vector<xmlNodePtr> out;
    xmlXPathObjectPtr obj = eval(expr, nullptr);
    if (obj != nullptr && obj->type == XPATH_NODESET && obj->nodesetval != nullptr) {
      for (int i = 0; i < obj->nodesetval->nodeNr; ++i) {
        out.push_back(obj->nodesetval->nodeTab[i]);
      }
    }
    xmlXPathFreeObject(obj);
    return out;
  }

 private:
  explicit XmlDoc(xmlDocPtr doc) : doc_(doc, xmlFreeDoc), ctx_(xmlXPathNewContext(doc), xmlXPathFreeContext) {}

  xmlXPathObjectPtr eval(const std::string& expr, xmlNodePtr node) const {
    if (!ctx_) {
      return nullptr;
    }
    ctx_->node = node != nullptr ? node : xmlDocGetRootElement(doc_.get());
    return xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(expr.c_str()), ctx_.get());  // NOLINT
  }

  std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)> doc_;
  std::unique_ptr<xmlXPathContext, void (*)(xmlXPathContextPtr)> ctx_;
};

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

// An inline helper used by the writer: attr="escaped".
std::string attr(std::string_view name, std::string_view value) {
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
  x += fmt::format("<domain{}>\n", attr("type", flavor.domain_type));
  x += fmt::format("  <name>{}</name>\n", xml_escape(spec.name));
  if (!spec.uuid.empty()) {
    x += fmt::format("  <uuid>{}</uuid>\n", xml_escape(spec.uuid));
  }
  if (!spec.description.empty()) {
    x += fmt::format("  <description>{}</description>\n", xml_escape(spec.description));
  }
  const std::uint64_t kib = spec.memory_bytes / 1024;
  x += fmt::format("  <memory unit=\"KiB\">{}</memory>\n", kib);
  x += fmt::format("  <currentMemory unit=\"KiB\">{}</currentMemory>\n", kib);
  x += fmt::format("  <vcpu placement=\"static\">{}</vcpu>\n", spec.vcpus);
  x += "  <os>\n    <type";
  const std::string& arch = spec.arch.empty() ? flavor.arch : spec.arch;
  if (!arch.empty()) {
    x += attr("arch", arch);
  }
  if (!spec.machine.empty()) {
    x += attr("machine", spec.machine);
  }
  x += ">hvm</type>\n";
  for (const std::string& dev : spec.boot_devices) {
    x += fmt::format("    <boot{}/>\n", attr("dev", dev));
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
    x += fmt::format("    <disk type=\"file\"{}>\n", attr("device", to_string(d.device)));
    x += fmt::format("      <driver name=\"qemu\"{}/>\n", attr("type", d.format));
    if (!d.source_path.empty()) {
      x += fmt::format("      <source{}/>\n", attr("file", d.source_path));
    }
    x += fmt::format("      <target{}{}/>\n", attr("dev", target), attr("bus", to_string(d.bus)));
    if (d.read_only || d.device == DiskDevice::kCdrom) {
      x += "      <readonly/>\n";
    }
    x += "    </disk>\n";
  }
  for (const NicSpec& n : spec.nics) {
    x += fmt::format("    <interface{}>\n", attr("type", to_string(n.type)));
    x += fmt::format("      <source{}/>\n", attr(n.type == NicType::kBridge ? "bridge" : "network", n.source));
    if (!n.mac.empty()) {
      x += fmt::format("      <mac{}/>\n", attr("address", n.mac));
    }
    x += fmt::format("      <model{}/>\n", attr("type", n.model));
    x += "    </interface>\n";
  }
  x += "  </devices>\n</domain>\n";
  return x;
}

Status parse_domain_xml(std::string_view xml, VmInfo& vm) {
  auto doc = XmlDoc::parse(xml, "domain");
  if (!doc.ok()) {
    return doc.status();
  }
  vm.description = doc->string("string(/domain/description)");
  vm.max_vcpus = to_u32(doc->string("string(/domain/vcpu)"));
  vm.disks.clear();
  for (xmlNodePtr disk : doc->nodes("/domain/devices/disk")) {
    DiskInfo d;
    d.device = doc->string("string(@device)", disk);
    d.target = doc->string("string(target/@dev)", disk);
    d.bus = doc->string("string(target/@bus)", disk);
    d.format = doc->string("string(driver/@type)", disk);
    d.source = doc->string("string(source/@file | source/@dev | source/@name)", disk);
    d.read_only = doc->string("count(readonly)", disk) != "0";
    vm.disks.push_back(std::move(d));
  }
  vm.nics.clear();
  for (xmlNodePtr nic : doc->nodes("/domain/devices/interface")) {
    NicInfo n;
    n.type = doc->string("string(@type)", nic);
    n.mac = doc->string("string(mac/@address)", nic);
    n.source = doc->string("string(source/@network | source/@bridge | source/@dev)", nic);
    n.model = doc->string("string(model/@type)", nic);
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
  auto doc = XmlDoc::parse(xml, "snapshot");
  if (!doc.ok()) {
    return doc.status();
  }
  snapshot.name = doc->string("string(/domainsnapshot/name)");
  snapshot.description = doc->string("string(/domainsnapshot/description)");
  snapshot.parent = doc->string("string(/domainsnapshot/parent/name)");
  snapshot.creation_time_ns = to_i64(doc->string("string(/domainsnapshot/creationTime)")) * 1'000'000'000LL;
  const std::string state = doc->string("string(/domainsnapshot/state)");
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
  auto doc = XmlDoc::parse(xml, "capabilities");
  if (!doc.ok()) {
    return doc.status();
  }
  caps.arch = doc->string("string(/capabilities/host/cpu/arch)");
  caps.cpu_model = doc->string("string(/capabilities/host/cpu/model)");
  caps.domain_types.clear();
  const std::string guest =
      fmt::format("/capabilities/guest[os_type='hvm' and arch/@name='{}']/arch/domain", caps.arch);
  for (xmlNodePtr node : doc->nodes(guest)) {
    std::string type = doc->string("string(@type)", node);
    if (!type.empty() &&
        std::find(caps.domain_types.begin(), caps.domain_types.end(), type) == caps.domain_types.end()) {
      caps.domain_types.push_back(std::move(type));
    }
  }
  // Prefer hardware acceleration when the host offers it.
  std::stable_sort(caps.domain_types.begin(), caps.domain_types.end(),
                   [](const std::string& a, const std::string& b) { return a == "kvm" && b != "kvm"; });
  return {};
}

}  // namespace cloudmgr::libvirt
