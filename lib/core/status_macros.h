// Internal helpers for propagating Status / Result<T>. Not installed.
// NOLINTBEGIN(bugprone-macro-parentheses): `lhs` is a declaration and cannot be parenthesized.
#pragma once

#include "cloudmgr/status.h"

#define CLOUDMGR_CONCAT_INNER(a, b) a##b
#define CLOUDMGR_CONCAT(a, b) CLOUDMGR_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define CLOUDMGR_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::cloudmgr::Status cloudmgr_status_ = (expr);        \
    if (!cloudmgr_status_.ok()) return cloudmgr_status_; \
  } while (false)

// `lhs = value of Result expr`, or returns its Status from the enclosing function.
#define CLOUDMGR_ASSIGN_OR_RETURN(lhs, expr) \
  CLOUDMGR_ASSIGN_OR_RETURN_IMPL(CLOUDMGR_CONCAT(cloudmgr_result_, __LINE__), lhs, expr)
#define CLOUDMGR_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
