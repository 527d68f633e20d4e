// The built-in monitoring history (spi/metrics_store.h): one SQLite database per host.
//
// Tables: `series` names each history (uuid '' is the host itself); `raw` holds every
// recorded sample for the raw window; `rollup` holds one row per series and rollup step
// with the count, minimum, sum and maximum of each metric, so that merging rows gives exact
// weighted averages. The rollup row of a sample is upserted (merged) with the sample itself,
// so the open bucket is always on disk and in queries, and a restart loses nothing.
//
// WAL with synchronous=NORMAL: a crash may lose the last ticks, never corrupt the file.
// Deleted pages are reused, so the file stays bounded by the retention without VACUUM.
#include "store/sqlite/sqlite_metrics_store.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cloudmgr/cloud.h"
#include "cloudmgr/spi/metrics_store.h"
#include "core/status_macros.h"

namespace cloudmgr {

namespace spi {
MetricsStore::~MetricsStore() = default;
}  // namespace spi

namespace sqlite {

StatusCode status_code_for(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return StatusCode::kOk;
    // Another connection holds the file, or the file cannot be used as it is (not ours,
    // damaged, unreadable): retrying later, or after the operator fixed the file, may work.
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return StatusCode::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return StatusCode::kResourceExhausted;
    default:
      // SQLITE_ERROR, SQLITE_CONSTRAINT, SQLITE_MISUSE, ...: a bug in this store.
      return StatusCode::kInternal;
  }
}

Status sqlite_error(sqlite3* db, int rc, std::string_view what) {
  const StatusCode code = status_code_for(rc);
  if (code == StatusCode::kOk) {
    return internal_error(fmt::format("{}: SQLite reported a failure without an error", what));
  }
  // The connection's message describes its latest call; use it when it is about this rc.
  const char* text =
      db != nullptr && (sqlite3_errcode(db) & 0xff) == (rc & 0xff) ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return {code, fmt::format("{}: {}", what, text != nullptr ? text : "unknown SQLite error")};
}

namespace {

// 'CMGH' in the file header: a cloudmgr history, whatever its schema version.
constexpr std::int32_t kApplicationId = 0x434d4748;
constexpr std::int64_t kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 2000;
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();

std::int64_t saturating_sub(std::int64_t a, std::int64_t b) noexcept {
  std::int64_t out = 0;
  if (__builtin_sub_overflow(a, b, &out)) {
    return b > 0 ? kMin : kMax;
  }
  return out;
}

// The smallest multiple of `unit` (> 0) not below `value` (>= 0), saturating.
std::int64_t round_up(std::int64_t value, std::int64_t unit) noexcept {
  const std::int64_t k = value / unit + (value % unit != 0 ? 1 : 0);
  return k > kMax / unit ? (kMax / unit) * unit : k * unit;
}

// Buckets of width `step` (aligned to multiples of it) that [since, until) touches.
// Requires 0 <= since < until, step > 0.
std::int64_t bucket_count(std::int64_t since, std::int64_t until, std::int64_t step) noexcept {
  return (until - 1) / step - since / step + 1;
}

std::string seconds_text(std::int64_t ns) { return fmt::format("{:g} s", static_cast<double>(ns) / 1e9); }

// "f(0), f(1), ..., f(7)".
template <typename F>
std::string each_metric(F&& f) {
  std::string out;
  for (std::size_t i = 0; i < kMetricCount; ++i) {
    if (i != 0) {
      out += ", ";
    }
    out += f(i);
  }
  return out;
}

struct Sql {
  std::string create;
  std::string insert_raw;
  std::string upsert_rollup;
  std::string raw_points;
  std::string raw_buckets;
  std::string rollup_buckets;
};

Sql make_sql() {
  Sql s;
  const auto typed = [](std::string_view prefix) {
    return each_metric([prefix](std::size_t i) { return fmt::format("{}{} REAL NOT NULL", prefix, i); });
  };
  const auto names = [](std::string_view prefix) {
    return each_metric([prefix](std::size_t i) { return fmt::format("{}{}", prefix, i); });
  };
  const auto values = each_metric([](std::size_t i) { return fmt::format("?{}", i + 3); });
  s.create = fmt::format(
      "CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;"
      "CREATE TABLE series(id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
      " last_seen_ns INTEGER NOT NULL, simulated INTEGER NOT NULL);"
      "CREATE INDEX series_by_name ON series(name, last_seen_ns);"
      "CREATE TABLE raw(series INTEGER NOT NULL, t_ns INTEGER NOT NULL, {}, PRIMARY KEY(series, t_ns)) WITHOUT ROWID;"
      "CREATE TABLE rollup(series INTEGER NOT NULL, start_ns INTEGER NOT NULL, n INTEGER NOT NULL, {}, {}, {},"
      " PRIMARY KEY(series, start_ns)) WITHOUT ROWID;",
      typed("v"), typed("min"), typed("sum"), typed("max"));
  s.insert_raw = fmt::format("INSERT INTO raw(series, t_ns, {}) VALUES(?1, ?2, {})", names("v"), values);
  s.upsert_rollup = fmt::format(
      "INSERT INTO rollup(series, start_ns, n, {}, {}, {}) VALUES(?1, ?2, 1, {}, {}, {})"
      " ON CONFLICT(series, start_ns) DO UPDATE SET n = n + 1, {}, {}, {}",
      names("min"), names("sum"), names("max"), values, values, values,
      each_metric([](std::size_t i) { return fmt::format("min{0} = min(min{0}, excluded.min{0})", i); }),
      each_metric([](std::size_t i) { return fmt::format("sum{0} = sum{0} + excluded.sum{0}", i); }),
      each_metric([](std::size_t i) { return fmt::format("max{0} = max(max{0}, excluded.max{0})", i); }));
  s.raw_points =
      fmt::format("SELECT t_ns, {} FROM raw WHERE series = ?1 AND t_ns >= ?2 AND t_ns < ?3 ORDER BY t_ns", names("v"));
  // Both bucket queries return (start, samples, 8 minimums, 8 sums, 8 maximums). Stored
  // times are never negative, so `t - t % step` is the bucket's aligned start.
  const auto over = [](std::string_view fn, std::string_view prefix) {
    return each_metric([fn, prefix](std::size_t i) { return fmt::format("{}({}{})", fn, prefix, i); });
  };
  s.raw_buckets = fmt::format(
      "SELECT t_ns - t_ns % ?4 AS b, count(*), {}, {}, {} FROM raw"
      " WHERE series = ?1 AND t_ns >= ?2 AND t_ns < ?3 GROUP BY b ORDER BY b",
      over("min", "v"), over("sum", "v"), over("max", "v"));
  s.rollup_buckets = fmt::format(
      "SELECT start_ns - start_ns % ?4 AS b, sum(n), {}, {}, {} FROM rollup"
      " WHERE series = ?1 AND start_ns > ?2 AND start_ns < ?3 GROUP BY b ORDER BY b",
      over("min", "min"), over("sum", "sum"), over("max", "max"));
  return s;
}

const Sql& sql() {
  static const Sql sql_text = make_sql();
  return sql_text;
}

constexpr std::string_view kBegin = "BEGIN IMMEDIATE";
constexpr std::string_view kCommit = "COMMIT";
constexpr std::string_view kRollback = "ROLLBACK";
constexpr std::string_view kUpsertSeries =
    "INSERT INTO series(uuid, name, last_seen_ns, simulated) VALUES(?1, ?2, ?3, ?4)"
    " ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, last_seen_ns = excluded.last_seen_ns,"
    " simulated = max(simulated, excluded.simulated) RETURNING id";
constexpr std::string_view kSetMeta =
    "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
constexpr std::string_view kGetMeta = "SELECT value FROM meta WHERE key = ?1";
// VM series not seen for the whole retention go with their data; the host's series stays.
constexpr std::string_view kDeleteStaleRaw =
    "DELETE FROM raw WHERE series IN (SELECT id FROM series WHERE uuid <> '' AND last_seen_ns < ?1)";
constexpr std::string_view kDeleteStaleRollup =
    "DELETE FROM rollup WHERE series IN (SELECT id FROM series WHERE uuid <> '' AND last_seen_ns < ?1)";
constexpr std::string_view kDeleteStaleSeries = "DELETE FROM series WHERE uuid <> '' AND last_seen_ns < ?1";
// `series IN (...)` lets SQLite walk each series' primary-key range instead of the table.
constexpr std::string_view kTrimRaw = "DELETE FROM raw WHERE series IN (SELECT id FROM series) AND t_ns < ?1";
constexpr std::string_view kTrimRollup =
    "DELETE FROM rollup WHERE series IN (SELECT id FROM series) AND start_ns <= ?1";
constexpr std::string_view kSeriesByUuid = "SELECT id, uuid, name, simulated FROM series WHERE uuid = ?1";
constexpr std::string_view kSeriesByName =
    "SELECT id, uuid, name, simulated FROM series WHERE name = ?1 AND uuid <> ''"
    " ORDER BY last_seen_ns DESC LIMIT 1";
constexpr std::string_view kCountRaw = "SELECT count(*) FROM raw WHERE series = ?1 AND t_ns >= ?2 AND t_ns < ?3";
constexpr std::string_view kVms = "SELECT uuid, name FROM series WHERE uuid <> '' ORDER BY last_seen_ns DESC, uuid";
constexpr std::string_view kRawRows = "SELECT count(*) FROM raw";
constexpr std::string_view kRollupRows = "SELECT count(*) FROM rollup";
constexpr std::string_view kApplicationIdPragma = "PRAGMA application_id";
constexpr std::string_view kUserVersionPragma = "PRAGMA user_version";
constexpr std::string_view kSchemaObjects = "SELECT count(*) FROM sqlite_schema";
constexpr std::string_view kWal = "PRAGMA journal_mode=WAL";

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StatementFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using StatementPtr = std::unique_ptr<sqlite3_stmt, StatementFinalizer>;

// One use of a cached statement: binds, steps, reads columns, and resets the statement
// when it goes. Bound text is not copied (SQLITE_STATIC): it must outlive the Use.
class Use {
 public:
  explicit Use(sqlite3_stmt* stmt) noexcept : stmt_(stmt) {}
  ~Use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  Use(Use&&) = delete;
  Use& operator=(Use&&) = delete;

