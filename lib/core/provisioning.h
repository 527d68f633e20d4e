// The manager's side of provisioning from templates: placement, base image transfer and
// the hosts' instantiation, all or nothing. Internal: Manager::create_vms calls it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cloudmgr/manager.h"
#include "cloudmgr/spi/template_store.h"

namespace cloudmgr {

using ChunkSender =
    std::function<Status(const ImageChunk& chunk, const std::vector<std::string>& hosts, std::int64_t deadline_ns)>;

Result<CreateVmsResult> provision_vms(Manager& manager, spi::TemplateStore& store, const ChunkSender& send,
                                      const CreateVmsRequest& request);

}  // namespace cloudmgr
