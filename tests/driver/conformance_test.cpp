// One conformance suite for HypervisorDriver implementations, run per tier:
//   --tier=test  libvirt's test driver on tests/data/hosts/node-small.xml (known capacity and VMs)
//   --tier=qemu  a real libvirtd + QEMU (TCG) at qemu:///system, running tiny VMs
// Every bad request asserts the exact code and that the hypervisor did not change.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cloudmgr/cloudmgr.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;

#define ASSERT_OK(expr)                                              \
  do {                                                               \
    const ::cloudmgr::Status assert_ok_s_ = (expr);                  \
    ASSERT_TRUE(assert_ok_s_.ok()) << #expr << ": " << assert_ok_s_; \
  } while (false)

#define EXPECT_CODE(expr, code_)                                                  \
  do {                                                                            \
    const ::cloudmgr::Status expect_code_s_ = (expr);                             \
    EXPECT_EQ(expect_code_s_.code(), (code_)) << #expr << ": " << expect_code_s_; \
  } while (false)

// What differs between tiers.
struct Tier {
  std::string name;
  std::string uri;
  bool simulated = true;
  bool guest_honours_shutdown = true;  // a diskless QEMU guest has no OS to act on ACPI
  fs::path image_dir;                  // where qcow2 images for this tier's VMs live
};

Tier g_tier;

// VmInfo without cpu_time_ns, which moves between two reads of a running VM (and is the
// wall clock on the test driver).
VmInfo definition(VmInfo vm) {
  vm.cpu_time_ns = 0;
  return vm;
}

}  // namespace

// Readable gtest output for VmInfo.
void PrintTo(const VmInfo& vm, std::ostream* os) {
  *os << "{" << vm.name << " " << vm.uuid << " " << to_string(vm.state) << "/" << vm.state_reason
      << " vcpus=" << vm.vcpus << " mem=" << vm.memory_bytes << " autostart=" << vm.autostart
      << " disks=" << vm.disks.size() << " nics=" << vm.nics.size() << "}";
}

namespace {

std::string prefix() { return "cmt" + std::to_string(getpid()) + "-"; }

class Conformance : public ::testing::Test {
 protected:
  void SetUp() override {
    auto hv = Hypervisor::open({.uri = g_tier.uri, .host_id = "conformance"});
    ASSERT_TRUE(hv.ok()) << hv.status();
    hv_ = std::move(*hv);
  }

  void TearDown() override {
    if (!hv_) {
      return;
    }
    // Remove every VM this process defined (QEMU's state outlives the test).
    auto vms = hv_->list_vms();
    if (vms.ok()) {
      for (const auto& vm : *vms) {
        if (vm.name.starts_with(prefix())) {
          EXPECT_OK_QUIET(hv_->undefine_vm(VmRef::by_uuid(vm.uuid), {.force = true}));
        }
      }
    }
    for (const auto& img : images_) {
      fs::remove(img);
    }
  }

  static void EXPECT_OK_QUIET(const Status& s) { EXPECT_TRUE(s.ok()) << s; }

  // A qcow2 image the tier's hypervisor can open. qemu-img is called for the QEMU tier;
  // the test driver never opens disk images, so a path is enough there.
  std::string make_image(const std::string& name) {
    const fs::path path = g_tier.image_dir / (name + ".qcow2");
    if (!g_tier.simulated) {
      const std::string cmd = "qemu-img create -q -f qcow2 '" + path.string() + "' 16M";
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;  // NOLINT(cert-env33-c): test set-up
      images_.push_back(path);
    }
    return path.string();
  }

  // A VM spec that runs on this tier: QEMU needs a machine it can emulate quickly.
  VmSpec runnable(const std::string& suffix, bool with_disk = true) {
    VmSpec spec{.name = prefix() + suffix, .vcpus = 1, .memory_bytes = 64 * kMiB};
    if (with_disk) {
      spec.disks.push_back({.source_path = make_image(spec.name)});
    }
    return spec;
  }

  VmInfo define(const VmSpec& spec) {
    auto vm = hv_->define_vm(spec);
    EXPECT_TRUE(vm.ok()) << vm.status();
    return vm.ok() ? *vm : VmInfo{};
  }

  VmState state(const std::string& name) {
    auto vm = hv_->get_vm(VmRef::by_name(name));
    return vm.ok() ? vm->state : VmState::kUnknown;
  }

  std::vector<std::string> names(const VmFilter& filter) {
    std::vector<std::string> out;
    auto vms = hv_->list_vms(filter);
    EXPECT_TRUE(vms.ok()) << vms.status();
    if (vms.ok()) {
      for (const auto& v : *vms) {
        out.push_back(v.name);
      }
    }
    return out;
  }

  std::unique_ptr<Hypervisor> hv_;
  std::vector<fs::path> images_;
};

// ---------------------------------------------------------------------------------------------
// Host

TEST_F(Conformance, HostInfoReportsCapacityAndAllocation) {
  auto h = hv_->host_info();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->id, "conformance");
  EXPECT_EQ(h->uri, g_tier.uri);
  EXPECT_FALSE(h->hostname.empty());
  EXPECT_FALSE(h->hypervisor_version.empty());
  if (g_tier.simulated) {
    // tests/data/hosts/node-small.xml
    EXPECT_EQ(h->hypervisor, "TEST");
    EXPECT_EQ(h->cpu.logical_cpus, 8U);
    EXPECT_EQ(h->cpu.mhz, 2400U);
    EXPECT_EQ(h->cpu.numa_nodes, 1U);
    EXPECT_EQ(h->cpu.sockets_per_node, 2U);
    EXPECT_EQ(h->cpu.cores_per_socket, 2U);
    EXPECT_EQ(h->cpu.threads_per_core, 2U);
    EXPECT_EQ(h->memory_bytes, 16 * kGiB);
    EXPECT_EQ(h->vms_defined, 2U);
    EXPECT_EQ(h->vms_active, 1U);  // db1
    EXPECT_EQ(h->vcpus_allocated, 2U);
    EXPECT_EQ(h->vcpus_free(), 6U);
    EXPECT_EQ(h->memory_allocated_bytes, 2 * kGiB);
    EXPECT_EQ(h->free_memory_bytes, 14 * kGiB);
  } else {
    EXPECT_EQ(h->hypervisor, "QEMU");
    EXPECT_EQ(h->cpu.logical_cpus, static_cast<std::uint32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
    // libvirt counts the NUMA nodes' memory (/sys/devices/system/node), which on a VM with
    // hot-plugged memory can be less than /proc/meminfo's MemTotal, and can grow.
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::uint64_t total_kib = 0;
    meminfo >> key >> total_kib;
    ASSERT_EQ(key, "MemTotal:");
    EXPECT_GE(h->memory_bytes, 64 * kMiB);
    EXPECT_LE(h->memory_bytes, total_kib * 1024);
    EXPECT_GT(h->free_memory_bytes, 0U);
    EXPECT_LE(h->free_memory_bytes, h->memory_bytes);
  }
  auto free_mem = hv_->free_memory_bytes();
  ASSERT_TRUE(free_mem.ok()) << free_mem.status();
  EXPECT_LE(*free_mem, h->memory_bytes);
}

TEST_F(Conformance, AllocationFollowsVmsStartingAndStopping) {
  auto before = hv_->host_info();
  ASSERT_TRUE(before.ok());
  VmSpec spec = runnable("alloc");
  define(spec);
  ASSERT_OK(hv_->start_vm(VmRef::by_name(spec.name)));
  auto during = hv_->host_info();
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->vms_defined, before->vms_defined + 1);
  EXPECT_EQ(during->vms_active, before->vms_active + 1);
  EXPECT_EQ(during->vcpus_allocated, before->vcpus_allocated + 1);
  EXPECT_EQ(during->memory_allocated_bytes, before->memory_allocated_bytes + 64 * kMiB);
  ASSERT_OK(hv_->destroy_vm(VmRef::by_name(spec.name)));
  auto after = hv_->host_info();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->vms_active, before->vms_active);
  EXPECT_EQ(after->vcpus_allocated, before->vcpus_allocated);
}

TEST_F(Conformance, ProcessListIsThisMachines) {
  auto procs = hv_->processes();
  ASSERT_TRUE(procs.ok()) << procs.status();
  EXPECT_TRUE(std::any_of(procs->begin(), procs->end(), [](const ProcessInfo& p) { return p.pid == getpid(); }));
  if (!g_tier.simulated) {
    EXPECT_TRUE(std::any_of(procs->begin(), procs->end(), [](const ProcessInfo& p) { return p.name == "libvirtd"; }));
  }
}

// A remote URI (libvirt's RPC client over a transport) reaches the same hypervisor.
TEST_F(Conformance, RemoteUriReachesTheSameHypervisor) {
  if (g_tier.simulated) {
    GTEST_SKIP() << "the test driver is in process; the QEMU tier checks remote URIs";
  }
  auto remote = Hypervisor::open({.uri = "qemu+unix:///system", .host_id = "remote"});
  ASSERT_TRUE(remote.ok()) << remote.status();
  const VmInfo vm = define(runnable("remote", false));
  auto seen = (*remote)->get_vm(VmRef::by_uuid(vm.uuid));
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(seen->name, vm.name);
  auto host = (*remote)->host_info();
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(host->hypervisor, "QEMU");
}