  Use& bind_int(int i, std::int64_t v) noexcept {
    note(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Use& bind_real(int i, double v) noexcept {
    note(sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  Use& bind_text(int i, std::string_view v) noexcept {
    if (v.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      note(SQLITE_TOOBIG);
    } else {
      note(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), nullptr));
    }
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or the error of a binding or of the step.
  int step() noexcept { return rc_ != SQLITE_OK ? rc_ : sqlite3_step(stmt_); }

  std::int64_t int_at(int col) const noexcept { return sqlite3_column_int64(stmt_, col); }
  double real_at(int col) const noexcept { return sqlite3_column_double(stmt_, col); }
  std::string text_at(int col) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return text != nullptr ? std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)))
                           : std::string();
  }

 private:
  void note(int rc) noexcept {
    if (rc_ == SQLITE_OK) {
      rc_ = rc;
    }
  }

  sqlite3_stmt* stmt_;
  int rc_ = SQLITE_OK;
};

// The interface's promise that no exception escapes: std::bad_alloc and anything else a
// body throws become a Status.
template <typename F>
auto guarded(F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return resource_exhausted_error("history store: out of memory");
  } catch (const std::exception& e) {
    return internal_error(fmt::format("history store: {}", e.what()));
  } catch (...) {
    return internal_error("history store: unknown exception");
  }
}

