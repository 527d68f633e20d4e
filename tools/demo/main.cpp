// cloudmgr-demo: a small simulated cloud driven through libcloudmgr's typed API.
//
// Opens every host description in --hosts-dir on libvirt's test driver (each its own
// simulated hypervisor), places and creates VMs, drives their lifecycle, shows what the
// library reports and what it refuses, and cleans up. Every figure printed comes from
// the hypervisor through the library; nothing is made up here. The simulated hypervisor
// has no load: CPU time and free memory are what the test driver reports.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloudmgr.h"
#include "common/table.h"

namespace {

using namespace cloudmgr;  // NOLINT(google-build-using-namespace): a tool's main file
using tools::Table;

struct Host {
  std::unique_ptr<Hypervisor> hv;
  std::unique_ptr<spi::Subscription> events;
};

std::mutex g_events_mutex;
std::vector<std::string> g_events;  // GUARDED_BY(g_events_mutex)

void section(const std::string& title) { std::printf("\n== %s\n", title.c_str()); }

bool check(const Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "demo: %s failed: %s\n", what.c_str(), s.to_string().c_str());
  }
  return s.ok();
}

void print_hosts(std::vector<Host>& hosts) {
  Table t({"HOST", "HYPERVISOR", "CPUS", "MHZ", "MEMORY", "VCPUS USED", "MEMORY USED", "VMS (ACTIVE)"});
  for (auto& h : hosts) {
    auto info = h.hv->host_info();
    if (!info.ok()) {
      check(info.status(), "host_info");
      continue;
    }
    t.add({info->id, fmt::format("{} {}", info->hypervisor, info->hypervisor_version),
           std::to_string(info->cpu.logical_cpus), std::to_string(info->cpu.mhz), format_bytes(info->memory_bytes),
           fmt::format("{}/{}", info->vcpus_allocated, info->cpu.logical_cpus),
           format_bytes(info->memory_allocated_bytes), fmt::format("{} ({})", info->vms_defined, info->vms_active)});
  }
  t.print();
}

void print_vms(std::vector<Host>& hosts) {
  Table t({"HOST", "VM", "STATE", "REASON", "VCPUS", "MEMORY", "DISKS", "NICS", "UUID"});
  for (auto& h : hosts) {
    auto vms = h.hv->list_vms();
    if (!vms.ok()) {
      check(vms.status(), "list_vms");
      continue;
    }
    for (const auto& v : *vms) {
      t.add({h.hv->host_id(), v.name, std::string(to_string(v.state)), v.state_reason, std::to_string(v.vcpus),
             format_bytes(v.memory_bytes), std::to_string(v.disks.size()), std::to_string(v.nics.size()), v.uuid});
    }
  }
  t.print();
}

