// The built-in template store (spi/template_store.h): one directory.
//
//   catalog.db        SQLite: one row per template version (table `templates`)
//   images/<sha256>   the base images, content-addressed, read-only (0444)
//   tmp/              files being written or handed out by incoming_path()
//
// Crash safety. An image is written to tmp/, fsynced, renamed into images/ and images/ is
// fsynced before the row that names it commits, so a committed row always has a complete
// image. A crash before the commit leaves a temporary (removed by the next open) or an image
// no row names (an orphan, also removed by the next open). The catalog runs in WAL mode with
// synchronous=FULL: a commit is durable when import() returns. NORMAL could lose the last
// commits on power loss, which here would undo a take_file import whose source is gone, or
// turn its image into an orphan that the next open deletes; imports are rare and dominated by
// copying and fsyncing the image, so the extra WAL fsync per commit costs nothing noticeable.
//
// Concurrency. Within a process, one connection and a mutex; the long work (hashing and
// copying an image, re-hashing for verify and export) runs outside the mutex. Between
// processes, everything that decides whether an image file is needed runs inside a
// BEGIN IMMEDIATE transaction (SQLite's write lock): placing an image and inserting its row
// (with the next version: one more than the name ever had), and deleting an image no committed row names. So an
// import never relies on an image that a concurrent remove is deleting, and two imports of
// one name get distinct versions. Temporaries are flock()ed by their writer while in use;
// open removes only those it can lock, so it does not pull files from under another process.
#include "store/sqlite/sqlite_template_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/spi/template_store.h"
#include "cloudmgr/templates.h"
#include "core/errno_text.h"
#include "core/status_macros.h"
#include "core/text.h"
#include "store/sqlite/sqlite_metrics_store.h"

namespace cloudmgr {

namespace spi {
TemplateStore::~TemplateStore() = default;
}  // namespace spi

namespace sqlite {

namespace {

// --------------------------------------------------------------------------------------------
// Files

constexpr std::size_t kChunk = 1 << 20;
constexpr std::size_t kQcow2HeaderV2 = 72;
constexpr std::size_t kQcow2HeaderV3 = 104;
constexpr std::uint64_t kQcow2Corrupt = 1U << 1U;
constexpr std::uint64_t kQcow2ExternalData = 1U << 2U;
constexpr std::size_t kMaxBackingName = 1023;  // the qcow2 specification's limit
constexpr std::size_t kMaxExportJson = 1 << 20;

const std::array<unsigned char, kChunk>& zeros() {
  static const std::array<unsigned char, kChunk> block{};
  return block;
}

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_ = -1;
};

// A file being written: removed when it goes unless release()d (renamed away). Holds an
// exclusive flock so that open() in another process leaves it alone.
class TempFile {
 public:
  TempFile() noexcept = default;
  TempFile(std::string path, UniqueFd fd) noexcept : path_(std::move(path)), fd_(std::move(fd)) {}
  ~TempFile() { remove(); }
  TempFile(TempFile&& other) noexcept : path_(std::exchange(other.path_, {})), fd_(std::move(other.fd_)) {}
  TempFile& operator=(TempFile&& other) noexcept {
    if (this != &other) {
      remove();
      path_ = std::exchange(other.path_, {});
      fd_ = std::move(other.fd_);
    }
    return *this;
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_.get(); }
  // The file is someone else's now (renamed or handed out); keeps the descriptor and lock.
  void release() noexcept { path_.clear(); }
  UniqueFd take_fd() noexcept { return std::move(fd_); }

 private:
  void remove() noexcept {
    if (!path_.empty()) {
      ::unlink(path_.c_str());
      path_.clear();
    }
  }

  std::string path_;
  UniqueFd fd_;
};

Status data_loss_error(std::string message) { return {StatusCode::kDataLoss, std::move(message)}; }

std::string join(std::string_view dir, std::string_view name) { return fmt::format("{}/{}", dir, name); }

std::uint32_t be32(const unsigned char* p) noexcept {
  return (std::uint32_t{p[0]} << 24U) | (std::uint32_t{p[1]} << 16U) | (std::uint32_t{p[2]} << 8U) | p[3];
}
std::uint64_t be64(const unsigned char* p) noexcept { return (std::uint64_t{be32(p)} << 32U) | be32(p + 4); }

// Reads up to `size` bytes at `offset`; fewer only at the end of the file.
Result<std::size_t> read_at(int fd, unsigned char* buf, std::size_t size, std::uint64_t offset,
                            const std::string& path) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, buf + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno_error(errno, fmt::format("reading '{}'", path));
    }
    if (n == 0) {
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Status write_at(int fd, const unsigned char* buf, std::size_t size, std::uint64_t offset, const std::string& path) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, buf + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno_error(errno, fmt::format("writing '{}'", path));
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

Status fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) {
    return errno_error(errno, fmt::format("flushing '{}' to disk", path));
  }
  return {};
}

Status fsync_dir(const std::string& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) {
    return errno_error(errno, fmt::format("opening the directory '{}'", path));
  }
  return fsync_fd(fd.get(), path);
}

// rename() that fails with EEXIST instead of replacing `to`.
Status rename_no_replace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return {};
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return errno_error(errno, fmt::format("renaming '{}' to '{}'", from, to));
  }
  // The file system cannot do it: a hard link is just as exclusive.
  if (::link(from.c_str(), to.c_str()) != 0) {
    return errno_error(errno, fmt::format("linking '{}' to '{}'", from, to));
  }
  ::unlink(from.c_str());
  return {};
}

// A new file `dir`/`prefix`XXXXXX, locked. Retries when a concurrent open() in another
// process removed it between its creation and the lock.
Result<TempFile> make_temp(const std::string& dir, std::string_view prefix) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string path = fmt::format("{}/{}XXXXXX", dir, prefix);
    UniqueFd fd(::mkostemp(path.data(), O_CLOEXEC));
    if (!fd.valid()) {
      return errno_error(errno, fmt::format("creating a temporary file in '{}'", dir));
    }
    TempFile file(std::move(path), std::move(fd));
    while (::flock(file.fd(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return errno_error(errno, fmt::format("locking '{}'", file.path()));
      }
    }
    struct stat st {};
    if (::fstat(file.fd(), &st) != 0) {
      return errno_error(errno, fmt::format("reading the status of '{}'", file.path()));
    }
    if (st.st_nlink > 0) {
      return file;
    }
    file.release();  // already gone
  }
  return unavailable_error(fmt::format("creating a temporary file in '{}': it keeps being removed", dir));
}

