// Entry point of the Fast DDS transport, free of Fast DDS headers so the core can reach it.
#pragma once

#include <memory>

#include "cloudmgr/spi/transport.h"

namespace cloudmgr::dds {

// Opens one DomainParticipant configured from `config` (already validated by the core).
Result<std::unique_ptr<spi::Transport>> open_dds_transport(const spi::TransportConfig& config);

}  // namespace cloudmgr::dds
