#include "core/errno_status.h"

#include <fmt/format.h>

#include <cerrno>

#include "core/errno_text.h"

namespace cloudmgr {

StatusCode status_code_for_errno(int err) noexcept {
  switch (err) {
    case 0:
      return StatusCode::kOk;
    case ENOENT:
    case ENOTDIR:
      return StatusCode::kNotFound;
    case EACCES:
    case EPERM:
    case EROFS:
      return StatusCode::kPermissionDenied;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return StatusCode::kResourceExhausted;
    case EEXIST:
    case ENOTEMPTY:
      return StatusCode::kAlreadyExists;
    case EXDEV:
      return StatusCode::kFailedPrecondition;
    case EIO:
    case EAGAIN:
    case EBUSY:
    case ETIMEDOUT:
      return StatusCode::kUnavailable;
    default:
      return StatusCode::kInternal;
  }
}

Status errno_error(int err, std::string_view what) {
  const StatusCode code = status_code_for_errno(err);
  if (code == StatusCode::kOk) {
    return internal_error(fmt::format("{}: the system reported a failure without an error", what));
  }
  return {code, fmt::format("{}: {}", what, errno_text(err))};
}

}  // namespace cloudmgr