// SHA-256 with OpenSSL's EVP interface.
class Sha256 {
 public:
  static Result<Sha256> create() {
    Sha256 h;
    if (!h.ctx_ || EVP_DigestInit_ex(h.ctx_.get(), EVP_sha256(), nullptr) != 1) {
      return openssl_error("starting a SHA-256");
    }
    return h;
  }

  Status update(const unsigned char* data, std::size_t size) {
    if (EVP_DigestUpdate(ctx_.get(), data, size) != 1) {
      return openssl_error("computing a SHA-256");
    }
    return {};
  }

  // `count` zero bytes, without a buffer of that size.
  Status update_zeros(std::uint64_t count) {
    while (count > 0) {
      const std::size_t n = count < kChunk ? static_cast<std::size_t>(count) : kChunk;
      CLOUDMGR_RETURN_IF_ERROR(update(zeros().data(), n));
      count -= n;
    }
    return {};
  }

  Result<std::string> hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int size = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), digest.data(), &size) != 1) {
      return openssl_error("finishing a SHA-256");
    }
    std::string out;
    out.reserve(2 * std::size_t{size});
    for (unsigned int i = 0; i < size; ++i) {
      fmt::format_to(std::back_inserter(out), "{:02x}", digest[i]);
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* ctx) const noexcept { EVP_MD_CTX_free(ctx); }
  };
  Sha256() : ctx_(EVP_MD_CTX_new()) {}
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// The SHA-256 of the first `length` bytes of `src`, read extent by extent: holes are hashed
// as zeros without being read. With `dst` (>= 0), the data is also written there at the same
// offsets, except for all-zero chunks, and dst is sized to `length`: holes stay holes.
Result<std::string> hash_file(int src, const std::string& src_path, std::uint64_t length, int dst = -1,
                              const std::string& dst_path = {}) {
  CLOUDMGR_ASSIGN_OR_RETURN(Sha256 sha, Sha256::create());
  std::vector<unsigned char> buf(kChunk);
  bool sparse_aware = true;
  const auto end = static_cast<off_t>(length);
  off_t pos = 0;
  while (pos < end) {
    off_t data = sparse_aware ? ::lseek(src, pos, SEEK_DATA) : pos;
    if (data < 0) {
      if (errno == ENXIO) {
        data = end;  // nothing but a hole up to the end
      } else if (errno == EINVAL || errno == EOPNOTSUPP) {
        sparse_aware = false;  // the file system cannot tell: read everything
        data = pos;
      } else {
        return errno_error(errno, fmt::format("looking for data in '{}'", src_path));
      }
    }
    data = std::min(data, end);
    CLOUDMGR_RETURN_IF_ERROR(sha.update_zeros(static_cast<std::uint64_t>(data - pos)));
    if (data == end) {
      break;
    }
    off_t hole = sparse_aware ? ::lseek(src, data, SEEK_HOLE) : end;
    if (hole < 0) {
      return errno_error(errno, fmt::format("looking for holes in '{}'", src_path));
    }
    hole = std::min(hole, end);
    for (off_t off = data; off < hole;) {
      const auto want = static_cast<std::size_t>(std::min<off_t>(hole - off, static_cast<off_t>(kChunk)));
      CLOUDMGR_ASSIGN_OR_RETURN(const std::size_t got,
                                read_at(src, buf.data(), want, static_cast<std::uint64_t>(off), src_path));
      if (got != want) {
        return aborted_error(fmt::format("'{}' shrank while it was being read", src_path));
      }
      CLOUDMGR_RETURN_IF_ERROR(sha.update(buf.data(), got));
      const bool all_zero = buf[0] == 0 && std::memcmp(buf.data(), buf.data() + 1, got - 1) == 0;
      if (dst >= 0 && !all_zero) {
        CLOUDMGR_RETURN_IF_ERROR(write_at(dst, buf.data(), got, static_cast<std::uint64_t>(off), dst_path));
      }
      off += static_cast<off_t>(got);
    }
    pos = hole;
  }
  if (dst >= 0 && ::ftruncate(dst, end) != 0) {
    return errno_error(errno, fmt::format("sizing '{}'", dst_path));
  }
  return sha.hex();
}

std::string_view image_extension(ImageFormat format) noexcept {
  return format == ImageFormat::kRaw ? ".img" : ".qcow2";
}

std::int64_t wall_clock_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// --------------------------------------------------------------------------------------------
// SQLite

// 'CMGT' in the file header: a cloudmgr template catalog, whatever its schema version.
constexpr std::int32_t kApplicationId = 0x434d4754;
constexpr std::int64_t kSchemaVersion = 1;
// Writers hold the lock only to rename a file and commit a row.
constexpr int kBusyTimeoutMs = 10000;

// The spec is template_spec_to_json; sizes are bytes (at most 2^63 - 1); created_ns is
// nanoseconds since the Unix epoch.
constexpr std::string_view kCreateSchema =
    "CREATE TABLE templates(name TEXT NOT NULL, version INTEGER NOT NULL, spec TEXT NOT NULL,"
    " sha256 TEXT NOT NULL, format TEXT NOT NULL, size_bytes INTEGER NOT NULL,"
    " virtual_size_bytes INTEGER NOT NULL, created_ns INTEGER NOT NULL, origin TEXT NOT NULL,"
    " PRIMARY KEY(name, version)) WITHOUT ROWID;"
    "CREATE INDEX templates_by_sha256 ON templates(sha256);"
    // The highest version each name ever had, so that a removed version's number is never
    // given to another image (VMs and exports name their template by name:version).
    "CREATE TABLE template_names(name TEXT PRIMARY KEY, last_version INTEGER NOT NULL) WITHOUT ROWID;";
constexpr std::string_view kColumns =
    "name, version, spec, sha256, format, size_bytes, virtual_size_bytes, created_ns, origin";
constexpr std::string_view kNextVersion =
    "SELECT max(coalesce((SELECT last_version FROM template_names WHERE name = ?1), 0),"
    " coalesce((SELECT max(version) FROM templates WHERE name = ?1), 0)) + 1";
