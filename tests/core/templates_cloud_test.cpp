// Templates end to end over the in-process transport: a manager's store, agents on simulated
// hosts (tests/data/hosts/node-small.xml: 8 CPUs, 16 GiB, db1 running 2 vCPUs / 2 GiB, batch1
// shut off 1 vCPU / 512 MiB), placement, the base image's transfer (verified by SHA-256 on both
// ends), copy-on-write clones and the all-or-nothing rules. The same flow runs over DDS with
// agents as separate processes in tests/cloud/ and on real QEMU in tests/qemu/.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "cloudmgr/agent.h"
#include "cloudmgr/manager.h"
#include "cloudmgr/spi/hypervisor_driver.h"
#include "image/image_io.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

std::atomic<std::uint32_t> g_domain{60};

// A hypervisor driver that fails define_vm, for "faulty:" + any libvirt URI: one host of a
// batch that fails after the others succeeded.
class FaultyDriver final : public spi::HypervisorDriver {
 public:
  explicit FaultyDriver(std::unique_ptr<spi::HypervisorDriver> inner) : inner_(std::move(inner)) {}
  std::string uri() const override { return inner_->uri(); }
  Result<HostInfo> host_info() override { return inner_->host_info(); }
  Result<std::uint64_t> free_memory_bytes() override { return inner_->free_memory_bytes(); }
  Result<std::vector<VmInfo>> list_vms(const VmFilter& f) override { return inner_->list_vms(f); }
  Result<VmInfo> get_vm(const VmRef& vm) override { return inner_->get_vm(vm); }
  Result<VmInfo> define_vm(const VmSpec& spec) override {
    return internal_error("injected failure defining '" + spec.name + "'");
  }
  Status undefine_vm(const VmRef& vm, const UndefineOptions& o) override { return inner_->undefine_vm(vm, o); }
  Status start_vm(const VmRef& vm) override { return inner_->start_vm(vm); }
  Result<ShutdownOutcome> shutdown_vm(const VmRef& vm, const ShutdownOptions& o) override {
    return inner_->shutdown_vm(vm, o);
  }
  Status destroy_vm(const VmRef& vm) override { return inner_->destroy_vm(vm); }
  Status reboot_vm(const VmRef& vm) override { return inner_->reboot_vm(vm); }
  Status reset_vm(const VmRef& vm) override { return inner_->reset_vm(vm); }
  Status suspend_vm(const VmRef& vm) override { return inner_->suspend_vm(vm); }
  Status resume_vm(const VmRef& vm) override { return inner_->resume_vm(vm); }
  Status set_autostart(const VmRef& vm, bool a) override { return inner_->set_autostart(vm, a); }
  Status ensure_pool(std::string_view n, std::string_view p) override { return inner_->ensure_pool(n, p); }
  Status refresh_pool(std::string_view n) override { return inner_->refresh_pool(n); }
  Result<VolumeInfo> create_volume(std::string_view pool, const VolumeSpec& spec) override {
    auto v = inner_->create_volume(pool, spec);
    if (v.ok()) {
      ++volumes_made;
    }
    return v;
  }
  Status delete_volume(std::string_view pool, std::string_view name) override {
    Status s = inner_->delete_volume(pool, name);
    if (s.ok()) {
      ++volumes_deleted;
    }
    return s;
  }
  Result<VolumeInfo> get_volume(std::string_view pool, std::string_view name) override {
    return inner_->get_volume(pool, name);
  }
  Result<std::vector<VolumeInfo>> list_volumes(std::string_view pool) override { return inner_->list_volumes(pool); }

  static inline std::atomic<int> volumes_made{0};
  static inline std::atomic<int> volumes_deleted{0};

 private:
  std::unique_ptr<spi::HypervisorDriver> inner_;
};

