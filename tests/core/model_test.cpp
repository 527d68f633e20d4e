#include "cloudmgr/model.h"

#include <gtest/gtest.h>

#include <string>

namespace cloudmgr {
namespace {

VmSpec good_spec() {
  VmSpec spec{.name = "web1", .vcpus = 2, .memory_bytes = 512 * kMiB};
  spec.disks.push_back({.source_path = "/var/lib/libvirt/images/web1.qcow2"});
  spec.nics.push_back({.source = "default", .mac = "52:54:00:12:34:56"});
  return spec;
}

// The message names what was wrong: the field and the offending value.
void expect_invalid(const Status& s, const std::string& must_mention) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(must_mention), std::string::npos) << "message: " << s.message();
}

TEST(ValidateVmName, AcceptsTheAlphabet) {
  for (const std::string& name : {std::string("a"), std::string("web1"), std::string("Web-1.prod_2"),
                                  std::string("0abc"), std::string(64, 'x')}) {
    EXPECT_TRUE(validate_vm_name(name).ok()) << name;
  }
}

TEST(ValidateVmName, RejectsBadNamesNamingThem) {
  expect_invalid(validate_vm_name(""), "empty");
  expect_invalid(validate_vm_name(std::string(65, 'x')), "65 characters");
  expect_invalid(validate_vm_name("-web"), "must start");
  expect_invalid(validate_vm_name(".hidden"), "must start");
  expect_invalid(validate_vm_name("bad name"), "'bad name'");
  expect_invalid(validate_vm_name("a/b"), "'/'");
  expect_invalid(validate_vm_name("<x>"), "'<x>'");
  expect_invalid(validate_vm_name("tab\there"), "\\x09");
  expect_invalid(validate_vm_name("caf\xc3\xa9"), "VM name");
}

TEST(ValidateUuid, AcceptsCanonicalForm) {
  EXPECT_TRUE(validate_uuid("6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c01").ok());
  EXPECT_TRUE(validate_uuid("6B1F3C0E-2A4D-4C57-9A61-0D7A5E2B9C01").ok());
}

TEST(ValidateUuid, RejectsOtherForms) {
  expect_invalid(validate_uuid(""), "uuid");
  expect_invalid(validate_uuid("6b1f3c0e2a4d4c579a610d7a5e2b9c01"), "6b1f3c0e2a4d");
  expect_invalid(validate_uuid("6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c0g"), "uuid");
  expect_invalid(validate_uuid("6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c011"), "uuid");
}

TEST(ValidateMac, AcceptsUnicastRejectsMulticastAndJunk) {
  EXPECT_TRUE(validate_mac("52:54:00:ab:CD:ef").ok());
  expect_invalid(validate_mac("01:00:5e:00:00:01"), "multicast");
  expect_invalid(validate_mac("52:54:00:ab:cd"), "52:54:00:ab:cd");
  expect_invalid(validate_mac("52-54-00-ab-cd-ef"), "52-54-00-ab-cd-ef");
  expect_invalid(validate_mac("52:54:00:ab:cd:eg"), "52:54:00:ab:cd:eg");
}

TEST(ValidateVmSpec, AcceptsAGoodSpec) { EXPECT_TRUE(validate_vm_spec(good_spec()).ok()); }

