// Umbrella header: the whole public C++ API of libcloudmgr.
#pragma once

#include "cloudmgr/agent.h"
#include "cloudmgr/cloud.h"
#include "cloudmgr/host.h"
#include "cloudmgr/hypervisor.h"
#include "cloudmgr/manager.h"
#include "cloudmgr/metrics.h"
#include "cloudmgr/model.h"
#include "cloudmgr/spi/hypervisor_driver.h"
#include "cloudmgr/spi/metrics_store.h"
#include "cloudmgr/spi/transport.h"
#include "cloudmgr/status.h"
#include "cloudmgr/units.h"
#include "cloudmgr/verbs.h"
#include "cloudmgr/version.h"
