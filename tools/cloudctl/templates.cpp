#include "cloudctl/templates.h"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloudmgr.h"
#include "common/table.h"

namespace cloudctl {

namespace {

using cloudmgr::TemplateInfo;
using cloudmgr::TemplateRef;
using cloudmgr::TemplateSpec;
using cloudmgr::tools::Table;

std::string short_sha(const std::string& sha) { return sha.substr(0, 12); }

nlohmann::json spec_json(const TemplateSpec& s) {
  nlohmann::json nics = nlohmann::json::array();
  for (const auto& n : s.nics) {
    nics.push_back({{"type", cloudmgr::to_string(n.type)}, {"source", n.source}, {"model", n.model}});
  }
  nlohmann::json disks = nlohmann::json::array();
  for (const auto& d : s.data_disks) {
    disks.push_back({{"size_bytes", d.size_bytes}, {"bus", cloudmgr::to_string(d.bus)}});
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : s.metadata) {
    meta[k] = v;
  }
  return {{"vcpus", s.vcpus},
          {"memory_bytes", s.memory_bytes},
          {"arch", s.arch},
          {"machine", s.machine},
          {"boot_devices", s.boot_devices},
          {"base_disk_bus", cloudmgr::to_string(s.base_disk_bus)},
          {"data_disks", disks},
          {"nics", nics},
          {"description", s.description},
          {"metadata", meta}};
}

nlohmann::json info_json(const TemplateInfo& t) {
  return {{"name", t.name},
          {"version", t.version},
          {"spec", spec_json(t.spec)},
          {"image",
           {{"sha256", t.image.sha256},
            {"format", cloudmgr::to_string(t.image.format)},
            {"size_bytes", t.image.size_bytes},
            {"virtual_size_bytes", t.image.virtual_size_bytes}}},
          {"created_ns", t.created_ns},
          {"origin", t.origin}};
}

std::string when(std::int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min);
}

void print_list(const Options& o, const std::vector<TemplateInfo>& list) {
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : list) {
      j.push_back(info_json(t));
    }
    print_json(j);
    return;
  }
  Table t({"NAME", "VERSION", "VCPUS", "MEMORY", "IMAGE", "FORMAT", "SIZE", "DISK", "CREATED"});
  for (const auto& i : list) {
    t.add({i.name, std::to_string(i.version), std::to_string(i.spec.vcpus), cloudmgr::format_bytes(i.spec.memory_bytes),
           short_sha(i.image.sha256), std::string(cloudmgr::to_string(i.image.format)),
           cloudmgr::format_bytes(i.image.size_bytes), cloudmgr::format_bytes(i.image.virtual_size_bytes),
           when(i.created_ns)});
  }
  t.print();
}

Result<std::unique_ptr<cloudmgr::spi::TemplateStore>> open_store(const Options& o) {
  return cloudmgr::spi::open_template_store(template_store_dir(o));
}

// "network:default[:virtio]", "bridge:br0[:e1000]", "ethernet[:tapname[:model]]".
Result<cloudmgr::NicSpec> parse_nic(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (true) {
    const std::size_t colon = text.find(':', pos);
    parts.push_back(text.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos));
    if (colon == std::string::npos) {
      break;
    }
    pos = colon + 1;
  }
  cloudmgr::NicSpec nic;
  if (parts[0] == "network") {
    nic.type = cloudmgr::NicType::kNetwork;
  } else if (parts[0] == "bridge") {
    nic.type = cloudmgr::NicType::kBridge;
  } else if (parts[0] == "ethernet") {
    nic.type = cloudmgr::NicType::kEthernet;
    nic.source.clear();
  } else {
    return cloudmgr::invalid_argument_error(
        fmt::format("--nic '{}': the type is network, bridge or ethernet (network:NAME[:MODEL], bridge:NAME[:MODEL], "
                    "ethernet[:TAP[:MODEL]])",
                    text));
  }
  if (parts.size() > 3) {
    return cloudmgr::invalid_argument_error(fmt::format("--nic '{}' has more than three parts", text));
  }
  if (parts.size() > 1) {
    nic.source = parts[1];
  } else if (nic.type != cloudmgr::NicType::kEthernet) {
    return cloudmgr::invalid_argument_error(fmt::format("--nic '{}' names no {}", text, parts[0]));
  }
  if (parts.size() > 2) {
    nic.model = parts[2];
  }
  return nic;
}