TEST(ValidateVmSpec, RejectsEachBadFieldByName) {
  VmSpec s = good_spec();
  s.vcpus = 0;
  expect_invalid(validate_vm_spec(s), "vcpus");
  s = good_spec();
  s.vcpus = 5000;
  expect_invalid(validate_vm_spec(s), "vcpus is 5000");
  s = good_spec();
  s.memory_bytes = kMiB;
  expect_invalid(validate_vm_spec(s), "memory_bytes is 1048576");
  s = good_spec();
  s.memory_bytes = 512 * kMiB + 1;
  expect_invalid(validate_vm_spec(s), "whole number of KiB");
  s = good_spec();
  s.uuid = "not-a-uuid";
  expect_invalid(validate_vm_spec(s), "not-a-uuid");
  s = good_spec();
  s.disks[0].source_path = "relative.qcow2";
  expect_invalid(validate_vm_spec(s), "disks[0].source_path 'relative.qcow2'");
  s = good_spec();
  s.disks[0].source_path.clear();
  expect_invalid(validate_vm_spec(s), "disks[0].source_path is empty");
  s = good_spec();
  s.disks[0].format = "vmdk";
  expect_invalid(validate_vm_spec(s), "disks[0].format 'vmdk'");
  s = good_spec();
  s.disks[0].target = "sda";  // virtio bus wants vdX
  expect_invalid(validate_vm_spec(s), "disks[0].target 'sda'");
  s = good_spec();
  s.disks[0].target = "vda";
  s.disks.push_back({.source_path = "/img/b.qcow2", .target = "vda"});
  expect_invalid(validate_vm_spec(s), "disks[1].target 'vda' is used");
  s = good_spec();
  s.nics[0].source = "bad net";
  expect_invalid(validate_vm_spec(s), "nics[0].source");
  s = good_spec();
  s.nics[0].mac = "zz:54:00:12:34:56";
  expect_invalid(validate_vm_spec(s), "nics[0].mac");
  s = good_spec();
  s.nics.push_back({.source = "default", .mac = "52:54:00:12:34:56"});
  expect_invalid(validate_vm_spec(s), "nics[1].mac '52:54:00:12:34:56' is used");
  s = good_spec();
  s.nics.push_back({.type = NicType::kEthernet, .source = ""});  // the hypervisor names the tap
  s.nics.push_back({.type = NicType::kEthernet, .source = "tap-web-01"});
  EXPECT_TRUE(validate_vm_spec(s).ok()) << validate_vm_spec(s);
  s.nics[2].source = "tap-web-01234567";  // 16 characters: longer than a Linux interface name
  expect_invalid(validate_vm_spec(s), "nics[2].source 'tap-web-01234567' is 16 characters long");
  s.nics[2].source = "tap/web";
  expect_invalid(validate_vm_spec(s), "nics[2].source 'tap/web' contains '/'");
  s = good_spec();
  s.nics[0].source = "";  // a network NIC needs its network
  expect_invalid(validate_vm_spec(s), "nics[0].source is empty");
  s = good_spec();
  s.boot_devices = {"usb"};
  expect_invalid(validate_vm_spec(s), "boot device 'usb'");
  s = good_spec();
  s.arch = "x86_64'/><evil";
  expect_invalid(validate_vm_spec(s), "arch/machine");
  s = good_spec();
  s.description = std::string("bell\a");
  expect_invalid(validate_vm_spec(s), "\\x07");
  s = good_spec();
  s.description = std::string(5000, 'd');
  expect_invalid(validate_vm_spec(s), "5000 bytes");
}

TEST(ValidateVmSpec, EmptyCdromIsAllowed) {
  VmSpec s = good_spec();
  s.disks.push_back({.source_path = "", .device = DiskDevice::kCdrom, .bus = DiskBus::kSata, .format = "raw"});
  EXPECT_TRUE(validate_vm_spec(s).ok());
}

TEST(VmRefTest, ParseTellsUuidsFromNames) {
  EXPECT_EQ(VmRef::parse("6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c01").kind, VmRef::Kind::kUuid);
  EXPECT_EQ(VmRef::parse("web1").kind, VmRef::Kind::kName);
  EXPECT_EQ(to_string(VmRef::by_name("web1")), "VM 'web1'");
}

TEST(VmStateTest, NamesRoundTrip) {
  for (VmState s : {VmState::kUnknown, VmState::kRunning, VmState::kPaused, VmState::kShuttingDown, VmState::kShutOff,
                    VmState::kCrashed, VmState::kPmSuspended}) {
    ASSERT_EQ(parse_vm_state(to_string(s)), s);
  }
  EXPECT_FALSE(parse_vm_state("bogus").has_value());
  EXPECT_TRUE(is_active(VmState::kPaused));
  EXPECT_FALSE(is_active(VmState::kShutOff));
  EXPECT_FALSE(is_active(VmState::kCrashed));
}

TEST(VmFilterTest, EmptyMatchesAllActiveMatchesActive) {
  EXPECT_TRUE(VmFilter::all().matches(VmState::kShutOff));
  EXPECT_TRUE(VmFilter::active().matches(VmState::kPaused));
  EXPECT_FALSE(VmFilter::active().matches(VmState::kShutOff));
}

TEST(HostInfoTest, FreeVcpusNeverUnderflow) {
  HostInfo h;
  h.cpu.logical_cpus = 4;
  h.vcpus_allocated = 6;
  EXPECT_EQ(h.vcpus_free(), 0U);
  h.vcpus_allocated = 1;
  EXPECT_EQ(h.vcpus_free(), 3U);
}

}  // namespace
}  // namespace cloudmgr
