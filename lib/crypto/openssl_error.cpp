#include "crypto/openssl_error.h"

#include <fmt/format.h>
#include <openssl/err.h>

#include <array>
#include <string>

namespace cloudmgr::crypto {

Status openssl_error(std::string_view what) {
  std::string text;
  bool out_of_memory = false;
  while (const unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    text += text.empty() ? "" : "; ";
    text += buf.data();
    out_of_memory = out_of_memory || ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
  }
  if (text.empty()) {
    text = "no error recorded by OpenSSL";
  }
  return {out_of_memory ? StatusCode::kResourceExhausted : StatusCode::kInternal, fmt::format("{}: {}", what, text)};
}

void clear_openssl_errors() noexcept { ERR_clear_error(); }

}  // namespace cloudmgr::crypto
