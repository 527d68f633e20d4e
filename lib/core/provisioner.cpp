#include "core/provisioner.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>

#include "core/status_macros.h"
#include "image/image_io.h"

namespace cloudmgr {

namespace fs = std::filesystem;

namespace {

// The VM one instance of a template is: its disks are the clone and the blank data disks.
VmSpec instance_spec(const InstantiateRequest& r, const std::string& name, const std::string& clone_path,
                     const std::vector<std::string>& data_paths) {
  const TemplateSpec& t = r.spec;
  VmSpec spec{.name = name,
              .vcpus = t.vcpus,
              .memory_bytes = t.memory_bytes,
              .arch = t.arch,
              .machine = t.machine,
              .boot_devices = t.boot_devices};
  spec.disks.push_back({.source_path = clone_path, .bus = t.base_disk_bus, .format = "qcow2"});
  for (std::size_t i = 0; i < data_paths.size(); ++i) {
    spec.disks.push_back({.source_path = data_paths[i], .bus = t.data_disks[i].bus, .format = "qcow2"});
  }
  spec.nics = t.nics;  // MACs empty: the hypervisor gives each instance new ones
  spec.description = t.description;
  spec.origin = {
      .template_name = r.template_name, .template_version = r.template_version, .image_sha256 = r.image_sha256};
  return spec;
}

}  // namespace

Status Provisioner::prepare() {
  CLOUDMGR_RETURN_IF_ERROR(hv_.ensure_pool(pool_, cache_.dir()));
  return hv_.refresh_pool(pool_);
}

// The clone names its backing file as a volume of the pool. A real directory pool lists the
// cached file once refreshed; a hypervisor whose pools never look at their directory (libvirt's
// test driver keeps pools in memory) learns of it as a volume of the same name and path. On a
// real pool that second step cannot overwrite the file: a name held by a file is refused.
Status Provisioner::base_volume(const ImageCache::Entry& base) {
  const std::string name = fs::path(base.path).filename().string();
  auto v = hv_.get_volume(pool_, name);
  if (v.ok()) {
    return {};
  }
  if (v.status().code() != StatusCode::kNotFound) {
    return v.status();
  }
  CLOUDMGR_RETURN_IF_ERROR(hv_.refresh_pool(pool_));
  if (hv_.get_volume(pool_, name).ok()) {
    return {};
  }
  auto made = hv_.create_volume(
      pool_,
      {.name = name, .capacity_bytes = base.info.size_bytes, .format = std::string(to_string(base.info.format))});
  if (!made.ok()) {
    return made.status().with_context(
        fmt::format("base image {} is not a volume of pool '{}'", base.info.sha256, pool_));
  }
  if (made->path != base.path) {
    (void)hv_.delete_volume(pool_, name);
    return internal_error(fmt::format("pool '{}' places volume '{}' at '{}', not at the cached image '{}'", pool_, name,
                                      made->path, base.path));
  }
  return {};
}

Status Provisioner::undo(const std::string& vm_name, const std::vector<std::string>& volumes, bool defined) {
  Status first;
  if (defined) {
    (void)hv_.destroy_vm(VmRef::by_name(vm_name));  // fails when it never started: fine
    if (Status s = hv_.undefine_vm(VmRef::by_name(vm_name), {.force = true}); !s.ok() && first.ok()) {
      first = s;
    }
  }
  for (const auto& v : volumes) {
    if (Status s = hv_.delete_volume(pool_, v); !s.ok() && first.ok()) {
      first = s;
    }
  }
  return first;
}

Result<std::vector<VmInfo>> Provisioner::instantiate(const InstantiateRequest& r) {
  CLOUDMGR_RETURN_IF_ERROR(validate_template_spec(r.spec));
  const auto base = cache_.find(r.image_sha256);
  if (!base) {
    return failed_precondition_error(fmt::format("base image {} of template {}:{} is not cached on host '{}'",
                                                 r.image_sha256, r.template_name, r.template_version, host_id_));
  }
  if (r.names.empty()) {
    return invalid_argument_error("vm.instantiate: no VM name");
  }
  CLOUDMGR_RETURN_IF_ERROR(base_volume(*base));
  // Every name is free before anything is made.
  for (std::size_t i = 0; i < r.names.size(); ++i) {
    CLOUDMGR_RETURN_IF_ERROR(validate_vm_name(r.names[i]));
    if (std::find(r.names.begin(), r.names.begin() + static_cast<std::ptrdiff_t>(i), r.names[i]) !=
        r.names.begin() + static_cast<std::ptrdiff_t>(i)) {
      return invalid_argument_error(fmt::format("vm.instantiate: the name '{}' is given twice", r.names[i]));
    }
    auto existing = hv_.get_vm(VmRef::by_name(r.names[i]));
    if (existing.ok()) {
      return already_exists_error(fmt::format("a VM named '{}' exists on host '{}' already", r.names[i], host_id_));
    }
    if (existing.status().code() != StatusCode::kNotFound) {
      return existing.status();
    }
  }
  std::vector<VmInfo> made;
  // Undoes every instance made so far (the one being made included) and returns `why`.
  std::vector<std::pair<std::string, std::vector<std::string>>> undo_list;  // (vm name, volumes)
  const auto fail = [&](const Status& why) -> Status {
    for (auto it = undo_list.rbegin(); it != undo_list.rend(); ++it) {
      const bool defined = std::any_of(made.begin(), made.end(), [&](const VmInfo& v) { return v.name == it->first; });
      (void)undo(it->first, it->second, defined);
    }
    return why;
  };
  for (const std::string& name : r.names) {
    undo_list.push_back({name, {}});
    std::vector<std::string>& volumes = undo_list.back().second;
    auto clone = hv_.create_volume(pool_, {.name = name + ".qcow2",
                                           .capacity_bytes = base->info.virtual_size_bytes,
                                           .format = "qcow2",
                                           .backing_path = base->path,
                                           .backing_format = std::string(to_string(base->info.format))});
    if (!clone.ok()) {
      return fail(
          clone.status().with_context(fmt::format("host '{}': cloning the base image for '{}'", host_id_, name)));
    }
    volumes.push_back(clone->name);
    std::vector<std::string> data_paths;
    for (std::size_t i = 0; i < r.spec.data_disks.size(); ++i) {
      auto disk = hv_.create_volume(pool_, {.name = fmt::format("{}-data{}.qcow2", name, i),
                                            .capacity_bytes = r.spec.data_disks[i].size_bytes,
                                            .format = "qcow2"});
      if (!disk.ok()) {
        return fail(disk.status().with_context(fmt::format("host '{}': data disk {} of '{}'", host_id_, i, name)));
      }
      volumes.push_back(disk->name);
      data_paths.push_back(disk->path);
    }
    auto vm = hv_.define_vm(instance_spec(r, name, clone->path, data_paths));
    if (!vm.ok()) {
      return fail(vm.status().with_context(fmt::format("host '{}': defining '{}'", host_id_, name)));
    }
    made.push_back(*vm);
  }
  if (r.start) {
    for (VmInfo& vm : made) {
      if (Status s = hv_.start_vm(VmRef::by_uuid(vm.uuid)); !s.ok()) {
        return fail(s.with_context(fmt::format("host '{}': starting '{}'", host_id_, vm.name)));
      }
      auto now = hv_.get_vm(VmRef::by_uuid(vm.uuid));
      if (now.ok()) {
        vm = std::move(*now);
      }
    }
  }
  return made;
}

Status Provisioner::remove_vm(const VmRef& ref, bool force) {
  CLOUDMGR_ASSIGN_OR_RETURN(VmInfo vm, hv_.get_vm(ref));
  if (is_active(vm.state)) {
    if (!force) {
      return failed_precondition_error(fmt::format("VM '{}' on host '{}' is {}: power it off first, or force", vm.name,
                                                   host_id_, to_string(vm.state)));
    }
    CLOUDMGR_RETURN_IF_ERROR(hv_.destroy_vm(VmRef::by_uuid(vm.uuid)));
  }
  CLOUDMGR_RETURN_IF_ERROR(hv_.undefine_vm(VmRef::by_uuid(vm.uuid), {.force = true}));
  // Its volumes in the pool; a base image is never one of them (the cache owns those).
  Status first;
  const fs::path dir = fs::path(cache_.dir()).lexically_normal();
  for (const DiskInfo& d : vm.disks) {
    const fs::path p = fs::path(d.source).lexically_normal();
    if (d.source.empty() || p.parent_path() != dir || p.filename().string().starts_with("base-")) {
      continue;
    }
    Status s = hv_.delete_volume(pool_, p.filename().string());
    if (!s.ok() && s.code() != StatusCode::kNotFound && first.ok()) {
      first = s.with_context(fmt::format("VM '{}' is gone but its disk '{}' could not be removed", vm.name, d.source));
    }
  }
  return first;
}

Result<ImageInfo> Provisioner::capture(const VmRef& ref, const std::string& transfer,
                                       const std::function<Status(const ImageChunk&)>& send) {
  CLOUDMGR_RETURN_IF_ERROR(validate_uuid(transfer).with_context("transfer"));
  CLOUDMGR_ASSIGN_OR_RETURN(const VmInfo vm, hv_.get_vm(ref));
  if (vm.state != VmState::kShutOff) {
    return failed_precondition_error(fmt::format("VM '{}' on host '{}' is {}: only a shut-off VM is captured", vm.name,
                                                 host_id_, to_string(vm.state)));
  }
  const auto disk = std::find_if(vm.disks.begin(), vm.disks.end(),
                                 [](const DiskInfo& d) { return d.device == "disk" && !d.source.empty(); });
  if (disk == vm.disks.end()) {
    return failed_precondition_error(fmt::format("VM '{}' on host '{}' has no disk to capture", vm.name, host_id_));
  }
  // A standalone copy in the pool (libvirt flattens the backing chain), read and removed.
  const std::string name = "capture-" + transfer + ".qcow2";
  CLOUDMGR_ASSIGN_OR_RETURN(const VolumeInfo copy, hv_.clone_volume(pool_, name, disk->source));
  struct Remove {
    Hypervisor& hv;
    const std::string& pool;
    const std::string& name;
    ~Remove() { (void)hv.delete_volume(pool, name); }
  } remove{hv_, pool_, name};
  auto probe = image::probe(copy.path);
  if (!probe.ok()) {
    return probe.status().code() == StatusCode::kNotFound
               ? unimplemented_error(fmt::format("host '{}': the hypervisor made no file for the copy of '{}' (a "
                                                 "simulated host keeps its disks in memory)",
                                                 host_id_, disk->source))
               : probe.status();
  }
  const int fd = ::open(copy.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return internal_error(fmt::format("cannot open '{}'", copy.path));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  ImageChunk chunk{.transfer_id = transfer};
  CLOUDMGR_ASSIGN_OR_RETURN(std::string sha,
                            image::read_pieces(fd, probe->size_bytes, copy.path, kImageChunkBytes,
                                               [&](std::uint64_t offset, const std::vector<std::uint8_t>& piece) {
                                                 chunk.offset_bytes = offset;
                                                 chunk.data = piece;
                                                 return send(chunk);
                                               }));
  ImageInfo info{.sha256 = std::move(sha),
                 .format = probe->format,
                 .size_bytes = probe->size_bytes,
                 .virtual_size_bytes = probe->virtual_size_bytes};
  chunk.offset_bytes = info.size_bytes;
  chunk.sha256 = info.sha256;
  chunk.data.clear();
  CLOUDMGR_RETURN_IF_ERROR(send(chunk));  // the end
  return info;
}

HostImages Provisioner::images(const std::vector<VmInfo>& vms, std::int64_t now) const {
  HostImages out{.host_id = host_id_, .updated_ns = now};
  for (const auto& e : cache_.list()) {
    CachedImage c{.info = e.info};
    for (const VmInfo& vm : vms) {
      if (vm.origin.image_sha256 == e.info.sha256) {
        c.users.push_back({vm.uuid, vm.name, vm.origin.template_name, vm.origin.template_version});
      }
    }
    std::sort(c.users.begin(), c.users.end(),
              [](const ImageUser& a, const ImageUser& b) { return a.vm_name < b.vm_name; });
    out.images.push_back(std::move(c));
  }
  return out;
}

}  // namespace cloudmgr
