// libvirt XML: writing domain and snapshot definitions from cloudmgr specs, and reading
// the parts of libvirt's XML that the model reports.
#pragma once

#include <string>
#include <string_view>

#include "cloudmgr/model.h"
#include "cloudmgr/status.h"

namespace cloudmgr::libvirt {

// The XML namespace of the VmOrigin element libvirt keeps in a domain's <metadata>.
inline constexpr const char* kOriginNamespace = "https://libcloudmgr.org/xmlns/origin/1";

// Escapes text for XML character data and attribute values (& < > " ').
std::string xml_escape(std::string_view text);

// What the connection tells the XML writer about the hypervisor.
struct DomainFlavor {
  std::string domain_type = "qemu";  // <domain type=...>: "kvm", "qemu", "test", ...
  std::string arch;                  // default guest arch when the spec names none
  bool acpi = true;                  // add <features><acpi/> (needed for graceful shutdown)
};

// Domain XML for a validated spec.
std::string domain_xml(const VmSpec& spec, const DomainFlavor& flavor);

// Fills description, max_vcpus, disks and nics of `vm` from libvirt's domain XML.
Status parse_domain_xml(std::string_view xml, VmInfo& vm);

// <domainsnapshot> for create.
std::string snapshot_xml(const SnapshotSpec& spec);
// Name, description, parent, creation time and VM state from a snapshot's XML.
Status parse_snapshot_xml(std::string_view xml, SnapshotInfo& snapshot);

// What the host's capabilities XML says: its architecture, CPU model, and the domain
// types (kvm, qemu, test...) it offers for that architecture, best first.
struct HostCapabilities {
  std::string arch;
  std::string cpu_model;
  std::vector<std::string> domain_types;
};
Status parse_capabilities_xml(std::string_view xml, HostCapabilities& caps);

}  // namespace cloudmgr::libvirt
