// The base images an agent keeps in its host's storage, and the transfers on their way in.
//
// A base image lives in the agent's image directory (its storage pool) as
// base-<sha256>.<qcow2|raw>, read-only. It gets there only through a transfer: pieces are
// written to .incoming-<transfer>, and commit() checks the whole file's SHA-256 (and that a
// qcow2 names no backing file, and the format is what was announced) before renaming it into
// place. So every cached image was verified once, when it arrived; on a restart the cache
// trusts its own names (checking only each file's length against its header).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cloudmgr/cloud.h"
#include "cloudmgr/status.h"
#include "cloudmgr/templates.h"

namespace cloudmgr {

class ImageCache {
 public:
  // Creates `dir` if missing, removes pieces of transfers a crash left, and lists what is
  // cached. kUnavailable naming the directory when it cannot be used.
  static Result<std::unique_ptr<ImageCache>> open(const std::string& dir, const std::string& host_id);
  ~ImageCache();
  ImageCache(const ImageCache&) = delete;
  ImageCache& operator=(const ImageCache&) = delete;

  const std::string& dir() const { return dir_; }

  // Prepares to receive `image` (its sha256, format, size) as transfer `transfer_id`, of
  // which `data_bytes` will arrive as pieces (the rest are holes). kAlreadyExists when the
  // image is cached already (nothing to send); kResourceExhausted naming the directory when
  // the file system lacks the space; kInvalidArgument for a bad id, hash or size.
  Status begin(const std::string& transfer_id, const ImageInfo& image, std::uint64_t data_bytes);

  // Writes a piece of a transfer that begin() prepared; pieces of unknown transfers are
  // dropped. Called from a transport thread.
  void on_chunk(const ImageChunk& chunk);

  // Waits (until deadline_ns) for every announced byte, then verifies and caches the image.
  // kDeadlineExceeded saying how much arrived; kDataLoss when the SHA-256 differs (the file
  // is discarded); kInvalidArgument when the file is not what was announced (format, a
  // backing file); kNotFound for an unknown transfer. The transfer is over either way.
  Result<ImageInfo> commit(const std::string& transfer_id, std::int64_t deadline_ns);

  // Drops a transfer and its file (no error when unknown).
  void abort(const std::string& transfer_id);

  // A cached image and its path.
  struct Entry {
    ImageInfo info;
    std::string path;
  };
  std::optional<Entry> find(const std::string& sha256) const;
  std::vector<Entry> list() const;  // sorted by sha256

  // Removes a cached image file (the caller checks that no VM uses it). kNotFound.
  Status remove(const std::string& sha256);

  std::string path_for(const ImageInfo& info) const;

 private:
  ImageCache(std::string dir, std::string host_id) : dir_(std::move(dir)), host_id_(std::move(host_id)) {}

  struct Transfer {
    ImageInfo image;
    std::uint64_t data_bytes = 0;
    std::uint64_t received_bytes = 0;
    bool overflow = false;  // a piece out of bounds or more bytes than announced
    int fd = -1;
    std::string path;
    std::int64_t last_activity_ns = 0;
  };
  void drop_locked(std::map<std::string, Transfer>::iterator it);  // REQUIRES(mutex_)
  void expire_idle_locked();                                       // REQUIRES(mutex_)

  std::string dir_;
  std::string host_id_;
  mutable std::mutex mutex_;
  std::condition_variable progress_;
  std::map<std::string, Transfer> transfers_;  // GUARDED_BY(mutex_)
  std::map<std::string, Entry> cached_;        // GUARDED_BY(mutex_): by sha256
};

}  // namespace cloudmgr