Result<cloudmgr::DiskBus> parse_bus(const std::string& text) {
  for (auto b :
       {cloudmgr::DiskBus::kVirtio, cloudmgr::DiskBus::kSata, cloudmgr::DiskBus::kScsi, cloudmgr::DiskBus::kIde}) {
    if (cloudmgr::to_string(b) == text) {
      return b;
    }
  }
  return cloudmgr::invalid_argument_error(fmt::format("disk bus '{}' is not virtio, sata, scsi or ide", text));
}

struct ImportArgs {
  std::string name;
  std::string image;
  std::string format;
  std::uint32_t vcpus = 1;
  std::string memory = "512M";
  std::string arch;
  std::string machine;
  std::vector<std::string> boot{"hd"};
  std::string disk_bus = "virtio";
  std::vector<std::string> data_disks;
  std::vector<std::string> nics;
  std::string description;
  std::vector<std::string> meta;
};

int cmd_import(const Options& o, const ImportArgs& a) {
  TemplateSpec spec;
  spec.vcpus = a.vcpus;
  auto mem = cloudmgr::parse_bytes(a.memory);
  if (!mem.ok()) {
    return fail(mem.status().with_context("--memory"));
  }
  spec.memory_bytes = *mem;
  spec.arch = a.arch;
  spec.machine = a.machine;
  spec.boot_devices = a.boot;
  auto bus = parse_bus(a.disk_bus);
  if (!bus.ok()) {
    return fail(bus.status().with_context("--disk-bus"));
  }
  spec.base_disk_bus = *bus;
  for (const auto& d : a.data_disks) {
    auto size = cloudmgr::parse_bytes(d);
    if (!size.ok()) {
      return fail(size.status().with_context("--data-disk"));
    }
    spec.data_disks.push_back({.size_bytes = *size, .bus = *bus});
  }
  for (const auto& n : a.nics) {
    auto nic = parse_nic(n);
    if (!nic.ok()) {
      return fail(nic.status());
    }
    spec.nics.push_back(*nic);
  }
  spec.description = a.description;
  for (const auto& kv : a.meta) {
    const std::size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      return fail(cloudmgr::invalid_argument_error(fmt::format("--meta '{}' is not KEY=VALUE", kv)));
    }
    spec.metadata.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  cloudmgr::spi::ImportRequest r{.name = a.name, .spec = spec, .image_path = a.image};
  if (!a.format.empty()) {
    auto f = cloudmgr::parse_image_format(a.format);
    if (!f.ok()) {
      return fail(f.status().with_context("--format"));
    }
    r.format = *f;
  }
  auto store = open_store(o);
  if (!store.ok()) {
    return fail(store.status());
  }
  auto t = (*store)->import(r);
  if (!t.ok()) {
    return fail(t.status());
  }
  if (o.json) {
    print_json(info_json(*t));
  } else {
    std::printf("imported %s:%u  image %s (%s, %s, disk %s)\n", t->name.c_str(), t->version, t->image.sha256.c_str(),
                std::string(cloudmgr::to_string(t->image.format)).c_str(),
                cloudmgr::format_bytes(t->image.size_bytes).c_str(),
                cloudmgr::format_bytes(t->image.virtual_size_bytes).c_str());
  }
  return kExitOk;
}

