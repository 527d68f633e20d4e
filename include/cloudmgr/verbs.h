// The verbs a manager can send to agents, with their arguments. One table, used by the
// Manager to refuse a malformed command before it is sent and by the Agent to execute it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/cloud.h"
#include "cloudmgr/export.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

struct VerbSpec {
  std::string_view name;                     // "vm.start"
  std::string_view help;                     // one line
  std::vector<std::string_view> required;    // argument names that must be present
  std::vector<std::string_view> optional;    // argument names that may be present
  std::vector<std::string_view> repeatable;  // of those, the ones that may appear more than once
};

// Every verb, in a stable order.
CLOUDMGR_API const std::vector<VerbSpec>& verbs();
// nullptr for an unknown verb.
CLOUDMGR_API const VerbSpec* find_verb(std::string_view name);

// kInvalidArgument naming the problem: unknown verb, a missing or unknown argument, an
// argument given twice, or a value that does not parse (numbers, booleans, names).
CLOUDMGR_API Status validate_command(std::string_view verb, const Arguments& arguments);

}  // namespace cloudmgr
