#include "driver/libvirt/libvirt_error.h"

#include <gtest/gtest.h>

namespace cloudmgr::libvirt {
namespace {

virError make_error(int code, const char* message) {
  virError e{};
  e.code = code;
  e.domain = VIR_FROM_DOMAIN;
  e.message = const_cast<char*>(message);  // NOLINT(cppcoreguidelines-pro-type-const-cast): libvirt's struct
  e.level = VIR_ERR_ERROR;
  return e;
}

TEST(LibvirtError, CanonicalCodes) {
  EXPECT_EQ(status_code_for(VIR_ERR_NO_DOMAIN), StatusCode::kNotFound);
  EXPECT_EQ(status_code_for(VIR_ERR_NO_DOMAIN_SNAPSHOT), StatusCode::kNotFound);
  EXPECT_EQ(status_code_for(VIR_ERR_DOM_EXIST), StatusCode::kAlreadyExists);
  EXPECT_EQ(status_code_for(VIR_ERR_OPERATION_INVALID), StatusCode::kFailedPrecondition);
  EXPECT_EQ(status_code_for(VIR_ERR_INVALID_ARG), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_code_for(VIR_ERR_XML_ERROR), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_code_for(VIR_ERR_CONFIG_UNSUPPORTED), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_code_for(VIR_ERR_NO_SUPPORT), StatusCode::kUnimplemented);
  EXPECT_EQ(status_code_for(VIR_ERR_OPERATION_UNSUPPORTED), StatusCode::kUnimplemented);
  EXPECT_EQ(status_code_for(VIR_ERR_ACCESS_DENIED), StatusCode::kPermissionDenied);
  EXPECT_EQ(status_code_for(VIR_ERR_AUTH_FAILED), StatusCode::kUnauthenticated);
  EXPECT_EQ(status_code_for(VIR_ERR_OPERATION_TIMEOUT), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(status_code_for(VIR_ERR_OPERATION_ABORTED), StatusCode::kAborted);
  EXPECT_EQ(status_code_for(VIR_ERR_NO_MEMORY), StatusCode::kResourceExhausted);
  EXPECT_EQ(status_code_for(VIR_ERR_RPC), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(VIR_ERR_NO_CONNECT), StatusCode::kUnavailable);
  EXPECT_EQ(status_code_for(VIR_ERR_INTERNAL_ERROR), StatusCode::kInternal);
  EXPECT_EQ(status_code_for(VIR_ERR_OPERATION_FAILED), StatusCode::kInternal);
  EXPECT_EQ(status_code_for(VIR_ERR_OK), StatusCode::kOk);
}

TEST(LibvirtError, KeepsLibvirtsOwnMessageAfterTheContext) {
  const virError e = make_error(VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching name 'x'");
  const Status s = status_from_error(&e, "starting VM 'x'");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "starting VM 'x': Domain not found: no domain with matching name 'x'");
}

// libvirt reports a define that clashes with an existing name as OPERATION_FAILED.
TEST(LibvirtError, NameClashOnDefineIsAlreadyExists) {
  const virError e = make_error(VIR_ERR_OPERATION_FAILED, "operation failed: domain 'web1' already exists with uuid 1");
  EXPECT_EQ(status_from_error(&e, "defining").code(), StatusCode::kAlreadyExists);
}

TEST(LibvirtError, MissingErrorIsInternal) {
  const Status s = status_from_error(nullptr, "listing VMs");
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("listing VMs"), std::string::npos);
  const virError no_text = make_error(VIR_ERR_RPC, nullptr);
  EXPECT_EQ(status_from_error(&no_text, "x").code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace cloudmgr::libvirt