TEST_F(Conformance, HostRebootIsRefusedUnlessEnabled) {
  EXPECT_CODE(hv_->reboot_host(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------------------------------------
// Listing and lookup

TEST_F(Conformance, ListFiltersByState) {
  VmSpec a = runnable("list-a");
  VmSpec b = runnable("list-b");
  define(a);
  define(b);
  ASSERT_OK(hv_->start_vm(VmRef::by_name(a.name)));
  const auto running = names({{VmState::kRunning}});
  const auto off = names({{VmState::kShutOff}});
  const auto all = names(VmFilter::all());
  EXPECT_NE(std::find(running.begin(), running.end(), a.name), running.end());
  EXPECT_EQ(std::find(running.begin(), running.end(), b.name), running.end());
  EXPECT_NE(std::find(off.begin(), off.end(), b.name), off.end());
  EXPECT_EQ(std::find(off.begin(), off.end(), a.name), off.end());
  EXPECT_NE(std::find(all.begin(), all.end(), a.name), all.end());
  EXPECT_NE(std::find(all.begin(), all.end(), b.name), all.end());
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  if (g_tier.simulated) {
    EXPECT_NE(std::find(running.begin(), running.end(), "db1"), running.end());
    EXPECT_NE(std::find(off.begin(), off.end(), "batch1"), off.end());
  }
}

TEST_F(Conformance, LookupByNameAndByUuidAgree) {
  const VmInfo defined = define(runnable("lookup"));
  auto by_name = hv_->get_vm(VmRef::by_name(defined.name));
  auto by_uuid = hv_->get_vm(VmRef::by_uuid(defined.uuid));
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  ASSERT_TRUE(by_uuid.ok()) << by_uuid.status();
  EXPECT_EQ(definition(*by_name), definition(*by_uuid));
  EXPECT_EQ(definition(*by_name), definition(defined));
  auto parsed = hv_->get_vm(VmRef::parse(defined.uuid));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->name, defined.name);
}

TEST_F(Conformance, UnknownVmIsNotFoundForEveryVerb) {
  const VmRef ghost = VmRef::by_name(prefix() + "ghost");
  const VmRef ghost_uuid = VmRef::by_uuid("00000000-0000-4000-8000-00000000dead");
  for (const VmRef& ref : {ghost, ghost_uuid}) {
    EXPECT_CODE(hv_->get_vm(ref).status(), StatusCode::kNotFound);
    EXPECT_CODE(hv_->start_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->shutdown_vm(ref, {.timeout_ms = 100}).status(), StatusCode::kNotFound);
    EXPECT_CODE(hv_->destroy_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->reboot_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->reset_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->suspend_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->resume_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->set_autostart(ref, true), StatusCode::kNotFound);
    EXPECT_CODE(hv_->undefine_vm(ref), StatusCode::kNotFound);
    EXPECT_CODE(hv_->create_snapshot(ref).status(), StatusCode::kNotFound);
    EXPECT_CODE(hv_->list_snapshots(ref).status(), StatusCode::kNotFound);
  }
  auto s = hv_->get_vm(ghost);
  EXPECT_NE(s.status().message().find(ghost.value), std::string::npos) << s.status();
}

// ---------------------------------------------------------------------------------------------
// Define / undefine

TEST_F(Conformance, DefineWritesEverythingTheSpecSays) {
  VmSpec spec = runnable("define");
  spec.uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
  spec.vcpus = 2;
  spec.memory_bytes = 96 * kMiB;
  spec.description = "web tier <blue> & \"green\" 'team'";
  spec.nics.push_back({.source = "default", .mac = "52:54:00:aa:bb:01"});
  const VmInfo vm = define(spec);
  EXPECT_EQ(vm.name, spec.name);
  EXPECT_EQ(vm.uuid, spec.uuid);
  EXPECT_EQ(vm.state, VmState::kShutOff);
  EXPECT_EQ(vm.vcpus, 2U);
  EXPECT_EQ(vm.max_memory_bytes, 96 * kMiB);
  EXPECT_TRUE(vm.persistent);
  EXPECT_FALSE(vm.autostart);
  EXPECT_EQ(vm.description, spec.description);
  ASSERT_EQ(vm.disks.size(), 1U);
  EXPECT_EQ(vm.disks[0].source, spec.disks[0].source_path);
  EXPECT_EQ(vm.disks[0].target, "vda");
  EXPECT_EQ(vm.disks[0].bus, "virtio");
  EXPECT_EQ(vm.disks[0].format, "qcow2");
  ASSERT_EQ(vm.nics.size(), 1U);
  EXPECT_EQ(vm.nics[0].mac, "52:54:00:aa:bb:01");
  EXPECT_EQ(vm.nics[0].type, "network");
  EXPECT_EQ(vm.nics[0].source, "default");
}

TEST_F(Conformance, DefineWithAutostart) {
  VmSpec spec = runnable("auto", false);
  spec.autostart = true;
  EXPECT_TRUE(define(spec).autostart);
}

TEST_F(Conformance, BadDefinesAreRefusedAndChangeNothing) {
  const VmInfo existing = define(runnable("dup"));
  const auto before = names(VmFilter::all());

  VmSpec same_name{.name = existing.name, .memory_bytes = 128 * kMiB};
  EXPECT_CODE(hv_->define_vm(same_name).status(), StatusCode::kAlreadyExists);
  VmSpec same_uuid{.name = prefix() + "other", .uuid = existing.uuid, .memory_bytes = 64 * kMiB};
  EXPECT_CODE(hv_->define_vm(same_uuid).status(), StatusCode::kAlreadyExists);
  EXPECT_CODE(hv_->define_vm({.name = "has space", .memory_bytes = 64 * kMiB}).status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->define_vm({.name = "x<y>", .memory_bytes = 64 * kMiB}).status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->define_vm({.name = prefix() + "tiny", .memory_bytes = kMiB}).status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->define_vm({.name = prefix() + "nocpu", .vcpus = 0, .memory_bytes = 64 * kMiB}).status(),
              StatusCode::kInvalidArgument);
  VmSpec rel = runnable("rel", false);
  rel.disks.push_back({.source_path = "disk.qcow2"});
  EXPECT_CODE(hv_->define_vm(rel).status(), StatusCode::kInvalidArgument);

  EXPECT_EQ(names(VmFilter::all()), before);
  // The existing VM kept its definition.
  auto again = hv_->get_vm(VmRef::by_name(existing.name));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(definition(*again), definition(existing));
}

TEST_F(Conformance, UndefineRemovesAShutOffVm) {
  const VmInfo vm = define(runnable("undef"));
  ASSERT_OK(hv_->undefine_vm(VmRef::by_name(vm.name)));
  EXPECT_CODE(hv_->get_vm(VmRef::by_uuid(vm.uuid)).status(), StatusCode::kNotFound);
}

TEST_F(Conformance, UndefineOfAnActiveVmNeedsForce) {
  const VmInfo vm = define(runnable("undef-active"));
  ASSERT_OK(hv_->start_vm(VmRef::by_name(vm.name)));
  EXPECT_CODE(hv_->undefine_vm(VmRef::by_name(vm.name)), StatusCode::kFailedPrecondition);
  auto still = hv_->get_vm(VmRef::by_name(vm.name));
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->state, VmState::kRunning);
  EXPECT_TRUE(still->persistent);
  ASSERT_OK(hv_->undefine_vm(VmRef::by_name(vm.name), {.force = true}));
  EXPECT_CODE(hv_->get_vm(VmRef::by_name(vm.name)).status(), StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// Lifecycle verbs

TEST_F(Conformance, LifecycleVerbsMoveThroughTheStates) {
  const VmInfo vm = define(runnable("life"));
  const VmRef ref = VmRef::by_name(vm.name);
  ASSERT_OK(hv_->start_vm(ref));
  auto info = hv_->get_vm(ref);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, VmState::kRunning);
  EXPECT_EQ(info->state_reason, "booted");
  ASSERT_OK(hv_->suspend_vm(ref));
  info = hv_->get_vm(ref);
  EXPECT_EQ(info->state, VmState::kPaused);
  EXPECT_EQ(info->state_reason, "user");
  ASSERT_OK(hv_->resume_vm(ref));
  info = hv_->get_vm(ref);
  EXPECT_EQ(info->state, VmState::kRunning);
  EXPECT_EQ(info->state_reason, "unpaused");
  ASSERT_OK(hv_->reset_vm(ref));
  EXPECT_EQ(state(vm.name), VmState::kRunning);
  ASSERT_OK(hv_->reboot_vm(ref));
  EXPECT_TRUE(is_active(state(vm.name)));
  ASSERT_OK(hv_->destroy_vm(ref));
  info = hv_->get_vm(ref);
  EXPECT_EQ(info->state, VmState::kShutOff);
  EXPECT_EQ(info->state_reason, "destroyed");
}

TEST_F(Conformance, VerbsInTheWrongStateAreFailedPreconditionAndChangeNothing) {
  const VmInfo vm = define(runnable("wrong"));
  const VmRef ref = VmRef::by_name(vm.name);
  // Shut off.
  EXPECT_CODE(hv_->suspend_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->resume_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->reboot_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->reset_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->destroy_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->shutdown_vm(ref, {.timeout_ms = 100}).status(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(state(vm.name), VmState::kShutOff);
  // Running.
  ASSERT_OK(hv_->start_vm(ref));
  EXPECT_CODE(hv_->start_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->resume_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_EQ(state(vm.name), VmState::kRunning);
  // Paused.
  ASSERT_OK(hv_->suspend_vm(ref));
  EXPECT_CODE(hv_->suspend_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->start_vm(ref), StatusCode::kFailedPrecondition);
  EXPECT_EQ(state(vm.name), VmState::kPaused);
  auto msg = hv_->start_vm(ref);
  EXPECT_NE(msg.message().find("paused"), std::string::npos) << msg;
}

TEST_F(Conformance, GracefulShutdownHonouredOrTimedOut) {
  const VmInfo vm = define(runnable("shutdown"));
  const VmRef ref = VmRef::by_name(vm.name);
  ASSERT_OK(hv_->start_vm(ref));
  if (g_tier.guest_honours_shutdown) {
    auto out = hv_->shutdown_vm(ref, {.timeout_ms = 10'000});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FALSE(out->forced);
    auto info = hv_->get_vm(ref);
    EXPECT_EQ(info->state, VmState::kShutOff);
    EXPECT_EQ(info->state_reason, "shutdown");
    return;
  }
  // No guest OS answers ACPI: without force the VM keeps running and the call says so.
  auto timed_out = hv_->shutdown_vm(ref, {.timeout_ms = 1500});
  EXPECT_CODE(timed_out.status(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(is_active(state(vm.name)));
  auto forced = hv_->shutdown_vm(ref, {.timeout_ms = 1500, .force_off_after_timeout = true});
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_TRUE(forced->forced);
  EXPECT_GE(forced->waited_ms, 1500U);
  auto info = hv_->get_vm(ref);
  EXPECT_EQ(info->state, VmState::kShutOff);
  EXPECT_EQ(info->state_reason, "destroyed");
}

TEST_F(Conformance, AutostartIsSetAndCleared) {
  const VmInfo vm = define(runnable("autostart", false));
  const VmRef ref = VmRef::by_name(vm.name);
  ASSERT_OK(hv_->set_autostart(ref, true));
  EXPECT_TRUE(hv_->get_vm(ref)->autostart);
  ASSERT_OK(hv_->set_autostart(ref, false));
  EXPECT_FALSE(hv_->get_vm(ref)->autostart);
}

// ---------------------------------------------------------------------------------------------
// Snapshots

TEST_F(Conformance, SnapshotsCreateListRevertDelete) {
  const VmInfo vm = define(runnable("snap"));
  const VmRef ref = VmRef::by_name(vm.name);
  auto s1 = hv_->create_snapshot(ref, {.name = "s1", .description = "first <one>"});
  ASSERT_TRUE(s1.ok()) << s1.status();
  EXPECT_EQ(s1->name, "s1");
  EXPECT_EQ(s1->description, "first <one>");
  EXPECT_EQ(s1->vm_state, VmState::kShutOff);
  EXPECT_TRUE(s1->current);
  EXPECT_CODE(hv_->create_snapshot(ref, {.name = "s1"}).status(), StatusCode::kAlreadyExists);

  ASSERT_OK(hv_->set_autostart(ref, true));  // a change after s1, undone by the revert below
  auto s2 = hv_->create_snapshot(ref, {.name = "s2"});
  ASSERT_TRUE(s2.ok()) << s2.status();
  EXPECT_EQ(s2->parent, "s1");

  auto list = hv_->list_snapshots(ref);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2U);
  EXPECT_EQ((*list)[0].name, "s1");
  EXPECT_FALSE((*list)[0].current);
  EXPECT_EQ((*list)[1].name, "s2");
  EXPECT_TRUE((*list)[1].current);

  ASSERT_OK(hv_->revert_to_snapshot(ref, "s1"));
  list = hv_->list_snapshots(ref);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE((*list)[0].current);
  EXPECT_EQ(state(vm.name), VmState::kShutOff);

  EXPECT_CODE(hv_->revert_to_snapshot(ref, "nope"), StatusCode::kNotFound);
  EXPECT_CODE(hv_->delete_snapshot(ref, "nope"), StatusCode::kNotFound);
  EXPECT_CODE(hv_->delete_snapshot(ref, "bad name"), StatusCode::kInvalidArgument);
  ASSERT_OK(hv_->delete_snapshot(ref, "s2"));
  list = hv_->list_snapshots(ref);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1U);
  EXPECT_EQ(list->front().name, "s1");
  // A VM with snapshots can still be undefined: their metadata goes with it.
  ASSERT_OK(hv_->undefine_vm(ref));
}

TEST_F(Conformance, SnapshotOfARunningVmRevertsToRunning) {
  const VmInfo vm = define(runnable("snap-run"));
  const VmRef ref = VmRef::by_name(vm.name);
  ASSERT_OK(hv_->start_vm(ref));
  auto s = hv_->create_snapshot(ref, {.name = "live"});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->vm_state, VmState::kRunning);
  ASSERT_OK(hv_->destroy_vm(ref));
  ASSERT_OK(hv_->revert_to_snapshot(ref, "live"));
  auto info = hv_->get_vm(ref);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, VmState::kRunning);
  EXPECT_EQ(info->state_reason, "from-snapshot");
}

// ---------------------------------------------------------------------------------------------
// Lifecycle events

class EventLog {
 public:
  void add(const VmEvent& e) {
    {
      const std::lock_guard lock(mutex_);
      events_.push_back(e);
    }
    cv_.notify_all();
  }
  // Kinds seen for `vm`, once `count` of them have arrived or 30 s have passed.
  std::vector<VmEventKind> wait_for(const std::string& vm, std::size_t count) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return kinds_locked(vm).size() >= count; });
    return kinds_locked(vm);
  }
  // Kinds seen for `vm` once one of kind `last` has arrived, or 30 s have passed.
  std::vector<VmEventKind> wait_until(const std::string& vm, VmEventKind last) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] {
      const auto k = kinds_locked(vm);
      return std::find(k.begin(), k.end(), last) != k.end();
    });
    return kinds_locked(vm);
  }
  std::vector<VmEventKind> kinds(const std::string& vm) {
    const std::lock_guard lock(mutex_);
    return kinds_locked(vm);
  }

 private:
  std::vector<VmEventKind> kinds_locked(const std::string& vm) {
    std::vector<VmEventKind> out;
    for (const auto& e : events_) {
      if (e.vm_name == vm) {
        out.push_back(e.kind);
      }
    }
    return out;
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<VmEvent> events_;
};

