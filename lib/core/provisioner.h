// An agent's side of template provisioning: copy-on-write clones of cached base images,
// defined as VMs, and their removal. Everything a step made is undone when a later step of
// the same request fails, so a failed request leaves nothing behind.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cloudmgr/cloud.h"
#include "cloudmgr/hypervisor.h"
#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"
#include "core/image_cache.h"

namespace cloudmgr {

struct InstantiateRequest {
  std::string template_name;
  std::uint32_t template_version = 0;
  std::string image_sha256;
  TemplateSpec spec;
  std::vector<std::string> names;  // one VM each
  bool start = false;
};

class Provisioner {
 public:
  // `pool` is the hypervisor storage pool over `cache`'s directory.
  Provisioner(Hypervisor& hv, ImageCache& cache, std::string pool, std::string host_id)
      : hv_(hv), cache_(cache), pool_(std::move(pool)), host_id_(std::move(host_id)) {}

  // Makes the pool exist and see the cached images. kUnimplemented when the driver has no
  // storage API.
  Status prepare();

  // All of the request's VMs, or none: kFailedPrecondition when the base image is not cached
  // here, kAlreadyExists for a name taken on this host, and whatever the hypervisor says.
  Result<std::vector<VmInfo>> instantiate(const InstantiateRequest& request);

  // Removes a VM (powered off first when `force`; kFailedPrecondition when it runs and not
  // forced) and the volumes in the pool that its disks use (never a base image).
  Status remove_vm(const VmRef& vm, bool force);

  // Sends a shut-off VM's first disk, flattened into one standalone qcow2 (its backing chain
  // read through), as ImageChunk pieces of `transfer` through `send`, then the end piece (no
  // data; offset = length, sha256 of the whole file). Returns the image sent.
  // kFailedPrecondition for a VM that is not shut off or has no disk; kUnimplemented when the
  // hypervisor makes no file (libvirt's test driver keeps volumes in memory).
  Result<ImageInfo> capture(const VmRef& vm, const std::string& transfer,
                            const std::function<Status(const ImageChunk&)>& send);

  // The host's cached images, each with the VMs (of `vms`) that use it.
  HostImages images(const std::vector<VmInfo>& vms, std::int64_t now_ns) const;

 private:
  Status base_volume(const ImageCache::Entry& base);
  Status undo(const std::string& vm_name, const std::vector<std::string>& volumes, bool defined);

  Hypervisor& hv_;
  ImageCache& cache_;
  std::string pool_;
  std::string host_id_;
};

}  // namespace cloudmgr
