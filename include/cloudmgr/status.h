// Error model of libcloudmgr: every fallible call returns a Status or a Result<T>.
// No exception crosses the public API.
//
// Codes follow the canonical set (the same numbers as abseil and gRPC), chosen by
// what the caller should do next:
//   kInvalidArgument    fix the request (bad name, memory size, malformed XML...)
//   kNotFound           the named VM, snapshot, host... does not exist
//   kAlreadyExists      something with that name or uuid exists already
//   kFailedPrecondition the target is in the wrong state for the verb (start a running VM)
//   kPermissionDenied   the caller may not do this (including disabled host reboot)
//   kUnavailable        the hypervisor or peer cannot be reached now; retry later
//   kDeadlineExceeded   the operation did not finish in time
//   kUnimplemented      the backend does not support the verb
//   kResourceExhausted  out of memory, capacity or quota
//   kAborted            the operation was cancelled or conflicted; retry at a higher level
//   kInternal           a bug or an unexpected backend failure
//   kDataLoss           data is corrupt or lost (an image whose SHA-256 does not match)
#pragma once

#include <cassert>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cloudmgr/export.h"

namespace cloudmgr {

enum class StatusCode : std::uint8_t {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "NOT_FOUND", "INVALID_ARGUMENT", ...: stable names used in logs, JSON and the C ABI.
CLOUDMGR_API std::string_view status_code_name(StatusCode code) noexcept;
// Inverse of status_code_name; nullopt for an unknown name.
CLOUDMGR_API std::optional<StatusCode> parse_status_code(std::string_view name) noexcept;

// A code and a human-readable message. An OK status has an empty message and costs
// nothing to create or copy. Value type; not synchronized.
class [[nodiscard]] CLOUDMGR_API Status {
 public:
  Status() noexcept = default;
  Status(StatusCode code, std::string message);

  static Status ok_status() noexcept { return Status(); }

  bool ok() const noexcept { return code_ == StatusCode::kOk; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "NOT_FOUND: domain 'web1' not found" or "OK".
  std::string to_string() const;

  // Returns a copy whose message is "<context>: <message>"; OK stays OK.
  Status with_context(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

CLOUDMGR_API std::ostream& operator<<(std::ostream& os, const Status& status);
CLOUDMGR_API std::ostream& operator<<(std::ostream& os, StatusCode code);

// Shorthands, one per code a library call returns.
CLOUDMGR_API Status invalid_argument_error(std::string message);
CLOUDMGR_API Status not_found_error(std::string message);
CLOUDMGR_API Status already_exists_error(std::string message);
CLOUDMGR_API Status failed_precondition_error(std::string message);
CLOUDMGR_API Status permission_denied_error(std::string message);
CLOUDMGR_API Status unavailable_error(std::string message);
CLOUDMGR_API Status deadline_exceeded_error(std::string message);
CLOUDMGR_API Status unimplemented_error(std::string message);
CLOUDMGR_API Status resource_exhausted_error(std::string message);
CLOUDMGR_API Status aborted_error(std::string message);
CLOUDMGR_API Status internal_error(std::string message);
CLOUDMGR_API Status data_loss_error(std::string message);

// Either a value of type T or a non-OK Status.
//
// Constructing a Result from an OK Status is a programming error; it becomes an
// kInternal status so that the error is visible rather than undefined behaviour.
// Accessing value() of a failed Result is a precondition violation (asserted in
// debug builds); check ok() first.
template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cvref_t<T>, Status>, "Result<Status> is meaningless");

  template <typename U>
  static constexpr bool kIsValueArg =
      std::is_constructible_v<T, U&&> && !std::is_same_v<std::remove_cvref_t<U>, T> &&
      !std::is_same_v<std::remove_cvref_t<U>, Status> && !std::is_same_v<std::remove_cvref_t<U>, Result<T>>;

 public:
  Result(const T& value) : value_(value) {}                            // NOLINT(google-explicit-constructor)
  Result(T&& value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT(google-explicit-constructor)
      : value_(std::move(value)) {}
  Result(Status status)  // NOLINT(google-explicit-constructor)
      : status_(status.ok() ? Status(StatusCode::kInternal, "Result constructed from an OK status without a value")
                            : std::move(status)) {}
  // Anything T can be built from (a string literal for Result<std::string>, a derived
  // unique_ptr...), except a Status or a Result.
  template <typename U, typename = std::enable_if_t<kIsValueArg<U>>>
  Result(U&& value)  // NOLINT(google-explicit-constructor,bugprone-forwarding-reference-overload)
      : value_(std::forward<U>(value)) {}

  bool ok() const noexcept { return value_.has_value(); }
  const Status& status() const noexcept { return status_; }

  T& value() & { return checked(); }
  const T& value() const& { return checked(); }
  T&& value() && { return std::move(checked()); }

  T& operator*() & { return checked(); }
  const T& operator*() const& { return checked(); }
  T&& operator*() && { return std::move(checked()); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &checked(); }

  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? *value_ : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  T& checked() {
    assert(value_.has_value() && "value() of a failed Result");
    return *value_;
  }
  const T& checked() const {
    assert(value_.has_value() && "value() of a failed Result");
    return *value_;
  }

  std::optional<T> value_;
  Status status_;
};

}  // namespace cloudmgr
