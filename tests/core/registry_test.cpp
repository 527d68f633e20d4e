// The driver registry and the Hypervisor facade's argument checks, with a recording
// driver that counts what reaches it.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "cloudmgr/hypervisor.h"
#include "cloudmgr/spi/hypervisor_driver.h"

namespace cloudmgr {
namespace {

class RecordingDriver final : public spi::HypervisorDriver {
 public:
  explicit RecordingDriver(std::atomic<int>* calls) : calls_(calls) {}
  std::string uri() const override { return "fake:///"; }
  Result<HostInfo> host_info() override {
    ++*calls_;
    HostInfo h;
    h.hostname = "fake host!";  // not a valid host id: the facade must sanitize it
    return h;
  }
  Result<std::uint64_t> free_memory_bytes() override { return count<std::uint64_t>(1); }
  Result<std::vector<VmInfo>> list_vms(const VmFilter&) override { return count<std::vector<VmInfo>>({}); }
  Result<VmInfo> get_vm(const VmRef&) override { return count<VmInfo>({}); }
  Result<VmInfo> define_vm(const VmSpec&) override { return count<VmInfo>({}); }
  Status undefine_vm(const VmRef&, const UndefineOptions&) override { return count_status(); }
  Status start_vm(const VmRef&) override { return count_status(); }
  Result<ShutdownOutcome> shutdown_vm(const VmRef&, const ShutdownOptions&) override {
    return count<ShutdownOutcome>({});
  }
  Status destroy_vm(const VmRef&) override { return count_status(); }
  Status reboot_vm(const VmRef&) override { return count_status(); }
  Status reset_vm(const VmRef&) override { return count_status(); }
  Status suspend_vm(const VmRef&) override { return count_status(); }
  Status resume_vm(const VmRef&) override { return count_status(); }
  Status set_autostart(const VmRef&, bool) override { return count_status(); }

 private:
  template <typename T>
  Result<T> count(T value) {
    ++*calls_;
    return value;
  }
  Status count_status() {
    ++*calls_;
    return {};
  }
  std::atomic<int>* calls_;
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(spi::register_hypervisor_driver(
                    "fake",
                    [this](std::string_view uri) -> std::optional<Result<std::unique_ptr<spi::HypervisorDriver>>> {
                      if (!uri.starts_with("fake:")) {
                        return std::nullopt;  // declined
                      }
                      return Result<std::unique_ptr<spi::HypervisorDriver>>(std::make_unique<RecordingDriver>(&calls_));
                    })
                    .ok());
  }
  void TearDown() override { ASSERT_TRUE(spi::unregister_hypervisor_driver("fake").ok()); }

  std::atomic<int> calls_{0};
};

TEST_F(RegistryTest, CustomFactoryServesItsUris) {
  auto hv = Hypervisor::open({.uri = "fake:///", .host_id = "h1"});
  ASSERT_TRUE(hv.ok()) << hv.status();
  EXPECT_EQ((*hv)->uri(), "fake:///");
  EXPECT_EQ((*hv)->host_id(), "h1");
  ASSERT_TRUE((*hv)->start_vm(VmRef::by_name("web1")).ok());
  EXPECT_EQ(calls_, 1);
}

TEST_F(RegistryTest, DeclinedUrisFallThroughToLibvirt) {
  auto hv = Hypervisor::open({.uri = "test:///default"});
  ASSERT_TRUE(hv.ok()) << hv.status();
  EXPECT_EQ(calls_, 0);
}

TEST_F(RegistryTest, DuplicateAndUnknownNames) {
  EXPECT_EQ(spi::register_hypervisor_driver("fake", [](std::string_view) { return std::nullopt; }).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(spi::unregister_hypervisor_driver("nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(spi::register_hypervisor_driver("", nullptr).code(), StatusCode::kInvalidArgument);
}

TEST_F(RegistryTest, HostIdDefaultsToASanitizedHostname) {
  auto hv = Hypervisor::open({.uri = "fake:///"});
  ASSERT_TRUE(hv.ok()) << hv.status();
  EXPECT_EQ((*hv)->host_id(), "fake-host-");
}

TEST_F(RegistryTest, BadArgumentsNeverReachTheDriver) {
  auto hv = Hypervisor::open({.uri = "fake:///", .host_id = "h1"});
  ASSERT_TRUE(hv.ok());
  Hypervisor& h = **hv;
  const VmRef bad_name = VmRef::by_name("bad name");
  const VmRef bad_uuid = VmRef::by_uuid("1234");
  for (const VmRef& ref : {bad_name, bad_uuid}) {
    EXPECT_EQ(h.get_vm(ref).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.start_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.shutdown_vm(ref).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.destroy_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.reboot_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.reset_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.suspend_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.resume_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.set_autostart(ref, true).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.undefine_vm(ref).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.create_snapshot(ref).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(h.list_snapshots(ref).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(h.define_vm({.name = "x y", .memory_bytes = 64 * kMiB}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(h.shutdown_vm(VmRef::by_name("ok"), {.timeout_ms = 100ULL * 24 * 3600 * 1000}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(h.create_snapshot(VmRef::by_name("ok"), {.name = "bad/snap"}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(h.revert_to_snapshot(VmRef::by_name("ok"), "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(h.delete_snapshot(VmRef::by_name("ok"), "a b").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(h.subscribe_lifecycle(nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(calls_, 0);
}

TEST_F(RegistryTest, OptionalVerbsDefaultToUnimplemented) {
  auto hv = Hypervisor::open({.uri = "fake:///", .host_id = "h1"});
  ASSERT_TRUE(hv.ok());
  EXPECT_EQ((*hv)->create_snapshot(VmRef::by_name("a")).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ((*hv)->list_snapshots(VmRef::by_name("a")).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ((*hv)->revert_to_snapshot(VmRef::by_name("a"), "s").code(), StatusCode::kUnimplemented);
  EXPECT_EQ((*hv)->delete_snapshot(VmRef::by_name("a"), "s").code(), StatusCode::kUnimplemented);
  EXPECT_EQ((*hv)->subscribe_lifecycle([](const VmEvent&) {}).status().code(), StatusCode::kUnimplemented);
}

TEST(OpenTest, BadUrisAreInvalidArguments) {
  for (const char* uri : {"", "no-scheme", "qemu:///sys tem", "://x"}) {
    auto hv = Hypervisor::open({.uri = uri});
    ASSERT_FALSE(hv.ok()) << uri;
    EXPECT_EQ(hv.status().code(), StatusCode::kInvalidArgument) << uri << ": " << hv.status();
  }
  EXPECT_EQ(Hypervisor::open({.uri = "test:///default", .host_id = "bad id"}).status().code(),
            StatusCode::kInvalidArgument);
}

// libvirt hands a scheme none of its local drivers know to libvirtd (which may serve it),
// so the answer depends on the daemon; it always fails and names the URI.
TEST(OpenTest, UnknownSchemeAndMissingHostFileFailNamingThem) {
  auto unknown = Hypervisor::open({.uri = "nosuchdriver:///x"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("nosuchdriver:///x"), std::string::npos) << unknown.status();
  // A test-driver host file that does not exist cannot be opened.
  auto missing = Hypervisor::open({.uri = "test:///nonexistent/host.xml"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nonexistent"), std::string::npos) << missing.status();
}

}  // namespace
}  // namespace cloudmgr
