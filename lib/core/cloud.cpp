#include "cloudmgr/cloud.h"

#include <array>
#include <chrono>
#include <random>

#include <fmt/format.h>

namespace cloudmgr {

std::string Target::partition() const {
  switch (kind) {
    case Kind::kHost:
      return "host." + name;
    case Kind::kGroup:
      return "group." + name;
    case Kind::kAll:
      break;
  }
  return "all";
}

Result<Target> Target::parse(std::string_view text) {
  if (text == "all") {
    return Target::all();
  }
  if (text.starts_with("host.")) {
    const std::string_view id = text.substr(5);
    if (Status s = validate_host_id(id); !s.ok()) {
      return s;
    }
    return Target::host(std::string(id));
  }
  if (text.starts_with("group.")) {
    const std::string_view g = text.substr(6);
    if (Status s = validate_group_name(g); !s.ok()) {
      return s;
    }
    return Target::group(std::string(g));
  }
  return invalid_argument_error(
      fmt::format("target '{}' is not \"all\", \"host.<id>\" or \"group.<name>\"", text.substr(0, 80)));
}

namespace {

// Group names and host ids use the VM-name alphabet: its checks, with the subject renamed.
Status validate_as(std::string_view subject, std::string_view text) {
  Status s = validate_vm_name(text);
  if (s.ok()) {
    return s;
  }
  std::string message = s.message();
  if (message.starts_with("VM name")) {
    message.replace(0, 7, subject);
  }
  return invalid_argument_error(std::move(message));
}

}  // namespace

Status validate_group_name(std::string_view name) { return validate_as("group name", name); }

Status validate_host_id(std::string_view id) { return validate_as("host id", id); }

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<std::uint8_t, 16> b{};
  for (std::size_t i = 0; i < b.size(); i += 8) {
    const std::uint64_t r = rng();
    for (std::size_t j = 0; j < 8; ++j) {
      b[i + j] = static_cast<std::uint8_t>(r >> (8 * j));
    }
  }
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0FU) | 0x40U);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3FU) | 0x80U);  // RFC 4122 variant
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", b[0],
      b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

}  // namespace cloudmgr