TEST_F(Conformance, LifecycleEventsArriveInOrder) {
  EventLog log;
  auto sub = hv_->subscribe_lifecycle([&log](const VmEvent& e) { log.add(e); });
  ASSERT_TRUE(sub.ok()) << sub.status();
  const VmInfo vm = define(runnable("events"));
  const VmRef ref = VmRef::by_name(vm.name);
  ASSERT_OK(hv_->start_vm(ref));
  ASSERT_OK(hv_->suspend_vm(ref));
  ASSERT_OK(hv_->resume_vm(ref));
  ASSERT_OK(hv_->destroy_vm(ref));
  ASSERT_OK(hv_->undefine_vm(ref));
  const std::vector<VmEventKind> expected = {VmEventKind::kDefined, VmEventKind::kStarted, VmEventKind::kSuspended,
                                             VmEventKind::kResumed, VmEventKind::kStopped, VmEventKind::kUndefined};
  // Drivers may add events around these (QEMU sends "resumed" before "started" and
  // "shutdown" before "stopped"); the expected ones arrive, in this order.
  const std::vector<VmEventKind> got = log.wait_until(vm.name, VmEventKind::kUndefined);
  std::size_t next = 0;
  for (const VmEventKind k : got) {
    if (next < expected.size() && k == expected[next]) {
      ++next;
    }
  }
  EXPECT_EQ(next, expected.size()) << "received " << got.size() << " events; matched " << next << " of "
                                   << expected.size() << " in order";
}

// After its Subscription is destroyed a callback is never called again. Events are
// delivered in order on one thread, so once a later subscription has seen a later event,
// the first one would have seen any event meant for it.
TEST_F(Conformance, DestroyedSubscriptionGetsNoMoreEvents) {
  EventLog first;
  auto sub1 = hv_->subscribe_lifecycle([&first](const VmEvent& e) { first.add(e); });
  ASSERT_TRUE(sub1.ok()) << sub1.status();
  const VmInfo a = define(runnable("ev-a", false));
  ASSERT_EQ(first.wait_for(a.name, 1).size(), 1U);
  sub1->reset();

  ASSERT_OK(hv_->undefine_vm(VmRef::by_name(a.name)));
  EventLog second;
  auto sub2 = hv_->subscribe_lifecycle([&second](const VmEvent& e) { second.add(e); });
  ASSERT_TRUE(sub2.ok());
  const VmInfo b = define(runnable("ev-b", false));
  ASSERT_EQ(second.wait_for(b.name, 1).size(), 1U);
  EXPECT_EQ(first.kinds(a.name).size(), 1U);  // only the define seen before the reset
  EXPECT_TRUE(first.kinds(b.name).empty());
}

