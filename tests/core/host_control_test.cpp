#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "cloudmgr/host.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;

fs::path marker() { return fs::temp_directory_path() / ("cloudmgr-reboot-" + std::to_string(getpid())); }

TEST(RebootHost, DisabledByDefaultAndRunsNothing) {
  fs::remove(marker());
  HostRebootPolicy policy;
  policy.command = {"/usr/bin/touch", marker().string()};
  ASSERT_FALSE(policy.enabled);
  const Status s = reboot_host(policy);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("disabled"), std::string::npos);
  EXPECT_FALSE(fs::exists(marker()));
}

TEST(RebootHost, EnabledRunsTheConfiguredCommand) {
  fs::remove(marker());
  const HostRebootPolicy policy{.enabled = true, .command = {"/usr/bin/touch", marker().string()}};
  ASSERT_TRUE(reboot_host(policy).ok());
  EXPECT_TRUE(fs::exists(marker()));
  fs::remove(marker());
}

TEST(RebootHost, FailingCommandReportsItsExitStatus) {
  const HostRebootPolicy policy{.enabled = true, .command = {"/bin/sh", "-c", "exit 3"}};
  const Status s = reboot_host(policy);
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("status 3"), std::string::npos) << s;
}

TEST(RebootHost, MissingCommandIsInternalNamingIt) {
  const HostRebootPolicy policy{.enabled = true, .command = {"/nonexistent/reboot"}};
  const Status s = reboot_host(policy);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/reboot"), std::string::npos) << s;
}

TEST(RebootHost, RelativeOrEmptyCommandIsInvalid) {
  EXPECT_EQ(reboot_host({.enabled = true, .command = {"reboot"}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(reboot_host({.enabled = true, .command = {}}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cloudmgr
