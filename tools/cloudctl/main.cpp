// cloudctl: the command line of libcloudmgr. A thin frontend over cloudmgr::Manager:
// every behaviour lives in the library.
//
// Exit codes: 0 every host succeeded; 1 a host failed or the request was refused;
// 2 usage error; 3 a host did not reply (takes precedence over 1).
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "cloudctl/daemon.h"
#include "cloudctl/monitor.h"
#include "cloudctl/pki.h"
#include "cloudctl/session.h"
#include "cloudctl/templates.h"
#include "cloudmgr/cloudmgr.h"
#include "common/json.h"
#include "common/table.h"

namespace {

using namespace cloudmgr;  // NOLINT(google-build-using-namespace): a tool's main file
using namespace cloudctl;  // NOLINT(google-build-using-namespace)
using std::chrono::milliseconds;
using tools::Table;

// Runs a command and prints its per-host results; returns the exit code.
int run(Session& s, const Options& o, const Target& target, const std::string& verb, const Arguments& args,
        const std::function<void(const HostResult&)>& on_ok = {}) {
  const bool tty = isatty(STDERR_FILENO) != 0 && !o.json;
  ExecuteOptions eo;
  eo.timeout = milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000));
  if (tty) {
    eo.on_progress = [](const HostResult& h, std::size_t done, std::size_t expected) {
      std::fprintf(stderr, "\r\033[K[%zu/%zu] %s %s", done, expected, h.host_id.c_str(),
                   std::string(to_string(h.outcome)).c_str());
    };
  }
  auto r = s.m().execute(target, verb, args, eo);
  if (tty) {
    std::fprintf(stderr, "\r\033[K");
  }
  if (!r.ok()) {
    return fail(r.status());
  }
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& h : r->hosts) {
      j.push_back({{"host", h.host_id},
                   {"outcome", to_string(h.outcome)},
                   {"code", status_code_name(h.status.code())},
                   {"message", h.status.message()},
                   {"latency_ns", h.latency_ns}});
    }
    print_json({{"command_id", r->command_id}, {"verb", verb}, {"target", target.partition()}, {"hosts", j}});
  } else if (!on_ok || r->hosts.size() != 1 || r->hosts[0].outcome != HostResult::Outcome::kOk) {
    Table t({"HOST", "RESULT", "TIME", "MESSAGE"});
    for (const auto& h : r->hosts) {
      t.add({h.host_id,
             h.outcome == HostResult::Outcome::kError ? std::string(status_code_name(h.status.code()))
                                                      : std::string(to_string(h.outcome)),
             h.latency_ns > 0 ? fmt::format("{:.1f}ms", static_cast<double>(h.latency_ns) / 1e6) : "",
             h.status.message()});
    }
    t.print();
  }
  if (on_ok) {
    for (const auto& h : r->hosts) {
      if (h.outcome == HostResult::Outcome::kOk) {
        on_ok(h);
      }
    }
  }
  if (r->count(HostResult::Outcome::kNoReply) > 0) {
    return kExitNoReply;
  }
  return r->count(HostResult::Outcome::kError) > 0 ? kExitFailed : kExitOk;
}

int cmd_host_show(const Options& o, const std::string& id) {
  Session s(o);
  if (Status st = s.open(id); !st.ok()) {
    return fail(st);
  }
  auto h = s.m().host(id);
  if (!h) {
    return fail(not_found_error(fmt::format("host '{}' is not online", id)));
  }
  const auto& i = h->view.info;
  if (o.json) {
    auto j = tools::to_json(i);
    j["groups"] = h->view.groups;
    j["agent_version"] = h->view.agent_version;
    print_json(j);
    return kExitOk;
  }
  std::printf("Host:         %s (%s)\n", i.id.c_str(), i.hostname.c_str());
  std::printf("Hypervisor:   %s %s at %s\n", i.hypervisor.c_str(), i.hypervisor_version.c_str(), i.uri.c_str());
  std::printf("CPU:          %u x %s @ %u MHz\n", i.cpu.logical_cpus, i.cpu.model.c_str(), i.cpu.mhz);
  std::printf("Memory:       %s total, %s free\n", format_bytes(i.memory_bytes).c_str(),
              format_bytes(i.free_memory_bytes).c_str());
  std::printf("Allocated:    %u vCPUs, %s to %u active VM(s); %u VM(s) defined\n", i.vcpus_allocated,
              format_bytes(i.memory_allocated_bytes).c_str(), i.vms_active, i.vms_defined);
  std::printf("Groups:       %s\n", join(h->view.groups, ", ").c_str());
  std::printf("Agent:        %s, up %s, last seen %s\n", h->view.agent_version.c_str(),
              ago(h->view.agent_started_ns).c_str(), ago(h->last_seen_ns).c_str());
  return kExitOk;
}