int cmd_show(const Options& o, const std::string& text) {
  auto ref = TemplateRef::parse(text);
  if (!ref.ok()) {
    return fail(ref.status());
  }
  auto store = open_store(o);
  if (!store.ok()) {
    return fail(store.status());
  }
  auto t = (*store)->get(*ref);
  if (!t.ok()) {
    return fail(t.status());
  }
  if (o.json) {
    print_json(info_json(*t));
    return kExitOk;
  }
  const TemplateSpec& s = t->spec;
  std::printf("Template:     %s:%u\n", t->name.c_str(), t->version);
  std::printf("Created:      %s (%s)\n", when(t->created_ns).c_str(), t->origin.c_str());
  std::printf("Image:        %s\n", t->image.sha256.c_str());
  std::printf("              %s, file %s, disk %s\n", std::string(cloudmgr::to_string(t->image.format)).c_str(),
              cloudmgr::format_bytes(t->image.size_bytes).c_str(),
              cloudmgr::format_bytes(t->image.virtual_size_bytes).c_str());
  std::printf("vCPUs:        %u\n", s.vcpus);
  std::printf("Memory:       %s\n", cloudmgr::format_bytes(s.memory_bytes).c_str());
  std::printf("Boot:         %s\n", join(s.boot_devices).c_str());
  if (!s.arch.empty() || !s.machine.empty()) {
    std::printf("Machine:      %s %s\n", s.arch.c_str(), s.machine.c_str());
  }
  std::printf("Base disk:    %s\n", std::string(cloudmgr::to_string(s.base_disk_bus)).c_str());
  for (const auto& d : s.data_disks) {
    std::printf("Data disk:    %s %s (blank)\n", cloudmgr::format_bytes(d.size_bytes).c_str(),
                std::string(cloudmgr::to_string(d.bus)).c_str());
  }
  for (const auto& n : s.nics) {
    std::printf("NIC:          %s %s %s\n", std::string(cloudmgr::to_string(n.type)).c_str(), n.source.c_str(),
                n.model.c_str());
  }
  if (!s.description.empty()) {
    std::printf("Description:  %s\n", s.description.c_str());
  }
  for (const auto& [k, v] : s.metadata) {
    std::printf("Meta:         %s=%s\n", k.c_str(), v.c_str());
  }
  return kExitOk;
}

int cmd_images(const Options& o) {
  Session s(o);
  if (Status st = s.open(); !st.ok()) {
    return fail(st);
  }
  (void)s.m().wait_until([](const Manager& m) { return m.host_images().size() >= m.hosts().size(); },
                         milliseconds(1000));
  const auto images = s.m().host_images();
  if (o.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& h : images) {
      for (const auto& c : h.images) {
        nlohmann::json users = nlohmann::json::array();
        for (const auto& u : c.users) {
          users.push_back(
              {{"vm", u.vm_name}, {"uuid", u.vm_uuid}, {"template", u.template_name}, {"version", u.template_version}});
        }
        j.push_back({{"host", h.host_id},
                     {"sha256", c.info.sha256},
                     {"format", cloudmgr::to_string(c.info.format)},
                     {"size_bytes", c.info.size_bytes},
                     {"users", users}});
      }
    }
    print_json(j);
    return kExitOk;
  }
  Table t({"HOST", "IMAGE", "FORMAT", "SIZE", "VMS"});
  for (const auto& h : images) {
    for (const auto& c : h.images) {
      std::vector<std::string> users;
      for (const auto& u : c.users) {
        users.push_back(fmt::format("{} ({}:{})", u.vm_name, u.template_name, u.template_version));
      }
      t.add({h.host_id, short_sha(c.info.sha256), std::string(cloudmgr::to_string(c.info.format)),
             cloudmgr::format_bytes(c.info.size_bytes), users.empty() ? "-" : join(users, ", ")});
    }
  }
  if (t.empty()) {
    std::printf("no host has a base image cached\n");
  } else {
    t.print();
  }
  return kExitOk;
}

struct CreateArgs {
  std::string name;
  std::string template_ref;
  std::string host;
  std::string group;
  std::string policy = "pack";
  std::uint32_t count = 1;
  bool start = false;
  double cpu_overcommit = 4.0;
  double memory_overcommit = 1.0;
  std::string memory_reserved = "0";
};

