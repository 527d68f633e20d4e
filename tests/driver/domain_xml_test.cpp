#include "driver/libvirt/domain_xml.h"

#include <gtest/gtest.h>

namespace cloudmgr::libvirt {
namespace {

TEST(XmlEscape, EscapesTheFiveSpecials) {
  EXPECT_EQ(xml_escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
  EXPECT_EQ(xml_escape("plain"), "plain");
}

VmSpec full_spec() {
  VmSpec spec{.name = "web1", .uuid = "6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c01", .vcpus = 2, .memory_bytes = 256 * kMiB};
  spec.description = "owner <ops> & \"friends\" 'quoted'";
  spec.disks.push_back({.source_path = "/img/a b&c.qcow2"});
  spec.disks.push_back({.source_path = "/img/data.raw", .format = "raw", .read_only = true});
  spec.disks.push_back({.source_path = "", .device = DiskDevice::kCdrom, .bus = DiskBus::kSata, .format = "raw"});
  spec.nics.push_back({.source = "default", .mac = "52:54:00:00:00:01"});
  spec.nics.push_back({.type = NicType::kBridge, .source = "br0", .model = "e1000"});
  spec.nics.push_back({.type = NicType::kEthernet, .source = "tap-web1", .model = "ne2k_pci"});
  spec.nics.push_back({.type = NicType::kEthernet, .source = ""});
  spec.origin = {.template_name = "web", .template_version = 3, .image_sha256 = std::string(64, 'a')};
  return spec;
}

// What we write, libvirt's XML parser (libxml2) reads back to the same values.
TEST(DomainXml, WrittenXmlParsesBackToTheSpec) {
  const std::string xml = domain_xml(full_spec(), {.domain_type = "qemu", .arch = "x86_64", .acpi = true});
  VmInfo vm;
  ASSERT_TRUE(parse_domain_xml(xml, vm).ok()) << xml;
  EXPECT_EQ(vm.description, "owner <ops> & \"friends\" 'quoted'");
  EXPECT_EQ(vm.origin, full_spec().origin);
  EXPECT_EQ(vm.max_vcpus, 2U);
  ASSERT_EQ(vm.disks.size(), 3U);
  EXPECT_EQ(vm.disks[0].source, "/img/a b&c.qcow2");
  EXPECT_EQ(vm.disks[0].target, "vda");
  EXPECT_EQ(vm.disks[0].format, "qcow2");
  EXPECT_EQ(vm.disks[0].bus, "virtio");
  EXPECT_FALSE(vm.disks[0].read_only);
  EXPECT_EQ(vm.disks[1].target, "vdb");
  EXPECT_TRUE(vm.disks[1].read_only);
  EXPECT_EQ(vm.disks[2].device, "cdrom");
  EXPECT_EQ(vm.disks[2].target, "sda");
  EXPECT_TRUE(vm.disks[2].read_only);
  ASSERT_EQ(vm.nics.size(), 4U);
  EXPECT_EQ(vm.nics[0].mac, "52:54:00:00:00:01");
  EXPECT_EQ(vm.nics[0].type, "network");
  EXPECT_EQ(vm.nics[0].source, "default");
  EXPECT_EQ(vm.nics[1].type, "bridge");
  EXPECT_EQ(vm.nics[1].source, "br0");
  EXPECT_EQ(vm.nics[1].model, "e1000");
  EXPECT_EQ(vm.nics[2].type, "ethernet");
  EXPECT_EQ(vm.nics[2].source, "tap-web1");
  EXPECT_EQ(vm.nics[2].model, "ne2k_pci");
  EXPECT_EQ(vm.nics[3].type, "ethernet");
  EXPECT_EQ(vm.nics[3].source, "");  // the hypervisor names the tap
  EXPECT_NE(xml.find("<target dev=\"tap-web1\"/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<memory unit=\"KiB\">262144</memory>"), std::string::npos);
  EXPECT_NE(xml.find("<domain type=\"qemu\">"), std::string::npos);
  EXPECT_NE(xml.find("arch=\"x86_64\""), std::string::npos);
  EXPECT_NE(xml.find("<acpi/>"), std::string::npos);
}

TEST(DomainXml, OriginIsOnlyOursInOurNamespace) {
  VmInfo vm;
  ASSERT_TRUE(parse_domain_xml(domain_xml({.name = "x", .memory_bytes = 64 * kMiB}, {}), vm).ok());
  EXPECT_TRUE(vm.origin.empty());
  // Another program's <origin> in its own namespace is not ours.
  const std::string xml =
      "<domain><name>x</name><metadata><o:origin xmlns:o=\"urn:other\" template=\"t\" version=\"1\"/>"
      "</metadata></domain>";
  ASSERT_TRUE(parse_domain_xml(xml, vm).ok());
  EXPECT_TRUE(vm.origin.empty());
}

TEST(DomainXml, ExplicitTargetsAreKeptAndOthersFillGaps) {
  VmSpec spec{.name = "x", .memory_bytes = 64 * kMiB};
  spec.disks.push_back({.source_path = "/a", .target = "vda"});
  spec.disks.push_back({.source_path = "/b"});
  spec.disks.push_back({.source_path = "/c", .target = "vdc"});
  spec.disks.push_back({.source_path = "/d"});
  VmInfo vm;
  ASSERT_TRUE(parse_domain_xml(domain_xml(spec, {}), vm).ok());
  ASSERT_EQ(vm.disks.size(), 4U);
  EXPECT_EQ(vm.disks[1].target, "vdb");
  EXPECT_EQ(vm.disks[3].target, "vdd");
}

TEST(DomainXml, TestDriverFlavorHasNoAcpi) {
  const std::string xml = domain_xml({.name = "x", .memory_bytes = 64 * kMiB}, {.domain_type = "test", .acpi = false});
  EXPECT_NE(xml.find("<domain type=\"test\">"), std::string::npos);
  EXPECT_EQ(xml.find("acpi"), std::string::npos);
}

TEST(DomainXml, GarbageIsAnError) {
  VmInfo vm;
  EXPECT_EQ(parse_domain_xml("<domain><unclosed>", vm).code(), StatusCode::kInternal);
}

TEST(SnapshotXml, RoundTrip) {
  const std::string xml = snapshot_xml({.name = "s1", .description = "before <upgrade>"});
  EXPECT_NE(xml.find("&lt;upgrade&gt;"), std::string::npos);
  SnapshotInfo info;
  ASSERT_TRUE(
      parse_snapshot_xml("<domainsnapshot><name>s2</name><description>d</description><state>running</state>"
                         "<parent><name>s1</name></parent><creationTime>1700000000</creationTime></domainsnapshot>",
                         info)
          .ok());
  EXPECT_EQ(info.name, "s2");
  EXPECT_EQ(info.parent, "s1");
  EXPECT_EQ(info.vm_state, VmState::kRunning);
  EXPECT_EQ(info.creation_time_ns, 1700000000LL * 1'000'000'000LL);
  EXPECT_EQ(parse_snapshot_xml("<domainsnapshot/>", info).code(), StatusCode::kInternal);
}

TEST(CapabilitiesXml, PrefersKvm) {
  HostCapabilities caps;
  ASSERT_TRUE(parse_capabilities_xml(R"(<capabilities><host><cpu><arch>x86_64</arch><model>Skylake</model></cpu></host>
      <guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/></arch></guest>
      <guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest></capabilities>)",
                                     caps)
                  .ok());
  EXPECT_EQ(caps.arch, "x86_64");
  EXPECT_EQ(caps.cpu_model, "Skylake");
  ASSERT_EQ(caps.domain_types.size(), 2U);
  EXPECT_EQ(caps.domain_types.front(), "kvm");
}

}  // namespace
}  // namespace cloudmgr::libvirt