class TemplatesCloud : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    (void)spi::register_hypervisor_driver(
        "faulty-test", [](std::string_view uri) -> std::optional<Result<std::unique_ptr<spi::HypervisorDriver>>> {
          if (!uri.starts_with("faulty:")) {
            return std::nullopt;
          }
          auto inner = spi::open_hypervisor_driver(uri.substr(7));
          if (!inner.ok()) {
            return Result<std::unique_ptr<spi::HypervisorDriver>>(inner.status());
          }
          return Result<std::unique_ptr<spi::HypervisorDriver>>(
              std::unique_ptr<spi::HypervisorDriver>(std::make_unique<FaultyDriver>(std::move(*inner))));
        });
  }

  void SetUp() override {
    domain_ = g_domain++;
    root_ = fs::temp_directory_path() /
            ("cloudmgr-templates-test-" + std::to_string(getpid()) + "-" + std::to_string(domain_));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    agents_.clear();
    manager_.reset();
    fs::remove_all(root_);
  }

  spi::TransportConfig transport() const {
    spi::TransportConfig t;
    t.kind = "inproc";
    t.domain_id = domain_;
    return t;
  }

  Agent& start_agent(const std::string& id, std::vector<std::string> groups = {}, bool faulty = false) {
    AgentOptions o;
    o.hypervisor.uri =
        std::string(faulty ? "faulty:" : "") + "test://" + CLOUDMGR_TEST_DATA_DIR + "/hosts/node-small.xml";
    o.hypervisor.host_id = id;
    o.groups = std::move(groups);
    o.state_dir = (root_ / id).string();
    o.transport = transport();
    o.refresh_ms = 500;
    o.sample_ms = 0;
    auto a = Agent::start(o);
    EXPECT_TRUE(a.ok()) << a.status();
    agents_[id] = std::move(*a);
    return *agents_[id];
  }

  Manager& manager() {
    if (!manager_) {
      auto m = Manager::open({.transport = transport(),
                              .name = "templates-test",
                              .samples = false,
                              .template_dir = (root_ / "store").string()});
      EXPECT_TRUE(m.ok()) << m.status();
      manager_ = std::move(*m);
    }
    return *manager_;
  }

  // A 64 MiB raw image: 3 MiB of random data at the start, 1 MiB at 32 MiB, holes elsewhere.
  fs::path make_raw_image(const std::string& name) {
    const fs::path p = root_ / name;
    std::ofstream out(p, std::ios::binary);
    std::mt19937_64 rng(42);
    std::vector<char> data(4U << 20U);
    for (auto& c : data) {
      c = static_cast<char>(rng());
    }
    out.write(data.data(), 3 << 20);
    out.seekp(32 << 20);
    out.write(data.data() + (3 << 20), 1 << 20);
    out.close();
    fs::resize_file(p, 64U << 20U);
    return p;
  }

  TemplateInfo import(const std::string& name, std::uint32_t vcpus = 2, std::uint64_t memory = 2 * kGiB) {
    TemplateSpec spec{.vcpus = vcpus, .memory_bytes = memory, .description = "test template"};
    spec.data_disks.push_back({.size_bytes = 256 * kMiB});
    auto t = manager().import_template({.name = name, .spec = spec, .image_path = make_raw_image(name + ".img")});
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : TemplateInfo{};
  }

  // Files in a host's image directory whose names start with `prefix`.
  std::vector<std::string> image_files(const std::string& host, const std::string& prefix) const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ / host / "images", ec)) {
      if (e.path().filename().string().starts_with(prefix)) {
        out.push_back(e.path().filename().string());
      }
    }
    return out;
  }

  std::vector<std::string> vm_names(const std::string& host) {
    std::vector<std::string> out;
    for (const auto& v : manager().vms(host)) {
      out.push_back(v.vm.name);
    }
    return out;
  }

  std::uint32_t domain_ = 0;
  fs::path root_;
  std::map<std::string, std::unique_ptr<Agent>> agents_;
  std::unique_ptr<Manager> manager_;
};

