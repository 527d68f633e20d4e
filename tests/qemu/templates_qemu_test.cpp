// Templates on the real QEMU tier: a small qcow2 made by qemu-img becomes a template, an agent
// on qemu:///system receives it as its cached base, clones it through libvirt's storage API and
// starts the VM under QEMU; the clone's backing file is the cached base (qemu-img info), the
// guest reads its disk through it, and deleting the VM leaves the base intact.
//
// Needs a libvirtd + QEMU at qemu:///system (the ctest fixture `libvirtd`).
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cloudmgr/cloudmgr.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr const char* kUri = "qemu:///system";
constexpr const char* kHostId = "qemu-templates";
constexpr std::uint32_t kDomain = 172;  // inproc: private to this process

// The monitoring tier's boot sector: it reads LBA 1 through the BIOS about nine times a second
// (see tests/qemu/monitoring_qemu_test.cpp for the listing), so the clone is read for real.
constexpr std::array<unsigned char, 46> kBootCode = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xfb, 0x88, 0x16, 0xfd,
    0x7d, 0xb8, 0x01, 0x02, 0xb9, 0x02, 0x00, 0x30, 0xf6, 0x8a, 0x16, 0xfd, 0x7d, 0xbb, 0x00, 0x80,
    0xcd, 0x13, 0xa1, 0x6c, 0x04, 0x3b, 0x06, 0x6c, 0x04, 0x74, 0xfa, 0xf4, 0xeb, 0xe3};

// stdout of a shell command, and its exit status.
std::pair<int, std::string> capture(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c): test set-up
  if (p == nullptr) {
    return {-1, ""};
  }
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) {
    out += buf.data();
  }
  const int rc = pclose(p);
  return {rc, out};
}

class TemplatesQemu : public ::testing::Test {
 protected:
  void SetUp() override {
    tag_ = std::to_string(getpid()) + "-" + random_uuid().substr(0, 8);
    image_dir_ = "/var/lib/libvirt/images/cloudmgr-tqt-" + tag_;  // QEMU (libvirt-qemu) can reach it
    pool_ = "cloudmgr-tqt-" + tag_;
    work_ = fs::temp_directory_path() / ("cloudmgr-templates-qemu-" + tag_);
    fs::create_directories(work_);
  }

  void TearDown() override {
    manager_.reset();
    agent_.reset();
    // Whatever this test made, also after a failed assertion: VMs, the pool, the files.
    auto hv = Hypervisor::open({.uri = kUri, .host_id = "templates-qemu-cleanup"});
    if (hv.ok()) {
      auto vms = (*hv)->list_vms();
      if (vms.ok()) {
        for (const auto& vm : *vms) {
          if (vm.name.starts_with("cmt" + tag_.substr(0, 6))) {
            (void)(*hv)->destroy_vm(VmRef::by_uuid(vm.uuid));
            EXPECT_TRUE((*hv)->undefine_vm(VmRef::by_uuid(vm.uuid), {.force = true}).ok());
          }
        }
      }
      (void)(*hv)->remove_pool(pool_);
    }
    std::error_code ec;
    fs::remove_all(image_dir_, ec);
    fs::remove_all(work_, ec);
  }

  // A qcow2 base made by qemu-img from a 1 MiB raw disk that holds the boot sector.
  fs::path make_base() {
    const fs::path raw = work_ / "base.raw";
    const fs::path qcow2 = work_ / "base.qcow2";
    std::vector<char> disk(1024 * 1024, 0);
    std::copy(kBootCode.begin(), kBootCode.end(), disk.begin());
    disk[510] = static_cast<char>(0x55);
    disk[511] = static_cast<char>(0xaa);
    std::ofstream(raw, std::ios::binary).write(disk.data(), static_cast<std::streamsize>(disk.size()));
    const std::string cmd = "qemu-img convert -q -f raw -O qcow2 '" + raw.string() + "' '" + qcow2.string() + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;  // NOLINT(cert-env33-c): test set-up
    return qcow2;
  }