// ---------------------------------------------------------------------------------------------
// Usage counters: spi::HypervisorDriver::read_counters, called on the driver itself
// (Hypervisor::read_counters may put a load model in front of it).

// Replaces `hv` with a Hypervisor around a driver the test may also call directly, and
// returns that driver (owned by `hv`). One connection for both: each connection to a test
// driver file URI has its own copy of the host.
spi::HypervisorDriver* reopen_with_driver(std::unique_ptr<Hypervisor>& hv) {
  auto driver = spi::open_hypervisor_driver(g_tier.uri);
  if (!driver.ok()) {
    ADD_FAILURE() << driver.status();
    return nullptr;
  }
  spi::HypervisorDriver* raw = driver->get();
  auto wrapped = Hypervisor::wrap(
      std::move(*driver),
      {.uri = g_tier.uri, .host_id = "conformance", .simulated_load = HypervisorOptions::SimulatedLoad::kOff});
  if (!wrapped.ok()) {
    ADD_FAILURE() << wrapped.status();
    return nullptr;
  }
  hv = std::move(*wrapped);
  return raw;
}

const VmCounters* find_counters(const HostCounters& host, const std::string& uuid) {
  const auto it =
      std::find_if(host.vms.begin(), host.vms.end(), [&uuid](const VmCounters& vm) { return vm.uuid == uuid; });
  return it == host.vms.end() ? nullptr : &*it;
}

// read_counters, bracketed by two list_vms calls: asserts the counters list exactly the
// active VMs with list_vms's name, state and vCPUs. VMs of other processes sharing the
// hypervisor (QEMU tier) may change meanwhile: a VM counts as active when either listing
// has it, and must be listed when both have it.
HostCounters counters_matching_list(Hypervisor& hv, spi::HypervisorDriver& driver) {
  auto before = hv.list_vms(VmFilter::active());
  const std::int64_t t0 = now_ns();
  auto counters = driver.read_counters();
  const std::int64_t t1 = now_ns();
  auto after = hv.list_vms(VmFilter::active());
  EXPECT_TRUE(before.ok() && after.ok()) << before.status() << " / " << after.status();
  EXPECT_TRUE(counters.ok()) << counters.status();
  if (!before.ok() || !after.ok() || !counters.ok()) {
    return {};
  }
  EXPECT_GE(counters->taken_ns, t0);
  EXPECT_LE(counters->taken_ns, t1);
  EXPECT_FALSE(counters->simulated);
  std::map<std::string, std::pair<const VmInfo*, const VmInfo*>> listed;  // uuid -> (before, after)
  for (const VmInfo& vm : *before) {
    listed[vm.uuid].first = &vm;
  }
  for (const VmInfo& vm : *after) {
    listed[vm.uuid].second = &vm;
  }
  for (const VmCounters& c : counters->vms) {
    const auto it = listed.find(c.uuid);
    if (it == listed.end()) {
      ADD_FAILURE() << "read_counters lists " << c.name << " (" << c.uuid << "), which list_vms has not active";
      continue;
    }
    const VmInfo& vm = it->second.first != nullptr ? *it->second.first : *it->second.second;
    EXPECT_EQ(c.name, vm.name);
    EXPECT_EQ(c.vcpus, vm.vcpus) << vm.name;
    const bool state_steady = it->second.first != nullptr && it->second.second != nullptr &&
                              it->second.first->state == it->second.second->state;
    if (state_steady) {
      EXPECT_EQ(c.state, vm.state) << vm.name;
    }
  }
  for (const auto& [uuid, seen] : listed) {
    if (seen.first != nullptr && seen.second != nullptr) {
      EXPECT_NE(find_counters(*counters, uuid), nullptr) << seen.first->name << " is active but has no counters";
    }
  }
  EXPECT_TRUE(std::is_sorted(counters->vms.begin(), counters->vms.end(),
                             [](const VmCounters& a, const VmCounters& b) { return a.name < b.name; }));
  return *counters;
}

TEST_F(Conformance, ReadCountersListsExactlyTheActiveVms) {
  spi::HypervisorDriver* driver = reopen_with_driver(hv_);
  ASSERT_NE(driver, nullptr);
  const VmInfo running = define(runnable("cnt-run"));
  const VmInfo paused = define(runnable("cnt-pause", false));
  const VmInfo off = define(runnable("cnt-off", false));
  ASSERT_OK(hv_->start_vm(VmRef::by_name(running.name)));
  ASSERT_OK(hv_->start_vm(VmRef::by_name(paused.name)));
  ASSERT_OK(hv_->suspend_vm(VmRef::by_name(paused.name)));

  HostCounters host = counters_matching_list(*hv_, *driver);
  const VmCounters* r = find_counters(host, running.uuid);
  const VmCounters* p = find_counters(host, paused.uuid);
  ASSERT_NE(r, nullptr);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(find_counters(host, off.uuid), nullptr);
  EXPECT_EQ(r->name, running.name);
  EXPECT_EQ(r->state, VmState::kRunning);
  EXPECT_EQ(r->vcpus, 1U);
  EXPECT_EQ(r->memory_bytes, 64 * kMiB);
  EXPECT_EQ(p->state, VmState::kPaused);
  EXPECT_GT(host.cpus, 0U);
  EXPECT_GT(host.memory_bytes, 0U);
  EXPECT_LE(host.memory_free_bytes, host.memory_bytes);
  ASSERT_TRUE(host.cpu_busy_ns.has_value());
  ASSERT_TRUE(host.cpu_total_ns.has_value());
  EXPECT_LE(*host.cpu_busy_ns, *host.cpu_total_ns);
  if (g_tier.simulated) {
    // tests/data/hosts/node-small.xml: db1 (2 vCPUs, 2 GiB) runs, batch1 is shut off. The
    // test driver keeps no usage counters (its node CPU times are fixed figures).
    EXPECT_EQ(host.cpus, 8U);
    EXPECT_EQ(host.memory_bytes, 16 * kGiB);
    EXPECT_EQ(host.memory_free_bytes, 16 * kGiB - 2 * kGiB - 128 * kMiB);
    ASSERT_EQ(host.vms.size(), 3U);
    EXPECT_EQ(host.vms[0].name, paused.name);
    EXPECT_EQ(host.vms[1].name, running.name);
    const VmCounters& db1 = host.vms[2];
    EXPECT_EQ(db1.name, "db1");
    EXPECT_EQ(db1.uuid, "6b1f3c0e-2a4d-4c57-9a61-0d7a5e2b9c01");
    EXPECT_EQ(db1.state, VmState::kRunning);
    EXPECT_EQ(db1.vcpus, 2U);
    EXPECT_EQ(db1.memory_bytes, 2 * kGiB);
    for (const VmCounters& vm : host.vms) {
      EXPECT_EQ(vm.cpu_time_ns, std::nullopt) << vm.name;
      EXPECT_EQ(vm.memory_used_bytes, std::nullopt) << vm.name;
      EXPECT_EQ(vm.disk_read_bytes, std::nullopt) << vm.name;
      EXPECT_EQ(vm.disk_write_bytes, std::nullopt) << vm.name;
      EXPECT_EQ(vm.disk_read_ops, std::nullopt) << vm.name;
      EXPECT_EQ(vm.disk_write_ops, std::nullopt) << vm.name;
      EXPECT_EQ(vm.net_rx_bytes, std::nullopt) << vm.name;
      EXPECT_EQ(vm.net_tx_bytes, std::nullopt) << vm.name;
    }
  }

  // A VM that starts appears; one that is destroyed disappears.
  ASSERT_OK(hv_->start_vm(VmRef::by_name(off.name)));
  ASSERT_OK(hv_->destroy_vm(VmRef::by_name(running.name)));
  host = counters_matching_list(*hv_, *driver);
  ASSERT_NE(find_counters(host, off.uuid), nullptr);
  EXPECT_EQ(find_counters(host, off.uuid)->state, VmState::kRunning);
  EXPECT_EQ(find_counters(host, running.uuid), nullptr);
  EXPECT_NE(find_counters(host, paused.uuid), nullptr);
}