TEST_F(TemplatesCloud, CreateSendsTheBaseOnceAndClonesIt) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  const TemplateInfo t = import("web");
  ASSERT_EQ(t.version, 1U);
  EXPECT_EQ(t.image.format, ImageFormat::kRaw);
  EXPECT_EQ(t.image.size_bytes, 64U << 20U);

  std::vector<std::string> steps;
  auto r = manager().create_vms(
      {.name = "web1", .template_ref = {"web", 0}, .on_progress = [&](const std::string& s) { steps.push_back(s); }});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->vms.size(), 1U);
  EXPECT_EQ(r->vms[0].host_id, "node1");
  EXPECT_EQ(r->vms[0].vm.name, "web1");
  EXPECT_EQ(r->vms[0].vm.vcpus, 2U);
  EXPECT_EQ(r->vms[0].vm.memory_bytes, 2 * kGiB);
  EXPECT_EQ(r->image_sent_to, std::vector<std::string>{"node1"});
  EXPECT_EQ(r->image_bytes_sent, 4U << 20U) << "only the data extents travel";
  EXPECT_GE(steps.size(), 3U);

  // The host's cached base: the same bytes (SHA-256) as the store's, read-only.
  const auto bases = image_files("node1", "base-");
  ASSERT_EQ(bases, std::vector<std::string>{"base-" + t.image.sha256 + ".raw"});
  const fs::path base = root_ / "node1" / "images" / bases[0];
  auto sha = image::sha256_file(base.string());
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(*sha, t.image.sha256);
  EXPECT_EQ(fs::status(base).permissions() & fs::perms::all, fs::perms(0444));
  EXPECT_TRUE(image_files("node1", ".incoming-").empty());

  // The VM: its first disk a clone in the host's pool, then its blank data disk; its origin.
  const VmInfo& vm = r->vms[0].vm;
  ASSERT_EQ(vm.disks.size(), 2U);
  EXPECT_EQ(fs::path(vm.disks[0].source).filename(), "web1.qcow2");
  EXPECT_EQ(fs::path(vm.disks[1].source).filename(), "web1-data0.qcow2");
  EXPECT_EQ(vm.origin.template_name, "web");
  EXPECT_EQ(vm.origin.template_version, 1U);
  EXPECT_EQ(vm.origin.image_sha256, t.image.sha256);

  // The manager sees the VM and the cache, with the VM as the image's user.
  ASSERT_TRUE(manager()
                  .wait_until(
                      [](const Manager& m) {
                        auto i = m.host_images();
                        return i.size() == 1 && i[0].images.size() == 1 && i[0].images[0].users.size() == 1;
                      },
                      milliseconds(5000))
                  .ok());
  const auto images = manager().host_images();
  EXPECT_EQ(images[0].images[0].info.sha256, t.image.sha256);
  EXPECT_EQ(images[0].images[0].users[0].vm_name, "web1");
  EXPECT_EQ(images[0].images[0].users[0].template_version, 1U);

  // A second VM: the base is cached, nothing travels.
  auto again = manager().create_vms({.name = "web2", .template_ref = {"web", 1}, .start = true});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->image_sent_to.empty());
  EXPECT_EQ(again->image_bytes_sent, 0U);
  EXPECT_EQ(again->vms[0].vm.state, VmState::kRunning);
}

TEST_F(TemplatesCloud, EachInstanceGetsItsOwnNameUuidAndMacs) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  TemplateSpec spec{.vcpus = 1, .memory_bytes = 256 * kMiB};
  spec.nics.push_back({.source = "default"});
  spec.nics.push_back({.type = NicType::kBridge, .source = "br0", .model = "e1000"});
  ASSERT_TRUE(manager().import_template({.name = "net", .spec = spec, .image_path = make_raw_image("n.img")}).ok());
  auto r = manager().create_vms({.name = "n", .template_ref = {"net", 0}, .count = 3});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->vms.size(), 3U);
  std::set<std::string> uuids;
  std::set<std::string> macs;
  for (const auto& v : r->vms) {
    uuids.insert(v.vm.uuid);
    ASSERT_EQ(v.vm.nics.size(), 2U);
    EXPECT_EQ(v.vm.nics[1].type, "bridge");
    EXPECT_EQ(v.vm.nics[1].source, "br0");
    EXPECT_EQ(v.vm.nics[1].model, "e1000");
    for (const auto& n : v.vm.nics) {
      EXPECT_TRUE(validate_mac(n.mac).ok()) << n.mac;
      macs.insert(n.mac);
    }
  }
  EXPECT_EQ(uuids.size(), 3U);
  EXPECT_EQ(macs.size(), 6U) << "every NIC of every instance has a MAC of its own";
}