constexpr std::string_view kRecordVersion =
    "INSERT INTO template_names(name, last_version) VALUES(?1, ?2)"
    " ON CONFLICT(name) DO UPDATE SET last_version = excluded.last_version";
constexpr std::string_view kInsert =
    "INSERT INTO templates(name, version, spec, sha256, format, size_bytes, virtual_size_bytes, created_ns, origin)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
constexpr std::string_view kShasOf =
    "SELECT DISTINCT sha256 FROM templates WHERE name = ?1 AND (?2 = 0 OR version = ?2)";
constexpr std::string_view kDelete = "DELETE FROM templates WHERE name = ?1 AND (?2 = 0 OR version = ?2)";
constexpr std::string_view kUses = "SELECT 1 FROM templates WHERE sha256 = ?1 LIMIT 1";
constexpr std::string_view kImageRow =
    "SELECT format, size_bytes, virtual_size_bytes FROM templates WHERE sha256 = ?1 LIMIT 1";

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StatementFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};

// One prepared statement: binds (copying the values), steps, reads columns.
class Query {
 public:
  explicit Query(sqlite3_stmt* stmt) noexcept : stmt_(stmt) {}

  Query& bind_int(int i, std::int64_t v) noexcept {
    note(sqlite3_bind_int64(stmt_.get(), i, v));
    return *this;
  }
  Query& bind_text(int i, std::string_view v) noexcept {
    if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      note(SQLITE_TOOBIG);
    } else {
      note(sqlite3_bind_text(stmt_.get(), i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    }
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or the error of a binding or of the step.
  int step() noexcept { return rc_ != SQLITE_OK ? rc_ : sqlite3_step(stmt_.get()); }

  std::int64_t int_at(int col) const noexcept { return sqlite3_column_int64(stmt_.get(), col); }
  std::string text_at(int col) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), col));
    return text != nullptr ? std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), col)))
                           : std::string();
  }

 private:
  void note(int rc) noexcept {
    if (rc_ == SQLITE_OK) {
      rc_ = rc;
    }
  }

  std::unique_ptr<sqlite3_stmt, StatementFinalizer> stmt_;
  int rc_ = SQLITE_OK;
};

// The interface's promise that no exception escapes.
template <typename F>
auto guarded(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return resource_exhausted_error("template store: out of memory");
  } catch (const std::exception& e) {
    return internal_error(fmt::format("template store: {}", e.what()));
  } catch (...) {
    return internal_error("template store: unknown exception");
  }
}

// Where an import's image comes from, and what it must be.
struct ImportSource {
  const spi::ImportRequest& request;
  const std::string* expected_sha256 = nullptr;  // import_export: the recorded hash
  std::string_view expected_from;                // ... and the file that records it
};

// Owns one connection; mutex_ guards it and incoming_. Files are hashed and copied outside
// the mutex.
class SqliteTemplateStore final : public spi::TemplateStore {
 public:
  explicit SqliteTemplateStore(std::string dir)
      : dir_(std::move(dir)),
        images_(join(dir_, "images")),
        tmp_(join(dir_, "tmp")),
        catalog_(join(dir_, "catalog.db")) {}

  static Result<std::unique_ptr<spi::TemplateStore>> open(const std::string& dir);

  std::string dir() const override { return dir_; }

  Result<TemplateInfo> import(const spi::ImportRequest& request) override {
    return guarded([&] { return import_image(ImportSource{.request = request}); });
  }

  Result<std::vector<TemplateInfo>> list() override {
    return guarded([&]() -> Result<std::vector<TemplateInfo>> {
      const std::lock_guard lock(mutex_);
      return rows(fmt::format("SELECT {} FROM templates AS t"
                              " WHERE version = (SELECT max(version) FROM templates WHERE name = t.name) ORDER BY name",
                              kColumns),
                  {}, 0);
    });
  }

  Result<std::vector<TemplateInfo>> versions(const std::string& name) override {
    return guarded([&]() -> Result<std::vector<TemplateInfo>> {
      CLOUDMGR_RETURN_IF_ERROR(validate_template_name(name));
      const std::lock_guard lock(mutex_);
      CLOUDMGR_ASSIGN_OR_RETURN(
          std::vector<TemplateInfo> out,
          rows(fmt::format("SELECT {} FROM templates WHERE name = ?1 AND ?2 = 0 ORDER BY version", kColumns), name, 0));
      if (out.empty()) {
        return not_found_error(fmt::format("template '{}' not found in the store '{}'", name, dir_));
      }
      return out;
    });
  }

  Result<TemplateInfo> get(const TemplateRef& ref) override {
    return guarded([&]() -> Result<TemplateInfo> {
      CLOUDMGR_RETURN_IF_ERROR(validate_template_name(ref.name));
      const std::lock_guard lock(mutex_);
      return get_locked(ref);
    });
  }

  Status remove(const TemplateRef& ref) override {
    return guarded([&]() -> Status {
      CLOUDMGR_RETURN_IF_ERROR(validate_template_name(ref.name));
      const std::lock_guard lock(mutex_);
      return remove_locked(ref);
    });
  }

  Result<spi::ImageFile> image(const std::string& sha256) override {
    return guarded([&]() -> Result<spi::ImageFile> {
      CLOUDMGR_RETURN_IF_ERROR(validate_sha256(sha256));
      std::optional<ImageInfo> info;
      {
        const std::lock_guard lock(mutex_);
        CLOUDMGR_ASSIGN_OR_RETURN(info, image_row(sha256));
      }
      if (!info) {
        return not_found_error(fmt::format("no template in the store '{}' has the image {}", dir_, sha256));
      }
      spi::ImageFile out{.path = join(images_, sha256), .info = *info};
      CLOUDMGR_RETURN_IF_ERROR(check_image_file(out));
      return out;
    });
  }