struct SeriesRow {
  std::int64_t id = 0;
  std::string uuid;
  std::string name;
  bool simulated = false;
};

// One series' values in a tick, validated before anything is written.
struct Entry {
  std::string_view uuid;
  std::string_view name;
  MetricValues values;
};

// Owns one connection; every method holds mutex_ for its whole duration.
class SqliteMetricsStore final : public spi::MetricsStore {
 public:
  SqliteMetricsStore(DbPtr db, const spi::MetricsStoreOptions& options)
      : db_(std::move(db)), path_(options.path), host_id_(options.host_id), retention_(options.retention) {}

  static Result<std::unique_ptr<spi::MetricsStore>> open(const spi::MetricsStoreOptions& options);

  Status record(const HostSample& sample) override {
    return guarded([&]() -> Status {
      const std::lock_guard lock(mutex_);
      return record_locked(sample);
    });
  }

  Result<HistorySeries> query(const HistoryQuery& query) override {
    return guarded([&]() -> Result<HistorySeries> {
      const std::lock_guard lock(mutex_);
      return query_locked(query);
    });
  }

  Result<std::vector<std::pair<std::string, std::string>>> vms() override {
    return guarded([&]() -> Result<std::vector<std::pair<std::string, std::string>>> {
      const std::lock_guard lock(mutex_);
      CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kVms));
      Use use(stmt);
      std::vector<std::pair<std::string, std::string>> out;
      int rc = 0;
      while ((rc = use.step()) == SQLITE_ROW) {
        out.emplace_back(use.text_at(0), use.text_at(1));
      }
      if (rc != SQLITE_DONE) {
        return error(rc, "listing VMs");
      }
      return out;
    });
  }

  Result<spi::MetricsStoreStats> stats() override {
    return guarded([&]() -> Result<spi::MetricsStoreStats> {
      const std::lock_guard lock(mutex_);
      spi::MetricsStoreStats out;
      CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t raw, single_int(kRawRows, "counting raw samples"));
      CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t rollup, single_int(kRollupRows, "counting rollups"));
      out.raw_rows = static_cast<std::uint64_t>(raw);
      out.rollup_rows = static_cast<std::uint64_t>(rollup);
      for (const char* suffix : {"", "-wal", "-shm"}) {
        std::error_code ec;
        const std::uintmax_t size = std::filesystem::file_size(path_ + suffix, ec);
        if (!ec) {
          out.file_bytes += size;
        }
      }
      return out;
    });
  }

 private:
  Status init();
  Status create_schema();
  Status check_meta();
  Status record_locked(const HostSample& sample);
  Status write_tick(const HostSample& sample, const std::vector<Entry>& entries, bool cleanup_due);
  Status cleanup(std::int64_t newest);
  Result<HistorySeries> query_locked(const HistoryQuery& query);
  Result<std::optional<SeriesRow>> find_series(std::string_view vm);
  std::int64_t fitting_step(std::int64_t since, std::int64_t until, std::int64_t max_points, bool in_raw) const;

  Status error(int rc, std::string_view what) const {
    return sqlite_error(db_.get(), rc, fmt::format("history '{}': {}", path_, what));
  }

  // The prepared statement for `sql` (a string with static storage), prepared once.
  Result<sqlite3_stmt*> statement(std::string_view sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      return it->second.get();
    }
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return error(rc, fmt::format("preparing '{}'", sql.substr(0, 80)));
    }
    statements_.emplace(sql, StatementPtr(stmt));
    return stmt;
  }

  // Runs a statement that returns no rows (or whose rows do not matter).
  Status run(std::string_view sql, std::string_view what) {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql));
    Use use(stmt);
    int rc = 0;
    while ((rc = use.step()) == SQLITE_ROW) {
    }
    return rc == SQLITE_DONE ? Status() : error(rc, what);
  }

  // The first column of the first row of a statement without parameters.
  Result<std::int64_t> single_int(std::string_view sql, std::string_view what) {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql));
    Use use(stmt);
    const int rc = use.step();
    if (rc != SQLITE_ROW) {
      return error(rc == SQLITE_DONE ? SQLITE_ERROR : rc, what);
    }
    return use.int_at(0);
  }

  // Runs `body` in one write transaction: committed when it returns OK, rolled back when it
  // fails or throws.
  template <typename F>
  Status in_transaction(F&& body) {
    CLOUDMGR_RETURN_IF_ERROR(run(kBegin, "starting a transaction"));
    Status status;
    try {
      status = body();
      if (status.ok()) {
        status = run(kCommit, "committing");
      }
    } catch (...) {
      rollback();
      throw;
    }
    if (!status.ok()) {
      rollback();
    }
    return status;
  }

  void rollback() noexcept {
    // Some errors (a full disk, an I/O error) roll the transaction back by themselves.
    if (sqlite3_get_autocommit(db_.get()) == 0) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

  // Declared first so that the statements are finalized before the connection closes.
  DbPtr db_;
  const std::string path_;
  const std::string host_id_;
  const HistoryRetention retention_;
  std::mutex mutex_;
  std::unordered_map<std::string_view, StatementPtr> statements_;  // GUARDED_BY(mutex_)
  std::optional<std::int64_t> last_taken_ns_;                      // GUARDED_BY(mutex_)
  std::optional<std::int64_t> last_cleanup_bucket_;                // GUARDED_BY(mutex_)
};