TEST_F(TemplatesCloud, PackFillsOneHostSpreadUsesAll) {
  start_agent("node1", {"web"});
  start_agent("node2", {"web"});
  start_agent("node3", {"web"});
  ASSERT_TRUE(manager().wait_for_hosts(3, milliseconds(5000)).ok());
  import("small", 1, 1 * kGiB);

  auto packed =
      manager().create_vms({.name = "p", .template_ref = {"small", 0}, .where = Target::group("web"), .count = 4});
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_EQ(packed->vms.size(), 4U);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(packed->vms[i].vm.name, "p-" + std::to_string(i + 1));
    EXPECT_EQ(packed->vms[i].host_id, packed->vms[0].host_id) << "pack keeps the batch on one host";
  }
  EXPECT_EQ(packed->image_sent_to.size(), 1U);
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.vms().size() == 3 * 2 + 4; }, milliseconds(5000)).ok());

  auto spread = manager().create_vms({.name = "s",
                                      .template_ref = {"small", 0},
                                      .where = Target::group("web"),
                                      .policy = PlacementPolicy::kSpread,
                                      .count = 3});
  ASSERT_TRUE(spread.ok()) << spread.status();
  // Spread takes the least loaded hosts first: the two the packed batch left alone.
  std::map<std::string, int> per_host;
  for (const auto& v : spread->vms) {
    ++per_host[v.host_id];
  }
  EXPECT_EQ(per_host.size(), 2U);
  EXPECT_FALSE(per_host.contains(packed->vms[0].host_id));
  EXPECT_EQ(spread->image_sent_to.size(), 2U) << "the packed host had the base already";
}

TEST_F(TemplatesCloud, NothingIsMadeWhenTheBatchDoesNotFit) {
  start_agent("node1");
  start_agent("node2");
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  import("big", 2, 4 * kGiB);
  // 16 GiB - 2.5 GiB held: 3 VMs of 4 GiB fit per host, 6 in all.
  auto r = manager().create_vms({.name = "big", .template_ref = {"big", 0}, .count = 7});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status();
  EXPECT_NE(r.status().message().find("6 of 7"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("node1"), std::string::npos) << r.status();
  EXPECT_TRUE(image_files("node1", "base-").empty());
  EXPECT_TRUE(image_files("node2", "base-").empty());
  EXPECT_EQ(manager().vms().size(), 4U);  // db1 and batch1 of each host, nothing more

  auto fits = manager().create_vms({.name = "big", .template_ref = {"big", 0}, .count = 6});
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(fits->vms.size(), 6U);
}

TEST_F(TemplatesCloud, BadRequestsSayWhatIsWrongAndMakeNothing) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return m.vms().size() == 2; }, milliseconds(5000)).ok());
  import("web");

  auto missing = manager().create_vms({.name = "x", .template_ref = {"nosuch", 0}});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("nosuch"), std::string::npos) << missing.status();

  auto missing_version = manager().create_vms({.name = "x", .template_ref = {"web", 9}});
  EXPECT_EQ(missing_version.status().code(), StatusCode::kNotFound) << missing_version.status();

  auto duplicate = manager().create_vms({.name = "db1", .template_ref = {"web", 0}});
  EXPECT_EQ(duplicate.status().code(), StatusCode::kAlreadyExists) << duplicate.status();
  EXPECT_NE(duplicate.status().message().find("node1"), std::string::npos) << duplicate.status();

  auto bad_name = manager().create_vms({.name = "no spaces", .template_ref = {"web", 0}});
  EXPECT_EQ(bad_name.status().code(), StatusCode::kInvalidArgument) << bad_name.status();

  auto no_host = manager().create_vms({.name = "x", .template_ref = {"web", 0}, .where = Target::host("nosuch")});
  EXPECT_EQ(no_host.status().code(), StatusCode::kNotFound) << no_host.status();

  auto no_group = manager().create_vms({.name = "x", .template_ref = {"web", 0}, .where = Target::group("none")});
  EXPECT_EQ(no_group.status().code(), StatusCode::kNotFound) << no_group.status();

  EXPECT_TRUE(image_files("node1", "base-").empty());
  EXPECT_EQ(manager().vms().size(), 2U);
}