// `virsh domstats` fields of one VM, read by libvirt's own client (independently of the
// driver under test); empty when virsh fails.
std::map<std::string, std::string> virsh_domstats(const std::string& vm) {
  const std::string cmd =
      "virsh -c '" + g_tier.uri + "' domstats --cpu-total --balloon --block --interface '" + vm + "' 2>&1";
  std::map<std::string, std::string> out;
  FILE* pipe = popen(cmd.c_str(), "r");  // NOLINT(cert-env33-c): test set-up
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return out;
  }
  std::string text;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    text += buf;
  }
  const int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << cmd << ":\n" << text;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    line.erase(0, line.find_first_not_of(' '));
    if (const std::size_t eq = line.find('='); eq != std::string::npos) {
      out[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  return out;
}

// Sum of virsh's "<group>.<n>.<suffix>" fields; nullopt when no device has one.
std::optional<std::uint64_t> virsh_sum(const std::map<std::string, std::string>& stats, const std::string& group,
                                       const std::string& suffix) {
  std::optional<std::uint64_t> sum;
  for (const auto& [key, value] : stats) {
    if (!key.starts_with(group + ".") || !key.ends_with("." + suffix)) {
      continue;
    }
    const std::string index = key.substr(group.size() + 1, key.size() - group.size() - suffix.size() - 2);
    if (!index.empty() && index.find_first_not_of("0123456789") == std::string::npos) {
      sum = sum.value_or(0) + std::stoull(value);
    }
  }
  return sum;
}

// A moving counter read by virsh between two read_counters must lie between their values;
// one no device keeps is nullopt on both sides.
void expect_bracketed(const char* what, std::optional<std::uint64_t> before, std::optional<std::uint64_t> virsh,
                      std::optional<std::uint64_t> after) {
  ASSERT_EQ(before.has_value(), virsh.has_value()) << what;
  ASSERT_EQ(after.has_value(), virsh.has_value()) << what;
  if (virsh) {
    EXPECT_LE(*before, *virsh) << what;
    EXPECT_LE(*virsh, *after) << what;
  }
}

TEST_F(Conformance, ReadCountersAgreeWithLibvirtsOwnCounters) {
  if (g_tier.simulated) {
    GTEST_SKIP() << "the test driver keeps no usage counters";
  }
  spi::HypervisorDriver* driver = reopen_with_driver(hv_);
  ASSERT_NE(driver, nullptr);
  const VmInfo vm = define(runnable("cnt-usage"));
  ASSERT_OK(hv_->start_vm(VmRef::by_name(vm.name)));

  auto first = driver->read_counters();
  ASSERT_TRUE(first.ok()) << first.status();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto second = driver->read_counters();
  ASSERT_TRUE(second.ok()) << second.status();
  const VmCounters* a = find_counters(*first, vm.uuid);
  const VmCounters* b = find_counters(*second, vm.uuid);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->cpu_time_ns.has_value());
  ASSERT_TRUE(b->cpu_time_ns.has_value());
  EXPECT_GT(*a->cpu_time_ns, 0U);
  EXPECT_GT(*b->cpu_time_ns, *a->cpu_time_ns);
  EXPECT_EQ(a->memory_bytes, 64 * kMiB);
  ASSERT_TRUE(a->memory_used_bytes.has_value());  // no guest balloon driver: QEMU's resident set
  EXPECT_GT(*a->memory_used_bytes, 0U);
  EXPECT_TRUE(a->disk_read_bytes.has_value());  // one disk
  EXPECT_EQ(a->net_rx_bytes, std::nullopt);     // no NIC: the tier starts no network
  ASSERT_TRUE(first->cpu_busy_ns && first->cpu_total_ns && second->cpu_busy_ns && second->cpu_total_ns);
  EXPECT_GT(*second->cpu_busy_ns, *first->cpu_busy_ns);
  EXPECT_GT(*second->cpu_total_ns, *first->cpu_total_ns);
  EXPECT_LE(*first->cpu_busy_ns, *first->cpu_total_ns);
  EXPECT_EQ(first->cpus, static_cast<std::uint32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_GT(first->memory_free_bytes, 0U);
  EXPECT_LE(first->memory_free_bytes, first->memory_bytes);

  // libvirt's own counters, read by virsh between two read_counters.
  auto before = driver->read_counters();
  const auto stats = virsh_domstats(vm.name);
  auto after = driver->read_counters();
  ASSERT_TRUE(before.ok() && after.ok());
  const VmCounters* x = find_counters(*before, vm.uuid);
  const VmCounters* y = find_counters(*after, vm.uuid);
  ASSERT_NE(x, nullptr);
  ASSERT_NE(y, nullptr);
  ASSERT_TRUE(stats.contains("cpu.time")) << "virsh domstats gave " << stats.size() << " fields";
  expect_bracketed("cpu.time", x->cpu_time_ns, std::stoull(stats.at("cpu.time")), y->cpu_time_ns);
  ASSERT_TRUE(stats.contains("balloon.current"));
  EXPECT_EQ(std::stoull(stats.at("balloon.current")), x->memory_bytes / 1024);
  EXPECT_EQ(std::stoull(stats.at("balloon.current")), y->memory_bytes / 1024);
  EXPECT_EQ(stats.at("block.count"), "1");
  expect_bracketed("block rd.bytes", x->disk_read_bytes, virsh_sum(stats, "block", "rd.bytes"), y->disk_read_bytes);
  expect_bracketed("block wr.bytes", x->disk_write_bytes, virsh_sum(stats, "block", "wr.bytes"), y->disk_write_bytes);
  expect_bracketed("block rd.reqs", x->disk_read_ops, virsh_sum(stats, "block", "rd.reqs"), y->disk_read_ops);
  expect_bracketed("block wr.reqs", x->disk_write_ops, virsh_sum(stats, "block", "wr.reqs"), y->disk_write_ops);
  expect_bracketed("net rx.bytes", x->net_rx_bytes, virsh_sum(stats, "net", "rx.bytes"), y->net_rx_bytes);
  expect_bracketed("net tx.bytes", x->net_tx_bytes, virsh_sum(stats, "net", "tx.bytes"), y->net_tx_bytes);
  auto opt = [](std::optional<std::uint64_t> v) { return v ? std::to_string(*v) : std::string("none"); };
  std::cout << "read_counters on " << g_tier.uri << ": " << vm.name << " cpu_time_ns=" << opt(y->cpu_time_ns)
            << " memory_bytes=" << y->memory_bytes << " used=" << opt(y->memory_used_bytes)
            << " disk rd=" << opt(y->disk_read_bytes) << "B/" << opt(y->disk_read_ops)
            << "ops wr=" << opt(y->disk_write_bytes) << "B/" << opt(y->disk_write_ops)
            << "ops net rx=" << opt(y->net_rx_bytes) << "; host cpus=" << after->cpus
            << " busy_ns=" << opt(after->cpu_busy_ns) << " total_ns=" << opt(after->cpu_total_ns)
            << " memory=" << after->memory_bytes << " free=" << after->memory_free_bytes << "\n";
}

// ---------------------------------------------------------------------------------------------
// Storage: directory pools and their volumes (copy-on-write overlays over a base image, blank
// data disks, flattened copies). On the QEMU tier every claim is checked on the files too,
// with qemu-img and sha256sum; the test driver keeps pools and volumes in memory only.

struct Shell {
  int rc = -1;
  std::string out;  // stdout and stderr
};

Shell run(const std::string& cmd) {
  Shell r;
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");  // NOLINT(cert-env33-c): test set-up
  if (pipe == nullptr) {
    ADD_FAILURE() << "cannot run " << cmd;
    return r;
  }
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    r.out += buf;
  }
  const int status = pclose(pipe);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// A top-level field of qemu-img's JSON: a string without quotes in it, or a number.
std::optional<std::string> json_field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\": ";
  std::size_t pos = json.find(needle);
  if (pos == std::string::npos) {
    return std::nullopt;
  }
  pos += needle.size();
  if (json[pos] == '"') {
    return json.substr(pos + 1, json.find('"', pos + 1) - pos - 1);
  }
  return json.substr(pos, json.find_first_of(",\n}", pos) - pos);
}

std::string sha256(const std::string& path) {
  const Shell r = run("sha256sum '" + path + "'");
  EXPECT_EQ(r.rc, 0) << r.out;
  return r.out.substr(0, 64);
}

// `qemu-img info --output=json` of a file.
std::string image_info(const std::string& path) {
  const Shell r = run("qemu-img info --output=json '" + path + "'");
  EXPECT_EQ(r.rc, 0) << r.out;
  return r.out;
}