int cmd_create(const Options& o, const CreateArgs& a) {
  auto ref = TemplateRef::parse(a.template_ref);
  if (!ref.ok()) {
    return fail(ref.status().with_context("--template"));
  }
  auto policy = cloudmgr::parse_placement_policy(a.policy);
  if (!policy.ok()) {
    return fail(policy.status().with_context("--policy"));
  }
  auto reserved = cloudmgr::parse_bytes(a.memory_reserved);
  if (!reserved.ok()) {
    return fail(reserved.status().with_context("--memory-reserved"));
  }
  if (!a.host.empty() && !a.group.empty()) {
    return fail(cloudmgr::invalid_argument_error("--host and --group exclude each other"));
  }
  Session s(o);
  if (Status st = s.open(a.host.empty() ? std::nullopt : std::optional(a.host),
                         a.group.empty() ? std::nullopt : std::optional(a.group));
      !st.ok()) {
    return fail(st);
  }
  cloudmgr::CreateVmsRequest r{
      .name = a.name,
      .template_ref = *ref,
      .policy = *policy,
      .count = a.count,
      .start = a.start,
      .overcommit = {.cpu = a.cpu_overcommit, .memory = a.memory_overcommit, .memory_reserved_bytes = *reserved}};
  if (!a.host.empty()) {
    r.where = cloudmgr::Target::host(a.host);
  } else if (!a.group.empty()) {
    r.where = cloudmgr::Target::group(a.group);
  }
  // Provisioning may move a base image: the global --timeout (default 10 s) is per command,
  // the whole request gets at least ten minutes.
  r.timeout = std::max(milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000)), milliseconds(600'000));
  if (!o.json) {
    r.on_progress = [](const std::string& step) { std::fprintf(stderr, "%s\n", step.c_str()); };
  }
  auto res = s.m().create_vms(r);
  if (!res.ok()) {
    return fail(res.status());
  }
  if (o.json) {
    nlohmann::json vms = nlohmann::json::array();
    for (const auto& v : res->vms) {
      vms.push_back(
          {{"host", v.host_id}, {"name", v.vm.name}, {"uuid", v.vm.uuid}, {"state", cloudmgr::to_string(v.vm.state)}});
    }
    print_json({{"template", res->template_info.ref().to_string()},
                {"vms", vms},
                {"image_sent_to", res->image_sent_to},
                {"image_bytes_sent", res->image_bytes_sent},
                {"transfer_ns", res->transfer_ns},
                {"provision_ns", res->provision_ns}});
    return kExitOk;
  }
  Table t({"VM", "HOST", "STATE", "UUID"});
  for (const auto& v : res->vms) {
    t.add({v.vm.name, v.host_id, std::string(cloudmgr::to_string(v.vm.state)), v.vm.uuid});
  }
  t.print();
  std::printf("%zu VM(s) of %s in %.2f s", res->vms.size(), res->template_info.ref().to_string().c_str(),
              static_cast<double>(res->transfer_ns + res->provision_ns) / 1e9);
  if (!res->image_sent_to.empty()) {
    std::printf(" (base image sent to %s: %s in %.2f s)", join(res->image_sent_to, ", ").c_str(),
                cloudmgr::format_bytes(res->image_bytes_sent).c_str(), static_cast<double>(res->transfer_ns) / 1e9);
  }
  std::printf("\n");
  return kExitOk;
}

}  // namespace