int cmd_host_ps(const Options& o, const std::string& id, const std::string& sort, std::size_t limit) {
  Session s(o);
  if (Status st = s.open(id); !st.ok()) {
    return fail(st);
  }
  return run(s, o, Target::host(id), "host.ps", {}, [&](const HostResult& h) {
    auto list = h.reply.processes;
    if (sort == "cpu") {
      std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.cpu_time_ns > b.cpu_time_ns; });
    } else if (sort == "mem") {
      std::sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.rss_bytes > b.rss_bytes; });
    }
    if (limit > 0 && list.size() > limit) {
      list.resize(limit);
    }
    if (o.json) {
      return;
    }
    Table t({"PID", "PPID", "USER", "S", "THR", "RSS", "CPU", "COMMAND"});
    for (const auto& p : list) {
      t.add({std::to_string(p.pid), std::to_string(p.ppid), p.user, std::string(1, p.state), std::to_string(p.threads),
             format_bytes(p.rss_bytes), cpu_seconds(p.cpu_time_ns),
             p.cmdline.empty() ? "[" + p.name + "]" : p.cmdline.substr(0, 80)});
    }
    t.print();
  });
}

int cmd_vm_list(const Options& o, const std::string& host, const std::string& group) {
  Session s(o);
  if (Status st = s.open(host.empty() ? std::nullopt : std::optional(host),
                         group.empty() ? std::nullopt : std::optional(group));
      !st.ok()) {
    return fail(st);
  }
  const auto vms =
      s.m().vms(host.empty() ? std::nullopt : std::optional(host), group.empty() ? std::nullopt : std::optional(group));
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& v : vms) {
      auto e = tools::to_json(v.vm);
      e["host"] = v.host_id;
      j.push_back(e);
    }
    print_json(j);
    return kExitOk;
  }
  Table t({"HOST", "NAME", "STATE", "REASON", "VCPUS", "MEMORY", "AUTOSTART", "UUID"});
  for (const auto& v : vms) {
    t.add({v.host_id, v.vm.name, std::string(to_string(v.vm.state)), v.vm.state_reason, std::to_string(v.vm.vcpus),
           format_bytes(v.vm.memory_bytes), v.vm.autostart ? "yes" : "no", v.vm.uuid});
  }
  t.print();
  return kExitOk;
}

int cmd_vm_show(const Options& o, const std::string& name, std::string host) {
  Session s(o);
  if (Status st = s.open(host.empty() ? std::nullopt : std::optional(host)); !st.ok()) {
    return fail(st);
  }
  if (host.empty()) {
    auto h = host_of_vm(s.m(), name);
    if (!h.ok()) {
      return fail(h.status());
    }
    host = *h;
  }
  return run(s, o, Target::host(host), "vm.show", {{"vm", name}}, [&](const HostResult& r) {
    if (r.reply.vms.empty()) {
      return;
    }
    const VmInfo& v = r.reply.vms.front();
    if (o.json) {
      auto j = tools::to_json(v);
      j["host"] = host;
      print_json(j);
      return;
    }
    std::printf("Name:        %s\nHost:        %s\nUUID:        %s\nState:       %s (%s)\n", v.name.c_str(),
                host.c_str(), v.uuid.c_str(), std::string(to_string(v.state)).c_str(), v.state_reason.c_str());
    std::printf("vCPUs:       %u (max %u)\nMemory:      %s (max %s)\nCPU time:    %s\n", v.vcpus, v.max_vcpus,
                format_bytes(v.memory_bytes).c_str(), format_bytes(v.max_memory_bytes).c_str(),
                cpu_seconds(v.cpu_time_ns).c_str());
    std::printf("Persistent:  %s\nAutostart:   %s\n", v.persistent ? "yes" : "no", v.autostart ? "yes" : "no");
    if (!v.description.empty()) {
      std::printf("Description: %s\n", v.description.c_str());
    }
    for (const auto& d : v.disks) {
      std::printf("Disk:        %s %s (%s, %s) %s\n", d.target.c_str(), d.device.c_str(), d.bus.c_str(),
                  d.format.c_str(), d.source.c_str());
    }
    for (const auto& n : v.nics) {
      std::printf("NIC:         %s %s %s (%s)\n", n.mac.c_str(), n.type.c_str(), n.source.c_str(), n.model.c_str());
    }
  });
}