  Status verify(const TemplateRef& ref) override {
    return guarded([&]() -> Status {
      CLOUDMGR_RETURN_IF_ERROR(validate_template_name(ref.name));
      TemplateInfo info;
      {
        const std::lock_guard lock(mutex_);
        CLOUDMGR_ASSIGN_OR_RETURN(info, get_locked(ref));
      }
      const spi::ImageFile file{.path = join(images_, info.image.sha256), .info = info.image};
      CLOUDMGR_RETURN_IF_ERROR(
          check_image_file(file).with_context(fmt::format("template {}:{}", info.name, info.version)));
      const UniqueFd fd(::open(file.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) {
        return fs_error(errno, fmt::format("opening '{}'", file.path));
      }
      CLOUDMGR_ASSIGN_OR_RETURN(const std::string actual,
                                in_store(hash_file(fd.get(), file.path, info.image.size_bytes)));
      if (actual != info.image.sha256) {
        return data_loss_error(fmt::format("template {}:{}: image {} is corrupt: its SHA-256 is now {} ('{}')",
                                           info.name, info.version, info.image.sha256, actual, file.path));
      }
      return {};
    });
  }

  Result<std::vector<std::string>> export_to(const TemplateRef& ref, const std::string& dir) override {
    return guarded([&] { return export_impl(ref, dir); });
  }

  Result<TemplateInfo> import_export(const std::string& json_path, const std::string& name) override {
    return guarded([&]() -> Result<TemplateInfo> { return import_export_impl(json_path, name); });
  }

  Result<std::string> incoming_path() override {
    return guarded([&]() -> Result<std::string> {
      CLOUDMGR_ASSIGN_OR_RETURN(TempFile file, in_store(make_temp(tmp_, "incoming-")));
      const std::lock_guard lock(mutex_);
      // Forget the paths that were imported or removed since.
      for (auto it = incoming_.begin(); it != incoming_.end();) {
        struct stat st {};
        it = ::stat(it->first.c_str(), &st) != 0 && errno == ENOENT ? incoming_.erase(it) : std::next(it);
      }
      std::string path = file.path();
      incoming_.emplace(path, file.take_fd());
      file.release();
      return path;
    });
  }

 private:
  Status init();
  Status create_schema();
  void remove_temporaries();
  void collect_garbage(const std::set<std::string>* candidates);
  Result<TemplateInfo> import_image(const ImportSource& source);
  Result<TemplateInfo> commit_import(const spi::ImportRequest& request, const ImageInfo& image, const std::string& from,
                                     bool& placed_out);
  Result<TemplateInfo> get_locked(const TemplateRef& ref);
  Status remove_locked(const TemplateRef& ref);
  Result<std::vector<TemplateInfo>> rows(const std::string& sql, std::string_view name, std::int64_t version);
  Result<std::optional<ImageInfo>> image_row(const std::string& sha256);
  Status check_image_file(const spi::ImageFile& file) const;
  Result<std::vector<std::string>> export_impl(const TemplateRef& ref, const std::string& dir);
  Result<TemplateInfo> import_export_impl(const std::string& json_path, const std::string& name);

  // Every error names the store.
  std::string context() const { return fmt::format("template store '{}'", dir_); }
  Status fs_error(int err, std::string_view what) const { return errno_error(err, what).with_context(context()); }
  Status in_store(const Status& s) const { return s.with_context(context()); }
  template <typename T>
  Result<T> in_store(Result<T> r) const {
    if (!r.ok()) {
      return r.status().with_context(context());
    }
    return r;
  }
  Status error(int rc, std::string_view what) const {
    return sqlite_error(db_.get(), rc, fmt::format("{}: catalog '{}': {}", context(), catalog_, what));
  }

  Result<Query> prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    Query q(stmt);
    if (rc != SQLITE_OK) {
      return error(rc, fmt::format("preparing '{}'", sql.substr(0, 60)));
    }
    return q;
  }

  Status exec(std::string_view sql, std::string_view what) {
    const std::string text(sql);
    const int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, nullptr);
    return rc == SQLITE_OK ? Status() : error(rc, what);
  }

  Result<std::int64_t> single_int(std::string_view sql, std::string_view what) {
    CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(sql));
    const int rc = q.step();
    if (rc != SQLITE_ROW) {
      return error(rc == SQLITE_DONE ? SQLITE_ERROR : rc, what);
    }
    return q.int_at(0);
  }

  // A write transaction (BEGIN IMMEDIATE: SQLite's write lock, across processes), rolled
  // back when it goes uncommitted.
  class Transaction {
   public:
    explicit Transaction(SqliteTemplateStore& store) noexcept : store_(store) {}
    ~Transaction() {
      if (active_ && sqlite3_get_autocommit(store_.db_.get()) == 0) {
        sqlite3_exec(store_.db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    Transaction(Transaction&&) = delete;
    Transaction& operator=(Transaction&&) = delete;

    Status begin() {
      CLOUDMGR_RETURN_IF_ERROR(store_.exec("BEGIN IMMEDIATE", "starting a transaction"));
      active_ = true;
      return {};
    }
    Status commit() {
      CLOUDMGR_RETURN_IF_ERROR(store_.exec("COMMIT", "committing"));
      active_ = false;
      return {};
    }

   private:
    SqliteTemplateStore& store_;
    bool active_ = false;
  };

  const std::string dir_;
  const std::string images_;
  const std::string tmp_;
  const std::string catalog_;
  std::mutex mutex_;
  DbPtr db_;                                  // GUARDED_BY(mutex_) after open
  std::map<std::string, UniqueFd> incoming_;  // GUARDED_BY(mutex_): paths handed out, locked
};

Result<std::unique_ptr<spi::TemplateStore>> SqliteTemplateStore::open(const std::string& dir) {
  if (dir.empty()) {
    return invalid_argument_error("template store: the directory must not be empty");
  }
  std::error_code ec;
  std::filesystem::path path = std::filesystem::absolute(dir, ec);
  if (ec) {
    return unavailable_error(fmt::format("template store '{}': {}", dir, ec.message()));
  }
  std::string normal = path.lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') {
    normal.pop_back();
  }
  auto store = std::make_unique<SqliteTemplateStore>(std::move(normal));
  for (const std::string& d : {store->dir_, store->images_, store->tmp_}) {
    std::filesystem::create_directories(d, ec);
    if (ec) {
      return unavailable_error(fmt::format("template store '{}': creating '{}': {}", store->dir_, d, ec.message()));
    }
  }
  sqlite3* handle = nullptr;
  const int rc = sqlite3_open_v2(store->catalog_.c_str(), &handle,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  store->db_.reset(handle);
  if (rc != SQLITE_OK) {
    return sqlite_error(store->db_.get(), rc,
                        fmt::format("{}: opening the catalog '{}'", store->context(), store->catalog_));
  }
  if (Status s = store->init(); !s.ok()) {
    // Whatever went wrong, the catalog cannot be used as it is.
    return s.code() == StatusCode::kResourceExhausted ? s : Status(StatusCode::kUnavailable, s.message());
  }
  store->remove_temporaries();
  {
    const std::lock_guard lock(store->mutex_);
    store->collect_garbage(nullptr);
  }
  return std::unique_ptr<spi::TemplateStore>(std::move(store));
}

Status SqliteTemplateStore::init() {
  sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs);
  if (sqlite3_db_readonly(db_.get(), "main") == 1) {
    return unavailable_error(fmt::format("{}: the catalog '{}' is read-only", context(), catalog_));
  }
  // Look before writing anything: a file that is not ours is left as it was.
  CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t app_id, single_int("PRAGMA application_id", "reading the header"));
  CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t version, single_int("PRAGMA user_version", "reading the header"));
  bool fresh = false;
  if (app_id == 0 && version == 0) {
    CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t objects,
                              single_int("SELECT count(*) FROM sqlite_schema", "reading the schema"));
    if (objects != 0) {
      return unavailable_error(fmt::format(
          "{}: '{}' is not a cloudmgr template catalog (a SQLite database of another kind)", context(), catalog_));
    }
    fresh = true;
  } else if (app_id != kApplicationId) {
    return unavailable_error(fmt::format("{}: '{}' is not a cloudmgr template catalog (application id {:#x})",
                                         context(), catalog_, static_cast<std::uint32_t>(app_id)));
  } else if (version != kSchemaVersion) {
    return unavailable_error(fmt::format("{}: the catalog '{}' has schema version {}, this build reads version {}",
                                         context(), catalog_, version, kSchemaVersion));
  }
  {
    CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare("PRAGMA journal_mode=WAL"));
    const int rc = q.step();
    if (rc != SQLITE_ROW) {
      return error(rc, "switching to WAL");
    }
    if (const std::string mode = q.text_at(0); mode != "wal") {
      return unavailable_error(fmt::format("{}: the catalog '{}' cannot use a write-ahead log (journal mode '{}')",
                                           context(), catalog_, mode));
    }
  }
  CLOUDMGR_RETURN_IF_ERROR(exec("PRAGMA synchronous=FULL", "setting pragmas"));
  return fresh ? create_schema() : Status();
}

