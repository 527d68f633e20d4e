#include "core/image_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include <fmt/format.h>

#include "core/errno_text.h"
#include "core/status_macros.h"
#include "image/image_io.h"

namespace cloudmgr {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIncomingPrefix = ".incoming-";
constexpr const char* kBasePrefix = "base-";
// A transfer nobody has touched for this long is dropped (its manager went away).
constexpr std::int64_t kIdleTransferNs = 10LL * 60 * 1'000'000'000;

std::string extension(ImageFormat format) { return format == ImageFormat::kQcow2 ? ".qcow2" : ".raw"; }

}  // namespace

Result<std::unique_ptr<ImageCache>> ImageCache::open(const std::string& dir, const std::string& host_id) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return unavailable_error(fmt::format("image directory '{}' cannot be created: {}", dir, ec.message()));
  }
  // QEMU (another user on a real host) must reach the images: the directory is traversable.
  fs::permissions(dir,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                      fs::perms::others_exec,
                  ec);
  std::unique_ptr<ImageCache> cache(new ImageCache(dir, host_id));
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(kIncomingPrefix)) {
      fs::remove(entry.path(), ec);  // a transfer a crash interrupted: its manager retries
      continue;
    }
    if (!name.starts_with(kBasePrefix) || !entry.is_regular_file()) {
      continue;
    }
    const std::string sha = name.substr(5, 64);
    const std::string rest = name.size() > 69 ? name.substr(69) : "";
    if (!validate_sha256(sha).ok() || (rest != ".qcow2" && rest != ".raw")) {
      continue;
    }
    auto p = image::probe(entry.path().string());
    if (!p.ok()) {
      continue;
    }
    const ImageFormat format = rest == ".qcow2" ? ImageFormat::kQcow2 : ImageFormat::kRaw;
    if (p->format != format) {
      continue;  // not what its name says: never used
    }
    cache->cached_[sha] = {{sha, format, p->size_bytes, p->virtual_size_bytes}, entry.path().string()};
  }
  if (ec) {
    return unavailable_error(fmt::format("image directory '{}' cannot be read: {}", dir, ec.message()));
  }
  return cache;
}

ImageCache::~ImageCache() {
  const std::lock_guard lock(mutex_);
  while (!transfers_.empty()) {
    drop_locked(transfers_.begin());
  }
}

std::string ImageCache::path_for(const ImageInfo& info) const {
  return (fs::path(dir_) / (kBasePrefix + info.sha256 + extension(info.format))).string();
}

void ImageCache::drop_locked(std::map<std::string, Transfer>::iterator it) {
  if (it->second.fd >= 0) {
    ::close(it->second.fd);
  }
  std::error_code ec;
  fs::remove(it->second.path, ec);
  transfers_.erase(it);
}

void ImageCache::expire_idle_locked() {
  const std::int64_t now = now_ns();
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    auto next = std::next(it);
    if (it->second.fd >= 0 && now - it->second.last_activity_ns > kIdleTransferNs) {
      drop_locked(it);
    }
    it = next;
  }
}

Status ImageCache::begin(const std::string& transfer_id, const ImageInfo& image, std::uint64_t data_bytes) {
  CLOUDMGR_RETURN_IF_ERROR(validate_uuid(transfer_id).with_context("transfer"));
  CLOUDMGR_RETURN_IF_ERROR(validate_sha256(image.sha256).with_context("sha256"));
  if (image.size_bytes == 0 || data_bytes > image.size_bytes) {
    return invalid_argument_error(fmt::format("image {}: size {} with {} data bytes is not a transfer", image.sha256,
                                              image.size_bytes, data_bytes));
  }
  const std::lock_guard lock(mutex_);
  expire_idle_locked();
  if (cached_.contains(image.sha256)) {
    return already_exists_error(fmt::format("image {} is cached on host '{}' already", image.sha256, host_id_));
  }
  if (transfers_.contains(transfer_id)) {
    return already_exists_error(fmt::format("transfer {} is under way already", transfer_id));
  }
  struct statvfs vfs {};
  if (::statvfs(dir_.c_str(), &vfs) == 0) {
    const std::uint64_t free_bytes = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < data_bytes) {
      return resource_exhausted_error(fmt::format("host '{}': image {} needs {} bytes; {} has {} free", host_id_,
                                                  image.sha256, data_bytes, dir_, free_bytes));
    }
  }
  Transfer t;
  t.image = image;
  t.data_bytes = data_bytes;
  t.path = (fs::path(dir_) / (kIncomingPrefix + transfer_id)).string();
  t.fd = ::open(t.path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (t.fd < 0) {
    return internal_error(fmt::format("cannot create '{}': {}", t.path, errno_text(errno)));
  }
  if (::ftruncate(t.fd, static_cast<off_t>(image.size_bytes)) != 0) {
    const int err = errno;
    ::close(t.fd);
    std::error_code ec;
    fs::remove(t.path, ec);
    return (err == ENOSPC || err == EFBIG ? resource_exhausted_error : internal_error)(
        fmt::format("cannot size '{}' to {} bytes: {}", t.path, image.size_bytes, errno_text(err)));
  }
  t.last_activity_ns = now_ns();
  transfers_.emplace(transfer_id, std::move(t));
  return {};
}