struct Where {
  std::string host;
  std::string group;
  bool all = false;
};

void add_where(CLI::App* cmd, Where& w) {
  auto* h = cmd->add_option("--host", w.host, "the host");
  auto* g = cmd->add_option("--group", w.group, "every host of a group");
  auto* a = cmd->add_flag("--all", w.all, "every host");
  h->excludes(g)->excludes(a);
  g->excludes(a);
}

// Resolves where a VM verb goes: the given host/group/all, or the one host that has the VM.
int vm_verb(const Options& o, const Where& w, const std::string& verb, const Arguments& args) {
  Session s(o);
  if (Status st = s.open(w.host.empty() ? std::nullopt : std::optional(w.host),
                         w.group.empty() ? std::nullopt : std::optional(w.group));
      !st.ok()) {
    return fail(st);
  }
  Target target = Target::all();
  if (!w.host.empty()) {
    target = Target::host(w.host);
  } else if (!w.group.empty()) {
    target = Target::group(w.group);
  } else if (!w.all) {
    const std::string* vm = nullptr;
    for (const auto& [k, v] : args) {
      if (k == "vm") {
        vm = &v;
      }
    }
    if (vm == nullptr) {
      return fail(invalid_argument_error("say where: --host, --group or --all"));
    }
    auto h = host_of_vm(s.m(), *vm);
    if (!h.ok()) {
      return fail(h.status());
    }
    target = Target::host(*h);
  }
  return run(s, o, target, verb, args);
}

constexpr const char kBashCompletion[] = R"BASH(# bash completion for cloudctl: eval "$(cloudctl completion bash)"
_cloudctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[1]}
  case $COMP_CWORD in
    1) COMPREPLY=($(compgen -W "hosts host vm group snapshot top monitor template images pki audit daemon completion --json --domain --timeout --store --pki --star --daemon --no-daemon --help" -- "$cur")) ;;
    2) case $prev in
         host) COMPREPLY=($(compgen -W "show ps reboot" -- "$cur")) ;;
         vm) COMPREPLY=($(compgen -W "list show define create delete start shutdown destroy reboot reset suspend resume undefine autostart" -- "$cur")) ;;
         template) COMPREPLY=($(compgen -W "import import-export capture list show versions delete export verify" -- "$cur")) ;;
         group) COMPREPLY=($(compgen -W "list add remove" -- "$cur")) ;;
         snapshot) COMPREPLY=($(compgen -W "create list revert delete" -- "$cur")) ;;
         monitor) COMPREPLY=($(compgen -W "hosts history chart" -- "$cur")) ;;
       esac ;;
    *) COMPREPLY=($(compgen -W "--host --group --all --vm --since --until --step --metric --sort --png --svg --json --timeout --template --policy --count --start --force --vcpus --memory --nic --data-disk" -- "$cur")) ;;
  esac
}
complete -F _cloudctl cloudctl
)BASH";