Status SqliteTemplateStore::create_schema() {
  Transaction tx(*this);
  CLOUDMGR_RETURN_IF_ERROR(tx.begin());
  // Another process may have created it since we looked.
  CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t version, single_int("PRAGMA user_version", "reading the header"));
  if (version != 0) {
    return tx.commit();
  }
  CLOUDMGR_RETURN_IF_ERROR(exec(kCreateSchema, "creating the schema"));
  CLOUDMGR_RETURN_IF_ERROR(
      exec(fmt::format("PRAGMA application_id={}; PRAGMA user_version={}", kApplicationId, kSchemaVersion),
           "writing the header"));
  return tx.commit();
}

// Temporaries nobody holds (a crash left them behind); those locked by a live writer stay.
void SqliteTemplateStore::remove_temporaries() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(tmp_, ec)) {
    const std::string path = entry.path().string();
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
    if (!fd.valid()) {
      if (errno == ELOOP) {
        ::unlink(path.c_str());  // a symbolic link: nobody's temporary
      }
      continue;
    }
    struct stat by_fd {};
    struct stat by_path {};
    if (::fstat(fd.get(), &by_fd) != 0 || !S_ISREG(by_fd.st_mode) || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      continue;
    }
    // Still the file we locked (not one created since under a reused name)?
    if (::lstat(path.c_str(), &by_path) == 0 && by_path.st_ino == by_fd.st_ino && by_path.st_dev == by_fd.st_dev) {
      ::unlink(path.c_str());
    }
  }
}

// Deletes the images (all of them, or those in `candidates`) that no committed row names,
// under the write lock so that no import can start using one meanwhile. Best effort: an
// image left behind is collected by the next open.
void SqliteTemplateStore::collect_garbage(const std::set<std::string>* candidates) {
  Transaction tx(*this);
  if (!tx.begin().ok()) {
    return;
  }
  std::set<std::string> names;
  if (candidates != nullptr) {
    names = *candidates;
  } else {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(images_, ec)) {
      names.insert(entry.path().filename().string());
    }
  }
  for (const std::string& sha : names) {
    if (!validate_sha256(sha).ok()) {
      continue;  // not ours
    }
    Result<Query> q = prepare(kUses);
    if (!q.ok()) {
      return;
    }
    const int rc = q->bind_text(1, sha).step();
    if (rc == SQLITE_DONE) {
      ::unlink(join(images_, sha).c_str());
    } else if (rc != SQLITE_ROW) {
      return;
    }
  }
  (void)tx.commit();
}

