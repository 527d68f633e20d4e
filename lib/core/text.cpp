#include "core/text.h"

#include <fmt/format.h>

namespace cloudmgr {

std::string quote_input(std::string_view text) {
  std::string out = "'";
  for (const char c : text.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  if (text.size() > 80) {
    out += "...";
  }
  return out + "'";
}

}  // namespace cloudmgr
