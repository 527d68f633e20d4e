// cloudctl: the command line of libcloudmgr.
//
// This version drives one hypervisor directly (--connect URI), through the same typed
// library API the agent uses. Cloud-wide commands (hosts, groups) come with the Manager.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "cloudmgr/cloudmgr.h"
#include "common/json.h"
#include "common/table.h"

namespace {

using namespace cloudmgr;  // NOLINT(google-build-using-namespace): a tool's main file
using tools::Table;

struct Options {
  std::string uri;
  bool json = false;
};

int fail(const Status& status) {
  std::fprintf(stderr, "cloudctl: %s\n", status.to_string().c_str());
  return 1;
}

Result<std::unique_ptr<Hypervisor>> connect(const Options& o) {
  std::string uri = o.uri;
  if (uri.empty()) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): read before any thread starts
    if (const char* env = std::getenv("CLOUDMGR_CONNECT")) {
      uri = env;
    }
  }
  if (uri.empty()) {
    return invalid_argument_error(
        "no hypervisor given: pass --connect URI (e.g. qemu:///system or test:///default) or set CLOUDMGR_CONNECT");
  }
  return Hypervisor::open({.uri = uri});
}

void print_json(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

std::string cpu_seconds(std::uint64_t ns) { return fmt::format("{:.1f}s", static_cast<double>(ns) / 1e9); }

int host_show(const Options& o) {
  auto hv = connect(o);
  if (!hv.ok()) {
    return fail(hv.status());
  }
  auto h = (*hv)->host_info();
  if (!h.ok()) {
    return fail(h.status());
  }
  if (o.json) {
    print_json(tools::to_json(*h));
    return 0;
  }
  std::printf("Host:         %s (%s)\n", h->id.c_str(), h->hostname.c_str());
  std::printf("Hypervisor:   %s %s at %s\n", h->hypervisor.c_str(), h->hypervisor_version.c_str(), h->uri.c_str());
  std::printf("CPU:          %u x %s @ %u MHz (%u node(s), %u socket(s)/node, %u core(s)/socket, %u thread(s)/core)\n",
              h->cpu.logical_cpus, h->cpu.model.c_str(), h->cpu.mhz, h->cpu.numa_nodes, h->cpu.sockets_per_node,
              h->cpu.cores_per_socket, h->cpu.threads_per_core);
  std::printf("Memory:       %s total, %s free\n", format_bytes(h->memory_bytes).c_str(),
              format_bytes(h->free_memory_bytes).c_str());
  std::printf("Allocated:    %u vCPUs, %s to %u active VM(s); %u VM(s) defined\n", h->vcpus_allocated,
              format_bytes(h->memory_allocated_bytes).c_str(), h->vms_active, h->vms_defined);
  return 0;
}

int host_ps(const Options& o, const std::string& sort, std::size_t limit) {
  auto procs = list_processes();
  if (!procs.ok()) {
    return fail(procs.status());
  }
  auto& list = *procs;
  if (sort == "cpu") {
    std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.cpu_time_ns > b.cpu_time_ns; });
  } else if (sort == "mem") {
    std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.rss_bytes > b.rss_bytes; });
  }
  if (limit > 0 && list.size() > limit) {
    list.resize(limit);
  }
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& p : list) {
      j.push_back(tools::to_json(p));
    }
    print_json(j);
    return 0;
  }
  Table t({"PID", "PPID", "USER", "S", "THR", "RSS", "CPU", "COMMAND"});
  for (const auto& p : list) {
    t.add({std::to_string(p.pid), std::to_string(p.ppid), p.user, std::string(1, p.state), std::to_string(p.threads),
           format_bytes(p.rss_bytes), cpu_seconds(p.cpu_time_ns),
           p.cmdline.empty() ? "[" + p.name + "]" : p.cmdline.substr(0, 80)});
  }
  t.print();
  return 0;
}