Result<TemplateInfo> SqliteTemplateStore::import_image(const ImportSource& source) {
  const spi::ImportRequest& request = source.request;
  CLOUDMGR_RETURN_IF_ERROR(validate_template_name(request.name));
  CLOUDMGR_RETURN_IF_ERROR(validate_template_spec(request.spec));
  const std::string& path = request.image_path;
  if (path.empty()) {
    return invalid_argument_error("import: image_path is empty");
  }
  // take_file renames the path itself: a symbolic link would put the link into the store.
  const UniqueFd src(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | (request.take_file ? O_NOFOLLOW : 0)));
  if (!src.valid()) {
    if (errno == ELOOP && request.take_file) {
      return failed_precondition_error(
          fmt::format("import: '{}' is a symbolic link; take_file moves a regular file itself", path));
    }
    return errno_error(errno, fmt::format("import: opening the image '{}'", path));
  }
  struct stat st {};
  if (::fstat(src.get(), &st) != 0) {
    return errno_error(errno, fmt::format("import: reading the status of '{}'", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return failed_precondition_error(fmt::format("import: '{}' is not a regular file", path));
  }
  ImageInfo image;
  image.size_bytes = static_cast<std::uint64_t>(st.st_size);
  CLOUDMGR_ASSIGN_OR_RETURN(const ImageProbe probe, probe_image(src.get(), path, image.size_bytes));
  if (request.format && *request.format != probe.format) {
    return invalid_argument_error(
        probe.format == ImageFormat::kQcow2
            ? fmt::format("import: '{}' is a qcow2 image, not raw (a qcow2 file is never taken as raw)", path)
            : fmt::format("import: '{}' is not a qcow2 image (it does not start with \"QFI\\xfb\"); import it as raw",
                          path));
  }
  image.format = probe.format;
  image.virtual_size_bytes = probe.virtual_size_bytes;

  TempFile copy;
  std::string from = path;
  if (request.take_file) {
    CLOUDMGR_ASSIGN_OR_RETURN(image.sha256, in_store(hash_file(src.get(), path, image.size_bytes)));
  } else {
    CLOUDMGR_ASSIGN_OR_RETURN(copy, in_store(make_temp(tmp_, "import-")));
    CLOUDMGR_ASSIGN_OR_RETURN(image.sha256,
                              in_store(hash_file(src.get(), path, image.size_bytes, copy.fd(), copy.path())));
    from = copy.path();
  }
  if (source.expected_sha256 != nullptr && image.sha256 != *source.expected_sha256) {
    return data_loss_error(
        fmt::format("import: the image '{}' does not match '{}': its SHA-256 is {}, the export records {}", path,
                    source.expected_from, image.sha256, *source.expected_sha256));
  }
  // Read-only and on disk before the catalog may point at it.
  const int file_fd = request.take_file ? src.get() : copy.fd();
  const auto old_mode = static_cast<mode_t>(st.st_mode & 07777);
  if (::fchmod(file_fd, 0444) != 0) {
    return fs_error(errno, fmt::format("making '{}' read-only", from));
  }
  if (Status s = fsync_fd(file_fd, from); !s.ok()) {
    if (request.take_file) {
      ::fchmod(file_fd, old_mode);
    }
    return in_store(s);
  }

  bool placed = false;
  Result<TemplateInfo> info = [&] {
    const std::lock_guard lock(mutex_);
    return commit_import(request, image, from, placed);
  }();
  if (!info.ok()) {
    if (request.take_file) {
      ::fchmod(file_fd, old_mode);  // left where it was, as it was
    }
    return info;
  }
  if (placed) {
    copy.release();  // it is images/<sha256> now
  }
  if (request.take_file) {
    if (!placed) {
      ::unlink(path.c_str());  // an identical image was stored already
    }
    const std::lock_guard lock(mutex_);
    incoming_.erase(path);
  }
  return info;
}

// Under mutex_: places the image file `from` at images/<sha256> (unless that exists) and
// adds the row, in one write transaction. On failure the image is taken back.
Result<TemplateInfo> SqliteTemplateStore::commit_import(const spi::ImportRequest& request, const ImageInfo& image,
                                                        const std::string& from, bool& placed_out) {
  const std::string target = join(images_, image.sha256);
  Transaction tx(*this);
  CLOUDMGR_RETURN_IF_ERROR(tx.begin());
  bool placed = false;
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<std::uint64_t>(st.st_size) == image.size_bytes) {
    // Stored already (by the same bytes: same hash, same length). The duplicate goes.
  } else {
    if (::rename(from.c_str(), target.c_str()) != 0) {
      if (errno == EXDEV) {
        return failed_precondition_error(
            fmt::format("{}: '{}' is not on the store's file system; import it without take_file", context(), from));
      }
      return fs_error(errno, fmt::format("renaming '{}' to '{}'", from, target));
    }
    placed = true;
  }
  // Undone before the transaction rolls back (destructors run in reverse order), while the
  // write lock still keeps every other import from relying on the file.
  struct Unplace {
    bool* placed;
    const std::string& target;
    const std::string& from;
    bool take_file;
    ~Unplace() {
      if (*placed) {
        if (take_file) {
          ::rename(target.c_str(), from.c_str());
        } else {
          ::unlink(target.c_str());
        }
      }
    }
  } unplace{&placed, target, from, request.take_file};
  if (placed) {
    CLOUDMGR_RETURN_IF_ERROR(in_store(fsync_dir(images_)));
  }

  TemplateInfo info;
  info.name = request.name;
  info.spec = request.spec;
  info.image = image;
  info.created_ns = wall_clock_ns();
  info.origin = request.origin.empty() ? fmt::format("import {}", request.image_path) : request.origin;
  {
    CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t next, [&]() -> Result<std::int64_t> {
      CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kNextVersion));
      if (const int rc = q.bind_text(1, request.name).step(); rc != SQLITE_ROW) {
        return error(rc, "choosing the next version");
      }
      return q.int_at(0);
    }());
    if (next > std::numeric_limits<std::uint32_t>::max()) {
      return resource_exhausted_error(fmt::format("{}: template '{}' has no versions left", context(), request.name));
    }
    info.version = static_cast<std::uint32_t>(next);
  }
  {
    CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kInsert));
    const int rc = q.bind_text(1, info.name)
                       .bind_int(2, info.version)
                       .bind_text(3, template_spec_to_json(info.spec))
                       .bind_text(4, image.sha256)
                       .bind_text(5, to_string(image.format))
                       .bind_int(6, static_cast<std::int64_t>(image.size_bytes))
                       .bind_int(7, static_cast<std::int64_t>(image.virtual_size_bytes))
                       .bind_int(8, info.created_ns)
                       .bind_text(9, info.origin)
                       .step();
    if (rc != SQLITE_DONE) {
      return error(rc, fmt::format("adding template {}:{}", info.name, info.version));
    }
  }
  {
    CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kRecordVersion));
    if (const int rc = q.bind_text(1, info.name).bind_int(2, info.version).step(); rc != SQLITE_DONE) {
      return error(rc, fmt::format("recording version {} of '{}'", info.version, info.name));
    }
  }
  CLOUDMGR_RETURN_IF_ERROR(tx.commit());
  placed_out = std::exchange(placed, false);  // the row owns it now
  return info;
}