void ImageCache::on_chunk(const ImageChunk& chunk) {
  {
    const std::lock_guard lock(mutex_);
    auto it = transfers_.find(chunk.transfer_id);
    if (it == transfers_.end() || it->second.fd < 0 || chunk.sha256 != it->second.image.sha256) {
      return;
    }
    Transfer& t = it->second;
    t.last_activity_ns = now_ns();
    const std::uint64_t size = chunk.data.size();
    const bool fits = size > 0 && chunk.offset_bytes <= t.image.size_bytes &&
                      size <= t.image.size_bytes - chunk.offset_bytes && t.received_bytes + size <= t.data_bytes;
    // Out of bounds, more than announced, or a write error: the commit fails and says so.
    if (fits && image::pwrite_all(t.fd, chunk.data.data(), chunk.data.size(), chunk.offset_bytes, t.path).ok()) {
      t.received_bytes += size;
    } else {
      t.overflow = true;
    }
  }
  progress_.notify_all();
}

Result<ImageInfo> ImageCache::commit(const std::string& transfer_id, std::int64_t deadline_ns) {
  Transfer t;
  {
    std::unique_lock lock(mutex_);
    auto it = transfers_.find(transfer_id);
    if (it == transfers_.end() || it->second.fd < 0) {
      return not_found_error(fmt::format("host '{}' has no transfer {} under way", host_id_, transfer_id));
    }
    const auto done = [&] {
      const Transfer& x = transfers_.at(transfer_id);
      return x.overflow || x.received_bytes >= x.data_bytes;
    };
    while (!done()) {
      const std::int64_t left = deadline_ns - now_ns();
      if (left <= 0) {
        const Transfer& x = transfers_.at(transfer_id);
        const Status s = deadline_exceeded_error(fmt::format("host '{}': image {}: {} of {} bytes arrived in time",
                                                             host_id_, x.image.sha256, x.received_bytes, x.data_bytes));
        drop_locked(transfers_.find(transfer_id));
        return s;
      }
      progress_.wait_for(lock, std::chrono::nanoseconds(std::min<std::int64_t>(left, 200'000'000)));
      if (!transfers_.contains(transfer_id)) {
        return aborted_error(fmt::format("transfer {} was dropped", transfer_id));
      }
    }
    it = transfers_.find(transfer_id);
    t = it->second;
    it->second.fd = -1;  // ours now; the entry stays so that pieces are not taken as a new transfer
    it->second.path.clear();
  }
  const auto finish = [&](Status s) -> Status {
    if (t.fd >= 0) {
      ::close(t.fd);
    }
    std::error_code ec;
    fs::remove(t.path, ec);
    const std::lock_guard lock(mutex_);
    transfers_.erase(transfer_id);
    return s;
  };
  if (t.overflow) {
    return finish(data_loss_error(
        fmt::format("host '{}': image {}: the pieces did not fit what was announced", host_id_, t.image.sha256)));
  }
  if (Status s = image::sync_file_and_dir(t.fd, t.path); !s.ok()) {
    return finish(s);
  }
  auto sha = image::sha256_file(t.path);
  if (!sha.ok()) {
    return finish(sha.status());
  }
  if (*sha != t.image.sha256) {
    return finish(data_loss_error(fmt::format("host '{}': the image received has SHA-256 {}, not {}; discarded",
                                              host_id_, *sha, t.image.sha256)));
  }
  auto p = image::probe(t.path);
  if (!p.ok()) {
    return finish(p.status());
  }
  if (p->format != t.image.format) {
    return finish(
        invalid_argument_error(fmt::format("host '{}': image {} was announced as {} but is {}; discarded", host_id_,
                                           t.image.sha256, to_string(t.image.format), to_string(p->format))));
  }
  if (!p->backing_file.empty()) {
    return finish(invalid_argument_error(
        fmt::format("host '{}': image {} names a backing file ('{}'); a base image must stand alone; discarded",
                    host_id_, t.image.sha256, p->backing_file)));
  }
  ImageInfo info = t.image;
  info.size_bytes = p->size_bytes;
  info.virtual_size_bytes = p->virtual_size_bytes;
  const std::string final_path = path_for(info);
  ::fchmod(t.fd, 0444);
  if (::rename(t.path.c_str(), final_path.c_str()) != 0) {
    return finish(internal_error(fmt::format("cannot rename '{}' to '{}': {}", t.path, final_path, errno_text(errno))));
  }
  t.path = final_path;  // finish() must not remove it now
  const Status synced = image::sync_file_and_dir(t.fd, final_path);
  ::close(t.fd);
  t.fd = -1;
  {
    const std::lock_guard lock(mutex_);
    transfers_.erase(transfer_id);
    cached_[info.sha256] = {info, final_path};
  }
  if (!synced.ok()) {
    return synced;
  }
  return info;
}

void ImageCache::abort(const std::string& transfer_id) {
  const std::lock_guard lock(mutex_);
  auto it = transfers_.find(transfer_id);
  if (it != transfers_.end() && it->second.fd >= 0) {
    drop_locked(it);
  }
  progress_.notify_all();
}

std::optional<ImageCache::Entry> ImageCache::find(const std::string& sha256) const {
  const std::lock_guard lock(mutex_);
  auto it = cached_.find(sha256);
  if (it == cached_.end()) {
    return std::nullopt;
  }
  return it->second;
}

std::vector<ImageCache::Entry> ImageCache::list() const {
  const std::lock_guard lock(mutex_);
  std::vector<Entry> out;
  out.reserve(cached_.size());
  for (const auto& [sha, e] : cached_) {
    out.push_back(e);
  }
  return out;
}

Status ImageCache::remove(const std::string& sha256) {
  const std::lock_guard lock(mutex_);
  auto it = cached_.find(sha256);
  if (it == cached_.end()) {
    return not_found_error(fmt::format("image {} is not cached on host '{}'", sha256, host_id_));
  }
  std::error_code ec;
  fs::remove(it->second.path, ec);
  if (ec) {
    return internal_error(fmt::format("cannot remove '{}': {}", it->second.path, ec.message()));
  }
  cached_.erase(it);
  return {};
}

}  // namespace cloudmgr
