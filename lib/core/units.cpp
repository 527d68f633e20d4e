#include "cloudmgr/units.h"

#include <array>
#include <cctype>
#include <cmath>

#include <fmt/format.h>

namespace cloudmgr {

__extension__ using Uint128 = unsigned __int128;

Result<std::uint64_t> parse_bytes(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return invalid_argument_error(
        fmt::format("size '{}' is not valid ({}); use e.g. 512M, 2G, 1.5GiB or a number of bytes", text, why));
  };
  std::size_t i = 0;
  std::uint64_t whole = 0;
  bool digits = false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
    const auto d = static_cast<std::uint64_t>(text[i] - '0');
    if (whole > (UINT64_MAX - d) / 10) {
      return bad("too large");
    }
    whole = whole * 10 + d;
    digits = true;
    ++i;
  }
  // Fraction: up to 9 digits, kept exactly as numerator / 10^n.
  std::uint64_t frac = 0;
  std::uint64_t frac_scale = 1;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
      if (frac_scale >= 1'000'000'000ULL) {
        return bad("too many decimals");
      }
      frac = frac * 10 + static_cast<std::uint64_t>(text[i] - '0');
      frac_scale *= 10;
      digits = true;
      ++i;
    }
  }
  if (!digits) {
    return bad("no number");
  }
  while (i < text.size() && text[i] == ' ') {
    ++i;
  }
  std::string unit;
  for (; i < text.size(); ++i) {
    unit += static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
  }
  std::uint64_t mult = 0;
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 13> kUnits = {{
      {"", 1},
      {"b", 1},
      {"k", 1ULL << 10},
      {"kb", 1ULL << 10},
      {"kib", 1ULL << 10},
      {"m", 1ULL << 20},
      {"mb", 1ULL << 20},
      {"mib", 1ULL << 20},
      {"g", 1ULL << 30},
      {"gb", 1ULL << 30},
      {"gib", 1ULL << 30},
      {"t", 1ULL << 40},
      {"tib", 1ULL << 40},
  }};
  for (const auto& [name, value] : kUnits) {
    if (unit == name) {
      mult = value;
    }
  }
  if (unit == "tb") {
    mult = 1ULL << 40;
  }
  if (mult == 0) {
    return bad(fmt::format("unknown unit '{}'", unit));
  }
  if (whole > UINT64_MAX / mult) {
    return bad("too large");
  }
  const std::uint64_t base = whole * mult;
  // frac * mult / frac_scale must be whole bytes.
  const Uint128 frac_bytes = static_cast<Uint128>(frac) * mult;
  if (frac_bytes % frac_scale != 0) {
    return bad("not a whole number of bytes");
  }
  const auto extra = static_cast<std::uint64_t>(frac_bytes / frac_scale);
  if (base > UINT64_MAX - extra) {
    return bad("too large");
  }
  return base + extra;
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<std::string_view, 5> kNames = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  std::uint64_t scale = 1;
  while (unit + 1 < kNames.size() && bytes / scale >= 1024) {
    scale *= 1024;
    ++unit;
  }
  if (bytes % scale == 0) {
    return fmt::format("{} {}", bytes / scale, kNames[unit]);
  }
  return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(scale), kNames[unit]);
}

}  // namespace cloudmgr