Result<std::vector<TemplateInfo>> SqliteTemplateStore::rows(const std::string& sql, std::string_view name,
                                                            std::int64_t version) {
  CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(sql));
  if (!name.empty()) {
    q.bind_text(1, name).bind_int(2, version);
  }
  std::vector<TemplateInfo> out;
  int rc = 0;
  while ((rc = q.step()) == SQLITE_ROW) {
    TemplateInfo& info = out.emplace_back();
    info.name = q.text_at(0);
    const std::int64_t v = q.int_at(1);
    const auto damaged = [&](const std::string& why) {
      return data_loss_error(fmt::format("{}: catalog '{}': the row of template {}:{} is damaged: {}", context(),
                                         catalog_, info.name, v, why));
    };
    if (v < 1 || v > std::numeric_limits<std::uint32_t>::max()) {
      return damaged("bad version");
    }
    info.version = static_cast<std::uint32_t>(v);
    Result<TemplateSpec> spec = template_spec_from_json(q.text_at(2));
    if (!spec.ok()) {
      return damaged(spec.status().message());
    }
    info.spec = *std::move(spec);
    info.image.sha256 = q.text_at(3);
    Result<ImageFormat> format = parse_image_format(q.text_at(4));
    if (!format.ok()) {
      return damaged(format.status().message());
    }
    info.image.format = *format;
    const std::int64_t size = q.int_at(5);
    const std::int64_t virtual_size = q.int_at(6);
    if (size < 0 || virtual_size < 0 || !validate_sha256(info.image.sha256).ok()) {
      return damaged("bad image");
    }
    info.image.size_bytes = static_cast<std::uint64_t>(size);
    info.image.virtual_size_bytes = static_cast<std::uint64_t>(virtual_size);
    info.created_ns = q.int_at(7);
    info.origin = q.text_at(8);
  }
  if (rc != SQLITE_DONE) {
    return error(rc, "reading templates");
  }
  return out;
}

Result<TemplateInfo> SqliteTemplateStore::get_locked(const TemplateRef& ref) {
  CLOUDMGR_ASSIGN_OR_RETURN(std::vector<TemplateInfo> found,
                            rows(fmt::format("SELECT {} FROM templates WHERE name = ?1 AND (?2 = 0 OR version = ?2)"
                                             " ORDER BY version DESC LIMIT 1",
                                             kColumns),
                                 ref.name, ref.version));
  if (found.empty()) {
    return not_found_error(fmt::format("template '{}' not found in the store '{}'", ref.to_string(), dir_));
  }
  return std::move(found.front());
}

Status SqliteTemplateStore::remove_locked(const TemplateRef& ref) {
  std::set<std::string> shas;
  {
    Transaction tx(*this);
    CLOUDMGR_RETURN_IF_ERROR(tx.begin());
    {
      CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kShasOf));
      q.bind_text(1, ref.name).bind_int(2, ref.version);
      int rc = 0;
      while ((rc = q.step()) == SQLITE_ROW) {
        shas.insert(q.text_at(0));
      }
      if (rc != SQLITE_DONE) {
        return error(rc, "finding the images of a template");
      }
    }
    if (shas.empty()) {
      return not_found_error(fmt::format("template '{}' not found in the store '{}'", ref.to_string(), dir_));
    }
    {
      CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kDelete));
      if (const int rc = q.bind_text(1, ref.name).bind_int(2, ref.version).step(); rc != SQLITE_DONE) {
        return error(rc, fmt::format("removing template '{}'", ref.to_string()));
      }
    }
    CLOUDMGR_RETURN_IF_ERROR(tx.commit());
  }
  // The rows are gone (durably): the call has succeeded whatever happens to the files.
  collect_garbage(&shas);
  return {};
}

Result<std::optional<ImageInfo>> SqliteTemplateStore::image_row(const std::string& sha256) {
  CLOUDMGR_ASSIGN_OR_RETURN(Query q, prepare(kImageRow));
  const int rc = q.bind_text(1, sha256).step();
  if (rc == SQLITE_DONE) {
    return std::optional<ImageInfo>();
  }
  if (rc != SQLITE_ROW) {
    return error(rc, "looking up an image");
  }
  ImageInfo info;
  info.sha256 = sha256;
  CLOUDMGR_ASSIGN_OR_RETURN(info.format, parse_image_format(q.text_at(0)));
  info.size_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.int_at(1)));
  info.virtual_size_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, q.int_at(2)));
  return std::optional<ImageInfo>(std::move(info));
}

Status SqliteTemplateStore::check_image_file(const spi::ImageFile& file) const {
  struct stat st {};
  if (::stat(file.path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return data_loss_error(
          fmt::format("{}: the image {} is missing: '{}' does not exist", context(), file.info.sha256, file.path));
    }
    return fs_error(errno, fmt::format("reading the status of '{}'", file.path));
  }
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) != file.info.size_bytes) {
    return data_loss_error(fmt::format("{}: the image {} is damaged: '{}' is {} bytes long, the catalog records {}",
                                       context(), file.info.sha256, file.path, st.st_size, file.info.size_bytes));
  }
  return {};
}

