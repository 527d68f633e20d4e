// Parsing and printing of sizes for frontends ("512M", "2GiB", "1.5 GiB").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloudmgr/export.h"
#include "cloudmgr/status.h"

namespace cloudmgr {

inline constexpr std::uint64_t kKiB = 1024ULL;
inline constexpr std::uint64_t kMiB = 1024ULL * kKiB;
inline constexpr std::uint64_t kGiB = 1024ULL * kMiB;

// Parses a byte size: a number with an optional binary unit: B, K/KiB, M/MiB, G/GiB,
// T/TiB (case-insensitive; "KB", "MB"... are taken as binary too). A bare number is bytes.
// kInvalidArgument naming the text for anything else, fractions that leave part of a
// byte, or overflow.
CLOUDMGR_API Result<std::uint64_t> parse_bytes(std::string_view text);

// "512 MiB", "1.5 GiB", "0 B": the largest binary unit that keeps the value >= 1, at most
// one decimal.
CLOUDMGR_API std::string format_bytes(std::uint64_t bytes);

// Parses a duration: a whole number with a unit: ms, s, m (minutes), h, d ("90s", "2h",
// "30d"), or several run together ("1h30m"). kInvalidArgument naming the text otherwise
// (no unit, a negative or fractional number, overflow). Returns nanoseconds.
CLOUDMGR_API Result<std::int64_t> parse_duration_ns(std::string_view text);
// "1h30m", "45s", "250ms", "30d": the shortest exact form.
CLOUDMGR_API std::string format_duration_ns(std::int64_t ns);

}  // namespace cloudmgr