Result<std::unique_ptr<spi::MetricsStore>> SqliteMetricsStore::open(const spi::MetricsStoreOptions& options) {
  if (options.path.empty()) {
    return invalid_argument_error("history store: the path must not be empty");
  }
  if (options.host_id.empty()) {
    return invalid_argument_error("history store: the host id must not be empty");
  }
  CLOUDMGR_RETURN_IF_ERROR(options.retention.validate());
  sqlite3* handle = nullptr;
  const int rc = sqlite3_open_v2(options.path.c_str(), &handle,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(handle);
  if (rc != SQLITE_OK) {
    return sqlite_error(db.get(), rc, fmt::format("history '{}': opening", options.path));
  }
  auto store = std::make_unique<SqliteMetricsStore>(std::move(db), options);
  CLOUDMGR_RETURN_IF_ERROR(store->init());
  return std::unique_ptr<spi::MetricsStore>(std::move(store));
}

Status SqliteMetricsStore::init() {
  sqlite3_busy_timeout(db_.get(), kBusyTimeoutMs);
  if (sqlite3_db_readonly(db_.get(), "main") == 1) {
    return unavailable_error(fmt::format("history '{}': the file is read-only", path_));
  }
  // Look before writing anything: a file that is not ours is left as it was.
  CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t app_id, single_int(kApplicationIdPragma, "reading the header"));
  CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t version, single_int(kUserVersionPragma, "reading the header"));
  bool fresh = false;
  if (app_id == 0 && version == 0) {
    CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t objects, single_int(kSchemaObjects, "reading the schema"));
    if (objects != 0) {
      return unavailable_error(
          fmt::format("history '{}': not a cloudmgr history (a SQLite database of another kind)", path_));
    }
    fresh = true;
  } else if (app_id != kApplicationId) {
    return unavailable_error(fmt::format("history '{}': not a cloudmgr history (application id {:#x})", path_,
                                         static_cast<std::uint32_t>(app_id)));
  } else if (version != kSchemaVersion) {
    return unavailable_error(
        fmt::format("history '{}': schema version {}, this build reads version {}", path_, version, kSchemaVersion));
  }

  {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kWal));
    Use use(stmt);
    const int rc = use.step();
    if (rc != SQLITE_ROW) {
      return error(rc, "switching to WAL");
    }
    if (const std::string mode = use.text_at(0); mode != "wal") {
      return unavailable_error(
          fmt::format("history '{}': cannot use a write-ahead log (journal mode '{}')", path_, mode));
    }
  }
  const int rc = sqlite3_exec(db_.get(), "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=4194304", nullptr,
                              nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return error(rc, "setting pragmas");
  }
  if (fresh) {
    CLOUDMGR_RETURN_IF_ERROR(create_schema());
  }
  return check_meta();
}

