#include "cloudmgr/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace cloudmgr {
namespace {

TEST(StatusTest, DefaultIsOkWithEmptyMessage) {
  const Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.message(), "");
  EXPECT_EQ(s.to_string(), "OK");
}

TEST(StatusTest, OkDropsAnyMessage) {
  const Status s(StatusCode::kOk, "ignored");
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.message(), "");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  const Status s = not_found_error("VM 'web1' not found");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.to_string(), "NOT_FOUND: VM 'web1' not found");
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  const Status s = invalid_argument_error("too small").with_context("--memory");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--memory: too small");
  EXPECT_TRUE(Status().with_context("anything").ok());
}

TEST(StatusTest, EveryCodeNameRoundTrips) {
  for (int i = 0; i <= 16; ++i) {
    const auto code = static_cast<StatusCode>(i);
    const auto name = status_code_name(code);
    ASSERT_FALSE(name.empty());
    const auto parsed = parse_status_code(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(*parsed, code);
  }
  EXPECT_FALSE(parse_status_code("NOT_A_CODE").has_value());
  EXPECT_EQ(status_code_name(StatusCode::kFailedPrecondition), "FAILED_PRECONDITION");
}

TEST(StatusTest, ShorthandsUseTheirCodes) {
  EXPECT_EQ(already_exists_error("").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(failed_precondition_error("").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(permission_denied_error("").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(unavailable_error("").code(), StatusCode::kUnavailable);
  EXPECT_EQ(deadline_exceeded_error("").code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(unimplemented_error("").code(), StatusCode::kUnimplemented);
  EXPECT_EQ(resource_exhausted_error("").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(aborted_error("").code(), StatusCode::kAborted);
  EXPECT_EQ(internal_error("").code(), StatusCode::kInternal);
}

TEST(ResultTest, HoldsValue) {
  Result<std::string> r(std::string("abc"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.status().ok());
  EXPECT_EQ(*r, "abc");
  EXPECT_EQ(r->size(), 3U);
  EXPECT_EQ(r.value_or("x"), "abc");
}

TEST(ResultTest, HoldsError) {
  Result<int> r = not_found_error("gone");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.value_or(7), 7);
}

TEST(ResultTest, OkStatusWithoutValueBecomesInternal) {
  Result<int> r = Status();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r(std::make_unique<int>(5));
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

TEST(ResultTest, ConvertingConstruction) {
  Result<std::string> r("literal");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "literal");
}

}  // namespace
}  // namespace cloudmgr