TEST_F(TemplatesCloud, CorruptStoreImageIsNeverUsed) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  const TemplateInfo t = import("web");
  // Flip one byte of the store's copy.
  auto file = spi::open_template_store((root_ / "store").string());
  ASSERT_TRUE(file.ok()) << file.status();
  auto img = (*file)->image(t.image.sha256);
  ASSERT_TRUE(img.ok()) << img.status();
  fs::permissions(img->path, fs::perms::owner_read | fs::perms::owner_write);
  {
    std::fstream f(img->path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.put('\x5a');
  }
  auto r = manager().create_vms({.name = "web1", .template_ref = {"web", 0}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status();
  EXPECT_NE(r.status().message().find(t.image.sha256), std::string::npos) << r.status();
  // The host kept nothing: no cached base, no piece of the transfer, no VM.
  EXPECT_TRUE(image_files("node1", "base-").empty());
  ASSERT_TRUE(
      manager()
          .wait_until([&](const Manager&) { return image_files("node1", ".incoming-").empty(); }, milliseconds(5000))
          .ok());
  EXPECT_EQ(manager().vms().size(), 2U);
  EXPECT_EQ(manager().verify_template({"web", 0}).code(), StatusCode::kDataLoss);
}

TEST_F(TemplatesCloud, AHostThatFailsUndoesTheWholeBatch) {
  start_agent("node1");
  start_agent("node2", {}, /*faulty=*/true);
  ASSERT_TRUE(manager().wait_for_hosts(2, milliseconds(5000)).ok());
  import("web", 1, 1 * kGiB);
  const int deleted_before = FaultyDriver::volumes_deleted.load();
  auto r =
      manager().create_vms({.name = "w", .template_ref = {"web", 0}, .policy = PlacementPolicy::kSpread, .count = 2});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal) << r.status();
  EXPECT_NE(r.status().message().find("injected failure"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("1 VM(s) made elsewhere were removed"), std::string::npos) << r.status();
  // node1's VM is gone again; node2 removed the clone and data disk it had made.
  ASSERT_TRUE(
      manager().wait_until([](const Manager& m) { return m.vms("node1").size() == 2; }, milliseconds(5000)).ok());
  EXPECT_EQ(vm_names("node1"), (std::vector<std::string>{"batch1", "db1"}));
  EXPECT_EQ(FaultyDriver::volumes_deleted.load() - deleted_before, 2);
}

TEST_F(TemplatesCloud, DeleteIsRefusedWhileVmsUseTheTemplate) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  import("web");
  import("web");  // version 2
  ASSERT_TRUE(manager().create_vms({.name = "web1", .template_ref = {"web", 1}}).ok());
  ASSERT_TRUE(manager()
                  .wait_until(
                      [](const Manager& m) {
                        auto i = m.host_images();
                        return !i.empty() && !i[0].images.empty() && !i[0].images[0].users.empty();
                      },
                      milliseconds(5000))
                  .ok());
  const Status refused = manager().delete_template({"web", 1}, false);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find("node1/web1"), std::string::npos) << refused;
  EXPECT_TRUE(manager().delete_template({"web", 2}, false).ok()) << "version 2 has no VM";

  auto d = manager().delete_vm("node1", "web1", true);
  ASSERT_TRUE(d.ok() && d->all_ok()) << (d.ok() ? d->hosts[0].status : d.status());
  ASSERT_TRUE(
      manager()
          .wait_until([](const Manager& m) { return m.host_images()[0].images[0].users.empty(); }, milliseconds(5000))
          .ok());
  EXPECT_TRUE(manager().delete_template({"web", 0}, false).ok());
  EXPECT_EQ(manager().get_template({"web", 0}).status().code(), StatusCode::kNotFound);
  // The host keeps its cached base (a cache; "image.remove" clears it) and its clone is gone.
  EXPECT_EQ(image_files("node1", "base-").size(), 1U);
}