Status SqliteMetricsStore::create_schema() {
  return in_transaction([&]() -> Status {
    // Another process may have created it since we looked.
    CLOUDMGR_ASSIGN_OR_RETURN(const std::int64_t version, single_int(kUserVersionPragma, "reading the header"));
    if (version != 0) {
      return {};
    }
    int rc = sqlite3_exec(db_.get(), sql().create.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return error(rc, "creating the schema");
    }
    const std::string header =
        fmt::format("PRAGMA application_id={}; PRAGMA user_version={}", kApplicationId, kSchemaVersion);
    rc = sqlite3_exec(db_.get(), header.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return error(rc, "writing the header");
    }
    {
      CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kSetMeta));
      Use use(stmt);
      rc = use.bind_text(1, "host_id").bind_text(2, host_id_).step();
      if (rc != SQLITE_DONE) {
        return error(rc, "writing the host id");
      }
    }
    {
      CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kSetMeta));
      Use use(stmt);
      rc = use.bind_text(1, "rollup_step_ns").bind_int(2, retention_.rollup_step_ns).step();
      if (rc != SQLITE_DONE) {
        return error(rc, "writing the rollup step");
      }
    }
    return {};
  });
}

Status SqliteMetricsStore::check_meta() {
  CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kGetMeta));
  {
    Use use(stmt);
    const int rc = use.bind_text(1, "host_id").step();
    if (rc != SQLITE_ROW) {
      return rc == SQLITE_DONE ? unavailable_error(fmt::format("history '{}': no host id recorded", path_))
                               : error(rc, "reading the host id");
    }
    if (const std::string stored = use.text_at(0); stored != host_id_) {
      return failed_precondition_error(
          fmt::format("history '{}' belongs to host '{}', not to host '{}'", path_, stored, host_id_));
    }
  }
  {
    Use use(stmt);
    const int rc = use.bind_text(1, "rollup_step_ns").step();
    if (rc != SQLITE_ROW) {
      return rc == SQLITE_DONE ? unavailable_error(fmt::format("history '{}': no rollup step recorded", path_))
                               : error(rc, "reading the rollup step");
    }
    // Rollups of another width cannot be merged into this one's buckets.
    if (const std::int64_t stored = use.int_at(0); stored != retention_.rollup_step_ns) {
      return failed_precondition_error(
          fmt::format("history '{}' has rollups of {}, the retention asks for {}; move the file away to start over",
                      path_, seconds_text(stored), seconds_text(retention_.rollup_step_ns)));
    }
  }
  {
    Use use(stmt);
    const int rc = use.bind_text(1, "last_taken_ns").step();
    if (rc == SQLITE_ROW) {
      last_taken_ns_ = use.int_at(0);
    } else if (rc != SQLITE_DONE) {
      return error(rc, "reading the last tick");
    }
  }
  return {};
}

