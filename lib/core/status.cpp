#include "cloudmgr/status.h"

#include <array>

namespace cloudmgr {
namespace {

constexpr std::array<std::string_view, 17> kCodeNames = {
    "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED",
};

}  // namespace

std::string_view status_code_name(StatusCode code) noexcept {
  const auto index = static_cast<std::size_t>(code);
  return index < kCodeNames.size() ? kCodeNames[index] : std::string_view("UNKNOWN");
}

std::optional<StatusCode> parse_status_code(std::string_view name) noexcept {
  for (std::size_t i = 0; i < kCodeNames.size(); ++i) {
    if (kCodeNames[i] == name) {
      return static_cast<StatusCode>(i);
    }
  }
  return std::nullopt;
}

Status::Status(StatusCode code, std::string message)
    : code_(code), message_(code == StatusCode::kOk ? std::string() : std::move(message)) {}

std::string Status::to_string() const {
  if (ok()) {
    return "OK";
  }
  std::string out(status_code_name(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status Status::with_context(std::string_view context) const {
  if (ok()) {
    return *this;
  }
  std::string message(context);
  if (!message_.empty()) {
    message += ": ";
    message += message_;
  }
  return {code_, std::move(message)};
}

std::ostream& operator<<(std::ostream& os, const Status& status) { return os << status.to_string(); }
std::ostream& operator<<(std::ostream& os, StatusCode code) { return os << status_code_name(code); }

Status invalid_argument_error(std::string message) { return {StatusCode::kInvalidArgument, std::move(message)}; }
Status not_found_error(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
Status already_exists_error(std::string message) { return {StatusCode::kAlreadyExists, std::move(message)}; }
Status failed_precondition_error(std::string message) { return {StatusCode::kFailedPrecondition, std::move(message)}; }
Status permission_denied_error(std::string message) { return {StatusCode::kPermissionDenied, std::move(message)}; }
Status unavailable_error(std::string message) { return {StatusCode::kUnavailable, std::move(message)}; }
Status deadline_exceeded_error(std::string message) { return {StatusCode::kDeadlineExceeded, std::move(message)}; }
Status unimplemented_error(std::string message) { return {StatusCode::kUnimplemented, std::move(message)}; }
Status resource_exhausted_error(std::string message) { return {StatusCode::kResourceExhausted, std::move(message)}; }
Status aborted_error(std::string message) { return {StatusCode::kAborted, std::move(message)}; }
Status internal_error(std::string message) { return {StatusCode::kInternal, std::move(message)}; }
Status data_loss_error(std::string message) { return {StatusCode::kDataLoss, std::move(message)}; }

}  // namespace cloudmgr
