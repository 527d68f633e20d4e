// Host verbs that act on the machine the library runs on (the agent's machine), not
// through the hypervisor: its process list and a guarded reboot.
#pragma once

#include <string>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/model.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

// Lists every process under `proc_root` (normally "/proc"). Processes that exit while
// being read are skipped. kUnavailable when proc_root cannot be read. Thread-safe.
CLOUDMGR_API Result<std::vector<ProcessInfo>> list_processes(const std::string& proc_root = "/proc");

// How a host reboot is carried out. Disabled unless an operator enables it: a reboot
// ends every VM on the host.
struct HostRebootPolicy {
  bool enabled = false;
  // argv of the command that reboots this machine; argv[0] is an absolute path.
  std::vector<std::string> command{"/usr/bin/systemctl", "reboot"};
};

// Runs the policy's command and waits for it. kFailedPrecondition when the policy is
// disabled (nothing runs), kInvalidArgument for an empty or relative command, kInternal
// with the exit status when the command fails. Thread-safe.
CLOUDMGR_API Status reboot_host(const HostRebootPolicy& policy);

}  // namespace cloudmgr