// Writes `pattern` over [offset, offset + length) of an image, as a guest would see it.
void write_pattern(const std::string& path, const std::string& format, int pattern, const std::string& offset,
                   const std::string& length) {
  const Shell r = run("qemu-io -f " + format + " -c 'write -P " + std::to_string(pattern) + " " + offset + " " +
                      length + "' '" + path + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
}

// The pools libvirt lists (read with virsh, independently of the driver under test).
std::vector<std::string> virsh_pools() {
  const Shell r = run("virsh -c '" + g_tier.uri + "' pool-list --all --name");
  EXPECT_EQ(r.rc, 0) << r.out;
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < r.out.size()) {
    const std::size_t end = std::min(r.out.find('\n', pos), r.out.size());
    std::string name = r.out.substr(pos, end - pos);
    name.erase(name.find_last_not_of(' ') + 1);  // virsh pads the names
    if (!name.empty()) {
      out.push_back(name);
    }
    pos = end + 1;
  }
  return out;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::vector<std::string> volume_names(const std::vector<VolumeInfo>& volumes) {
  std::vector<std::string> out;
  out.reserve(volumes.size());
  for (const VolumeInfo& v : volumes) {
    out.push_back(v.name);
  }
  return out;
}

class Storage : public Conformance {
 protected:
  void TearDown() override {
    Conformance::TearDown();  // the VMs first: they hold volumes
    if (hv_) {
      for (const std::string& pool : pools_) {
        remove_everything(pool);
      }
    }
    if (!g_tier.simulated) {
      const auto listed = virsh_pools();
      for (const std::string& pool : pools_) {
        EXPECT_FALSE(contains(listed, pool)) << "pool " << pool << " is still defined";
      }
      for (const fs::path& dir : dirs_) {
        fs::remove_all(dir);
      }
    }
  }

  // Deletes the pool's volumes (overlays before the bases they need), then the pool.
  void remove_everything(const std::string& pool) {
    auto volumes = hv_->list_volumes(pool);
    if (volumes.status().code() == StatusCode::kNotFound) {
      return;  // the test removed it
    }
    for (int pass = 0; volumes.ok() && !volumes->empty() && pass < 4; ++pass) {
      for (const VolumeInfo& v : *volumes) {
        (void)hv_->delete_volume(pool, v.name);  // a base fails while its overlay is there
      }
      volumes = hv_->list_volumes(pool);
    }
    EXPECT_TRUE(volumes.ok() && volumes->empty()) << "volumes left in " << pool;
    EXPECT_OK_QUIET(hv_->remove_pool(pool));
  }

  // A directory pool of this test, over a directory of this process's image directory.
  std::string make_pool(const std::string& suffix) {
    std::string name = prefix() + suffix;
    const fs::path dir = pool_dir(name);
    dirs_.push_back(dir);
    pools_.push_back(name);
    const Status s = hv_->ensure_pool(name, dir.string());
    EXPECT_TRUE(s.ok()) << s;
    return name;
  }

  static fs::path pool_dir(const std::string& pool) { return g_tier.image_dir / pool; }

  // A base image in the pool, the way the agent puts one there: a file made outside libvirt
  // (with `pattern` in its first MiB), then a refresh. The test driver has no files: there it
  // is a blank volume made through the storage API.
  VolumeInfo put_base(const std::string& pool, const std::string& name, const std::string& format, std::uint64_t size,
                      int pattern) {
    if (g_tier.simulated) {
      auto v = hv_->create_volume(pool, {.name = name, .capacity_bytes = size, .format = format});
      EXPECT_TRUE(v.ok()) << v.status();
      return v.ok() ? *v : VolumeInfo{};
    }
    const std::string path = (pool_dir(pool) / name).string();
    const Shell r = run("qemu-img create -q -f " + format + " '" + path + "' " + std::to_string(size));
    EXPECT_EQ(r.rc, 0) << r.out;
    write_pattern(path, format, pattern, "0", "1M");
    EXPECT_CODE(hv_->get_volume(pool, name).status(), StatusCode::kNotFound);  // not scanned yet
    EXPECT_OK_QUIET(hv_->refresh_pool(pool));
    auto v = hv_->get_volume(pool, name);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : VolumeInfo{};
  }

  VolumeInfo create(const std::string& pool, const VolumeSpec& spec) {
    auto v = hv_->create_volume(pool, spec);
    EXPECT_TRUE(v.ok()) << spec.name << ": " << v.status();
    return v.ok() ? *v : VolumeInfo{};
  }

  std::vector<std::string> listed(const std::string& pool) {
    auto volumes = hv_->list_volumes(pool);
    EXPECT_TRUE(volumes.ok()) << volumes.status();
    return volumes.ok() ? volume_names(*volumes) : std::vector<std::string>{};
  }

  // The overlay claims, on the files: a qcow2 whose backing file is the base.
  static void expect_overlay_file(const VolumeInfo& overlay, const VolumeInfo& base, const std::string& base_format) {
    if (g_tier.simulated) {
      return;
    }
    const std::string info = image_info(overlay.path);
    EXPECT_EQ(json_field(info, "format"), "qcow2") << info;
    EXPECT_EQ(json_field(info, "backing-filename"), base.path) << info;
    EXPECT_EQ(json_field(info, "backing-filename-format"), base_format) << info;
    EXPECT_EQ(json_field(info, "virtual-size"), std::to_string(overlay.capacity_bytes)) << info;
  }

  std::vector<std::string> pools_;
  std::vector<fs::path> dirs_;
};

TEST_F(Storage, EnsurePoolIsIdempotentAndKeepsItsPath) {
  const std::string pool = make_pool("pool");
  const std::string dir = pool_dir(pool).string();
  ASSERT_OK(hv_->ensure_pool(pool, dir));
  ASSERT_OK(hv_->ensure_pool(pool, dir + "/"));  // the same directory
  ASSERT_OK(hv_->refresh_pool(pool));
  EXPECT_TRUE(listed(pool).empty());

  const std::string elsewhere = dir + "-elsewhere";
  dirs_.push_back(elsewhere);
  const Status moved = hv_->ensure_pool(pool, elsewhere);
  EXPECT_EQ(moved.code(), StatusCode::kFailedPrecondition) << moved;
  EXPECT_NE(moved.message().find(dir), std::string::npos) << moved;
  // Another pool over the same directory.
  const std::string twin = prefix() + "pool-twin";
  pools_.push_back(twin);
  EXPECT_CODE(hv_->ensure_pool(twin, dir), StatusCode::kFailedPrecondition);
  EXPECT_CODE(hv_->refresh_pool(twin), StatusCode::kNotFound);
  if (!g_tier.simulated) {
    EXPECT_TRUE(fs::is_directory(dir));
    EXPECT_FALSE(fs::exists(elsewhere));
    const auto pools = virsh_pools();
    EXPECT_TRUE(contains(pools, pool));
    EXPECT_FALSE(contains(pools, twin));
    const Shell info = run("virsh -c '" + g_tier.uri + "' pool-info '" + pool + "'");
    EXPECT_NE(info.out.find("running"), std::string::npos) << info.out;
  }

  // Removing the pool keeps its directory; a second remove finds nothing.
  ASSERT_OK(hv_->remove_pool(pool));
  EXPECT_CODE(hv_->list_volumes(pool).status(), StatusCode::kNotFound);
  EXPECT_CODE(hv_->remove_pool(pool), StatusCode::kNotFound);
  if (!g_tier.simulated) {
    EXPECT_TRUE(fs::is_directory(dir));
    EXPECT_FALSE(contains(virsh_pools(), pool));
  }
  ASSERT_OK(hv_->ensure_pool(pool, dir));  // and it comes back over the same directory
  EXPECT_TRUE(listed(pool).empty());
}

TEST_F(Storage, EnsurePoolOverAnExistingDirectoryKeepsItsMode) {
  if (g_tier.simulated) {
    GTEST_SKIP() << "the test driver makes no directories";
  }
  const std::string name = prefix() + "pool-existing";
  const fs::path dir = pool_dir(name);
  dirs_.push_back(dir);
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  pools_.push_back(name);
  ASSERT_OK(hv_->ensure_pool(name, dir.string()));
  EXPECT_EQ(fs::status(dir).permissions(), fs::perms(0755));
}

TEST_F(Storage, OverlaysAreCopyOnWriteOverTheirBase) {
  const std::string pool = make_pool("cow");
  const VolumeInfo big = put_base(pool, "base-1g.raw", "raw", kGiB, 0x5a);
  const VolumeInfo small = put_base(pool, "base-64m.qcow2", "qcow2", 64 * kMiB, 0x3c);
  ASSERT_EQ(big.capacity_bytes, kGiB);
  ASSERT_EQ(small.capacity_bytes, 64 * kMiB);
  EXPECT_EQ(big.format, "raw");
  EXPECT_EQ(small.format, "qcow2");
  EXPECT_EQ(big.backing_path, "");

  const VolumeInfo over_big = create(pool, {.name = "vm-big.qcow2", .backing_path = big.path, .backing_format = "raw"});
  const VolumeInfo over_small =
      create(pool, {.name = "vm-small.qcow2", .backing_path = small.path, .backing_format = "qcow2"});
  for (const auto& [overlay, base] : {std::pair{over_big, big}, std::pair{over_small, small}}) {
    EXPECT_EQ(overlay.path, (pool_dir(pool) / overlay.name).string());
    EXPECT_EQ(overlay.format, "qcow2");
    EXPECT_EQ(overlay.backing_path, base.path);
    EXPECT_EQ(overlay.backing_format, base.format);
    EXPECT_EQ(overlay.capacity_bytes, base.capacity_bytes);  // 0 = the base's size
    // Only metadata: the base's data is not copied, whatever its size.
    EXPECT_LT(overlay.allocation_bytes, kMiB) << overlay.name;
    expect_overlay_file(overlay, base, base.format);
  }
  EXPECT_LE(over_big.allocation_bytes, over_small.allocation_bytes + 64 * kKiB);
  std::cout << "overlay allocation on " << g_tier.uri << ": over a 1 GiB raw base " << over_big.allocation_bytes
            << " B, over a 64 MiB qcow2 base " << over_small.allocation_bytes << " B\n";

  // An overlay may be larger than its base (the guest sees a grown disk).
  const VolumeInfo grown = create(
      pool, {.name = "vm-grown.qcow2", .capacity_bytes = 2 * kGiB, .backing_path = big.path, .backing_format = "raw"});
  EXPECT_EQ(grown.capacity_bytes, 2 * kGiB);
  expect_overlay_file(grown, big, "raw");

  EXPECT_EQ(listed(pool), (std::vector<std::string>{"base-1g.raw", "base-64m.qcow2", "vm-big.qcow2", "vm-grown.qcow2",
                                                    "vm-small.qcow2"}));
  auto again = hv_->get_volume(pool, "vm-big.qcow2");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, over_big);
}

