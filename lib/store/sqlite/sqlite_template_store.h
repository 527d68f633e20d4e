// The built-in template store's internals that its tests reach: where errno values and
// OpenSSL's error queue meet the canonical codes, and how an image file's header is read.
// Not installed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"
#include "core/errno_status.h"
#include "crypto/openssl_error.h"

namespace cloudmgr::sqlite {

// errno and OpenSSL failures as a Status (core/errno_status.h, crypto/openssl_error.h).
using cloudmgr::errno_error;
using cloudmgr::status_code_for_errno;
using crypto::openssl_error;

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
