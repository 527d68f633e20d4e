#include "cloudmgr/units.h"

#include <gtest/gtest.h>

namespace cloudmgr {
namespace {

TEST(ParseBytes, UnitsAndFractions) {
  EXPECT_EQ(*parse_bytes("0"), 0U);
  EXPECT_EQ(*parse_bytes("4096"), 4096U);
  EXPECT_EQ(*parse_bytes("512M"), 512 * kMiB);
  EXPECT_EQ(*parse_bytes("512MiB"), 512 * kMiB);
  EXPECT_EQ(*parse_bytes("2g"), 2 * kGiB);
  EXPECT_EQ(*parse_bytes("1.5 GiB"), 3 * kGiB / 2);
  EXPECT_EQ(*parse_bytes("1K"), 1024U);
  EXPECT_EQ(*parse_bytes("1T"), 1024 * kGiB);
  EXPECT_EQ(*parse_bytes("0.5k"), 512U);
}

TEST(ParseBytes, RejectsBadTextNamingIt) {
  for (const char* bad : {"", "M", "12Q", "1.5", "-1G", "1e9", "99999999999999999999", "20000000T", "1..5G"}) {
    auto r = parse_bytes(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(std::string("'") + bad + "'"), std::string::npos) << r.status();
  }
}

TEST(FormatBytes, PicksTheLargestUnit) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1 KiB");
  EXPECT_EQ(format_bytes(512 * kMiB), "512 MiB");
  EXPECT_EQ(format_bytes(3 * kGiB / 2), "1.5 GiB");
  EXPECT_EQ(format_bytes(2048 * kGiB), "2 TiB");
}

}  // namespace
}  // namespace cloudmgr