Status SqliteMetricsStore::record_locked(const HostSample& sample) {
  if (!sample.host_id.empty() && sample.host_id != host_id_) {
    return failed_precondition_error(
        fmt::format("history '{}' belongs to host '{}', not to host '{}'", path_, host_id_, sample.host_id));
  }
  if (sample.taken_ns < 0) {
    return invalid_argument_error(fmt::format("history: taken_ns must not be negative ({})", sample.taken_ns));
  }
  if (last_taken_ns_ && sample.taken_ns <= *last_taken_ns_) {
    return {};  // the clock stepped back
  }
  std::vector<Entry> entries;
  entries.reserve(sample.vms.size() + 1);
  if (sample.rates_valid) {
    entries.push_back({"", host_id_, sample.values()});
  }
  std::set<std::string_view> uuids;
  for (const VmSample& vm : sample.vms) {
    if (!vm.rates_valid) {
      continue;
    }
    if (vm.uuid.empty()) {
      return invalid_argument_error(fmt::format("history: VM '{}' has no uuid", vm.name));
    }
    if (!uuids.insert(vm.uuid).second) {
      return invalid_argument_error(fmt::format("history: VM uuid '{}' appears twice in one tick", vm.uuid));
    }
    entries.push_back({vm.uuid, vm.name, vm.values()});
  }
  for (const Entry& e : entries) {
    for (std::size_t i = 0; i < kMetricCount; ++i) {
      if (!std::isfinite(e.values[i])) {
        return invalid_argument_error(
            fmt::format("history: {} of {} is not a finite number", to_string(static_cast<Metric>(i)),
                        e.uuid.empty() ? fmt::format("host '{}'", host_id_) : fmt::format("VM '{}'", e.name)));
      }
    }
  }
  if (entries.empty()) {
    return {};  // nothing to record: the tick leaves no trace
  }
  const std::int64_t bucket = sample.taken_ns - sample.taken_ns % retention_.rollup_step_ns;
  const bool cleanup_due = !last_cleanup_bucket_ || *last_cleanup_bucket_ != bucket;
  CLOUDMGR_RETURN_IF_ERROR(in_transaction([&] { return write_tick(sample, entries, cleanup_due); }));
  last_taken_ns_ = sample.taken_ns;
  if (cleanup_due) {
    last_cleanup_bucket_ = bucket;
  }
  return {};
}

Status SqliteMetricsStore::write_tick(const HostSample& sample, const std::vector<Entry>& entries, bool cleanup_due) {
  const std::int64_t t = sample.taken_ns;
  const std::int64_t bucket = t - t % retention_.rollup_step_ns;
  CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * upsert_series, statement(kUpsertSeries));
  CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * insert_raw, statement(sql().insert_raw));
  CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * upsert_rollup, statement(sql().upsert_rollup));
  for (const Entry& e : entries) {
    std::int64_t id = 0;
    {
      Use use(upsert_series);
      const int rc =
          use.bind_text(1, e.uuid).bind_text(2, e.name).bind_int(3, t).bind_int(4, sample.simulated ? 1 : 0).step();
      if (rc != SQLITE_ROW) {
        return error(rc, "recording a series");
      }
      id = use.int_at(0);
    }
    Use raw(insert_raw);
    Use rollup(upsert_rollup);
    raw.bind_int(1, id).bind_int(2, t);
    rollup.bind_int(1, id).bind_int(2, bucket);
    for (std::size_t i = 0; i < kMetricCount; ++i) {
      raw.bind_real(static_cast<int>(i) + 3, e.values[i]);
      rollup.bind_real(static_cast<int>(i) + 3, e.values[i]);
    }
    if (const int rc = raw.step(); rc != SQLITE_DONE) {
      return error(rc, "recording a sample");
    }
    if (const int rc = rollup.step(); rc != SQLITE_DONE) {
      return error(rc, "recording a rollup");
    }
  }
  {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kSetMeta));
    Use use(stmt);
    if (const int rc = use.bind_text(1, "last_taken_ns").bind_int(2, t).step(); rc != SQLITE_DONE) {
      return error(rc, "recording the tick time");
    }
  }
  return cleanup_due ? cleanup(t) : Status();
}

