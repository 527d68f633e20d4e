// Charts of monitoring history for cloudctl: CPU, memory and rates by time for a host, a VM
// or a group of them, drawn in the terminal (Unicode braille) or written as PNG / SVG
// (cairo).
//
// One panel per metric, stacked over a shared time axis labelled in local time. Each series
// is one line (its per-bucket average), named by its VM name, else its host id; a chart of
// a single series also shows the min-max band of each bucket. Points further apart than two
// steps are not joined, so missing data shows as a gap. If any series is simulated, every
// output's title ends in " (simulated load)".
//
// Stateless free functions; safe to call from any thread.
#pragma once

#include <string>
#include <vector>

#include "cloudmgr/metrics.h"
#include "cloudmgr/status.h"

namespace cloudctl {

enum class ChartFormat { kPng, kSvg };

struct ChartOptions {
  // e.g. "node1 CPU and memory, last 2 h (1 min steps)"; " (simulated load)" is appended
  // when any series is simulated.
  std::string title;
  // One panel each, top to bottom.
  std::vector<cloudmgr::Metric> metrics{cloudmgr::Metric::kCpuPct, cloudmgr::Metric::kMemoryUsedBytes};
  // Terminal: columns and rows of the whole chart, at most (0: 100 columns, 12 rows per
  // panel plus 3 for the title, time labels and legend). Files: pixels (0: 1200 wide, 360
  // per panel).
  int width = 0;
  int height = 0;
  bool color = false;  // terminal only: ANSI colors, one per series
};

// The chart as lines of UTF-8 text, ending in a newline. Without series or samples it is the
// title and "no samples in this period". With color off and several series, each series is
// drawn with its own ASCII marker instead of braille so that lines stay distinguishable.
std::string render_terminal_chart(const std::vector<cloudmgr::HistorySeries>& series, const ChartOptions& options);

// Writes the chart to `path`, atomically: it is rendered in memory, written to a temporary
// file in the same directory and renamed over `path`, so a failure leaves no file behind
// (and an existing file unchanged). kInvalidArgument for a negative or oversized size or a
// path whose directory does not exist; kPermissionDenied, kResourceExhausted or kUnavailable
// when the file cannot be written. Messages name the path and the cairo or system error.
cloudmgr::Status write_chart(const std::vector<cloudmgr::HistorySeries>& series, const ChartOptions& options,
                             ChartFormat format, const std::string& path);

// The format for a path by its extension: ".png" or ".svg" (any case); kInvalidArgument
// naming the path otherwise.
cloudmgr::Result<ChartFormat> chart_format_for(const std::string& path);

}  // namespace cloudctl
