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

namespace {

struct DurationUnit {
  std::string_view name;
  std::int64_t ns;
};
// Longest names first, so "ms" is not read as "m" followed by "s".
constexpr std::array<DurationUnit, 5> kDurationUnits = {{
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
    {"d", 86'400'000'000'000},
}};

}  // namespace

Result<std::int64_t> parse_duration_ns(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return invalid_argument_error(
        fmt::format("'{}' is not a duration ({}; e.g. 90s, 15m, 2h, 30d, 1h30m)", text.substr(0, 64), why));
  };
  if (text.empty()) {
    return bad("empty");
  }
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::int64_t n = 0;
    const std::size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (n > (INT64_MAX - 9) / 10) {
        return bad("too large");
      }
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    if (i == start) {
      return bad("expected a whole number");
    }
    const DurationUnit* unit = nullptr;
    for (const auto& u : kDurationUnits) {
      if (text.substr(i, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) {
      return bad("expected a unit: ms, s, m, h or d");
    }
    i += unit->name.size();
    if (n > (INT64_MAX - total) / unit->ns) {
      return bad("too large");
    }
    total += n * unit->ns;
  }
  return total;
}

std::string format_duration_ns(std::int64_t ns) {
  if (ns <= 0) {
    return ns == 0 ? "0s" : "-" + format_duration_ns(-ns);
  }
  std::string out;
  std::int64_t left = ns;
  for (auto it = kDurationUnits.rbegin(); it != kDurationUnits.rend(); ++it) {
    if (left >= it->ns) {
      out += fmt::format("{}{}", left / it->ns, it->name);
      left %= it->ns;
    }
  }
  if (left > 0) {
    out += fmt::format("{}ns", left);
  }
  return out;
}

}  // namespace cloudmgr
