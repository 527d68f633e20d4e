// Plug-in interface: where an agent keeps its host's monitoring history.
//
// The built-in store (lib/store/sqlite) is one SQLite database in the agent's state
// directory: raw samples for HistoryRetention::raw_ns, rollups (min / avg / max per
// rollup_step_ns bucket) for rollup_ns. Nothing above this interface knows SQLite.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cloudmgr/export.h"
#include "cloudmgr/metrics.h"
#include "cloudmgr/status.h"

namespace cloudmgr::spi {

// What a store holds, for tests and for `cloudctl monitor` diagnostics.
struct MetricsStoreStats {
  std::uint64_t raw_rows = 0;
  std::uint64_t rollup_rows = 0;
  std::uint64_t file_bytes = 0;  // on-disk size, including any journal/WAL file
};

// One host's history. Thread-safe: record() and query() may run concurrently.
class CLOUDMGR_API MetricsStore {
 public:
  MetricsStore() = default;
  virtual ~MetricsStore();
  MetricsStore(const MetricsStore&) = delete;
  MetricsStore& operator=(const MetricsStore&) = delete;

  // Records one tick: the host's values and each VM whose rates are valid (samples with
  // rates_valid false are skipped). Atomic: all of the tick or none of it. Samples older
  // than the retention windows are dropped as time moves on, so the store's size is
  // bounded by the retention and the number of VMs. A tick not newer than the last one
  // recorded is ignored (the clock stepped back) and the call succeeds.
  virtual Status record(const HostSample& sample) = 0;

  // One series: the host (query.vm empty) or one VM, by name or uuid (the most recent VM
  // of that name). kNotFound for a VM the store never saw; kInvalidArgument for a bad
  // window (since >= until), a negative step, or more points than query.max_points (the
  // message names the smallest step that fits). Reads raw samples where the window and
  // step allow it (step < rollup step and inside the raw window), rollups otherwise; a
  // step is then rounded up to a multiple of the rollup step.
  virtual Result<HistorySeries> query(const HistoryQuery& query) = 0;

  // The VMs the store has history for: (uuid, name), most recently seen first.
  virtual Result<std::vector<std::pair<std::string, std::string>>> vms() = 0;

  virtual Result<MetricsStoreStats> stats() = 0;
};

struct MetricsStoreOptions {
  std::string path;  // the database file; its directory must exist
  std::string host_id;
  HistoryRetention retention;
};

// Opens (creating if missing) the built-in SQLite store. kInvalidArgument for a bad
// retention or an empty path; kUnavailable when the file cannot be opened or is not a
// cloudmgr history (the message names the file); history written by an earlier run is kept.
CLOUDMGR_API Result<std::unique_ptr<MetricsStore>> open_metrics_store(const MetricsStoreOptions& options);

}  // namespace cloudmgr::spi