int vm_list(const Options& o, const std::string& state) {
  VmFilter filter;
  if (!state.empty()) {
    if (state == "active") {
      filter = VmFilter::active();
    } else if (auto s = parse_vm_state(state)) {
      filter.states = {*s};
    } else {
      return fail(invalid_argument_error(fmt::format(
          "unknown state '{}'; use active, running, paused, shut-off, shutting-down, crashed or pm-suspended", state)));
    }
  }
  auto hv = connect(o);
  if (!hv.ok()) {
    return fail(hv.status());
  }
  auto vms = (*hv)->list_vms(filter);
  if (!vms.ok()) {
    return fail(vms.status());
  }
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : *vms) {
      j.push_back(tools::to_json(v));
    }
    print_json(j);
    return 0;
  }
  Table t({"NAME", "STATE", "REASON", "VCPUS", "MEMORY", "AUTOSTART", "UUID"});
  for (const auto& v : *vms) {
    t.add({v.name, std::string(to_string(v.state)), v.state_reason, std::to_string(v.vcpus),
           format_bytes(v.memory_bytes), v.autostart ? "yes" : "no", v.uuid});
  }
  t.print();
  return 0;
}

int vm_show(const Options& o, const std::string& name) {
  auto hv = connect(o);
  if (!hv.ok()) {
    return fail(hv.status());
  }
  auto v = (*hv)->get_vm(VmRef::parse(name));
  if (!v.ok()) {
    return fail(v.status());
  }
  if (o.json) {
    print_json(tools::to_json(*v));
    return 0;
  }
  std::printf("Name:        %s\nUUID:        %s\nState:       %s (%s)\n", v->name.c_str(), v->uuid.c_str(),
              std::string(to_string(v->state)).c_str(), v->state_reason.c_str());
  std::printf("vCPUs:       %u (max %u)\nMemory:      %s (max %s)\nCPU time:    %s\n", v->vcpus, v->max_vcpus,
              format_bytes(v->memory_bytes).c_str(), format_bytes(v->max_memory_bytes).c_str(),
              cpu_seconds(v->cpu_time_ns).c_str());
  std::printf("Persistent:  %s\nAutostart:   %s\n", v->persistent ? "yes" : "no", v->autostart ? "yes" : "no");
  if (!v->description.empty()) {
    std::printf("Description: %s\n", v->description.c_str());
  }
  for (const auto& d : v->disks) {
    std::printf("Disk:        %s %s (%s, %s%s) %s\n", d.target.c_str(), d.device.c_str(), d.bus.c_str(),
                d.format.c_str(), d.read_only ? ", read-only" : "", d.source.c_str());
  }
  for (const auto& n : v->nics) {
    std::printf("NIC:         %s %s %s (%s)\n", n.mac.c_str(), n.type.c_str(), n.source.c_str(), n.model.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cloudctl: drive libcloudmgr hosts and VMs"};
  app.require_subcommand(1);
  Options o;
  app.add_option("-c,--connect", o.uri, "hypervisor URI (or $CLOUDMGR_CONNECT), e.g. qemu:///system");
  app.add_flag("--json", o.json, "print JSON instead of tables");
  app.add_flag_callback(
      "--version",
      [] {
        std::printf("cloudctl %s\n", std::string(cloudmgr::version()).c_str());
        std::exit(0);  // NOLINT(concurrency-mt-unsafe)
      },
      "print the version and exit");

  int rc = 0;
  auto* host = app.add_subcommand("host", "the host");
  host->require_subcommand(1);
  host->add_subcommand("show", "identity, capacity and allocation")->callback([&] { rc = host_show(o); });
  std::string ps_sort = "cpu";
  std::size_t ps_limit = 0;
  auto* ps = host->add_subcommand("ps", "processes of this machine (from /proc)");
  ps->add_option("--sort", ps_sort, "cpu, mem or pid")->check(CLI::IsMember({"cpu", "mem", "pid"}));
  ps->add_option("--limit", ps_limit, "show at most N processes");
  ps->callback([&] { rc = host_ps(o, ps_sort, ps_limit); });

  auto* vm = app.add_subcommand("vm", "virtual machines");
  vm->require_subcommand(1);
  std::string state;
  auto* list = vm->add_subcommand("list", "list VMs");
  list->add_option("--state", state, "only VMs in this state (or 'active')");
  list->callback([&] { rc = vm_list(o, state); });

  std::string name;
  auto* show = vm->add_subcommand("show", "show one VM");
  show->add_option("name", name, "VM name or uuid")->required();
  show->callback([&] { rc = vm_show(o, name); });

  std::string memory = "512M";
  VmSpec spec;
  std::vector<std::string> disks;
  std::vector<std::string> networks;
  auto* define = vm->add_subcommand("define", "define a VM (not started)");
  define->add_option("name", spec.name, "VM name")->required();
  define->add_option("--vcpus", spec.vcpus, "virtual CPUs");
  define->add_option("--memory", memory, "memory, e.g. 512M or 2G");
  define->add_option("--disk", disks, "qcow2 image path (repeatable)");
  define->add_option("--network", networks, "libvirt network to attach (repeatable)");
  define->add_option("--description", spec.description, "free text");
  define->add_flag("--autostart", spec.autostart, "start with the host");
  define->callback([&] {
    auto bytes = parse_bytes(memory);
    if (!bytes.ok()) {
      rc = fail(bytes.status().with_context("--memory"));
      return;
    }
    spec.memory_bytes = *bytes;
    for (const auto& d : disks) {
      spec.disks.push_back({.source_path = d});
    }
    for (const auto& n : networks) {
      spec.nics.push_back({.source = n});
    }
    auto hv = connect(o);
    if (!hv.ok()) {
      rc = fail(hv.status());
      return;
    }
    auto v = (*hv)->define_vm(spec);
    if (!v.ok()) {
      rc = fail(v.status());
      return;
    }
    std::printf("defined VM %s (%s)\n", v->name.c_str(), v->uuid.c_str());
  });

  struct Verb {
    const char* name;
    const char* help;
    Status (Hypervisor::*fn)(const VmRef&);
  };
  static constexpr Verb kVerbs[] = {
      {"start", "start a VM", &Hypervisor::start_vm},
      {"destroy", "power a VM off at once", &Hypervisor::destroy_vm},
      {"reboot", "ask a VM's guest to reboot", &Hypervisor::reboot_vm},
      {"reset", "hard-reset a VM", &Hypervisor::reset_vm},
      {"suspend", "pause a VM", &Hypervisor::suspend_vm},
      {"resume", "unpause a VM", &Hypervisor::resume_vm},
  };
  for (const Verb& verb : kVerbs) {
    auto* cmd = vm->add_subcommand(verb.name, verb.help);
    cmd->add_option("name", name, "VM name or uuid")->required();
    cmd->callback([&, fn = verb.fn, vname = verb.name] {
      auto hv = connect(o);
      if (!hv.ok()) {
        rc = fail(hv.status());
        return;
      }
      Status s = ((**hv).*fn)(VmRef::parse(name));
      rc = s.ok() ? 0 : fail(s);
      if (s.ok()) {
        std::printf("%s: done\n", vname);
      }
    });
  }

  ShutdownOptions shutdown_options;
  double shutdown_timeout_s = 60;
  auto* shutdown = vm->add_subcommand("shutdown", "ask a VM's guest to power off and wait");
  shutdown->add_option("name", name, "VM name or uuid")->required();
  shutdown->add_option("--timeout", shutdown_timeout_s, "seconds to wait (default 60)")
      ->check(CLI::Range(0.0, 86400.0));
  shutdown->add_flag("--force", shutdown_options.force_off_after_timeout, "power off when the timeout passes");
  shutdown->callback([&] {
    shutdown_options.timeout_ms = static_cast<std::uint64_t>(shutdown_timeout_s * 1000);
    auto hv = connect(o);
    if (!hv.ok()) {
      rc = fail(hv.status());
      return;
    }
    auto out = (*hv)->shutdown_vm(VmRef::parse(name), shutdown_options);
    if (!out.ok()) {
      rc = fail(out.status());
      return;
    }
    std::printf("shut off after %.1f s%s\n", static_cast<double>(out->waited_ms) / 1000,
                out->forced ? " (forced off after the timeout)" : "");
  });

  UndefineOptions undefine_options;
  auto* undefine = vm->add_subcommand("undefine", "remove a VM's definition (disk images are kept)");
  undefine->add_option("name", name, "VM name or uuid")->required();
  undefine->add_flag("--force", undefine_options.force, "destroy the VM first if it is active");
  undefine->callback([&] {
    auto hv = connect(o);
    Status s = hv.ok() ? (*hv)->undefine_vm(VmRef::parse(name), undefine_options) : hv.status();
    rc = s.ok() ? 0 : fail(s);
  });

  std::string onoff;
  auto* autostart = vm->add_subcommand("autostart", "start a VM with its host, or not");
  autostart->add_option("name", name, "VM name or uuid")->required();
  autostart->add_option("on|off", onoff, "on or off")->required()->check(CLI::IsMember({"on", "off"}));
  autostart->callback([&] {
    auto hv = connect(o);
    Status s = hv.ok() ? (*hv)->set_autostart(VmRef::parse(name), onoff == "on") : hv.status();
    rc = s.ok() ? 0 : fail(s);
  });

  auto* snap = app.add_subcommand("snapshot", "VM snapshots");
  snap->require_subcommand(1);
  std::string snap_name;
  std::string snap_desc;
  auto* screate = snap->add_subcommand("create", "snapshot a VM");
  screate->add_option("vm", name, "VM name or uuid")->required();
  screate->add_option("snapshot", snap_name, "snapshot name (default: chosen by the hypervisor)");
  screate->add_option("--description", snap_desc, "free text");
  screate->callback([&] {
    auto hv = connect(o);
    if (!hv.ok()) {
      rc = fail(hv.status());
      return;
    }
    auto s = (*hv)->create_snapshot(VmRef::parse(name), {.name = snap_name, .description = snap_desc});
    if (!s.ok()) {
      rc = fail(s.status());
      return;
    }
    std::printf("created snapshot %s of %s\n", s->name.c_str(), name.c_str());
  });
  auto* slist = snap->add_subcommand("list", "list a VM's snapshots");
  slist->add_option("vm", name, "VM name or uuid")->required();
  slist->callback([&] {
    auto hv = connect(o);
    if (!hv.ok()) {
      rc = fail(hv.status());
      return;
    }
    auto list_result = (*hv)->list_snapshots(VmRef::parse(name));
    if (!list_result.ok()) {
      rc = fail(list_result.status());
      return;
    }
    if (o.json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& s : *list_result) {
        j.push_back(tools::to_json(s));
      }
      print_json(j);
      return;
    }
    Table t({"NAME", "PARENT", "VM STATE", "CURRENT", "DESCRIPTION"});
    for (const auto& s : *list_result) {
      t.add({s.name, s.parent, std::string(to_string(s.vm_state)), s.current ? "yes" : "", s.description});
    }
    t.print();
  });
  for (const char* which : {"revert", "delete"}) {
    auto* cmd = snap->add_subcommand(which, std::string(which) + " a snapshot");
    cmd->add_option("vm", name, "VM name or uuid")->required();
    cmd->add_option("snapshot", snap_name, "snapshot name")->required();
    cmd->callback([&, which] {
      auto hv = connect(o);
      Status s = !hv.ok()                              ? hv.status()
                 : std::string_view(which) == "revert" ? (*hv)->revert_to_snapshot(VmRef::parse(name), snap_name)
                                                       : (*hv)->delete_snapshot(VmRef::parse(name), snap_name);
      rc = s.ok() ? 0 : fail(s);
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return rc;
}