TEST_F(Storage, BlankVolumesAreSparse) {
  const std::string pool = make_pool("blank");
  const VolumeInfo raw = create(pool, {.name = "data.raw", .capacity_bytes = kGiB, .format = "raw"});
  const VolumeInfo qcow = create(pool, {.name = "data.qcow2", .capacity_bytes = kGiB});
  for (const VolumeInfo& v : {raw, qcow}) {
    EXPECT_EQ(v.capacity_bytes, kGiB) << v.name;
    EXPECT_LT(v.allocation_bytes, kMiB) << v.name;
    EXPECT_EQ(v.backing_path, "") << v.name;
  }
  EXPECT_EQ(raw.format, "raw");
  EXPECT_EQ(qcow.format, "qcow2");
  if (!g_tier.simulated) {
    EXPECT_EQ(json_field(image_info(raw.path), "format"), "raw");
    const std::string info = image_info(qcow.path);
    EXPECT_EQ(json_field(info, "format"), "qcow2");
    EXPECT_EQ(json_field(info, "backing-filename"), std::nullopt) << info;
    EXPECT_EQ(json_field(info, "compat"), "1.1") << info;
  }
}

TEST_F(Storage, AVmBootsFromItsOverlayAndTheBaseStaysIntact) {
  const std::string pool = make_pool("boot");
  const VolumeInfo base = put_base(pool, "base.qcow2", "qcow2", 64 * kMiB, 0x77);
  const std::string before = g_tier.simulated ? "" : sha256(base.path);
  const VolumeInfo overlay = create(pool, {.name = "vm.qcow2", .backing_path = base.path, .backing_format = "qcow2"});
  const VolumeInfo data = create(pool, {.name = "vm-data0.qcow2", .capacity_bytes = 32 * kMiB});
  VmSpec spec = runnable("cow", false);
  spec.disks.push_back({.source_path = overlay.path});
  spec.disks.push_back({.source_path = data.path});
  const VmInfo vm = define(spec);
  ASSERT_EQ(vm.disks.size(), 2U);
  EXPECT_EQ(vm.disks[0].source, overlay.path);
  ASSERT_OK(hv_->start_vm(VmRef::by_name(vm.name)));
  EXPECT_EQ(state(vm.name), VmState::kRunning);
  ASSERT_OK(hv_->destroy_vm(VmRef::by_name(vm.name)));
  ASSERT_OK(hv_->undefine_vm(VmRef::by_name(vm.name)));
  ASSERT_OK(hv_->delete_volume(pool, overlay.name));
  ASSERT_OK(hv_->delete_volume(pool, data.name));
  EXPECT_EQ(listed(pool), (std::vector<std::string>{"base.qcow2"}));
  EXPECT_CODE(hv_->get_volume(pool, overlay.name).status(), StatusCode::kNotFound);
  if (!g_tier.simulated) {
    EXPECT_FALSE(fs::exists(overlay.path));
    EXPECT_FALSE(fs::exists(data.path));
    EXPECT_EQ(sha256(base.path), before);
    const Shell check = run("qemu-io -r -f qcow2 -c 'read -P 0x77 0 1M' '" + base.path + "'");
    EXPECT_EQ(check.rc, 0) << check.out;
    EXPECT_EQ(check.out.find("failed"), std::string::npos) << check.out;
  }
}

TEST_F(Storage, CloneIsAStandaloneCopyOfWhatTheGuestSees) {
  const std::string pool = make_pool("clone");
  const VolumeInfo base = put_base(pool, "base.raw", "raw", 64 * kMiB, 0x11);
  const VolumeInfo overlay = create(pool, {.name = "vm.qcow2", .backing_path = base.path, .backing_format = "raw"});
  if (!g_tier.simulated) {
    write_pattern(overlay.path, "qcow2", 0x22, "1M", "1M");  // a guest write: only in the overlay
  }
  auto clone = hv_->clone_volume(pool, "capture.qcow2", overlay.path);
  ASSERT_TRUE(clone.ok()) << clone.status();
  EXPECT_EQ(clone->name, "capture.qcow2");
  EXPECT_EQ(clone->path, (pool_dir(pool) / "capture.qcow2").string());
  EXPECT_EQ(clone->format, "qcow2");
  EXPECT_EQ(clone->backing_path, "");
  EXPECT_EQ(clone->capacity_bytes, overlay.capacity_bytes);
  if (!g_tier.simulated) {
    const std::string info = image_info(clone->path);
    EXPECT_EQ(json_field(info, "format"), "qcow2") << info;
    EXPECT_EQ(json_field(info, "backing-filename"), std::nullopt) << info;
    const Shell same = run("qemu-img compare '" + clone->path + "' '" + overlay.path + "'");
    EXPECT_EQ(same.rc, 0) << same.out;
    const Shell differs = run("qemu-img compare '" + clone->path + "' '" + base.path + "'");
    EXPECT_EQ(differs.rc, 1) << differs.out;  // the guest's write is in the copy
    std::cout << "clone of an overlay (64 MiB raw base, 2 MiB written): allocation " << clone->allocation_bytes
              << " B\n";
  }
  // The copy needs neither the overlay nor the base.
  ASSERT_OK(hv_->delete_volume(pool, overlay.name));
  ASSERT_OK(hv_->delete_volume(pool, base.name));
  EXPECT_EQ(listed(pool), (std::vector<std::string>{"capture.qcow2"}));
  if (!g_tier.simulated) {
    const Shell readback =
        run("qemu-io -r -f qcow2 -c 'read -P 0x11 0 1M' -c 'read -P 0x22 1M 1M' -c 'read -P 0 2M 1M' '" + clone->path +
            "'");
    EXPECT_EQ(readback.rc, 0) << readback.out;
    EXPECT_EQ(readback.out.find("failed"), std::string::npos) << readback.out;
  }
  EXPECT_CODE(hv_->clone_volume(pool, "capture.qcow2", clone->path).status(), StatusCode::kAlreadyExists);
  EXPECT_CODE(hv_->clone_volume(pool, "other.qcow2", (pool_dir(pool) / "nothing.qcow2").string()).status(),
              StatusCode::kNotFound);
  EXPECT_EQ(listed(pool), (std::vector<std::string>{"capture.qcow2"}));
}

TEST_F(Storage, ATakenNameIsAlreadyExistsAndTheFirstVolumeStays) {
  const std::string pool = make_pool("taken");
  const VolumeInfo base = put_base(pool, "base.qcow2", "qcow2", 64 * kMiB, 0x44);
  const VolumeInfo first = create(pool, {.name = "disk.qcow2", .capacity_bytes = 16 * kMiB});
  std::string before;
  if (!g_tier.simulated) {
    write_pattern(first.path, "qcow2", 0x66, "0", "64k");
    before = sha256(first.path);
  }
  EXPECT_CODE(hv_->create_volume(pool, {.name = "disk.qcow2", .capacity_bytes = 32 * kMiB}).status(),
              StatusCode::kAlreadyExists);
  EXPECT_CODE(hv_->create_volume(pool, {.name = "disk.qcow2", .capacity_bytes = 16 * kMiB, .format = "raw"}).status(),
              StatusCode::kAlreadyExists);
  EXPECT_CODE(
      hv_->create_volume(pool, {.name = "disk.qcow2", .backing_path = base.path, .backing_format = "qcow2"}).status(),
      StatusCode::kAlreadyExists);
  EXPECT_CODE(hv_->clone_volume(pool, "disk.qcow2", base.path).status(), StatusCode::kAlreadyExists);
  EXPECT_CODE(hv_->create_volume(pool, {.name = "base.qcow2", .capacity_bytes = kMiB}).status(),
              StatusCode::kAlreadyExists);
  auto still = hv_->get_volume(pool, "disk.qcow2");
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->capacity_bytes, 16 * kMiB);
  EXPECT_EQ(still->backing_path, "");
  EXPECT_EQ(listed(pool), (std::vector<std::string>{"base.qcow2", "disk.qcow2"}));
  if (!g_tier.simulated) {
    EXPECT_EQ(sha256(first.path), before);
    EXPECT_EQ(sha256(base.path), sha256(base.path));
    // A file put in the directory, not yet scanned, takes its name too.
    const std::string stray = (pool_dir(pool) / "stray.qcow2").string();
    std::ofstream(stray) << "not an image\n";
    EXPECT_CODE(hv_->create_volume(pool, {.name = "stray.qcow2", .capacity_bytes = kMiB}).status(),
                StatusCode::kAlreadyExists);
    std::ifstream in(stray);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "not an image");
  }
}

