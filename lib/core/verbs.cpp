#include "cloudmgr/verbs.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "cloudmgr/templates.h"
#include "core/arguments.h"

namespace cloudmgr {

const std::vector<VerbSpec>& verbs() {
  static const std::vector<VerbSpec> table = {
      {"host.ping", "answer at once: the agent is up and its command path works (round trip)", {}, {}, {}},
      {"host.info", "republish and return the host's state", {}, {}, {}},
      {"host.ps", "the host's process list", {}, {}, {}},
      {"host.reboot", "reboot the host (only if its agent allows it)", {}, {}, {}},
      {"host.audit",
       "the host's audit log: every command it received, who sent it, and the outcome",
       {},
       {"since_ns", "max_entries"},
       {}},
      {"group.join", "add the host to a group", {"group"}, {}, {}},
      {"group.leave", "remove the host from a group", {"group"}, {}, {}},
      {"vm.show", "one VM's details", {"vm"}, {}, {}},
      {"vm.define",
       "define a VM",
       {"name", "memory_bytes"},
       {"vcpus", "uuid", "disk", "network", "description", "autostart"},
       {"disk", "network"}},
      {"vm.start", "start a VM", {"vm"}, {}, {}},
      {"vm.shutdown", "ask a VM to power off and wait", {"vm"}, {"timeout_ms", "force"}, {}},
      {"vm.destroy", "power a VM off at once", {"vm"}, {}, {}},
      {"vm.reboot", "ask a VM to reboot", {"vm"}, {}, {}},
      {"vm.reset", "hard-reset a VM", {"vm"}, {}, {}},
      {"vm.suspend", "pause a VM", {"vm"}, {}, {}},
      {"vm.resume", "unpause a VM", {"vm"}, {}, {}},
      {"vm.undefine", "remove a VM's definition", {"vm"}, {"force"}, {}},
      {"vm.autostart", "start a VM with its host, or not", {"vm", "enabled"}, {}, {}},
      {"snapshot.create", "snapshot a VM", {"vm"}, {"name", "description"}, {}},
      {"snapshot.list", "a VM's snapshots", {"vm"}, {}, {}},
      {"snapshot.revert", "revert a VM to a snapshot", {"vm", "name"}, {}, {}},
      {"snapshot.delete", "delete a snapshot", {"vm", "name"}, {}, {}},
      {"monitor.history",
       "the host's or a VM's monitoring history over a window",
       {"since_ns"},
       {"vm", "until_ns", "step_ns", "max_points"},
       {}},
      {"image.receive",
       "prepare to receive a base image (ALREADY_EXISTS: it is cached)",
       {"transfer", "sha256", "format", "size_bytes", "virtual_size_bytes", "data_bytes"},
       {},
       {}},
      {"image.commit", "verify a received base image and cache it", {"transfer"}, {}, {}},
      {"image.abort", "drop a transfer under way", {"transfer"}, {}, {}},
      {"image.remove", "remove a cached base image that no VM uses", {"sha256"}, {}, {}},
      {"vm.instantiate",
       "define VMs from a template: copy-on-write clones of its cached base image",
       {"template", "version", "sha256", "spec", "name"},
       {"start"},
       {"name"}},
      {"vm.delete", "remove a VM with the disks provisioned for it", {"vm"}, {"force"}, {}},
      {"vm.capture", "send a stopped VM's first disk, flattened, to the managers", {"vm", "transfer"}, {}, {}},
  };
  return table;
}

const VerbSpec* find_verb(std::string_view name) {
  for (const auto& v : verbs()) {
    if (v.name == name) {
      return &v;
    }
  }
  return nullptr;
}

namespace {

bool contains(const std::vector<std::string_view>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// Type checks for the arguments whose names say what they hold.
Status check_value(std::string_view verb, const std::string& name, const std::string& value) {
  const Arguments one{{name, value}};
  const ArgumentReader r(verb, one);
  if (name == "vm") {
    return validate_vm_name(value).ok() || validate_uuid(value).ok()
               ? Status()
               : invalid_argument_error(fmt::format("{}: argument 'vm' ('{}') is neither a VM name nor a uuid", verb,
                                                    value.substr(0, 80)));
  }
  if (name == "group") {
    return validate_group_name(value).with_context(std::string(verb));
  }
  if (name == "timeout_ms" || name == "memory_bytes" || name == "vcpus" || name == "since_ns" || name == "until_ns" ||
      name == "step_ns" || name == "max_points" || name == "size_bytes" || name == "virtual_size_bytes" ||
      name == "data_bytes" || name == "version") {
    return r.u64(name).status();
  }
  if (name == "force" || name == "enabled" || name == "autostart" || name == "start") {
    return r.boolean(name).status();
  }
  if (name == "sha256") {
    return validate_sha256(value).with_context(std::string(verb));
  }
  if (name == "transfer") {
    return validate_uuid(value).with_context(fmt::format("{}: transfer", verb));
  }
  if (name == "format") {
    return parse_image_format(value).status().with_context(std::string(verb));
  }
  if (name == "template") {
    return validate_template_name(value).with_context(std::string(verb));
  }
  if (name == "uuid") {
    return validate_uuid(value).with_context(std::string(verb));
  }
  if (name == "name" && verb.starts_with("snapshot.")) {
    return validate_snapshot_name(value).with_context(std::string(verb));
  }
  if (name == "name") {
    return validate_vm_name(value).with_context(std::string(verb));
  }
  return {};
}

}  // namespace

Status validate_command(std::string_view verb, const Arguments& arguments) {
  const VerbSpec* spec = find_verb(verb);
  if (spec == nullptr) {
    return invalid_argument_error(fmt::format("unknown verb '{}'", verb.substr(0, 80)));
  }
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const auto& [name, value] = arguments[i];
    if (!contains(spec->required, name) && !contains(spec->optional, name)) {
      return invalid_argument_error(fmt::format("{}: unknown argument '{}'", verb, name.substr(0, 80)));
    }
    if (!contains(spec->repeatable, name)) {
      for (std::size_t j = 0; j < i; ++j) {
        if (arguments[j].first == name) {
          return invalid_argument_error(fmt::format("{}: argument '{}' is given twice", verb, name));
        }
      }
    }
    if (Status s = check_value(verb, name, value); !s.ok()) {
      return s;
    }
  }
  for (const auto& required : spec->required) {
    if (std::none_of(arguments.begin(), arguments.end(), [&](const auto& a) { return a.first == required; })) {
      return invalid_argument_error(fmt::format("{} needs the argument '{}'", verb, required));
    }
  }
  return {};
}

}  // namespace cloudmgr