// One command line, parsed and run; main runs it, and so does a daemon for each call it serves.
int cli_main(int argc, char** argv) {
  call_storage().clear();  // the previous command line's options (its parser is gone)
  CLI::App app{"cloudctl: see and drive a libcloudmgr cloud"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow a subcommand
  Options o;
  if (const char* v = env("CLOUDMGR_DOMAIN")) {
    o.domain = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
  }
  app.add_option("--domain", o.domain, "DDS domain id (or $CLOUDMGR_DOMAIN)")->check(CLI::Range(0, 232));
  if (const char* v = env("CLOUDMGR_PKI")) {
    o.pki = v;
  }
  if (const char* v = env("CLOUDMGR_IDENTITY"); v != nullptr && *v != '\0') {
    o.identity = v;
  }
  // A comma-separated list variable ($CLOUDMGR_STAR, $CLOUDMGR_TCP_PEERS), empty items skipped.
  const auto env_list = [](const char* name, std::vector<std::string>& out) {
    const char* v = env(name);
    const std::string list = v != nullptr ? v : "";
    for (std::size_t start = 0; start < list.size();) {
      const std::size_t comma = std::min(list.find(',', start), list.size());
      if (comma > start) {
        out.push_back(list.substr(start, comma - start));
      }
      start = comma + 1;
    }
  };
  env_list("CLOUDMGR_STAR", o.star);
  app.add_option("--pki", o.pki, "the cloud's PKI directory: run secured (or $CLOUDMGR_PKI; none: unsecured)");
  app.add_option("--identity", o.identity, "the manager identity in the PKI (or $CLOUDMGR_IDENTITY; default admin)");
  app.add_option("--star", o.star,
                 "star discovery, as the agents were started with (--star): this machine's manager address "
                 "(repeatable, or $CLOUDMGR_STAR, comma-separated)")
      ->delimiter(',');
  app.add_option("--daemon", o.daemon,
                 "the socket of the local daemon (`cloudctl daemon`) that runs calls when it serves this cloud "
                 "(or $CLOUDMGR_DAEMON; default $XDG_RUNTIME_DIR/cloudmgr or /tmp/cloudmgr-UID, "
                 "cloudctl-DOMAIN.sock)");
  app.add_flag("--no-daemon", o.no_daemon, "run with a manager of this call's own even if a daemon serves the cloud");
  if (const char* v = env("CLOUDMGR_TRANSPORT"); v != nullptr && *v != '\0') {
    o.transport = v;
  }
  app.add_option("--transport", o.transport, "dds (default) or tcp, as the agents run (or $CLOUDMGR_TRANSPORT)")
      ->check(CLI::IsMember({"dds", "tcp", "inproc"}));
  env_list("CLOUDMGR_TCP_PEERS", o.tcp_peers);
  if (const char* v = env("CLOUDMGR_TCP_DIRECTORY"); v != nullptr && *v != '\0') {
    o.tcp_directory = v;
  }
  app.add_option("--tcp-peer", o.tcp_peers,
                 "tcp: an agent's ADDRESS:PORT (repeatable, or $CLOUDMGR_TCP_PEERS, comma-separated)")
      ->delimiter(',');
  app.add_option("--tcp-directory", o.tcp_directory,
                 "tcp: the directory where agents record their addresses (or $CLOUDMGR_TCP_DIRECTORY)");
  app.add_flag("--tcp-per-request", o.tcp_per_request,
               "tcp: a connection per request, one host after another, and the hosts' state polled");
  app.add_flag("--json", o.json, "JSON instead of tables");
  app.add_option("--timeout", o.timeout_s, "seconds a command may take (default 10)")->check(CLI::Range(0.1, 86400.0));
  app.add_option("--discovery", o.discovery_s, "seconds to wait for hosts to appear (default 3)")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--inventory", o.inventory,
                 "file remembering the cloud's hosts, so that dead ones show as offline (default "
                 "$CLOUDMGR_INVENTORY or ~/.local/state/cloudmgr/inventory-DOMAIN.json; 'none': off)");
  app.add_flag_callback(
      "--version",
      [] {
        std::printf("cloudctl %s\n", std::string(cloudmgr::version()).c_str());
        throw CLI::Success();
      },
      "print the version and exit");

  int rc = 0;
  app.add_subcommand("hosts", "every known host: state, last seen, capacity, allocation and usage now")->callback([&] {
    rc = cmd_hosts(o);
  });
  add_monitor_commands(app, o, rc);

  auto* host = app.add_subcommand("host", "one host");
  host->require_subcommand(1);
  std::string host_id;
  auto* hshow = host->add_subcommand("show", "identity, capacity, allocation, groups");
  hshow->add_option("host", host_id, "host id")->required();
  hshow->callback([&] { rc = cmd_host_show(o, host_id); });
  auto* forget = host->add_subcommand("forget", "drop an offline host from the inventory (a host taken out for good)");
  forget->add_option("host", host_id, "host id")->required();
  forget->callback([&] {
    Session s(o);
    if (Status st = s.open(); !st.ok()) {
      rc = fail(st);
      return;
    }
    const Status forgotten = s.m().forget_host(host_id);
    rc = forgotten.ok() ? kExitOk : fail(forgotten);
  });
  std::string ps_sort = "cpu";
  std::size_t ps_limit = 0;
  auto* ps = host->add_subcommand("ps", "the host's processes");
  ps->add_option("host", host_id, "host id")->required();
  ps->add_option("--sort", ps_sort, "cpu, mem or pid")->check(CLI::IsMember({"cpu", "mem", "pid"}));
  ps->add_option("--limit", ps_limit, "at most N processes");
  ps->callback([&] { rc = cmd_host_ps(o, host_id, ps_sort, ps_limit); });
  bool yes = false;
  auto* reboot = host->add_subcommand("reboot", "reboot a host (its agent must allow it)");
  reboot->add_option("host", host_id, "host id")->required();
  reboot->add_flag("--yes", yes, "confirm: every VM on the host stops");
  reboot->callback([&] {
    if (!yes) {
      std::fprintf(stderr, "cloudctl: rebooting %s stops every VM on it; add --yes to confirm\n", host_id.c_str());
      rc = kExitUsage;
      return;
    }
    Session s(o);
    Status st = s.open(host_id);
    rc = st.ok() ? run(s, o, Target::host(host_id), "host.reboot", {}) : fail(st);
  });

  Where ping_where;
  auto* ping = app.add_subcommand("ping", "round trip to hosts through their command path (default: every host)");
  add_where(ping, ping_where);
  ping->callback([&] {
    Session s(o);
    Status st = s.open(ping_where.host.empty() ? std::nullopt : std::optional(ping_where.host),
                       ping_where.group.empty() ? std::nullopt : std::optional(ping_where.group));
    if (!st.ok()) {
      rc = fail(st);
      return;
    }
    const Target target = !ping_where.host.empty()    ? Target::host(ping_where.host)
                          : !ping_where.group.empty() ? Target::group(ping_where.group)
                                                      : Target::all();
    rc = run(s, o, target, "host.ping", {});
  });

  auto* vm = app.add_subcommand("vm", "virtual machines");
  vm->require_subcommand(1);
  add_template_commands(app, *vm, o, rc);
  add_pki_commands(app, o, rc);
  add_daemon_command(app, o, rc, cli_main);
  std::string name;
  Where where;
  auto* list = vm->add_subcommand("list", "VMs of the cloud, a host or a group");
  list->add_option("--host", where.host, "only this host's");
  list->add_option("--group", where.group, "only this group's");
  list->callback([&] { rc = cmd_vm_list(o, where.host, where.group); });
  auto* show = vm->add_subcommand("show", "one VM");
  show->add_option("name", name, "VM name or uuid")->required();
  show->add_option("--host", where.host, "the VM's host (default: the one that has it)");
  show->callback([&] { rc = cmd_vm_show(o, name, where.host); });

  std::string memory = "512M";
  std::uint32_t vcpus = 1;
  std::vector<std::string> disks;
  std::vector<std::string> networks;
  std::string description;
  auto* define = vm->add_subcommand("define", "define a VM on a host");
  define->add_option("name", name, "VM name")->required();
  define->add_option("--host", where.host, "the host")->required();
  define->add_option("--vcpus", vcpus, "virtual CPUs");
  define->add_option("--memory", memory, "memory, e.g. 512M or 2G");
  define->add_option("--disk", disks, "image path on the host (repeatable)");
  define->add_option("--network", networks, "network to attach (repeatable)");
  define->add_option("--description", description, "free text");
  define->callback([&] {
    auto bytes = parse_bytes(memory);
    if (!bytes.ok()) {
      rc = fail(bytes.status().with_context("--memory"));
      return;
    }
    Arguments args{{"name", name}, {"memory_bytes", std::to_string(*bytes)}, {"vcpus", std::to_string(vcpus)}};
    for (const auto& d : disks) args.emplace_back("disk", d);
    for (const auto& n : networks) args.emplace_back("network", n);
    if (!description.empty()) args.emplace_back("description", description);
    rc = vm_verb(o, where, "vm.define", args);
  });

  struct Verb {
    const char* name;
    const char* verb;
    const char* help;
  };
  static constexpr Verb kVerbs[] = {
      {"start", "vm.start", "start a VM"},           {"destroy", "vm.destroy", "power a VM off at once"},
      {"reboot", "vm.reboot", "ask a VM to reboot"}, {"reset", "vm.reset", "hard-reset a VM"},
      {"suspend", "vm.suspend", "pause a VM"},       {"resume", "vm.resume", "unpause a VM"},
  };
  for (const Verb& v : kVerbs) {
    auto* cmd = vm->add_subcommand(v.name, v.help);
    cmd->add_option("name", name, "VM name or uuid")->required();
    add_where(cmd, where);
    cmd->callback([&, verb = v.verb] { rc = vm_verb(o, where, verb, {{"vm", name}}); });
  }
  double shutdown_timeout = 60;
  bool force = false;
  auto* shutdown = vm->add_subcommand("shutdown", "ask a VM to power off and wait");
  shutdown->add_option("name", name, "VM name or uuid")->required();
  add_where(shutdown, where);
  shutdown->add_option("--wait", shutdown_timeout, "seconds to wait for the guest (default 60)");
  shutdown->add_flag("--force", force, "power off when the wait is over");
  shutdown->callback([&] {
    if (o.timeout_s < shutdown_timeout + 1) {
      o.timeout_s = shutdown_timeout + 5;  // the command must outlive the guest's wait
    }
    rc = vm_verb(o, where, "vm.shutdown",
                 {{"vm", name},
                  {"timeout_ms", std::to_string(static_cast<std::uint64_t>(shutdown_timeout * 1000))},
                  {"force", force ? "true" : "false"}});
  });
  auto* undefine = vm->add_subcommand("undefine", "remove a VM's definition (disk images are kept)");
  undefine->add_option("name", name, "VM name or uuid")->required();
  add_where(undefine, where);
  undefine->add_flag("--force", force, "destroy the VM first if it is active");
  undefine->callback([&] {
    rc = vm_verb(o, where, "vm.undefine", {{"vm", name}, {"force", force ? "true" : "false"}});
  });
  std::string onoff;
  auto* autostart = vm->add_subcommand("autostart", "start a VM with its host, or not");
  autostart->add_option("name", name, "VM name or uuid")->required();
  autostart->add_option("on|off", onoff, "on or off")->required()->check(CLI::IsMember({"on", "off"}));
  add_where(autostart, where);
  autostart->callback([&] {
    rc = vm_verb(o, where, "vm.autostart", {{"vm", name}, {"enabled", onoff == "on" ? "true" : "false"}});
  });

  auto* group = app.add_subcommand("group", "groups of hosts");
  group->require_subcommand(1);
  std::string gname;
  std::vector<std::string> members;
  group->add_subcommand("list", "groups and their members")->callback([&] {
    Session s(o);
    if (Status st = s.open(); !st.ok()) {
      rc = fail(st);
      return;
    }
    const auto groups = s.m().groups();
    if (o.json) {
      print_json(groups);
      return;
    }
    Table t({"GROUP", "HOSTS", "MEMBERS"});
    for (const auto& [g, hosts] : groups) {
      t.add({g, std::to_string(hosts.size()), join(hosts, ", ")});
    }
    t.print();
  });
  for (const char* which : {"add", "remove"}) {
    auto* cmd =
        group->add_subcommand(which, std::string(which) == "add" ? "add hosts to a group"
                                                                 : "remove hosts from a group (all when none given)");
    cmd->add_option("group", gname, "group name")->required();
    auto* m = cmd->add_option("hosts", members, "host ids");
    if (std::string(which) == "add") {
      m->required();
    }
    cmd->callback([&, which] {
      if (Status st = validate_group_name(gname); !st.ok()) {
        rc = fail(st);
        return;
      }
      const bool add = std::string(which) == "add";
      Session s(o);
      if (Status st = s.open(std::nullopt, add ? std::nullopt : std::optional(gname)); !st.ok()) {
        rc = fail(st);
        return;
      }
      const std::string verb = add ? "group.join" : "group.leave";
      if (!add && members.empty()) {
        rc = run(s, o, Target::group(gname), verb, {{"group", gname}});
        return;
      }
      rc = kExitOk;
      for (const auto& h : members) {
        if (!s.m().host(h)) {
          rc = std::max(rc, fail(not_found_error(fmt::format("host '{}' is not online", h))));
          continue;
        }
        rc = std::max(rc, run(s, o, Target::host(h), verb, {{"group", gname}}));
      }
    });
  }

  auto* snap = app.add_subcommand("snapshot", "VM snapshots");
  snap->require_subcommand(1);
  std::string snap_name;
  auto* screate = snap->add_subcommand("create", "snapshot a VM");
  screate->add_option("vm", name, "VM name or uuid")->required();
  screate->add_option("snapshot", snap_name, "snapshot name (default: chosen by the hypervisor)");
  screate->add_option("--description", description, "free text");
  screate->add_option("--host", where.host, "the VM's host");
  screate->callback([&] {
    Arguments args{{"vm", name}};
    if (!snap_name.empty()) args.emplace_back("name", snap_name);
    if (!description.empty()) args.emplace_back("description", description);
    rc = vm_verb(o, where, "snapshot.create", args);
  });
  auto* slist = snap->add_subcommand("list", "a VM's snapshots");
  slist->add_option("vm", name, "VM name or uuid")->required();
  slist->add_option("--host", where.host, "the VM's host");
  slist->callback([&] {
    Session s(o);
    if (Status st = s.open(where.host.empty() ? std::nullopt : std::optional(where.host)); !st.ok()) {
      rc = fail(st);
      return;
    }
    std::string h = where.host;
    if (h.empty()) {
      auto found = host_of_vm(s.m(), name);
      if (!found.ok()) {
        rc = fail(found.status());
        return;
      }
      h = *found;
    }
    rc = run(s, o, Target::host(h), "snapshot.list", {{"vm", name}}, [&](const HostResult& r) {
      if (o.json) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& sn : r.reply.snapshots) j.push_back(tools::to_json(sn));
        print_json(j);
        return;
      }
      Table t({"NAME", "PARENT", "VM STATE", "CURRENT", "DESCRIPTION"});
      for (const auto& sn : r.reply.snapshots) {
        t.add({sn.name, sn.parent, std::string(to_string(sn.vm_state)), sn.current ? "yes" : "", sn.description});
      }
      t.print();
    });
  });
  for (const char* which : {"revert", "delete"}) {
    auto* cmd = snap->add_subcommand(which, std::string(which) + " a snapshot");
    cmd->add_option("vm", name, "VM name or uuid")->required();
    cmd->add_option("snapshot", snap_name, "snapshot name")->required();
    cmd->add_option("--host", where.host, "the VM's host");
    cmd->callback([&, which] {
      rc = vm_verb(o, where, std::string("snapshot.") + which, {{"vm", name}, {"name", snap_name}});
    });
  }

  auto* completion = app.add_subcommand("completion", "print a shell completion script");
  std::string shell = "bash";
  completion->add_option("shell", shell, "bash")->check(CLI::IsMember({"bash"}));
  completion->callback([&] { std::fputs(kBashCompletion, stdout); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  set_command_line(argc, argv);
  try {
    return cli_main(argc, argv);
  } catch (const Forwarded& f) {  // a daemon ran the call
    return f.exit_code;
  }
}
