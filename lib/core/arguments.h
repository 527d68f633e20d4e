// Typed access to a command's text arguments. Internal.
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloud.h"

namespace cloudmgr {

class ArgumentReader {
 public:
  ArgumentReader(std::string_view verb, const Arguments& args) : verb_(verb), args_(args) {}

  const std::string* find(std::string_view name) const {
    for (const auto& [k, v] : args_) {
      if (k == name) {
        return &v;
      }
    }
    return nullptr;
  }

  std::string text_or(std::string_view name, const std::string& fallback) const {
    const std::string* v = find(name);
    return v != nullptr ? *v : fallback;
  }

  std::vector<std::string> all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : args_) {
      if (k == name) {
        out.push_back(v);
      }
    }
    return out;
  }

  Result<std::uint64_t> u64(std::string_view name) const {
    const std::string* v = find(name);
    if (v == nullptr) {
      return invalid_argument_error(fmt::format("{} needs the argument '{}'", verb_, name));
    }
    std::uint64_t out = 0;
    const auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || ptr != v->data() + v->size() || v->empty()) {
      return invalid_argument_error(
          fmt::format("{}: argument '{}' is '{}', not a non-negative integer", verb_, name, v->substr(0, 80)));
    }
    return out;
  }

  std::uint64_t u64_or(std::string_view name, std::uint64_t fallback) const {
    return find(name) != nullptr ? u64(name).value_or(fallback) : fallback;
  }

  Result<bool> boolean(std::string_view name) const {
    const std::string* v = find(name);
    if (v == nullptr) {
      return invalid_argument_error(fmt::format("{} needs the argument '{}'", verb_, name));
    }
    if (*v == "true" || *v == "1" || *v == "on" || *v == "yes") {
      return true;
    }
    if (*v == "false" || *v == "0" || *v == "off" || *v == "no") {
      return false;
    }
    return invalid_argument_error(
        fmt::format("{}: argument '{}' is '{}', not true or false", verb_, name, v->substr(0, 80)));
  }

  bool boolean_or(std::string_view name, bool fallback) const {
    return find(name) != nullptr ? boolean(name).value_or(fallback) : fallback;
  }

 private:
  std::string_view verb_;
  const Arguments& args_;
};

}  // namespace cloudmgr