  std::string tag_;
  fs::path image_dir_;
  std::string pool_;
  fs::path work_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(TemplatesQemu, CloneBootsUnderQemuAndDeletingItKeepsTheBase) {
  spi::TransportConfig transport;
  transport.kind = "inproc";
  transport.domain_id = kDomain;
  AgentOptions options;
  options.hypervisor.uri = kUri;
  options.hypervisor.host_id = kHostId;
  options.state_dir = (work_ / "agent").string();
  options.image_dir = image_dir_.string();
  options.storage_pool = pool_;
  options.transport = transport;
  options.sample_ms = 0;
  auto agent = Agent::start(options);
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  auto m = Manager::open({.transport = transport,
                          .name = "templates-qemu-test",
                          .samples = false,
                          .template_dir = (work_ / "store").string()});
  ASSERT_TRUE(m.ok()) << m.status();
  manager_ = std::move(*m);
  ASSERT_TRUE(manager_->wait_for_hosts(1, milliseconds(10'000)).ok());

  auto t = manager_->import_template(
      {.name = "tiny", .spec = {.vcpus = 1, .memory_bytes = 64 * kMiB}, .image_path = make_base().string()});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->image.format, ImageFormat::kQcow2);
  EXPECT_EQ(t->image.virtual_size_bytes, 1U << 20U);

  const std::string name = "cmt" + tag_.substr(0, 6) + "-vm";
  auto r =
      manager_->create_vms({.name = name, .template_ref = {"tiny", 0}, .where = Target::host(kHostId), .start = true});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->vms.size(), 1U);
  EXPECT_EQ(r->vms[0].vm.state, VmState::kRunning);
  std::printf("transfer %.1f ms, clone + define + start under QEMU %.1f ms\n",
              static_cast<double>(r->transfer_ns) / 1e6, static_cast<double>(r->provision_ns) / 1e6);

  // The clone: a qcow2 overlay whose backing file is the cached, verified base.
  const fs::path base = image_dir_ / ("base-" + t->image.sha256 + ".qcow2");
  const fs::path clone = image_dir_ / (name + ".qcow2");
  ASSERT_EQ(r->vms[0].vm.disks.size(), 1U);
  EXPECT_EQ(r->vms[0].vm.disks[0].source, clone.string());
  auto [rc, info_text] = capture("qemu-img info -U --output=json '" + clone.string() + "'");
  ASSERT_EQ(rc, 0) << info_text;
  const auto info = nlohmann::json::parse(info_text);
  EXPECT_EQ(info["format"], "qcow2");
  EXPECT_EQ(info["backing-filename"], base.string());
  EXPECT_EQ(info["backing-filename-format"], "qcow2");
  EXPECT_EQ(info["virtual-size"], 1U << 20U);
  auto [src, sum] = capture("sha256sum '" + base.string() + "'");
  ASSERT_EQ(src, 0);
  EXPECT_EQ(sum.substr(0, 64), t->image.sha256);

  // The guest boots from the clone and reads it (through to the base) again and again.
  std::uint64_t read_bytes = 0;
  for (int i = 0; i < 50 && read_bytes < 4096; ++i) {
    std::this_thread::sleep_for(milliseconds(200));
    auto [drc, stats] = capture(std::string("virsh -c ") + kUri + " domstats --block " + name);
    const auto at = stats.find("block.0.rd.bytes=");
    if (drc == 0 && at != std::string::npos) {
      read_bytes = std::stoull(stats.substr(at + 17));
    }
  }
  EXPECT_GE(read_bytes, 4096U) << "the guest did not read its disk";

  // Deleting the VM removes it and its clone; the base stays, unchanged.
  auto d = manager_->delete_vm(kHostId, name, /*force=*/true);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE(d->all_ok()) << d->hosts[0].status;
  auto [irc, gone] = capture(std::string("virsh -c ") + kUri + " dominfo " + name + " 2>&1");
  EXPECT_NE(irc, 0) << gone;
  EXPECT_FALSE(fs::exists(clone));
  ASSERT_TRUE(fs::exists(base));
  auto [src2, sum2] = capture("sha256sum '" + base.string() + "'");
  EXPECT_EQ(sum2.substr(0, 64), t->image.sha256);

  // A second VM is provisioned from the cache: nothing travels.
  auto again = manager_->create_vms({.name = name + "2", .template_ref = {"tiny", 0}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->image_sent_to.empty());

  // Capture: the stopped clone, flattened, becomes a template of its own: a standalone qcow2
  // with what the clone's guest sees (the base, plus 64 KiB written into the clone here, as a
  // guest would), which boots in turn.
  const fs::path clone2 = image_dir_ / (name + "2.qcow2");
  auto [wrc, wout] = capture("qemu-io -f qcow2 -c 'write -P 0x5a 512k 64k' '" + clone2.string() + "'");
  ASSERT_EQ(wrc, 0) << wout;
  auto captured = manager_->capture_template(kHostId, name + "2", "captured", {.timeout = milliseconds(120'000)});
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_EQ(captured->version, 1U);
  EXPECT_EQ(captured->image.format, ImageFormat::kQcow2);
  EXPECT_EQ(captured->origin, "capture " + std::string(kHostId) + "/" + name + "2");
  EXPECT_EQ(captured->spec.vcpus, 1U);
  EXPECT_EQ(captured->spec.memory_bytes, 64 * kMiB);
  auto store = spi::open_template_store((work_ / "store").string());
  ASSERT_TRUE(store.ok()) << store.status();
  auto file = (*store)->image(captured->image.sha256);
  ASSERT_TRUE(file.ok()) << file.status();
  auto [crc, cinfo] = capture("qemu-img info -U --output=json '" + file->path + "'");
  ASSERT_EQ(crc, 0) << cinfo;
  EXPECT_FALSE(nlohmann::json::parse(cinfo).contains("backing-filename")) << "a captured base must stand alone";
  auto [cmp, cmp_out] = capture("qemu-img compare -q -U '" + file->path + "' '" + clone2.string() + "'");
  EXPECT_EQ(cmp, 0) << "the capture differs from what the guest saw: " << cmp_out;
  auto [cmp_base, cmp_base_out] = capture("qemu-img compare -q -U '" + file->path + "' '" + base.string() + "'");
  EXPECT_EQ(cmp_base, 256) << "the clone's own write is missing from the capture: " << cmp_base_out;
  EXPECT_NE(captured->image.sha256, t->image.sha256);
  EXPECT_TRUE(manager_->delete_vm(kHostId, name + "2", true).ok());
  EXPECT_TRUE(fs::path(image_dir_).has_filename());
  for (const auto& e : fs::directory_iterator(image_dir_)) {
    EXPECT_FALSE(e.path().filename().string().starts_with("capture-")) << "the capture's copy stayed: " << e.path();
  }
  auto from_capture = manager_->create_vms({.name = name + "3", .template_ref = {"captured", 0}, .start = true});
  ASSERT_TRUE(from_capture.ok()) << from_capture.status();
  EXPECT_EQ(from_capture->image_sent_to, std::vector<std::string>{kHostId});
  EXPECT_EQ(from_capture->vms[0].vm.state, VmState::kRunning);
  EXPECT_TRUE(manager_->delete_vm(kHostId, name + "3", true).ok());
}

}  // namespace
}  // namespace cloudmgr