Status SqliteMetricsStore::cleanup(std::int64_t newest) {
  const auto with_bound = [&](std::string_view sql, std::int64_t bound, std::string_view what) -> Status {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql));
    Use use(stmt);
    const int rc = use.bind_int(1, bound).step();
    return rc == SQLITE_DONE ? Status() : error(rc, what);
  };
  const std::int64_t stale = saturating_sub(newest, std::max(retention_.raw_ns, retention_.rollup_ns));
  CLOUDMGR_RETURN_IF_ERROR(with_bound(kDeleteStaleRaw, stale, "deleting the samples of gone VMs"));
  CLOUDMGR_RETURN_IF_ERROR(with_bound(kDeleteStaleRollup, stale, "deleting the rollups of gone VMs"));
  CLOUDMGR_RETURN_IF_ERROR(with_bound(kDeleteStaleSeries, stale, "deleting gone VMs"));
  CLOUDMGR_RETURN_IF_ERROR(
      with_bound(kTrimRaw, saturating_sub(newest, retention_.raw_ns), "deleting samples past the raw window"));
  // A rollup goes when its whole bucket is past the window: start + step <= newest - window.
  return with_bound(kTrimRollup,
                    saturating_sub(saturating_sub(newest, retention_.rollup_ns), retention_.rollup_step_ns),
                    "deleting rollups past the rollup window");
}

Result<std::optional<SeriesRow>> SqliteMetricsStore::find_series(std::string_view vm) {
  const auto lookup = [&](std::string_view sql, std::string_view key) -> Result<std::optional<SeriesRow>> {
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql));
    Use use(stmt);
    const int rc = use.bind_text(1, key).step();
    if (rc == SQLITE_DONE) {
      return std::optional<SeriesRow>();
    }
    if (rc != SQLITE_ROW) {
      return error(rc, "looking up a series");
    }
    return std::optional<SeriesRow>(SeriesRow{
        .id = use.int_at(0), .uuid = use.text_at(1), .name = use.text_at(2), .simulated = use.int_at(3) != 0});
  };
  CLOUDMGR_ASSIGN_OR_RETURN(std::optional<SeriesRow> row, lookup(kSeriesByUuid, vm));
  if (!row && !vm.empty()) {
    CLOUDMGR_ASSIGN_OR_RETURN(row, lookup(kSeriesByName, vm));
  }
  return row;
}

std::int64_t SqliteMetricsStore::fitting_step(std::int64_t since, std::int64_t until, std::int64_t max_points,
                                              bool in_raw) const {
  const std::int64_t rollup_step = retention_.rollup_step_ns;
  const std::int64_t span = until - since;
  const auto fits = [&](std::int64_t step) { return bucket_count(since, until, step) <= max_points; };
  const auto raw_step = [&](std::int64_t step) { return in_raw && step < rollup_step; };
  // Fewer than span / max_points per bucket cannot fit; from `safe` on every step fits,
  // however the window is aligned (it touches at most (span - 1) / step + 2 buckets).
  const std::int64_t lower = std::max<std::int64_t>(1, span / max_points + (span % max_points != 0 ? 1 : 0));
  const std::int64_t safe = max_points >= 2 ? (span - 1) / (max_points - 1) + 1 : until;
  if (raw_step(lower)) {
    if (fits(lower)) {
      return lower;
    }
    if (raw_step(safe)) {
      return safe;
    }
  }
  std::int64_t step = round_up(lower, rollup_step);
  for (int i = 0; i < 64 && step <= kMax - rollup_step; ++i, step += rollup_step) {
    if (fits(step)) {
      return step;
    }
  }
  return round_up(safe, rollup_step);
}

