// The client-server transport (kind "tcp"): agents listen, managers connect, over TCP or
// TLS 1.3 with mutual authentication (the cloud's PKI). The baseline the DDS transport is
// benchmarked against (bench/README.md). Internal: reached through spi::open_transport.
#pragma once

#include <memory>

#include "cloudmgr/spi/transport.h"

namespace cloudmgr::tcp {

Result<std::unique_ptr<spi::Transport>> open_tcp_transport(const spi::TransportConfig& config);

}  // namespace cloudmgr::tcp