TEST_F(Storage, BadRequestsAreInvalidArgumentAndMakeNothing) {
  const std::string pool = make_pool("bad");
  const VolumeInfo base = put_base(pool, "base.raw", "raw", 64 * kMiB, 0x01);
  const auto before = listed(pool);
  const std::string dir = pool_dir(pool).string();
  const auto files = [&dir] {
    std::vector<std::string> out;
    if (fs::is_directory(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        out.push_back(e.path().filename().string());
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  const auto files_before = files();
  const auto pools_before = g_tier.simulated ? std::vector<std::string>{} : virsh_pools();

  for (const std::string& name : {std::string(), std::string("has space"), std::string("../up"), std::string("-dash"),
                                  std::string("a/b"), std::string(256, 'p')}) {
    EXPECT_CODE(hv_->ensure_pool(name, dir + "-x"), StatusCode::kInvalidArgument);
    EXPECT_CODE(hv_->list_volumes(name).status(), StatusCode::kInvalidArgument);
  }
  const std::string fresh = prefix() + "bad-fresh";
  pools_.push_back(fresh);
  for (const std::string& path : {std::string(), std::string("relative/dir"), dir + "/../escape", dir + "/./x",
                                  std::string("/"), dir + "\nx", std::string("//")}) {
    SCOPED_TRACE(path);
    EXPECT_CODE(hv_->ensure_pool(fresh, path), StatusCode::kInvalidArgument);
  }
  EXPECT_CODE(hv_->refresh_pool(fresh), StatusCode::kNotFound);

  const std::vector<VolumeSpec> bad_specs = {
      {.name = "", .capacity_bytes = kMiB},
      {.name = "a/b.qcow2", .capacity_bytes = kMiB},
      {.name = ".hidden", .capacity_bytes = kMiB},
      {.name = "../escape.qcow2", .capacity_bytes = kMiB},
      {.name = "x y.qcow2", .capacity_bytes = kMiB},
      {.name = std::string(250, 'v') + ".qcow2", .capacity_bytes = kMiB},  // 256 characters
      {.name = "v.vmdk", .capacity_bytes = kMiB, .format = "vmdk"},
      {.name = "zero.qcow2", .capacity_bytes = 0},
      {.name = "rel.qcow2", .backing_path = "base.raw", .backing_format = "raw"},
      {.name = "dots.qcow2", .backing_path = dir + "/../x/base.raw", .backing_format = "raw"},
      {.name = "bf.qcow2", .backing_path = base.path, .backing_format = "vmdk"},
      {.name = "nobf.qcow2", .backing_path = base.path},
      {.name = "bfonly.qcow2", .capacity_bytes = kMiB, .backing_format = "raw"},
      {.name = "rawov.raw", .format = "raw", .backing_path = base.path, .backing_format = "raw"},
  };
  for (const VolumeSpec& spec : bad_specs) {
    SCOPED_TRACE(spec.name);
    EXPECT_CODE(hv_->create_volume(pool, spec).status(), StatusCode::kInvalidArgument);
  }
  EXPECT_CODE(hv_->create_volume("bad pool", {.name = "ok.qcow2", .capacity_bytes = kMiB}).status(),
              StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->clone_volume(pool, "a/b", base.path).status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->clone_volume(pool, "c.qcow2", "base.raw").status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->clone_volume(pool, "c.qcow2", dir + "/../" + pool + "/base.raw").status(),
              StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->get_volume(pool, "../base.raw").status(), StatusCode::kInvalidArgument);
  EXPECT_CODE(hv_->delete_volume(pool, "../base.raw"), StatusCode::kInvalidArgument);

  EXPECT_EQ(listed(pool), before);
  if (!g_tier.simulated) {
    EXPECT_EQ(files(), files_before);
    EXPECT_EQ(virsh_pools(), pools_before);
    EXPECT_FALSE(fs::exists(dir + "-x"));
  }

  // The longest name is taken.
  const std::string longest = std::string(249, 'v') + ".qcow2";
  ASSERT_EQ(longest.size(), 255U);
  const VolumeInfo v = create(pool, {.name = longest, .capacity_bytes = kMiB});
  EXPECT_EQ(v.name, longest);
  ASSERT_OK(hv_->delete_volume(pool, longest));
}

TEST_F(Storage, UnknownPoolsAndVolumesAreNotFound) {
  const std::string ghost = prefix() + "ghost-pool";
  EXPECT_CODE(hv_->refresh_pool(ghost), StatusCode::kNotFound);
  EXPECT_CODE(hv_->remove_pool(ghost), StatusCode::kNotFound);
  EXPECT_CODE(hv_->list_volumes(ghost).status(), StatusCode::kNotFound);
  EXPECT_CODE(hv_->get_volume(ghost, "v.qcow2").status(), StatusCode::kNotFound);
  EXPECT_CODE(hv_->delete_volume(ghost, "v.qcow2"), StatusCode::kNotFound);
  EXPECT_CODE(hv_->create_volume(ghost, {.name = "v.qcow2", .capacity_bytes = kMiB}).status(), StatusCode::kNotFound);
  EXPECT_CODE(hv_->clone_volume(ghost, "v.qcow2", "/nowhere/v.qcow2").status(), StatusCode::kNotFound);

  const std::string pool = make_pool("nf");
  const auto missing = hv_->get_volume(pool, "nope.qcow2");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status();
  EXPECT_NE(missing.status().message().find("nope.qcow2"), std::string::npos) << missing.status();
  EXPECT_CODE(hv_->delete_volume(pool, "nope.qcow2"), StatusCode::kNotFound);
  // An overlay over a file no pool knows.
  const std::string unknown = (pool_dir(pool) / "unscanned.raw").string();
  EXPECT_CODE(hv_->create_volume(pool, {.name = "ov.qcow2", .backing_path = unknown, .backing_format = "raw"}).status(),
              StatusCode::kNotFound);
  EXPECT_TRUE(listed(pool).empty());
  if (!g_tier.simulated) {
    EXPECT_FALSE(fs::exists(pool_dir(pool) / "ov.qcow2"));
  }
}

TEST_F(Storage, ABaseWithAnOverlayIsNotDeleted) {
  const std::string pool = make_pool("dep");
  const VolumeInfo base = put_base(pool, "base.qcow2", "qcow2", 64 * kMiB, 0x55);
  const VolumeInfo overlay = create(pool, {.name = "vm.qcow2", .backing_path = base.path, .backing_format = "qcow2"});
  const Status refused = hv_->delete_volume(pool, base.name);
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find("vm.qcow2"), std::string::npos) << refused;
  EXPECT_EQ(listed(pool), (std::vector<std::string>{"base.qcow2", "vm.qcow2"}));
  if (!g_tier.simulated) {
    EXPECT_TRUE(fs::exists(base.path));
  }
  ASSERT_OK(hv_->delete_volume(pool, overlay.name));
  ASSERT_OK(hv_->delete_volume(pool, base.name));
  EXPECT_TRUE(listed(pool).empty());
}

TEST_F(Storage, AFailedCreateLeavesNothing) {
  if (g_tier.simulated) {
    GTEST_SKIP() << "the test driver never opens a backing file, so this create cannot fail there";
  }
  const std::string pool = make_pool("fail");
  const VolumeInfo base = put_base(pool, "base.raw", "raw", 64 * kMiB, 0x09);
  fs::remove(base.path);  // behind libvirt's back: it still lists the base
  const auto made = hv_->create_volume(
      pool, {.name = "vm.qcow2", .capacity_bytes = 64 * kMiB, .backing_path = base.path, .backing_format = "raw"});
  EXPECT_FALSE(made.ok());
  std::cout << "overlay over a vanished base: " << made.status() << "\n";
  EXPECT_FALSE(fs::exists(pool_dir(pool) / "vm.qcow2"));
  ASSERT_OK(hv_->refresh_pool(pool));
  EXPECT_TRUE(listed(pool).empty());
}

}  // namespace
}  // namespace cloudmgr

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string tier = "test";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("--tier=")) {
      tier = arg.substr(7);
    }
  }
  using cloudmgr::g_tier;
  g_tier.name = tier;
  if (tier == "test") {
    g_tier.uri = std::string("test://") + CLOUDMGR_TEST_DATA_DIR + "/hosts/node-small.xml";
    g_tier.image_dir = "/var/lib/cloudmgr-test-images";
  } else if (tier == "qemu") {
    g_tier.uri = "qemu:///system";
    g_tier.simulated = false;
    g_tier.guest_honours_shutdown = false;
    // A directory the QEMU process (user libvirt-qemu) can traverse.
    g_tier.image_dir = "/var/lib/libvirt/images/cloudmgr-test-" + std::to_string(getpid());
    std::filesystem::create_directories(g_tier.image_dir);
    std::filesystem::permissions(g_tier.image_dir, std::filesystem::perms(0755));
  } else {
    std::fprintf(stderr, "unknown --tier=%s (use test or qemu)\n", tier.c_str());
    return 2;
  }
  std::printf("conformance tier %s: %s\n", tier.c_str(), g_tier.uri.c_str());
  const int rc = RUN_ALL_TESTS();
  if (!g_tier.simulated) {
    // Belt and braces: a pool of this process that a test failed to remove (the tests check
    // that none is left) is stopped and undefined here, before its directory goes.
    for (const std::string& pool : cloudmgr::virsh_pools()) {
      if (pool.starts_with(cloudmgr::prefix())) {
        std::fprintf(stderr, "removing leftover storage pool %s\n", pool.c_str());
        (void)cloudmgr::run("virsh -c qemu:///system pool-destroy '" + pool + "'");
        (void)cloudmgr::run("virsh -c qemu:///system pool-undefine '" + pool + "'");
      }
    }
    std::filesystem::remove_all(g_tier.image_dir);
  }
  return rc;
}
