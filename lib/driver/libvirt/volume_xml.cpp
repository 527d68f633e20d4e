#include "driver/libvirt/volume_xml.h"

#include <libxml/parser.h>

#include <cctype>
#include <charconv>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "driver/libvirt/domain_xml.h"  // xml_escape
#include "driver/libvirt/xml_read.h"

namespace cloudmgr::libvirt {
namespace {

// Bytes per `unit` as libvirt's virScaleInteger reads it (case-insensitive): "", "b" and
// "bytes" are 1; "k", "KiB" 1024; "KB" 1000; likewise m, g, t, p, e. 0 for anything else.
std::uint64_t unit_bytes(std::string unit) {
  for (char& c : unit) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (unit.empty() || unit == "b" || unit == "bytes") {
    return 1;
  }
  const std::size_t power = std::string_view("kmgtpe").find(unit.front());
  const std::string_view rest = std::string_view(unit).substr(1);
  if (power == std::string_view::npos || (!rest.empty() && rest != "ib" && rest != "b")) {
    return 0;
  }
  const std::uint64_t base = rest == "b" ? 1000 : 1024;
  std::uint64_t bytes = 1;
  for (std::size_t i = 0; i <= power; ++i) {
    bytes *= base;
  }
  return bytes;
}

// A <capacity unit='...'>N</capacity>-style element in bytes; a missing element is 0.
Result<std::uint64_t> scaled(xmlNodePtr node, std::string_view what) {
  if (node == nullptr) {
    return std::uint64_t{0};
  }
  const std::string value = text(node);
  const std::string unit = attr(node, "unit");
  std::uint64_t n = 0;
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
    return internal_error(fmt::format("libvirt gave the volume {} '{}', not a number", what, value.substr(0, 40)));
  }
  const std::uint64_t bytes = unit_bytes(unit);
  if (bytes == 0) {
    return internal_error(fmt::format("libvirt gave the volume {} in unknown unit '{}'", what, unit.substr(0, 20)));
  }
  if (n > std::numeric_limits<std::uint64_t>::max() / bytes) {
    return internal_error(fmt::format("libvirt gave the volume {} {} {}, too large", what, value, unit));
  }
  return n * bytes;
}

}  // namespace

std::string canonical_dir(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (const char c : path) {
    if (c != '/' || out.empty() || out.back() != '/') {
      out += c;
    }
  }
  while (out.size() > 1 && out.back() == '/') {
    out.pop_back();
  }
  return out;
}

std::string pool_xml(std::string_view name, std::string_view path) {
  return fmt::format("<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
                     xml_escape(name), xml_escape(path));
}

Status parse_pool_xml(std::string_view xml, PoolDescription& pool) {
  auto doc = parse_xml(xml, "storage pool");
  if (!doc.ok()) {
    return doc.status();
  }
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  if (!named(root, "pool")) {
    return internal_error("libvirt's storage pool XML has no <pool> root");
  }
  pool.type = attr(root, "type");
  pool.name = text(child(root, "name"));
  pool.path = text(child(child(root, "target"), "path"));
  return {};
}

std::string volume_xml(const VolumeSpec& spec, std::uint64_t capacity_bytes) {
  std::string x = "<volume>\n";
  x += fmt::format("  <name>{}</name>\n", xml_escape(spec.name));
  x += fmt::format("  <capacity unit='bytes'>{}</capacity>\n", capacity_bytes);
  x += "  <allocation unit='bytes'>0</allocation>\n";
  x += "  <target>\n";
  x += fmt::format("    <format type='{}'/>\n", xml_escape(spec.format));
  if (spec.format == "qcow2") {
    x += "    <compat>1.1</compat>\n";
  }
  x += "  </target>\n";
  if (!spec.backing_path.empty()) {
    x += "  <backingStore>\n";
    x += fmt::format("    <path>{}</path>\n", xml_escape(spec.backing_path));
    x += fmt::format("    <format type='{}'/>\n", xml_escape(spec.backing_format));
    x += "  </backingStore>\n";
  }
  x += "</volume>\n";
  return x;
}

Status parse_volume_xml(std::string_view xml, VolumeInfo& volume) {
  auto doc = parse_xml(xml, "storage volume");
  if (!doc.ok()) {
    return doc.status();
  }
  xmlNodePtr root = xmlDocGetRootElement(doc->get());
  if (!named(root, "volume")) {
    return internal_error("libvirt's storage volume XML has no <volume> root");
  }
  volume.name = text(child(root, "name"));
  auto capacity = scaled(child(root, "capacity"), "capacity");
  if (!capacity.ok()) {
    return capacity.status();
  }
  auto allocation = scaled(child(root, "allocation"), "allocation");
  if (!allocation.ok()) {
    return allocation.status();
  }
  volume.capacity_bytes = *capacity;
  volume.allocation_bytes = *allocation;
  xmlNodePtr target = child(root, "target");
  volume.path = text(child(target, "path"));
  volume.format = attr(child(target, "format"), "type");
  xmlNodePtr backing = child(root, "backingStore");
  volume.backing_path = text(child(backing, "path"));
  volume.backing_format = volume.backing_path.empty() ? "" : attr(child(backing, "format"), "type");
  return {};
}

}  // namespace cloudmgr::libvirt