// The host with the most unallocated memory that still fits the VM (a simple rule for the
// demo; the placement engine with policies comes with the template store).
Hypervisor* pick_host(std::vector<Host>& hosts, const VmSpec& spec, std::string& why) {
  Hypervisor* best = nullptr;
  std::uint64_t best_free = 0;
  for (auto& h : hosts) {
    auto info = h.hv->host_info();
    if (!info.ok()) {
      continue;
    }
    const std::uint64_t free_mem =
        info->memory_bytes > info->memory_allocated_bytes ? info->memory_bytes - info->memory_allocated_bytes : 0;
    if (free_mem >= spec.memory_bytes && info->vcpus_free() >= spec.vcpus && free_mem > best_free) {
      best = h.hv.get();
      best_free = free_mem;
      why = fmt::format("{} unallocated, {} vCPUs free", format_bytes(free_mem), info->vcpus_free());
    }
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cloudmgr-demo: a simulated cloud driven through libcloudmgr"};
  std::string hosts_dir = CLOUDMGR_DEMO_HOSTS_DIR;
  bool keep = false;
  app.add_option("--hosts-dir", hosts_dir, "directory of libvirt test-driver host XML files")
      ->check(CLI::ExistingDirectory);
  app.add_flag("--keep", keep, "do not remove the demo's VMs at the end (they vanish with the process anyway)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::printf("libcloudmgr %s demo: simulated hosts from %s\n", std::string(version()).c_str(), hosts_dir.c_str());
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(hosts_dir)) {
    if (entry.path().extension() == ".xml") {
      files.push_back(std::filesystem::absolute(entry.path()));
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "demo: no *.xml host files in %s\n", hosts_dir.c_str());
    return 1;
  }

  std::vector<Host> hosts;
  for (const auto& file : files) {
    auto hv = Hypervisor::open({.uri = "test://" + file.string(), .host_id = file.stem().string()});
    if (!hv.ok()) {
      return check(hv.status(), "open " + file.string()) ? 0 : 1;
    }
    Host h{std::move(*hv), nullptr};
    const std::string id = h.hv->host_id();
    auto sub = h.hv->subscribe_lifecycle([id](const VmEvent& e) {
      const std::lock_guard lock(g_events_mutex);
      g_events.push_back(fmt::format("{}: {} {} ({})", id, e.vm_name, to_string(e.kind), e.detail));
    });
    if (!check(sub.status(), "subscribe " + id)) {
      return 1;
    }
    h.events = std::move(*sub);
    hosts.push_back(std::move(h));
  }

  section(fmt::format("{} hosts", hosts.size()));
  print_hosts(hosts);

  section("placing and defining VMs");
  struct Wanted {
    const char* name;
    std::uint64_t memory;
    std::uint32_t vcpus;
    bool nic;
  };
  const Wanted wanted[] = {{"shop1", 4 * kGiB, 2, true},   {"shop2", 4 * kGiB, 2, true},
                           {"shop3", 4 * kGiB, 2, true},   {"pg1", 24 * kGiB, 8, true},
                           {"cache1", 8 * kGiB, 4, false}, {"etl1", 16 * kGiB, 16, false}};
  std::map<std::string, Hypervisor*> where;
  for (const auto& w : wanted) {
    VmSpec spec{.name = w.name, .vcpus = w.vcpus, .memory_bytes = w.memory};
    spec.description = fmt::format("demo VM {}", w.name);
    spec.disks.push_back({.source_path = fmt::format("/var/lib/libvirt/images/{}.qcow2", w.name)});
    if (w.nic) {
      spec.nics.push_back({});
    }
    std::string why;
    Hypervisor* hv = pick_host(hosts, spec, why);
    if (hv == nullptr) {
      std::printf("  %-7s %2u vCPUs %8s: no host has room\n", w.name, w.vcpus, format_bytes(w.memory).c_str());
      continue;
    }
    auto vm = hv->define_vm(spec);
    if (!check(vm.status(), std::string("define ") + w.name)) {
      return 1;
    }
    if (!check(hv->start_vm(VmRef::by_name(w.name)), std::string("start ") + w.name)) {
      return 1;
    }
    where[w.name] = hv;
    std::printf("  %-7s %2u vCPUs %8s -> %-7s (%s), started\n", w.name, w.vcpus, format_bytes(w.memory).c_str(),
                hv->host_id().c_str(), why.c_str());
  }
  print_hosts(hosts);

  section("driving VMs");
  auto step = [](const std::string& what, const Status& s) {
    std::printf("  %-40s %s\n", what.c_str(), s.to_string().c_str());
  };
  if (where.contains("shop2")) {
    step("suspend shop2", where["shop2"]->suspend_vm(VmRef::by_name("shop2")));
  }
  if (where.contains("pg1")) {
    auto snap = where["pg1"]->create_snapshot(VmRef::by_name("pg1"), {.name = "before-upgrade", .description = "demo"});
    step("snapshot pg1 as before-upgrade", snap.status());
    step("destroy pg1", where["pg1"]->destroy_vm(VmRef::by_name("pg1")));
    step("revert pg1 to before-upgrade", where["pg1"]->revert_to_snapshot(VmRef::by_name("pg1"), "before-upgrade"));
  }
  if (where.contains("shop3")) {
    auto out = where["shop3"]->shutdown_vm(VmRef::by_name("shop3"), {.timeout_ms = 5000});
    step("shutdown shop3 (graceful, 5 s timeout)", out.status());
    step("autostart shop3 on", where["shop3"]->set_autostart(VmRef::by_name("shop3"), true));
  }
  print_vms(hosts);

  section("bad requests are refused with a reason, and change nothing");
  Hypervisor& first = where.contains("shop1") ? *where["shop1"] : *hosts.front().hv;
  step("define 'shop1' again on its host", first.define_vm({.name = "shop1", .memory_bytes = 64 * kMiB}).status());
  step("define 'bad name!'", first.define_vm({.name = "bad name!", .memory_bytes = 64 * kMiB}).status());
  step("define with 1 MiB of memory", first.define_vm({.name = "tiny", .memory_bytes = kMiB}).status());
  step("start unknown VM 'ghost'", first.start_vm(VmRef::by_name("ghost")));
  if (where.contains("shop1")) {
    step("start shop1 (already running)", where["shop1"]->start_vm(VmRef::by_name("shop1")));
    step("resume shop1 (not paused)", where["shop1"]->resume_vm(VmRef::by_name("shop1")));
  }
  step("reboot this machine (not enabled)", first.reboot_host());

  section("lifecycle events received");
  {
    const std::lock_guard lock(g_events_mutex);
    for (const auto& e : g_events) {
      std::printf("  %s\n", e.c_str());
    }
  }

  section("top processes of this machine (from /proc)");
  auto procs = first.processes();
  if (check(procs.status(), "process list")) {
    std::sort(procs->begin(), procs->end(), [](const auto& a, const auto& b) { return a.rss_bytes > b.rss_bytes; });
    Table t({"PID", "USER", "RSS", "CPU", "COMMAND"});
    for (std::size_t i = 0; i < procs->size() && i < 5; ++i) {
      const auto& p = (*procs)[i];
      t.add({std::to_string(p.pid), p.user, format_bytes(p.rss_bytes),
             fmt::format("{:.1f}s", static_cast<double>(p.cpu_time_ns) / 1e9), p.name});
    }
    t.print();
  }

  if (!keep) {
    section("cleaning up");
    for (const auto& [name, hv] : where) {
      step("undefine " + name, hv->undefine_vm(VmRef::by_name(name), {.force = true}));
    }
    print_hosts(hosts);
  }
  for (auto& h : hosts) {
    h.events.reset();
  }
  return 0;
}
