// Entry point of the in-process transport (tests): every Transport opened with the same
// domain id in one process shares one in-memory data space.
#pragma once

#include <memory>

#include "cloudmgr/spi/transport.h"

namespace cloudmgr::inproc {

Result<std::unique_ptr<spi::Transport>> open_inproc_transport(const spi::TransportConfig& config);

}  // namespace cloudmgr::inproc
