// VM templates (templates.h): names, references, image formats and spec validation. The VM
// rules (vCPUs, memory, boot devices, NICs, description) are validate_vm_spec's, applied to
// the VmSpec an instance of the template would get; only what a template adds is checked here.
#include "cloudmgr/templates.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <string>
#include <system_error>

#include <fmt/format.h>

#include "cloudmgr/templates.h"
#include "core/status_macros.h"
#include "core/text.h"

namespace cloudmgr {
namespace {

bool is_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// validate_vm_name's alphabet and length, under another field name.
Status validate_identifier(std::string_view what, std::string_view name) {
  if (name.empty()) {
    return invalid_argument_error(fmt::format("{} is empty", what));
  }
  if (name.size() > 64) {
    return invalid_argument_error(
        fmt::format("{} {} is {} characters long; at most 64 are allowed", what, quote_input(name), name.size()));
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

// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): the JSON
// codec writes text fields as JSON strings, which cannot carry anything else exactly.
bool is_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    std::size_t extra = 0;
    unsigned lo = 0x80;
    unsigned hi = 0xbf;
    if (b < 0x80) {
      ++i;
      continue;
    }
    if (b >= 0xc2 && b <= 0xdf) {
      extra = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      extra = 2;
      lo = b == 0xe0 ? 0xa0 : 0x80;
      hi = b == 0xed ? 0x9f : 0xbf;
    } else if (b >= 0xf0 && b <= 0xf4) {
      extra = 3;
      lo = b == 0xf0 ? 0x90 : 0x80;
      hi = b == 0xf4 ? 0x8f : 0xbf;
    } else {
      return false;
    }
    if (text.size() - i <= extra) {
      return false;
    }
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) {
        return false;
      }
    }
    i += extra + 1;
  }
  return true;
}

bool is_known(DiskBus bus) noexcept { return bus <= DiskBus::kIde; }
bool is_known(NicType type) noexcept { return type <= NicType::kEthernet; }

Status validate_metadata(const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::set<std::string_view> keys;
  for (std::size_t i = 0; i < metadata.size(); ++i) {
    const auto& [key, value] = metadata[i];
    CLOUDMGR_RETURN_IF_ERROR(validate_identifier(fmt::format("metadata[{}].key", i), key));
    if (!keys.insert(key).second) {
      return invalid_argument_error(fmt::format("metadata[{}].key {} appears twice", i, quote_input(key)));
    }
    if (value.size() > 1024) {
      return invalid_argument_error(fmt::format(
          "metadata[{}].value (key {}) is {} bytes long; at most 1024 are allowed", i, quote_input(key), value.size()));
    }
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        return invalid_argument_error(fmt::format(
            "metadata[{}].value (key {}) contains the control character \\x{:02x}", i, quote_input(key), u));
      }
    }
    if (!is_utf8(value)) {
      return invalid_argument_error(fmt::format("metadata[{}].value (key {}) is not valid UTF-8", i, quote_input(key)));
    }
  }
  return {};
}

}  // namespace

std::string_view to_string(ImageFormat format) noexcept { return format == ImageFormat::kRaw ? "raw" : "qcow2"; }

Result<ImageFormat> parse_image_format(std::string_view text) {
  if (text == "qcow2") {
    return ImageFormat::kQcow2;
  }
  if (text == "raw") {
    return ImageFormat::kRaw;
  }
  return invalid_argument_error(fmt::format("image format {} is not one of qcow2, raw", quote_input(text)));
}

Result<TemplateRef> TemplateRef::parse(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return invalid_argument_error(fmt::format("template reference {}: {}", quote_input(text), why));
  };
  TemplateRef ref;
  const std::size_t colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  if (Status s = validate_template_name(name); !s.ok()) {
    return bad(s.message());
  }
  ref.name = std::string(name);
  if (colon == std::string_view::npos) {
    return ref;
  }
  const std::string_view version = text.substr(colon + 1);
  if (version.empty()) {
    return bad("the version after ':' is missing; use e.g. 'web' (the latest) or 'web:3'");
  }
  std::uint32_t number = 0;
  const auto [end, ec] = std::from_chars(version.data(), version.data() + version.size(), number);
  if (ec == std::errc::result_out_of_range) {
    return bad(fmt::format("version {} is too large", quote_input(version)));
  }
  if (ec != std::errc() || end != version.data() + version.size() || number == 0) {
    return bad(fmt::format("version {} is not a positive number", quote_input(version)));
  }
  ref.version = number;
  return ref;
}

std::string TemplateRef::to_string() const { return version == 0 ? name : fmt::format("{}:{}", name, version); }

Status validate_template_name(std::string_view name) { return validate_identifier("template name", name); }

Status validate_sha256(std::string_view hex) {
  const bool ok = hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
                    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                  });
  if (!ok) {
    return invalid_argument_error(
        fmt::format("SHA-256 {} is not 64 lower-case hex digits", quote_input(hex.substr(0, 80))));
  }
  return {};
}

Status validate_template_spec(const TemplateSpec& spec) {
  for (std::size_t i = 0; i < spec.nics.size(); ++i) {
    if (!spec.nics[i].mac.empty()) {
      return invalid_argument_error(fmt::format("nics[{}].mac must be empty: each instance gets its own", i));
    }
    if (!is_known(spec.nics[i].type)) {
      return invalid_argument_error(fmt::format("nics[{}].type is not a known NIC type", i));
    }
  }
  if (!is_known(spec.base_disk_bus)) {
    return invalid_argument_error("base_disk_bus is not a known disk bus");
  }
  // What an instance would be defined with; the name and disk paths stand in for the
  // instance's own and never fail.
  VmSpec vm;
  vm.name = "template";
  vm.vcpus = spec.vcpus;
  vm.memory_bytes = spec.memory_bytes;
  vm.arch = spec.arch;
  vm.machine = spec.machine;
  vm.boot_devices = spec.boot_devices;
  vm.disks.push_back(DiskSpec{.source_path = "/template/base", .bus = spec.base_disk_bus});
  vm.nics = spec.nics;
  vm.description = spec.description;
  CLOUDMGR_RETURN_IF_ERROR(validate_vm_spec(vm));
  if (!is_utf8(spec.description)) {
    return invalid_argument_error("description is not valid UTF-8");
  }
  for (std::size_t i = 0; i < spec.data_disks.size(); ++i) {
    const TemplateDisk& disk = spec.data_disks[i];
    if (disk.size_bytes < kMiB || disk.size_bytes % kMiB != 0) {
      return invalid_argument_error(
          fmt::format("data_disks[{}].size_bytes is {}; it must be a whole number of MiB, at least 1 MiB ({})", i,
                      disk.size_bytes, kMiB));
    }
    if (!is_known(disk.bus)) {
      return invalid_argument_error(fmt::format("data_disks[{}].bus is not a known disk bus", i));
    }
  }
  return validate_metadata(spec.metadata);
}

}  // namespace cloudmgr
