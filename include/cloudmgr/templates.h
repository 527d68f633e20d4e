// VM templates: a named, versioned VM definition plus a base disk image identified by its
// SHA-256. VMs are provisioned from a template as copy-on-write clones of the base image
// (a qcow2 overlay whose backing file is the base), so provisioning time does not grow with
// the image's size. See docs/templates.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/model.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

enum class ImageFormat : std::uint8_t { kQcow2 = 0, kRaw };
CLOUDMGR_API std::string_view to_string(ImageFormat format) noexcept;
// "qcow2" or "raw"; kInvalidArgument naming the text otherwise.
CLOUDMGR_API Result<ImageFormat> parse_image_format(std::string_view text);

// A base disk image, identified by the SHA-256 of its file's bytes.
struct ImageInfo {
  std::string sha256;  // 64 lower-case hex digits
  ImageFormat format = ImageFormat::kQcow2;
  std::uint64_t size_bytes = 0;          // the file's length
  std::uint64_t virtual_size_bytes = 0;  // the disk the guest sees (qcow2: from its header; raw: the length)

  friend bool operator==(const ImageInfo&, const ImageInfo&) = default;
};

// A blank disk each instance gets besides its clone of the base image.
struct TemplateDisk {
  std::uint64_t size_bytes = 0;  // a whole number of MiB, at least 1 MiB
  DiskBus bus = DiskBus::kVirtio;

  friend bool operator==(const TemplateDisk&, const TemplateDisk&) = default;
};

// What a template defines. Each instance gets its own name, uuid and MAC addresses.
struct TemplateSpec {
  std::uint32_t vcpus = 1;
  std::uint64_t memory_bytes = 0;  // whole KiB, at least 16 MiB
  std::string arch;                // empty = the host's architecture
  std::string machine;             // empty = the hypervisor's default machine type
  std::vector<std::string> boot_devices{"hd"};
  DiskBus base_disk_bus = DiskBus::kVirtio;  // how the clone of the base image is attached (first disk)
  std::vector<TemplateDisk> data_disks;      // blank disks, attached after the base disk, in order
  std::vector<NicSpec> nics;                 // MACs must be empty: each instance gets new ones
  std::string description;
  // Free key-value pairs: keys are identifiers (letters, digits, '.', '_', '-'), unique;
  // values are at most 1024 bytes of printable text.
  std::vector<std::pair<std::string, std::string>> metadata;

  friend bool operator==(const TemplateSpec&, const TemplateSpec&) = default;
};

// "name" (the latest version) or "name:version".
struct TemplateRef {
  std::string name;
  std::uint32_t version = 0;  // 0 = the latest

  // kInvalidArgument naming the text: a bad name, a version that is not a positive number.
  CLOUDMGR_API static Result<TemplateRef> parse(std::string_view text);
  CLOUDMGR_API std::string to_string() const;  // "web" or "web:3"
  friend bool operator==(const TemplateRef&, const TemplateRef&) = default;
};

struct TemplateInfo {
  std::string name;
  std::uint32_t version = 0;  // 1, 2, ...: each import or capture under a name adds the next one
  TemplateSpec spec;
  ImageInfo image;
  std::int64_t created_ns = 0;
  std::string origin;  // how it was made: "import /path/to/file", "capture host/vm"

  TemplateRef ref() const { return {name, version}; }
  friend bool operator==(const TemplateInfo&, const TemplateInfo&) = default;
};

// The identifier rules of validate_vm_name (letters, digits, '.', '_', '-'; at most 64).
CLOUDMGR_API Status validate_template_name(std::string_view name);
// 64 hex digits, lower case.
CLOUDMGR_API Status validate_sha256(std::string_view hex);
// Everything but the image: vCPUs, memory, boot devices, disks, NICs (no MACs), metadata;
// the description and metadata values must be UTF-8 (they travel as JSON strings).
// kInvalidArgument naming the field.
CLOUDMGR_API Status validate_template_spec(const TemplateSpec& spec);

// ---- JSON ----
// The JSON form of templates: catalog rows, export files (`<name>-<version>.json`) and
// command arguments on the wire all use it, so a value survives a round trip exactly.
//
// TemplateSpec, an object; every field is optional and defaults to TemplateSpec{}'s value:
//   "vcpus": 2                               whole number, 1-4096
//   "memory_bytes": 2147483648               bytes, whole KiB, at least 16 MiB
//   "arch": "x86_64"                         "" = the host's
//   "machine": "q35"                         "" = the hypervisor's default
//   "boot_devices": ["hd", "network"]        in order
//   "base_disk_bus": "virtio"                to_string(DiskBus): virtio, sata, scsi, ide
//   "data_disks": [{"size_bytes": 1073741824, "bus": "virtio"}]   bytes, whole MiB
//   "nics": [{"type": "network", "source": "default", "model": "virtio"}]
//                                            type: to_string(NicType): network, bridge, ethernet;
//                                            no "mac": each instance gets its own
//   "description": "..."
//   "metadata": {"os": "debian-12", ...}     in the order of TemplateSpec::metadata
//
// TemplateInfo, an object; every field is required but "origin" (default ""):
//   "name": "web", "version": 3,
//   "spec": {TemplateSpec},
//   "image": {"sha256": "<64 hex>", "format": "qcow2" | "raw", "size_bytes": N,
//             "virtual_size_bytes": N},       bytes
//   "created_ns": N,                          nanoseconds since the Unix epoch
//   "origin": "import /srv/images/web.qcow2"
//
// Decoding fails with kInvalidArgument naming the field path and what is wrong
// ("nics[0].type 'tap' is not one of network, bridge, ethernet"): malformed JSON, a field of
// the wrong type, a number out of range, an unknown or repeated field (a typo is never
// dropped silently); the decoded value must then pass validate_template_spec (and, for an
// info, validate_template_name, validate_sha256 and a positive version).
//
// Encoding never fails for values that pass those checks; it writes every field. Text that
// is not UTF-8 (which validation lets through only in TemplateInfo::origin) is written with
// U+FFFD in place of each bad byte.
// `indent` < 0: one line (catalog rows, the wire); otherwise pretty-printed (export files).
CLOUDMGR_API std::string template_spec_to_json(const TemplateSpec& spec, int indent = -1);
CLOUDMGR_API Result<TemplateSpec> template_spec_from_json(std::string_view text);

CLOUDMGR_API std::string template_info_to_json(const TemplateInfo& info, int indent = -1);
CLOUDMGR_API Result<TemplateInfo> template_info_from_json(std::string_view text);

}  // namespace cloudmgr
