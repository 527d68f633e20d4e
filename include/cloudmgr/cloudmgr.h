// Umbrella header: the whole public C++ API of libcloudmgr.
#pragma once

#include "cloudmgr/host.h"
#include "cloudmgr/hypervisor.h"
#include "cloudmgr/model.h"
#include "cloudmgr/spi/hypervisor_driver.h"
#include "cloudmgr/status.h"
#include "cloudmgr/units.h"
#include "cloudmgr/version.h"
