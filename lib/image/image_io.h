// Disk image files: SHA-256 (OpenSSL, behind this header), format probing, data extents of
// sparse files. Internal; used by the agent's image cache and the manager's image transfer.
// Nothing here includes OpenSSL: the core may include this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr::image {

// An incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, std::size_t size);
  void update_zeros(std::uint64_t count);  // `count` zero bytes (a hole), without a buffer that large
  std::string hex_digest();                // 64 lower-case hex digits; the hash is spent after this

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A run of bytes a sparse file holds data in (outside, it reads as zeros).
struct Extent {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

// The data extents of an open file of `size` bytes, in order (SEEK_DATA / SEEK_HOLE; a file
// system without them gives one extent for the whole file).
Result<std::vector<Extent>> data_extents(int fd, std::uint64_t size, const std::string& path);

// What a file is as a disk image.
struct Probe {
  ImageFormat format = ImageFormat::kRaw;  // qcow2 by its header, raw otherwise
  std::uint64_t size_bytes = 0;            // the file's length
  std::uint64_t virtual_size_bytes = 0;    // qcow2: from the header; raw: the length
  std::string backing_file;                // qcow2: the backing file its header names, if any
};
// kNotFound (no such file), kFailedPrecondition (not a regular file), kInvalidArgument (a
// qcow2 header that is cut short or of an unknown version), kInternal (I/O).
Result<Probe> probe(const std::string& path);

// Reads the data extents of an open file of `size` bytes in pieces of at most `piece_bytes`,
// calling `fn(offset, piece)` for each (holes are never read), and returns the SHA-256 of the
// whole file (holes hashed as zeros). Stops at the first error `fn` returns.
Result<std::string> read_pieces(int fd, std::uint64_t size, const std::string& path, std::size_t piece_bytes,
                                const std::function<Status(std::uint64_t, const std::vector<std::uint8_t>&)>& fn);

// SHA-256 of a whole file, holes hashed as zeros without reading them.
Result<std::string> sha256_file(const std::string& path);

// Writes all of `data` at `offset`; kResourceExhausted on ENOSPC, kInternal otherwise, naming `path`.
Status pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset, const std::string& path);
// Reads exactly `size` bytes at `offset`; kDataLoss when the file is shorter.
Status pread_all(int fd, void* data, std::size_t size, std::uint64_t offset, const std::string& path);
// fsync of a file, then of its directory.
Status sync_file_and_dir(int fd, const std::string& path);

}  // namespace cloudmgr::image
