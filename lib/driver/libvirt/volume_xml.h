// libvirt storage XML: writing directory pool and volume definitions, and reading what
// libvirt says of pools and volumes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloudmgr/spi/hypervisor_driver.h"
#include "cloudmgr/status.h"

namespace cloudmgr::libvirt {

// The form libvirt keeps a pool's directory in (virFileSanitizePath): runs of '/' collapsed,
// no trailing '/' ("/" stays "/"). Lexical only: symbolic links are not followed.
std::string canonical_dir(std::string_view path);

// <pool type='dir'> named `name` over the directory `path`. No <permissions>: libvirt then
// creates a missing directory 0711 and leaves an existing one's mode alone.
std::string pool_xml(std::string_view name, std::string_view path);

// What a pool's XML says of it.
struct PoolDescription {
  std::string name;
  std::string type;  // "dir", "fs", "logical", ...
  std::string path;  // <target><path>
};
Status parse_pool_xml(std::string_view xml, PoolDescription& pool);

// <volume> for virStorageVolCreateXML(From) from a validated spec. `capacity_bytes` is
// written in place of spec.capacity_bytes: the caller resolves an overlay's 0 to its backing
// file's size, since libvirt's test driver takes no volume without a <capacity>. The
// allocation is always 0: a raw volume is sparse (without it libvirt would preallocate the
// whole capacity). qcow2 volumes are written compat 1.1 (qcow2 v3), not libvirt's 0.10.
std::string volume_xml(const VolumeSpec& spec, std::uint64_t capacity_bytes);

// Name, path, capacity, allocation, format and backing file from a volume's XML.
Status parse_volume_xml(std::string_view xml, VolumeInfo& volume);

}  // namespace cloudmgr::libvirt
