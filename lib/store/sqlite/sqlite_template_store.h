// The built-in template store's internals that its tests reach: where errno values and
// OpenSSL's error queue meet the canonical codes, and how an image file's header is read.
// Not installed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr::sqlite {

// The canonical code for the errno of a failed file operation: a missing file kNotFound, no
// access kPermissionDenied, a full disk or quota (and out of memory or descriptors)
// kResourceExhausted, a file that exists kAlreadyExists, another file system
// kFailedPrecondition, an I/O error kUnavailable, anything else kInternal.
StatusCode status_code_for_errno(int err) noexcept;

// A Status for the failed call that set `err`: `what` (what we were doing, naming the file)
// before the system's text. err 0 becomes kInternal.
Status errno_error(int err, std::string_view what);

// A Status for a failed OpenSSL call: `what` before the texts of OpenSSL's error queue,
// which it drains (so that a later call does not report this failure). kResourceExhausted
// when OpenSSL ran out of memory, kInternal otherwise.
Status openssl_error(std::string_view what);

struct ImageProbe {
  ImageFormat format = ImageFormat::kRaw;
  std::uint64_t virtual_size_bytes = 0;
};

// What the header of the image open as `fd` says (`length`: the file's size; `path` for
// messages). A file that starts with the qcow2 magic "QFI\xfb" is qcow2: version 2 or 3,
// standing alone (no backing file, no external data file), not marked corrupt; its virtual
// size is the header's. Anything else non-empty is raw, of its length. kInvalidArgument
// naming the file otherwise.
Result<ImageProbe> probe_image(int fd, const std::string& path, std::uint64_t length);

}  // namespace cloudmgr::sqlite
