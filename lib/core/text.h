// Small text helpers for error messages. Internal.
#pragma once

#include <string>
#include <string_view>

namespace cloudmgr {

// Quotes a user-supplied string for an error message: at most 80 characters (then "..."),
// control characters escaped, so a bad name cannot garble a log line.
std::string quote_input(std::string_view text);

}  // namespace cloudmgr