void add_template_commands(CLI::App& app, CLI::App& vm, Options& o, int& rc) {
  app.add_option("--store", o.store,
                 "template store directory (default $CLOUDMGR_TEMPLATES or ~/.local/share/cloudmgr/templates)");
  auto* tpl = app.add_subcommand("template", "VM templates: a VM definition plus a base image (by SHA-256)");
  tpl->require_subcommand(1);

  auto& ia = per_call<ImportArgs>();
  auto* imp = tpl->add_subcommand("import", "add a template (or its next version) from a qcow2 or raw image");
  imp->add_option("name", ia.name, "template name")->required();
  imp->add_option("image", ia.image, "image file (qcow2 or raw)")->required();
  imp->add_option("--format", ia.format, "qcow2 or raw (default: from the file's header)");
  imp->add_option("--vcpus", ia.vcpus, "virtual CPUs");
  imp->add_option("--memory", ia.memory, "memory, e.g. 512M or 2G");
  imp->add_option("--arch", ia.arch, "guest architecture (default: the host's)");
  imp->add_option("--machine", ia.machine, "machine type (default: the hypervisor's)");
  imp->add_option("--boot", ia.boot, "boot devices in order: hd, cdrom, network, fd")->delimiter(',');
  imp->add_option("--disk-bus", ia.disk_bus, "bus of the disks: virtio, sata, scsi, ide");
  imp->add_option("--data-disk", ia.data_disks, "a blank disk each VM gets, e.g. 10G (repeatable)");
  imp->add_option("--nic", ia.nics, "network:NAME[:MODEL], bridge:NAME[:MODEL] or ethernet[:TAP[:MODEL]] (repeatable)");
  imp->add_option("--description", ia.description, "free text");
  imp->add_option("--meta", ia.meta, "KEY=VALUE kept with the template (repeatable)");
  imp->callback([&] { rc = cmd_import(o, ia); });

  auto& json_path = per_call<std::string>();
  auto& new_name = per_call<std::string>();
  auto* impx = tpl->add_subcommand("import-export", "add a template that 'template export' wrote");
  impx->add_option("json", json_path, "the exported NAME-VERSION.json (its image beside it)")->required();
  impx->add_option("--name", new_name, "store it under this name (default: the exported one)");
  impx->callback([&] {
    auto store = open_store(o);
    auto t = store.ok() ? (*store)->import_export(json_path, new_name) : Result<TemplateInfo>(store.status());
    if (!t.ok()) {
      rc = fail(t.status());
      return;
    }
    std::printf("imported %s:%u (image %s)\n", t->name.c_str(), t->version, t->image.sha256.c_str());
    rc = kExitOk;
  });

  tpl->add_subcommand("list", "the latest version of every template")->callback([&] {
    auto store = open_store(o);
    auto list = store.ok() ? (*store)->list() : Result<std::vector<TemplateInfo>>(store.status());
    if (!list.ok()) {
      rc = fail(list.status());
      return;
    }
    print_list(o, *list);
    rc = kExitOk;
  });

  auto& ref_text = per_call<std::string>();
  auto* show = tpl->add_subcommand("show", "one template version");
  show->add_option("template", ref_text, "NAME or NAME:VERSION")->required();
  show->callback([&] { rc = cmd_show(o, ref_text); });

  auto* versions = tpl->add_subcommand("versions", "every version of a template");
  versions->add_option("name", ref_text, "template name")->required();
  versions->callback([&] {
    auto store = open_store(o);
    auto list = store.ok() ? (*store)->versions(ref_text) : Result<std::vector<TemplateInfo>>(store.status());
    if (!list.ok()) {
      rc = fail(list.status());
      return;
    }
    print_list(o, *list);
    rc = kExitOk;
  });

  auto& force = per_call<bool>(false);
  auto* del = tpl->add_subcommand("delete", "remove a template version (NAME: every version)");
  del->add_option("template", ref_text, "NAME or NAME:VERSION")->required();
  del->add_flag("--force", force, "even while VMs are clones of it (they keep running)");
  del->callback([&] {
    auto ref = TemplateRef::parse(ref_text);
    if (!ref.ok()) {
      rc = fail(ref.status());
      return;
    }
    Session s(o);  // the cloud tells which VMs use it
    if (Status st = s.open(); !st.ok()) {
      rc = fail(st);
      return;
    }
    (void)s.m().wait_until([](const Manager& m) { return m.host_images().size() >= m.hosts().size(); },
                           milliseconds(1000));
    const Status st = s.m().delete_template(*ref, force);
    rc = st.ok() ? kExitOk : fail(st);
  });

  auto& dir = per_call<std::string>();
  auto* exp = tpl->add_subcommand("export", "write a template (JSON + image) to a directory");
  exp->add_option("template", ref_text, "NAME or NAME:VERSION")->required();
  exp->add_option("dir", dir, "an existing directory")->required();
  exp->callback([&] {
    auto ref = TemplateRef::parse(ref_text);
    auto store = open_store(o);
    if (!ref.ok() || !store.ok()) {
      rc = fail(!ref.ok() ? ref.status() : store.status());
      return;
    }
    auto files = (*store)->export_to(*ref, dir);
    if (!files.ok()) {
      rc = fail(files.status());
      return;
    }
    for (const auto& f : *files) {
      std::printf("%s\n", f.c_str());
    }
    rc = kExitOk;
  });

  auto* verify = tpl->add_subcommand("verify", "re-hash a template's image (SHA-256)");
  verify->add_option("template", ref_text, "NAME or NAME:VERSION")->required();
  verify->callback([&] {
    auto ref = TemplateRef::parse(ref_text);
    auto store = open_store(o);
    if (!ref.ok() || !store.ok()) {
      rc = fail(!ref.ok() ? ref.status() : store.status());
      return;
    }
    const Status st = (*store)->verify(*ref);
    if (!st.ok()) {
      rc = fail(st);
      return;
    }
    std::printf("%s: image intact\n", ref_text.c_str());
    rc = kExitOk;
  });

  auto& cap_name = per_call<std::string>();
  auto& cap_host = per_call<std::string>();
  auto& cap_vm = per_call<std::string>();
  auto* cap = tpl->add_subcommand("capture", "make a template (or its next version) from a shut-off VM's disk");
  cap->add_option("name", cap_name, "template name")->required();
  cap->add_option("--vm", cap_vm, "the VM (name or uuid)")->required();
  cap->add_option("--host", cap_host, "the VM's host (default: the one that has it)");
  cap->callback([&] {
    Session s(o);
    if (Status st = s.open(cap_host.empty() ? std::nullopt : std::optional(cap_host)); !st.ok()) {
      rc = fail(st);
      return;
    }
    std::string host = cap_host;
    if (host.empty()) {
      auto h = host_of_vm(s.m(), cap_vm);
      if (!h.ok()) {
        rc = fail(h.status());
        return;
      }
      host = *h;
    }
    // A disk may take a while to flatten and send: at least ten minutes.
    const auto timeout = std::max(milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000)), milliseconds(600'000));
    auto t = s.m().capture_template(host, cap_vm, cap_name, {.timeout = timeout});
    if (!t.ok()) {
      rc = fail(t.status());
      return;
    }
    if (o.json) {
      print_json(info_json(*t));
    } else {
      std::printf("captured %s:%u from %s/%s  image %s (%s, disk %s)\n", t->name.c_str(), t->version, host.c_str(),
                  cap_vm.c_str(), t->image.sha256.c_str(), cloudmgr::format_bytes(t->image.size_bytes).c_str(),
                  cloudmgr::format_bytes(t->image.virtual_size_bytes).c_str());
    }
    rc = kExitOk;
  });

  app.add_subcommand("images", "base images cached on each host, and the VMs that use them")->callback([&] {
    rc = cmd_images(o);
  });

  auto& ca = per_call<CreateArgs>();
  auto* create = vm.add_subcommand("create", "provision VMs from a template (copy-on-write clones), placed by policy");
  create->add_option("name", ca.name, "VM name (with --count N: NAME-1 ... NAME-N)")->required();
  create->add_option("--template", ca.template_ref, "NAME or NAME:VERSION")->required();
  create->add_option("--host", ca.host, "on this host");
  create->add_option("--group", ca.group, "on hosts of this group (default: every online host)");
  create->add_option("--policy", ca.policy, "pack (fill busy hosts first) or spread")
      ->check(CLI::IsMember({"pack", "spread"}));
  create->add_option("--count", ca.count, "VMs to create together (all or none)")->check(CLI::Range(1, 1000));
  create->add_flag("--start", ca.start, "start them");
  create->add_option("--cpu-overcommit", ca.cpu_overcommit, "vCPUs per host CPU (default 4)");
  create->add_option("--memory-overcommit", ca.memory_overcommit, "VM memory per byte of host memory (default 1)");
  create->add_option("--memory-reserved", ca.memory_reserved, "memory kept for each host itself, e.g. 1G");
  create->callback([&] { rc = cmd_create(o, ca); });

  auto& vm_name = per_call<std::string>();
  auto& vm_host = per_call<std::string>();
  auto& vm_force = per_call<bool>(false);
  auto* remove = vm.add_subcommand("delete", "remove a VM and the disks provisioned for it");
  remove->add_option("name", vm_name, "VM name or uuid")->required();
  remove->add_option("--host", vm_host, "the VM's host (default: the one that has it)");
  remove->add_flag("--force", vm_force, "power it off first if it runs");
  remove->callback([&] {
    Session s(o);
    if (Status st = s.open(vm_host.empty() ? std::nullopt : std::optional(vm_host)); !st.ok()) {
      rc = fail(st);
      return;
    }
    std::string host = vm_host;
    if (host.empty()) {
      auto h = host_of_vm(s.m(), vm_name);
      if (!h.ok()) {
        rc = fail(h.status());
        return;
      }
      host = *h;
    }
    auto r = s.m().delete_vm(host, vm_name, vm_force,
                             {.timeout = milliseconds(static_cast<std::int64_t>(o.timeout_s * 1000))});
    if (!r.ok()) {
      rc = fail(r.status());
      return;
    }
    const auto& h = r->hosts.at(0);
    if (h.outcome == cloudmgr::HostResult::Outcome::kNoReply) {
      std::fprintf(stderr, "cloudctl: %s did not reply\n", host.c_str());
      rc = kExitNoReply;
      return;
    }
    rc = h.status.ok() ? kExitOk : fail(h.status);
  });
}

}  // namespace cloudctl
