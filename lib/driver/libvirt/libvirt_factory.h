// Entry point of the built-in libvirt driver. Deliberately free of libvirt headers so
// that the core can reach the driver without seeing libvirt.
#pragma once

#include <memory>
#include <string_view>

#include "cloudmgr/spi/hypervisor_driver.h"

namespace cloudmgr::libvirt {

// Opens any libvirt URI. Never declines: libvirt itself decides which of its drivers
// serves the URI, and says why when none does.
Result<std::unique_ptr<spi::HypervisorDriver>> open_libvirt_driver(std::string_view uri);

}  // namespace cloudmgr::libvirt