Result<std::vector<std::string>> SqliteTemplateStore::export_impl(const TemplateRef& ref, const std::string& dir) {
  CLOUDMGR_RETURN_IF_ERROR(validate_template_name(ref.name));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return errno_error(errno, fmt::format("export: the directory '{}'", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return failed_precondition_error(fmt::format("export: '{}' is not a directory", dir));
  }
  TemplateInfo info;
  {
    const std::lock_guard lock(mutex_);
    CLOUDMGR_ASSIGN_OR_RETURN(info, get_locked(ref));
  }
  const std::string base = fmt::format("{}-{}", info.name, info.version);
  const std::string json_path = join(dir, base + ".json");
  const std::string image_path = join(dir, base + std::string(image_extension(info.image.format)));
  for (const std::string& p : {json_path, image_path}) {
    if (::lstat(p.c_str(), &st) == 0) {
      return already_exists_error(fmt::format("export: '{}' exists already", p));
    }
  }
  const spi::ImageFile file{.path = join(images_, info.image.sha256), .info = info.image};
  CLOUDMGR_RETURN_IF_ERROR(check_image_file(file));
  const UniqueFd src(::open(file.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!src.valid()) {
    return fs_error(errno, fmt::format("opening '{}'", file.path));
  }

  CLOUDMGR_ASSIGN_OR_RETURN(TempFile image, make_temp(dir, fmt::format(".{}.tmp-", base)));
  CLOUDMGR_ASSIGN_OR_RETURN(const std::string actual,
                            hash_file(src.get(), file.path, info.image.size_bytes, image.fd(), image.path()));
  if (actual != info.image.sha256) {
    return data_loss_error(
        fmt::format("template {}:{}: image {} is corrupt: its SHA-256 is now {} ('{}'); nothing exported", info.name,
                    info.version, info.image.sha256, actual, file.path));
  }
  if (::fchmod(image.fd(), 0644) != 0) {
    return errno_error(errno, fmt::format("export: setting the mode of '{}'", image.path()));
  }
  CLOUDMGR_RETURN_IF_ERROR(fsync_fd(image.fd(), image.path()));

  CLOUDMGR_ASSIGN_OR_RETURN(TempFile json, make_temp(dir, fmt::format(".{}.json.tmp-", base)));
  const std::string text = template_info_to_json(info, 2) + "\n";
  CLOUDMGR_RETURN_IF_ERROR(
      write_at(json.fd(), reinterpret_cast<const unsigned char*>(text.data()), text.size(), 0, json.path()));
  if (::fchmod(json.fd(), 0644) != 0) {
    return errno_error(errno, fmt::format("export: setting the mode of '{}'", json.path()));
  }
  CLOUDMGR_RETURN_IF_ERROR(fsync_fd(json.fd(), json.path()));

  // The image first: a JSON file is only ever beside a complete image.
  CLOUDMGR_RETURN_IF_ERROR(rename_no_replace(image.path(), image_path));
  image.release();
  if (Status s = rename_no_replace(json.path(), json_path); !s.ok()) {
    ::unlink(image_path.c_str());
    return s;
  }
  json.release();
  CLOUDMGR_RETURN_IF_ERROR(fsync_dir(dir));
  return std::vector<std::string>{json_path, image_path};
}

Result<TemplateInfo> SqliteTemplateStore::import_export_impl(const std::string& json_path, const std::string& name) {
  if (!name.empty()) {
    CLOUDMGR_RETURN_IF_ERROR(validate_template_name(name));
  }
  const UniqueFd fd(::open(json_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return errno_error(errno, fmt::format("import: opening '{}'", json_path));
  }
  std::string text(kMaxExportJson + 1, '\0');
  CLOUDMGR_ASSIGN_OR_RETURN(const std::size_t size, read_at(fd.get(), reinterpret_cast<unsigned char*>(text.data()),
                                                            text.size(), 0, json_path));
  if (size > kMaxExportJson) {
    return invalid_argument_error(
        fmt::format("import: '{}' is larger than {} bytes; it is not a template export", json_path, kMaxExportJson));
  }
  text.resize(size);
  Result<TemplateInfo> exported = template_info_from_json(text);
  if (!exported.ok()) {
    return exported.status().with_context(fmt::format("import: '{}'", json_path));
  }
  const std::filesystem::path beside = std::filesystem::path(json_path).parent_path();
  spi::ImportRequest request;
  request.name = name.empty() ? exported->name : name;
  request.spec = exported->spec;
  request.image_path =
      (beside / fmt::format("{}-{}{}", exported->name, exported->version, image_extension(exported->image.format)))
          .string();
  request.format = exported->image.format;
  request.origin = fmt::format("import {} (exported as {}:{})", json_path, exported->name, exported->version);
  return import_image(
      ImportSource{.request = request, .expected_sha256 = &exported->image.sha256, .expected_from = json_path});
}

}  // namespace

Result<ImageProbe> probe_image(int fd, const std::string& path, std::uint64_t length) {
  std::array<unsigned char, kQcow2HeaderV3> header{};
  CLOUDMGR_ASSIGN_OR_RETURN(const std::size_t n, read_at(fd, header.data(), header.size(), 0, path));
  if (n < 4 || std::memcmp(header.data(), "QFI\xfb", 4) != 0) {
    if (length == 0) {
      return invalid_argument_error(fmt::format("'{}' is empty; a base image must hold a disk", path));
    }
    return ImageProbe{.format = ImageFormat::kRaw, .virtual_size_bytes = length};
  }
  const auto truncated = [&] {
    return invalid_argument_error(fmt::format("'{}' starts like a qcow2 image but its header is cut short", path));
  };
  if (n < kQcow2HeaderV2) {
    return truncated();
  }
  const std::uint32_t version = be32(header.data() + 4);
  if (version != 2 && version != 3) {
    return invalid_argument_error(
        fmt::format("'{}' is a qcow2 image of version {}; only versions 2 and 3 are supported", path, version));
  }
  const std::uint64_t backing_offset = be64(header.data() + 8);
  if (backing_offset != 0) {
    const std::size_t size = std::min<std::size_t>(be32(header.data() + 16), kMaxBackingName);
    std::string name(size, '\0');
    Result<std::size_t> got = read_at(fd, reinterpret_cast<unsigned char*>(name.data()), size, backing_offset, path);
    name.resize(got.ok() ? *got : 0);
    return invalid_argument_error(
        fmt::format("'{}' has a backing file {}; a base image must stand alone (flatten it: qemu-img convert -O "
                    "qcow2 '{}' flat.qcow2)",
                    path, quote_input(name), path));
  }
  if (version == 3) {
    if (n < kQcow2HeaderV3) {
      return truncated();
    }
    const std::uint64_t incompatible = be64(header.data() + 72);
    if ((incompatible & kQcow2ExternalData) != 0) {
      return invalid_argument_error(
          fmt::format("'{}' keeps its data in an external file; a base image must stand alone (flatten it: qemu-img "
                      "convert -O qcow2 '{}' flat.qcow2)",
                      path, path));
    }
    if ((incompatible & kQcow2Corrupt) != 0) {
      return invalid_argument_error(
          fmt::format("'{}' is marked corrupt; repair it first (qemu-img check -r all '{}')", path, path));
    }
  }
  const std::uint64_t virtual_size = be64(header.data() + 24);
  if (virtual_size == 0 || virtual_size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return invalid_argument_error(
        fmt::format("'{}' is a qcow2 image of an impossible size ({} bytes)", path, virtual_size));
  }
  return ImageProbe{.format = ImageFormat::kQcow2, .virtual_size_bytes = virtual_size};
}

}  // namespace sqlite

namespace spi {

Result<std::unique_ptr<TemplateStore>> open_template_store(const std::string& dir) {
  return sqlite::guarded([&] { return sqlite::SqliteTemplateStore::open(dir); });
}

}  // namespace spi
}  // namespace cloudmgr
