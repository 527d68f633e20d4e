// Thread-safe text for an errno value (strerror is not thread-safe).
#pragma once

#include <cstring>
#include <string>

namespace cloudmgr {

inline std::string errno_text(int err) {
  char buf[256] = {};
  // GNU strerror_r: returns a pointer to the text, which may or may not be buf.
  return ::strerror_r(err, buf, sizeof buf);
}

}  // namespace cloudmgr