TEST_F(TemplatesCloud, CaptureNeedsAStoppedVmAndRealDisks) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  import("web");
  ASSERT_TRUE(manager().create_vms({.name = "web1", .template_ref = {"web", 0}, .start = true}).ok());
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return m.vms().size() == 3; }, milliseconds(5000)).ok());
  const ExecuteOptions quick{.timeout = milliseconds(10'000)};
  auto running = manager().capture_template("node1", "web1", "cap", quick);
  EXPECT_EQ(running.status().code(), StatusCode::kFailedPrecondition) << running.status();
  EXPECT_NE(running.status().message().find("only a shut-off VM is captured"), std::string::npos) << running.status();
  auto missing = manager().capture_template("node1", "nosuch", "cap", quick);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
  auto bad_name = manager().capture_template("node1", "web1", "bad name", quick);
  EXPECT_EQ(bad_name.status().code(), StatusCode::kInvalidArgument) << bad_name.status();
  // Stopped: the simulated host's disks are records in memory, not files; it says so.
  ASSERT_TRUE(manager().execute(Target::host("node1"), "vm.destroy", {{"vm", "web1"}}).ok());
  ASSERT_TRUE(manager()
                  .wait_until(
                      [](const Manager& m) {
                        for (const auto& v : m.vms("node1")) {
                          if (v.vm.name == "web1") {
                            return v.vm.state == VmState::kShutOff;
                          }
                        }
                        return false;
                      },
                      milliseconds(5000))
                  .ok());
  auto simulated = manager().capture_template("node1", "web1", "cap", quick);
  EXPECT_EQ(simulated.status().code(), StatusCode::kUnimplemented) << simulated.status();
  EXPECT_EQ(manager().get_template({"cap", 0}).status().code(), StatusCode::kNotFound) << "nothing was kept";
  auto store = spi::open_template_store((root_ / "store").string());
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE(fs::is_empty(root_ / "store" / "tmp")) << "the incoming file was removed";
}

TEST_F(TemplatesCloud, TheCacheSurvivesAnAgentRestart) {
  start_agent("node1");
  ASSERT_TRUE(manager().wait_for_hosts(1, milliseconds(5000)).ok());
  const TemplateInfo t = import("web");
  ASSERT_TRUE(manager().create_vms({.name = "web1", .template_ref = {"web", 0}}).ok());
  agents_.clear();
  ASSERT_TRUE(manager().wait_until([](const Manager& m) { return m.hosts().empty(); }, milliseconds(5000)).ok());
  start_agent("node1");
  ASSERT_TRUE(manager()
                  .wait_until(
                      [&](const Manager& m) {
                        auto i = m.host_images();
                        return i.size() == 1 && i[0].images.size() == 1 && i[0].images[0].info.sha256 == t.image.sha256;
                      },
                      milliseconds(5000))
                  .ok());
  // A new simulated host forgets its VMs (the test driver keeps them in memory), not its cache.
  auto r = manager().create_vms({.name = "web2", .template_ref = {"web", 0}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->image_sent_to.empty());
}

}  // namespace
}  // namespace cloudmgr
