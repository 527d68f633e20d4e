#include "image/image_io.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/errno_text.h"
#include "core/status_macros.h"

namespace cloudmgr::image {

namespace {

constexpr std::size_t kBufferBytes = 1 << 20;

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

Status io_error(const std::string& what, const std::string& path, int err) {
  if (err == ENOSPC || err == EDQUOT) {
    return resource_exhausted_error(fmt::format("{} {}: {}", what, path, errno_text(err)));
  }
  if (err == ENOENT) {
    return not_found_error(fmt::format("{} {}: {}", what, path, errno_text(err)));
  }
  return internal_error(fmt::format("{} {}: {}", what, path, errno_text(err)));
}

std::uint64_t be64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8U) | p[i];
  }
  return v;
}

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24U) | (std::uint32_t{p[1]} << 16U) | (std::uint32_t{p[2]} << 8U) | p[3];
}

}  // namespace

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  // Only allocation can fail here; a failed context hashes nothing and hex_digest says so.
  if (impl_->ctx != nullptr && EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(impl_->ctx);
    impl_->ctx = nullptr;
  }
}

Sha256::~Sha256() = default;

void Sha256::update(const void* data, std::size_t size) {
  if (impl_->ctx != nullptr && size > 0) {
    EVP_DigestUpdate(impl_->ctx, data, size);
  }
}

void Sha256::update_zeros(std::uint64_t count) {
  static const std::array<unsigned char, std::size_t{64} * 1024> zeros{};
  while (count > 0) {
    const std::size_t n = count < zeros.size() ? static_cast<std::size_t>(count) : zeros.size();
    update(zeros.data(), n);
    count -= n;
  }
}

std::string Sha256::hex_digest() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (impl_->ctx == nullptr || EVP_DigestFinal_ex(impl_->ctx, md.data(), &len) != 1) {
    return "sha256-unavailable";  // never a valid digest: it matches nothing
  }
  std::string out;
  out.reserve(std::size_t{2} * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += fmt::format("{:02x}", md.at(i));
  }
  return out;
}

Result<std::vector<Extent>> data_extents(int fd, std::uint64_t size, const std::string& path) {
  std::vector<Extent> out;
  auto pos = static_cast<off_t>(0);
  const auto end = static_cast<off_t>(size);
  while (pos < end) {
    const off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        break;  // only a hole from pos to the end
      }
      if (errno == EINVAL && out.empty()) {
        return std::vector<Extent>{{0, size}};  // no SEEK_DATA here: all of it is data
      }
      return io_error("cannot find the data in", path, errno);
    }
    if (data >= end) {
      break;
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      return io_error("cannot find the holes in", path, errno);
    }
    hole = std::min(hole, end);
    out.push_back({static_cast<std::uint64_t>(data), static_cast<std::uint64_t>(hole - data)});
    pos = hole;
  }
  return out;
}

Result<Probe> probe(const std::string& path) {
  const int raw_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw_fd < 0) {
    return io_error("cannot open", path, errno);
  }
  const Fd fd(raw_fd);
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    return io_error("cannot stat", path, errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return failed_precondition_error(fmt::format("{} is not a regular file", path));
  }
  Probe p;
  p.size_bytes = static_cast<std::uint64_t>(st.st_size);
  p.virtual_size_bytes = p.size_bytes;
  std::array<unsigned char, 72> header{};
  const ssize_t n = ::pread(fd.fd, header.data(), header.size(), 0);
  if (n < 0) {
    return io_error("cannot read", path, errno);
  }
  if (n < 4 || std::memcmp(header.data(), "QFI\xfb", 4) != 0) {
    return p;  // raw
  }
  if (n < 72) {
    return invalid_argument_error(fmt::format("{}: its qcow2 header is cut short ({} bytes)", path, n));
  }
  const std::uint32_t version = be32(&header.at(4));
  if (version != 2 && version != 3) {
    return invalid_argument_error(fmt::format("{}: qcow2 version {} is not 2 or 3", path, version));
  }
  p.format = ImageFormat::kQcow2;
  p.virtual_size_bytes = be64(&header.at(24));
  const std::uint64_t backing_offset = be64(&header.at(8));
  const std::uint32_t backing_size = be32(&header.at(16));
  if (backing_offset != 0) {
    if (backing_size == 0 || backing_size > 1023 || backing_offset + backing_size > p.size_bytes) {
      return invalid_argument_error(fmt::format("{}: its qcow2 header names a backing file out of bounds", path));
    }
    p.backing_file.resize(backing_size);
    CLOUDMGR_RETURN_IF_ERROR(pread_all(fd.fd, p.backing_file.data(), backing_size, backing_offset, path));
  }
  return p;
}

Result<std::string> sha256_file(const std::string& path) {
  const int raw_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw_fd < 0) {
    return io_error("cannot open", path, errno);
  }
  const Fd fd(raw_fd);
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) {
    return io_error("cannot stat", path, errno);
  }
  return read_pieces(fd.fd, static_cast<std::uint64_t>(st.st_size), path, kBufferBytes,
                     [](std::uint64_t, const std::vector<std::uint8_t>&) { return Status(); });
}

Result<std::string> read_pieces(int fd, std::uint64_t size, const std::string& path, std::size_t piece_bytes,
                                const std::function<Status(std::uint64_t, const std::vector<std::uint8_t>&)>& fn) {
  CLOUDMGR_ASSIGN_OR_RETURN(const std::vector<Extent> extents, data_extents(fd, size, path));
  Sha256 hash;
  std::vector<std::uint8_t> piece;
  std::uint64_t pos = 0;
  for (const Extent& e : extents) {
    hash.update_zeros(e.offset - pos);
    for (std::uint64_t at = e.offset; at < e.offset + e.length;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece_bytes, e.offset + e.length - at));
      piece.resize(n);
      CLOUDMGR_RETURN_IF_ERROR(pread_all(fd, piece.data(), n, at, path));
      hash.update(piece.data(), n);
      CLOUDMGR_RETURN_IF_ERROR(fn(at, piece));
      at += n;
    }
    pos = e.offset + e.length;
  }
  hash.update_zeros(size - pos);
  return hash.hex_digest();
}

Status pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset, const std::string& path) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return io_error("cannot write", path, errno);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Status pread_all(int fd, void* data, std::size_t size, std::uint64_t offset, const std::string& path) {
  auto* p = static_cast<unsigned char*>(data);
  while (size > 0) {
    const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return io_error("cannot read", path, errno);
    }
    if (n == 0) {
      return data_loss_error(fmt::format("{} ends before byte {}", path, offset + size));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return {};
}

Status sync_file_and_dir(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    return io_error("cannot sync", path, errno);
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return io_error("cannot open the directory of", path, errno);
  }
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) {
    return io_error("cannot sync the directory of", path, err);
  }
  return {};
}

}  // namespace cloudmgr::image
