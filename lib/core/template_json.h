// The JSON form of templates: catalog rows, export files (`<name>-<version>.json`) and
// command arguments on the wire all use it, so a value survives a round trip exactly.
// Internal (not installed).
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
#pragma once

#include <string>
#include <string_view>

#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr {

// `indent` < 0: one line (catalog rows, the wire); otherwise pretty-printed (export files).
std::string template_spec_to_json(const TemplateSpec& spec, int indent = -1);
Result<TemplateSpec> template_spec_from_json(std::string_view text);

std::string template_info_to_json(const TemplateInfo& info, int indent = -1);
Result<TemplateInfo> template_info_from_json(std::string_view text);

}  // namespace cloudmgr