Result<HistorySeries> SqliteMetricsStore::query_locked(const HistoryQuery& q) {
  if (q.since_ns < 0) {
    return invalid_argument_error(fmt::format("history query: since_ns must not be negative ({})", q.since_ns));
  }
  const std::int64_t until = q.until_ns != 0 ? q.until_ns : now_ns();
  if (q.since_ns >= until) {
    return invalid_argument_error(
        fmt::format("history query: since_ns ({}) must be before until_ns ({})", q.since_ns, until));
  }
  if (q.step_ns < 0) {
    return invalid_argument_error(fmt::format("history query: step_ns must not be negative ({})", q.step_ns));
  }
  if (q.max_points == 0) {
    return invalid_argument_error("history query: max_points must be positive");
  }
  CLOUDMGR_ASSIGN_OR_RETURN(std::optional<SeriesRow> row, find_series(q.vm));
  if (!row) {
    return not_found_error(fmt::format("no history for VM '{}' on host '{}'", q.vm, host_id_));
  }
  HistorySeries out;
  out.host_id = host_id_;
  out.vm_uuid = row->uuid;
  out.vm_name = row->uuid.empty() ? std::string() : row->name;
  out.simulated = row->simulated;

  const std::int64_t rollup_step = retention_.rollup_step_ns;
  const std::int64_t max_points = q.max_points;
  const bool in_raw = !last_taken_ns_ || q.since_ns >= saturating_sub(*last_taken_ns_, retention_.raw_ns);
  const auto too_many = [&](std::int64_t n) {
    const std::int64_t step = fitting_step(q.since_ns, until, max_points, in_raw);
    return invalid_argument_error(
        fmt::format("history query would return {} points (max {}); use a step of at least {} ns ({})", n, max_points,
                    step, seconds_text(step)));
  };

  if (q.step_ns == 0 && in_raw) {
    // Every raw sample is its own point.
    {
      CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(kCountRaw));
      Use use(stmt);
      const int rc = use.bind_int(1, row->id).bind_int(2, q.since_ns).bind_int(3, until).step();
      if (rc != SQLITE_ROW) {
        return error(rc, "counting samples");
      }
      if (const std::int64_t n = use.int_at(0); n > max_points) {
        return too_many(n);
      }
    }
    CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(sql().raw_points));
    Use use(stmt);
    use.bind_int(1, row->id).bind_int(2, q.since_ns).bind_int(3, until);
    int rc = 0;
    while ((rc = use.step()) == SQLITE_ROW) {
      HistoryPoint& p = out.points.emplace_back();
      p.start_ns = use.int_at(0);
      p.samples = 1;
      for (std::size_t i = 0; i < kMetricCount; ++i) {
        p.min[i] = p.avg[i] = p.max[i] = use.real_at(static_cast<int>(i) + 1);
      }
    }
    if (rc != SQLITE_DONE) {
      return error(rc, "reading samples");
    }
    return out;
  }

  const bool from_raw = in_raw && q.step_ns > 0 && q.step_ns < rollup_step;
  const std::int64_t step = from_raw ? q.step_ns : round_up(q.step_ns == 0 ? rollup_step : q.step_ns, rollup_step);
  if (const std::int64_t n = bucket_count(q.since_ns, until, step); n > max_points) {
    return too_many(n);
  }
  out.step_ns = step;
  CLOUDMGR_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, statement(from_raw ? sql().raw_buckets : sql().rollup_buckets));
  Use use(stmt);
  // A rollup row counts when its bucket overlaps the window: start > since - rollup step.
  use.bind_int(1, row->id)
      .bind_int(2, from_raw ? q.since_ns : q.since_ns - rollup_step)
      .bind_int(3, until)
      .bind_int(4, step);
  int rc = 0;
  constexpr int kMins = 2;
  constexpr int kSums = kMins + static_cast<int>(kMetricCount);
  constexpr int kMaxes = kSums + static_cast<int>(kMetricCount);
  while ((rc = use.step()) == SQLITE_ROW) {
    HistoryPoint& p = out.points.emplace_back();
    p.start_ns = use.int_at(0);
    const std::int64_t n = use.int_at(1);
    p.samples = static_cast<std::uint32_t>(std::clamp<std::int64_t>(n, 0, std::numeric_limits<std::uint32_t>::max()));
    for (std::size_t i = 0; i < kMetricCount; ++i) {
      const int col = static_cast<int>(i);
      p.min[i] = use.real_at(kMins + col);
      p.avg[i] = n > 0 ? use.real_at(kSums + col) / static_cast<double>(n) : 0;
      p.max[i] = use.real_at(kMaxes + col);
    }
  }
  if (rc != SQLITE_DONE) {
    return error(rc, "reading buckets");
  }
  return out;
}

}  // namespace
}  // namespace sqlite

namespace spi {

Result<std::unique_ptr<MetricsStore>> open_metrics_store(const MetricsStoreOptions& options) {
  return sqlite::guarded([&] { return sqlite::SqliteMetricsStore::open(options); });
}

}  // namespace spi
}  // namespace cloudmgr
