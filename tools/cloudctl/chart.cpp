// Charts of monitoring history: one data model (panels, axes, lines), two renderers (braille
// text and cairo), and an atomic file writer.
#include "cloudctl/chart.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <limits>
#include <memory>
#include <numbers>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>

namespace cloudctl {

namespace {

using cloudmgr::HistorySeries;
using cloudmgr::Metric;
using cloudmgr::Status;

constexpr std::int64_t kNsPerS = 1'000'000'000;
constexpr std::string_view kSimulatedMarker = " (simulated load)";
constexpr std::string_view kNoSamples = "no samples in this period";

// ---------------------------------------------------------------------------------------------
// Metrics: panel titles and units. Local names rather than to_string(Metric): these are for
// people, not for parsing.

enum class UnitKind : std::uint8_t { kPercent, kBytes, kBytesPerS, kOpsPerS };

struct MetricInfo {
  std::string_view title;
  UnitKind unit;
};

MetricInfo metric_info(Metric metric) {
  switch (metric) {
    case Metric::kCpuPct:
      return {"CPU", UnitKind::kPercent};
    case Metric::kMemoryUsedBytes:
      return {"Memory used", UnitKind::kBytes};
    case Metric::kDiskReadBytesPerS:
      return {"Disk read", UnitKind::kBytesPerS};
    case Metric::kDiskWriteBytesPerS:
      return {"Disk write", UnitKind::kBytesPerS};
    case Metric::kDiskReadOpsPerS:
      return {"Disk read operations", UnitKind::kOpsPerS};
    case Metric::kDiskWriteOpsPerS:
      return {"Disk write operations", UnitKind::kOpsPerS};
    case Metric::kNetRxBytesPerS:
      return {"Network receive", UnitKind::kBytesPerS};
    case Metric::kNetTxBytesPerS:
      return {"Network transmit", UnitKind::kBytesPerS};
  }
  return {"?", UnitKind::kOpsPerS};
}

// ---------------------------------------------------------------------------------------------
// Value axis: 0 to a nice maximum in 2-4 equal steps (3-5 labelled ticks), labelled in one
// unit with the same number of decimals throughout.

struct Axis {
  double max = 1;  // in the metric's own unit (percent, bytes, ...)
  double step = 1;
  int intervals = 1;
  double scale = 1;    // label value = value / scale
  std::string suffix;  // "%", " GiB", " KiB/s", "k ops/s"
  int decimals = 0;
  bool percent = false;

  std::string label(double value) const {
    if (value == 0) {
      return percent ? "0%" : "0";
    }
    return fmt::format("{:.{}f}{}", value / scale, decimals, suffix);
  }
};

// The smallest step m * 10^k (m in 1, 2, 2.5, 5) that covers `value` in at most four steps.
void nice_steps(double value, double& step, int& intervals, int& decimals) {
  if (!(value > 0) || !std::isfinite(value)) {
    value = 1;
  }
  static constexpr std::array<double, 4> kMantissas = {1, 2, 2.5, 5};
  for (int k = static_cast<int>(std::floor(std::log10(value / 4))) - 1;; ++k) {
    for (const double m : kMantissas) {
      const double s = m * std::pow(10.0, k);
      const double n = std::ceil(value / s - 1e-9);
      if (n <= 4) {
        step = s;
        intervals = std::max(1, static_cast<int>(n));
        decimals = std::max(0, -k) + ((m == 2.5 && k <= 0) ? 1 : 0);
        return;
      }
    }
  }
}

Axis make_axis(UnitKind unit, double data_max) {
  Axis axis;
  if (!std::isfinite(data_max) || data_max < 0) {
    data_max = 0;
  }
  if (unit == UnitKind::kPercent) {
    axis.percent = true;
    axis.suffix = "%";
    if (data_max <= 100) {
      axis.max = 100;
      axis.step = 25;
      axis.intervals = 4;
      return axis;
    }
    nice_steps(data_max, axis.step, axis.intervals, axis.decimals);
    axis.max = axis.step * axis.intervals;
    return axis;
  }
  struct Unit {
    double scale;
    std::string_view name;
  };
  static constexpr double kKi = 1024.0;
  static constexpr std::array<Unit, 6> kBinary = {{{1, "B"},
                                                   {kKi, "KiB"},
                                                   {kKi * kKi, "MiB"},
                                                   {kKi * kKi * kKi, "GiB"},
                                                   {kKi * kKi * kKi * kKi, "TiB"},
                                                   {kKi * kKi * kKi * kKi * kKi, "PiB"}}};
  static constexpr std::array<Unit, 4> kDecimal = {{{1, ""}, {1e3, "k"}, {1e6, "M"}, {1e9, "G"}}};
  const bool binary = unit != UnitKind::kOpsPerS;
  const Unit* units = binary ? kBinary.data() : kDecimal.data();
  const std::size_t count = binary ? kBinary.size() : kDecimal.size();
  // The largest unit the maximum reaches 0.8 of: 900 MiB reads better as 1.0 GiB than as
  // 1000 MiB, and 1020 MiB must not become 1500 MiB.
  const Unit* chosen = units;
  for (std::size_t i = 1; i < count; ++i) {
    if (data_max >= 0.8 * units[i].scale) {
      chosen = units + i;
    }
  }
  axis.scale = chosen->scale;
  nice_steps(data_max / axis.scale, axis.step, axis.intervals, axis.decimals);
  const double top = axis.step * axis.intervals;
  if (binary && axis.scale > 1 && top < 10) {
    axis.decimals = std::max(axis.decimals, 1);  // "2.0 GiB": one decimal at this size
  }
  axis.step *= axis.scale;
  axis.max = axis.step * axis.intervals;
  switch (unit) {
    case UnitKind::kBytes:
      axis.suffix = fmt::format(" {}", chosen->name);
      break;
    case UnitKind::kBytesPerS:
      axis.suffix = fmt::format(" {}/s", chosen->name);
      break;
    case UnitKind::kOpsPerS:
    case UnitKind::kPercent:
      axis.suffix = fmt::format("{} ops/s", chosen->name);
      break;
  }
  return axis;
}

// ---------------------------------------------------------------------------------------------
// Time axis: ticks at round local times.

struct TimeTicks {
  std::vector<std::int64_t> at_ns;
  std::vector<std::string> labels;
};

std::tm local_tm(std::int64_t seconds) {
  std::tm tm{};
  const auto t = static_cast<std::time_t>(seconds);
  localtime_r(&t, &tm);
  return tm;
}

// How wide a span's time labels are: 11 for "MM-DD HH:MM" (over a day), 8 for "HH:MM:SS"
// (under five minutes), 5 for "HH:MM".
std::size_t time_label_width(std::int64_t span_ns) {
  if (span_ns > kNsPerS * 24 * 3600) {
    return 11;
  }
  if (span_ns < kNsPerS * 5 * 60) {
    return 8;
  }
  return 5;
}

// At most `max_ticks` ticks over [t0, t1] at the finest round interval that allows.
TimeTicks time_ticks(std::int64_t t0_ns, std::int64_t t1_ns, int max_ticks) {
  static constexpr std::array<std::int64_t, 23> kIntervals = {
      1,    2,    5,     10,    15,    30,    60,     120,    300,     600,     900,    1800,
      3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600, 2592000, 7776000};
  const std::size_t label_width = time_label_width(t1_ns - t0_ns);
  const bool minutes = label_width != 8;
  const double span_s = static_cast<double>(t1_ns - t0_ns) / kNsPerS;
  std::int64_t interval = kIntervals.back();
  for (const std::int64_t candidate : kIntervals) {
    if ((minutes && candidate < 60) || span_s / static_cast<double>(candidate) > std::max(1, max_ticks)) {
      continue;
    }
    interval = candidate;
    break;
  }
  while (span_s / static_cast<double>(interval) > std::max(1, max_ticks)) {
    interval *= 2;
  }
  // Align in local time (midnight for day intervals), with the UTC offset at the start.
  const std::int64_t offset = local_tm(t0_ns / kNsPerS).tm_gmtoff;
  const std::int64_t first_local = t0_ns / kNsPerS + offset;
  std::int64_t tick = (first_local + interval - 1) / interval * interval - offset;
  TimeTicks ticks;
  for (; tick * kNsPerS <= t1_ns; tick += interval) {
    if (tick * kNsPerS < t0_ns) {
      continue;
    }
    const std::tm tm = local_tm(tick);
    std::array<char, 32> text{};
    // Literal formats, so that the compiler checks them.
    const std::size_t n = label_width == 11  ? std::strftime(text.data(), text.size(), "%m-%d %H:%M", &tm)
                          : label_width == 8 ? std::strftime(text.data(), text.size(), "%H:%M:%S", &tm)
                                             : std::strftime(text.data(), text.size(), "%H:%M", &tm);
    ticks.at_ns.push_back(tick * kNsPerS);
    ticks.labels.emplace_back(text.data(), n);
  }
  return ticks;
}

// ---------------------------------------------------------------------------------------------
// The data model both renderers draw.

struct Sample {
  std::int64_t t_ns;
  double min;
  double avg;
  double max;
  bool joined;  // drawn connected to the previous sample
};

struct Line {
  std::vector<Sample> samples;
};

struct Panel {
  MetricInfo info;
  Axis axis;
  std::vector<Line> lines;  // one per series, in series order
};

struct ChartData {
  std::string title;            // with the simulated marker when it applies
  std::size_t title_plain = 0;  // length of the title before the marker
  bool empty = true;            // no sample in any series
  bool band = false;            // a single series: draw its min-max band
  std::int64_t t0_ns = 0;
  std::int64_t t1_ns = 0;
  std::vector<std::string> names;
  std::vector<Panel> panels;
};

std::string series_name(const HistorySeries& s) { return s.vm_name.empty() ? s.host_id : s.vm_name; }

// The series' step, or the smallest spacing of its points when it does not say.
std::int64_t series_step(const HistorySeries& s) {
  if (s.step_ns > 0) {
    return s.step_ns;
  }
  std::int64_t step = std::numeric_limits<std::int64_t>::max();
  for (std::size_t i = 1; i < s.points.size(); ++i) {
    const std::int64_t d = s.points[i].start_ns - s.points[i - 1].start_ns;
    if (d > 0) {
      step = std::min(step, d);
    }
  }
  return step;
}

ChartData prepare(const std::vector<HistorySeries>& series, const ChartOptions& options) {
  ChartData data;
  bool simulated = false;
  for (const auto& s : series) {
    simulated = simulated || s.simulated;
    data.names.push_back(series_name(s));
  }
  data.title = options.title;
  if (data.title.empty()) {
    std::string metrics;
    for (const Metric m : options.metrics) {
      metrics += fmt::format("{}{}", metrics.empty() ? "" : ", ", metric_info(m).title);
    }
    std::string names;
    for (const auto& n : data.names) {
      names += fmt::format("{}{}", names.empty() ? "" : ", ", n);
    }
    data.title = names.empty() ? metrics : fmt::format("{}: {}", names, metrics);
  }
  data.title_plain = data.title.size();
  if (simulated) {
    data.title += kSimulatedMarker;
  }
  data.band = series.size() == 1;

  bool any = false;
  std::int64_t t0 = std::numeric_limits<std::int64_t>::max();
  std::int64_t t1 = std::numeric_limits<std::int64_t>::min();
  std::int64_t widest_step = 0;
  for (const Metric metric : options.metrics) {
    Panel panel{.info = metric_info(metric), .axis = {}, .lines = {}};
    const auto index = static_cast<std::size_t>(metric);
    double top = 0;
    for (const auto& s : series) {
      Line line;
      const std::int64_t step = series_step(s);
      widest_step = std::max(widest_step, s.step_ns);
      for (const auto& p : s.points) {
        if (index >= cloudmgr::kMetricCount || !std::isfinite(p.avg[index])) {
          continue;
        }
        Sample sample{.t_ns = p.start_ns,
                      .min = std::isfinite(p.min[index]) ? p.min[index] : p.avg[index],
                      .avg = p.avg[index],
                      .max = std::isfinite(p.max[index]) ? p.max[index] : p.avg[index],
                      .joined = false};
        if (!line.samples.empty()) {
          const std::int64_t gap = sample.t_ns - line.samples.back().t_ns;
          sample.joined = gap > 0 && gap / 2 <= step;
        }
        top = std::max(top, data.band ? std::max(sample.max, sample.avg) : sample.avg);
        t0 = std::min(t0, sample.t_ns);
        t1 = std::max(t1, sample.t_ns);
        any = true;
        line.samples.push_back(sample);
      }
      panel.lines.push_back(std::move(line));
    }
    panel.axis = make_axis(panel.info.unit, top);
    data.panels.push_back(std::move(panel));
  }
  data.empty = !any;
  if (any && t1 <= t0) {
    // A single point in time: centre it in a window of a few steps.
    const std::int64_t half = std::max(widest_step, 60 * kNsPerS);
    t0 -= half;
    t1 += half;
  }
  data.t0_ns = any ? t0 : 0;
  data.t1_ns = any ? t1 : 0;
  return data;
}

// A sample with no joined neighbour on either side is drawn as a dot.
bool isolated(const std::vector<Sample>& samples, std::size_t i) {
  return !samples[i].joined && (i + 1 == samples.size() || !samples[i + 1].joined);
}

// ---------------------------------------------------------------------------------------------
// Terminal

// One boolean per braille dot: 2 x 4 per character cell.
class DotGrid {
 public:
  DotGrid(int cols, int rows)
      : width_(cols * 2),
        height_(rows * 4),
        dots_(static_cast<std::size_t>(width_) * static_cast<std::size_t>(height_)) {}

  int width() const { return width_; }
  int height() const { return height_; }

  void set(int x, int y) {
    if (x >= 0 && x < width_ && y >= 0 && y < height_) {
      dots_[index(x, y)] = 1;
    }
  }
  bool get(int x, int y) const { return dots_[index(x, y)] != 0; }

  void line(int x0, int y0, int x1, int y1) {
    const int dx = std::abs(x1 - x0);
    const int dy = -std::abs(y1 - y0);
    const int sx = x0 < x1 ? 1 : -1;
    const int sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
      set(x0, y0);
      if (x0 == x1 && y0 == y1) {
        return;
      }
      const int e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  // The braille bit pattern of cell (col, row).
  unsigned cell(int col, int row) const {
    static constexpr std::array<std::array<unsigned, 4>, 2> kBits = {
        {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}}};
    unsigned bits = 0;
    for (int dx = 0; dx < 2; ++dx) {
      for (int dy = 0; dy < 4; ++dy) {
        if (get(col * 2 + dx, row * 4 + dy)) {
          bits |= kBits[static_cast<std::size_t>(dx)][static_cast<std::size_t>(dy)];
        }
      }
    }
    return bits;
  }

 private:
  std::size_t index(int x, int y) const {
    return static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x);
  }

  int width_;
  int height_;
  std::vector<std::uint8_t> dots_;
};

void append_braille(std::string& out, unsigned bits) {
  // U+2800 + bits, in UTF-8.
  out += static_cast<char>(0xE2);
  out += static_cast<char>(0xA0 | (bits >> 6));
  out += static_cast<char>(0x80 | (bits & 0x3F));
}

int popcount(unsigned bits) {
  int n = 0;
  for (; bits != 0; bits &= bits - 1) {
    ++n;
  }
  return n;
}

constexpr std::array<std::string_view, 8> kAnsiColors = {"\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m",
                                                         "\x1b[34m", "\x1b[31m", "\x1b[96m", "\x1b[93m"};
constexpr std::array<char, 8> kMarkers = {'*', '+', 'o', 'x', '#', '@', '%', '='};
constexpr std::string_view kAnsiReset = "\x1b[0m";
constexpr std::string_view kAnsiBold = "\x1b[1m";
constexpr std::string_view kAnsiDim = "\x1b[2m";
constexpr std::string_view kBandGlyph = "\u2591";  // light shade
constexpr std::string_view kLineSample = "\u2812\u2812";

std::string_view ansi_color(std::size_t series) { return kAnsiColors[series % kAnsiColors.size()]; }

// Appends `text` in `style` (when colors are on), resetting afterwards.
void styled(std::string& out, bool color, std::string_view style, std::string_view text) {
  if (color && !style.empty() && !text.empty()) {
    out += style;
    out += text;
    out += kAnsiReset;
  } else {
    out += text;
  }
}

struct TerminalLayout {
  int cols = 0;  // plot cells across
  int rows = 0;  // plot cells down, per panel
  std::size_t label_width = 0;
};

int dot_x(const ChartData& data, std::int64_t t_ns, int width) {
  const double f = static_cast<double>(t_ns - data.t0_ns) / static_cast<double>(data.t1_ns - data.t0_ns);
  return static_cast<int>(std::lround(std::clamp(f, 0.0, 1.0) * (width - 1)));
}

int dot_y(const Axis& axis, double value, int height) {
  const double f = std::clamp(value / axis.max, 0.0, 1.0);
  return height - 1 - static_cast<int>(std::lround(f * (height - 1)));
}

void render_panel_text(std::string& out, const ChartData& data, const Panel& panel, const TerminalLayout& layout,
                       const ChartOptions& options, const TimeTicks& ticks) {
  const bool markers = !options.color && panel.lines.size() > 1;
  std::vector<DotGrid> lines;
  DotGrid band(layout.cols, layout.rows);
  for (const auto& line : panel.lines) {
    DotGrid grid(layout.cols, layout.rows);
    const auto& s = line.samples;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const int x = dot_x(data, s[i].t_ns, grid.width());
      const int y = dot_y(panel.axis, s[i].avg, grid.height());
      if (s[i].joined) {
        const int px = dot_x(data, s[i - 1].t_ns, grid.width());
        grid.line(px, dot_y(panel.axis, s[i - 1].avg, grid.height()), x, y);
        if (data.band) {
          for (int bx = px; bx <= x; ++bx) {
            const double f = x == px ? 1.0 : static_cast<double>(bx - px) / (x - px);
            const double lo = s[i - 1].min + f * (s[i].min - s[i - 1].min);
            const double hi = s[i - 1].max + f * (s[i].max - s[i - 1].max);
            for (int by = dot_y(panel.axis, hi, grid.height()); by <= dot_y(panel.axis, lo, grid.height()); ++by) {
              band.set(bx, by);
            }
          }
        }
      } else if (isolated(s, i)) {
        const int x2 = x + 1 < grid.width() ? x + 1 : x - 1;
        grid.set(x, y);
        grid.set(x2, y);
        if (data.band) {
          for (int by = dot_y(panel.axis, s[i].max, grid.height()); by <= dot_y(panel.axis, s[i].min, grid.height());
               ++by) {
            band.set(x, by);
            band.set(x2, by);
          }
        }
      }
    }
    lines.push_back(std::move(grid));
  }

  // Which rows carry a value label: the ends first, so that they win on a short panel.
  std::vector<std::string> row_labels(static_cast<std::size_t>(layout.rows));
  std::vector<int> order{panel.axis.intervals, 0};
  for (int k = 1; k < panel.axis.intervals; ++k) {
    order.push_back(k);
  }
  for (const int k : order) {
    const double value = panel.axis.step * k;
    const auto row = static_cast<std::size_t>(dot_y(panel.axis, value, layout.rows * 4) / 4);
    if (row_labels[row].empty()) {
      row_labels[row] = panel.axis.label(value);
    }
  }

  styled(out, options.color, kAnsiBold, panel.info.title);
  out += '\n';
  for (int row = 0; row < layout.rows; ++row) {
    const auto& label = row_labels[static_cast<std::size_t>(row)];
    out += fmt::format("{:>{}} {}", label, layout.label_width, label.empty() ? "\u2502" : "\u2524");
    std::string_view current_style;
    for (int col = 0; col < layout.cols; ++col) {
      unsigned bits = 0;
      int owner = -1;
      int owner_dots = 0;
      for (std::size_t i = 0; i < lines.size(); ++i) {
        const unsigned b = lines[i].cell(col, row);
        bits |= b;
        if (b != 0 && popcount(b) >= owner_dots) {
          owner = static_cast<int>(i);
          owner_dots = popcount(b);
        }
      }
      std::string_view style;
      std::string glyph;
      if (owner >= 0 && markers) {
        glyph = kMarkers[static_cast<std::size_t>(owner) % kMarkers.size()];
      } else if (owner >= 0) {
        style = ansi_color(static_cast<std::size_t>(owner));
        append_braille(glyph, bits);
      } else if (data.band && popcount(band.cell(col, row)) >= 3) {
        // (A band that only grazes a cell would speckle the chart.)
        style = kAnsiDim;
        glyph = kBandGlyph;
      } else {
        glyph = " ";
      }
      if (options.color && style != current_style) {
        out += current_style.empty() ? "" : kAnsiReset;
        out += style;
        current_style = style;
      }
      out += glyph;
    }
    if (options.color && !current_style.empty()) {
      out += kAnsiReset;
    }
    out += '\n';
  }
  // The time axis, with a tick under each time label.
  out += fmt::format("{:>{}} \u2514", "", layout.label_width);
  std::vector<bool> tick_at(static_cast<std::size_t>(layout.cols));
  for (const std::int64_t t : ticks.at_ns) {
    tick_at[static_cast<std::size_t>(dot_x(data, t, layout.cols * 2) / 2)] = true;
  }
  for (const bool tick : tick_at) {
    out += tick ? "\u252c" : "\u2500";
  }
  out += '\n';
}

}  // namespace

std::string render_terminal_chart(const std::vector<HistorySeries>& series, const ChartOptions& options) {
  const ChartData data = prepare(series, options);
  std::string out;
  if (options.color) {
    out += kAnsiBold;
    out += std::string_view(data.title).substr(0, data.title_plain);
    out += kAnsiReset;
    styled(out, true, "\x1b[1;31m", std::string_view(data.title).substr(data.title_plain));
  } else {
    out += data.title;
  }
  out += '\n';
  if (data.empty || data.panels.empty()) {
    out += kNoSamples;
    out += '\n';
    return out;
  }

  const int panels = static_cast<int>(data.panels.size());
  TerminalLayout layout;
  for (const auto& panel : data.panels) {
    for (int k = 0; k <= panel.axis.intervals; ++k) {
      layout.label_width = std::max(layout.label_width, panel.axis.label(panel.axis.step * k).size());
    }
  }
  const int width = options.width > 0 ? options.width : 100;
  layout.cols = std::max(8, width - static_cast<int>(layout.label_width) - 2);
  // Title, time labels and legend, plus per panel its name and time axis.
  layout.rows = options.height > 0 ? std::max(2, (options.height - 3 - 2 * panels) / panels) : 10;

  const TimeTicks ticks =
      time_ticks(data.t0_ns, data.t1_ns, layout.cols / static_cast<int>(time_label_width(data.t1_ns - data.t0_ns) + 4));
  for (const auto& panel : data.panels) {
    render_panel_text(out, data, panel, layout, options, ticks);
  }

  // Time labels, centred under their ticks, skipping any that would touch the previous one.
  std::string labels(layout.label_width + 2 + static_cast<std::size_t>(layout.cols), ' ');
  std::size_t free_from = 0;
  for (std::size_t i = 0; i < ticks.at_ns.size(); ++i) {
    const auto& text = ticks.labels[i];
    const auto col = static_cast<std::size_t>(dot_x(data, ticks.at_ns[i], layout.cols * 2) / 2);
    const std::size_t centre = layout.label_width + 2 + col;
    std::size_t start = centre >= text.size() / 2 ? centre - text.size() / 2 : 0;
    start = std::min(start, labels.size() - std::min(labels.size(), text.size()));
    if (start < free_from) {
      continue;
    }
    labels.replace(start, text.size(), text);
    free_from = start + text.size() + 1;
  }
  labels.erase(labels.find_last_not_of(' ') + 1);
  out += labels;
  out += '\n';

  // Legend, wrapped to the width.
  const bool markers = !options.color && data.names.size() > 1;
  std::string legend = std::string(layout.label_width + 2, ' ');
  std::size_t legend_width = legend.size();
  const auto add_entry = [&](std::string_view style, std::string_view sample, std::size_t sample_width,
                             std::string_view text) {
    const std::size_t entry_width = sample_width + 1 + text.size();
    if (legend_width > layout.label_width + 2 && legend_width + 3 + entry_width > static_cast<std::size_t>(width)) {
      out += legend;
      out += '\n';
      legend = std::string(layout.label_width + 2, ' ');
      legend_width = legend.size();
    } else if (legend_width > layout.label_width + 2) {
      legend += "   ";
      legend_width += 3;
    }
    styled(legend, options.color, style, sample);
    legend += ' ';
    legend += text;
    legend_width += entry_width;
  };
  for (std::size_t i = 0; i < data.names.size(); ++i) {
    if (markers) {
      add_entry("", std::string(1, kMarkers[i % kMarkers.size()]), 1, data.names[i]);
    } else {
      add_entry(ansi_color(i), kLineSample, 2, data.band ? data.names[i] + " (avg)" : data.names[i]);
    }
  }
  if (data.band) {
    add_entry(kAnsiDim, "\u2591\u2591", 2, "min-max");
  }
  out += legend;
  out += '\n';
  return out;
}

// ---------------------------------------------------------------------------------------------
// Files

namespace {

struct Rgb {
  double r;
  double g;
  double b;
};

constexpr Rgb hex(std::uint32_t rgb) {
  return {static_cast<double>((rgb >> 16) & 0xFF) / 255.0, static_cast<double>((rgb >> 8) & 0xFF) / 255.0,
          static_cast<double>(rgb & 0xFF) / 255.0};
}

// Tableau 10: distinct, readable on white, friendly to the common colour blindnesses.
constexpr std::array<Rgb, 10> kPalette = {hex(0x4E79A7), hex(0xF28E2B), hex(0x59A14F), hex(0xE15759), hex(0x76B7B2),
                                          hex(0xB07AA1), hex(0xEDC948), hex(0xFF9DA7), hex(0x9C755F), hex(0xBAB0AC)};
constexpr Rgb kText = hex(0x222222);
constexpr Rgb kMutedText = hex(0x666666);
constexpr Rgb kGrid = hex(0xE6E6E6);
constexpr Rgb kBaseline = hex(0xB0B0B0);
constexpr Rgb kWarning = hex(0xC0392B);
constexpr const char* kFont = "sans-serif";

struct CairoDeleter {
  void operator()(cairo_t* cr) const { cairo_destroy(cr); }
  void operator()(cairo_surface_t* surface) const { cairo_surface_destroy(surface); }
};
using CairoPtr = std::unique_ptr<cairo_t, CairoDeleter>;
using SurfacePtr = std::unique_ptr<cairo_surface_t, CairoDeleter>;

void set_color(cairo_t* cr, Rgb c, double alpha = 1.0) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

void set_font(cairo_t* cr, double size, bool bold) {
  cairo_select_font_face(cr, kFont, CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& text) {
  cairo_text_extents_t extents{};
  cairo_text_extents(cr, text.c_str(), &extents);
  return extents.x_advance;
}

// Draws `text` with its baseline at y; align 0 left, 0.5 centre, 1 right of x.
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double align = 0) {
  cairo_move_to(cr, x - align * text_width(cr, text), y);
  cairo_show_text(cr, text.c_str());
}

// A crisp 1 px line.
void hairline(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb color) {
  set_color(cr, color);
  cairo_set_line_width(cr, 1);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
  cairo_move_to(cr, std::floor(x0) + 0.5, std::floor(y0) + 0.5);
  cairo_line_to(cr, std::floor(x1) + 0.5, std::floor(y1) + 0.5);
  cairo_stroke(cr);
}

struct LegendEntry {
  std::string text;
  Rgb color;
  bool band;
};

void draw_chart(cairo_t* cr, const ChartData& data, double width, double height) {
  constexpr double kPad = 16;
  constexpr double kFontSize = 12.5;
  set_color(cr, hex(0xFFFFFF));
  cairo_paint(cr);

  // Title, the simulated marker in a warning colour.
  set_font(cr, 15, true);
  set_color(cr, kText);
  const std::string plain = data.title.substr(0, data.title_plain);
  draw_text(cr, plain, kPad, kPad + 14);
  if (data.title.size() > data.title_plain) {
    set_color(cr, kWarning);
    draw_text(cr, data.title.substr(data.title_plain), kPad + text_width(cr, plain), kPad + 14);
  }
  const double top = kPad + 34;

  if (data.empty || data.panels.empty()) {
    set_font(cr, 14, false);
    set_color(cr, kMutedText);
    draw_text(cr, std::string(kNoSamples), width / 2, top + (height - top) / 2, 0.5);
    return;
  }

  set_font(cr, kFontSize, false);
  // The value labels' gutter, the same for every panel so that time lines up.
  double gutter = 0;
  for (const auto& panel : data.panels) {
    for (int k = 0; k <= panel.axis.intervals; ++k) {
      gutter = std::max(gutter, text_width(cr, panel.axis.label(panel.axis.step * k)));
    }
  }
  const double plot_x = kPad + gutter + 10;
  const double plot_w = std::max(1.0, width - kPad - 8 - plot_x);
  // Legend entries, flowed into rows inside a box at the bottom.
  std::vector<LegendEntry> entries;
  for (std::size_t i = 0; i < data.names.size(); ++i) {
    entries.push_back({data.band ? data.names[i] + " (avg)" : data.names[i], kPalette[i % kPalette.size()], false});
  }
  if (data.band) {
    entries.push_back({"min-max", kPalette[0], true});
  }
  set_font(cr, kFontSize, false);
  constexpr double kSwatch = 18;
  constexpr double kRowHeight = 20;
  constexpr double kBoxPad = 8;
  const double legend_inner = plot_w - 2 * kBoxPad;
  std::vector<std::pair<double, int>> entry_pos;  // x offset, row
  double x = 0;
  int legend_rows = 1;
  for (const auto& e : entries) {
    const double w = kSwatch + 6 + text_width(cr, e.text);
    if (x > 0 && x + w > legend_inner) {
      x = 0;
      ++legend_rows;
    }
    entry_pos.emplace_back(x, legend_rows - 1);
    x += w + 22;
  }
  const double legend_height = legend_rows * kRowHeight + 2 * kBoxPad - 4;
  const double legend_top = height - kPad - legend_height;
  const double time_labels_height = 24;
  const double panels_bottom = legend_top - 8 - time_labels_height;

  const auto n_panels = static_cast<double>(data.panels.size());
  const double panel_h = (panels_bottom - top) / n_panels;
  const auto px = [&](std::int64_t t) {
    return plot_x + static_cast<double>(t - data.t0_ns) / static_cast<double>(data.t1_ns - data.t0_ns) * plot_w;
  };
  const auto label_chars = static_cast<double>(time_label_width(data.t1_ns - data.t0_ns));
  const TimeTicks ticks = time_ticks(data.t0_ns, data.t1_ns, static_cast<int>(plot_w / (label_chars * 9 + 40)));

  double plot_bottom = 0;
  for (std::size_t p = 0; p < data.panels.size(); ++p) {
    const Panel& panel = data.panels[p];
    const double panel_top = top + static_cast<double>(p) * panel_h;
    set_font(cr, 13, true);
    set_color(cr, kText);
    draw_text(cr, std::string(panel.info.title), plot_x, panel_top + 13);
    const double plot_y = panel_top + 24;
    const double plot_h = std::max(1.0, panel_h - 24 - (p + 1 < data.panels.size() ? 18 : 4));
    plot_bottom = plot_y + plot_h;
    const auto py = [&](double v) { return plot_y + plot_h - std::clamp(v / panel.axis.max, 0.0, 1.05) * plot_h; };

    // Grid: value lines with labels, time lines.
    set_font(cr, kFontSize, false);
    for (const std::int64_t t : ticks.at_ns) {
      hairline(cr, px(t), plot_y, px(t), plot_bottom, kGrid);
    }
    for (int k = panel.axis.intervals; k >= 0; --k) {
      const double v = panel.axis.step * k;
      hairline(cr, plot_x, py(v), plot_x + plot_w, py(v), k == 0 ? kBaseline : kGrid);
      set_color(cr, kMutedText);
      draw_text(cr, panel.axis.label(v), plot_x - 8, std::floor(py(v)) + 4.5, 1);
    }

    cairo_save(cr);
    cairo_rectangle(cr, plot_x, plot_y - 2, plot_w + 2, plot_h + 4);
    cairo_clip(cr);
    for (std::size_t i = 0; i < panel.lines.size(); ++i) {
      const auto& s = panel.lines[i].samples;
      const Rgb color = kPalette[i % kPalette.size()];
      if (data.band) {
        // One filled polygon per run of joined samples: max forwards, min backwards.
        for (std::size_t begin = 0; begin < s.size();) {
          std::size_t end = begin + 1;
          while (end < s.size() && s[end].joined) {
            ++end;
          }
          if (end == begin + 1) {  // a lone sample: a short bar
            cairo_rectangle(cr, px(s[begin].t_ns) - 3, py(s[begin].max), 6, py(s[begin].min) - py(s[begin].max));
            begin = end;
            continue;
          }
          cairo_move_to(cr, px(s[begin].t_ns), py(s[begin].max));
          for (std::size_t j = begin + 1; j < end; ++j) {
            cairo_line_to(cr, px(s[j].t_ns), py(s[j].max));
          }
          for (std::size_t j = end; j-- > begin;) {
            cairo_line_to(cr, px(s[j].t_ns), py(s[j].min));
          }
          cairo_close_path(cr);
          begin = end;
        }
        set_color(cr, color, 0.22);
        cairo_fill(cr);
      }
      // The line: one path per series, a sub-path per run, a small ring per lone sample.
      for (std::size_t j = 0; j < s.size(); ++j) {
        if (isolated(s, j)) {
          cairo_new_sub_path(cr);
          cairo_arc(cr, px(s[j].t_ns), py(s[j].avg), 2, 0, 2 * std::numbers::pi);
        } else if (s[j].joined) {
          cairo_line_to(cr, px(s[j].t_ns), py(s[j].avg));
        } else {
          cairo_move_to(cr, px(s[j].t_ns), py(s[j].avg));
        }
      }
      set_color(cr, color);
      cairo_set_line_width(cr, 2);
      cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
      cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
      cairo_stroke(cr);
    }
    cairo_restore(cr);
  }

  // Time labels under the last panel, centred on their ticks, none overlapping.
  set_font(cr, kFontSize, false);
  set_color(cr, kMutedText);
  double free_from = 0;
  for (std::size_t i = 0; i < ticks.at_ns.size(); ++i) {
    const double w = text_width(cr, ticks.labels[i]);
    const double left = std::clamp(px(ticks.at_ns[i]) - w / 2, kPad, width - kPad - w);
    if (left < free_from) {
      continue;
    }
    draw_text(cr, ticks.labels[i], left, plot_bottom + 18);
    free_from = left + w + 12;
  }

  // Legend box.
  cairo_rectangle(cr, std::floor(plot_x) + 0.5, std::floor(legend_top) + 0.5, std::floor(plot_w),
                  std::floor(legend_height));
  set_color(cr, hex(0xFAFAFA));
  cairo_fill_preserve(cr);
  set_color(cr, hex(0xD0D0D0));
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double ex = plot_x + kBoxPad + entry_pos[i].first;
    const double ey = legend_top + kBoxPad + entry_pos[i].second * kRowHeight + kRowHeight / 2 - 2;
    if (entries[i].band) {
      set_color(cr, entries[i].color, 0.22);
      cairo_rectangle(cr, ex, ey - 5, kSwatch, 10);
      cairo_fill(cr);
    } else {
      set_color(cr, entries[i].color);
      cairo_set_line_width(cr, 3);
      cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
      cairo_move_to(cr, ex, ey);
      cairo_line_to(cr, ex + kSwatch, ey);
      cairo_stroke(cr);
    }
    set_color(cr, kText);
    draw_text(cr, entries[i].text, ex + kSwatch + 6, ey + 4.5);
  }
}

// Cairo's stream callback: appends to a std::string.
cairo_status_t append_to_string(void* closure, const unsigned char* bytes, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(bytes), length);
  return CAIRO_STATUS_SUCCESS;
}

Status cairo_error(const std::string& path, cairo_status_t status) {
  auto message = fmt::format("cannot draw chart '{}': {}", path, cairo_status_to_string(status));
  switch (status) {
    case CAIRO_STATUS_INVALID_SIZE:
    case CAIRO_STATUS_INVALID_FORMAT:
    case CAIRO_STATUS_INVALID_STRING:
      return cloudmgr::invalid_argument_error(std::move(message));
    case CAIRO_STATUS_NO_MEMORY:
      return cloudmgr::resource_exhausted_error(std::move(message));
    default:
      return cloudmgr::unavailable_error(std::move(message));
  }
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Status errno_error(const std::string& path, std::string_view what, int error) {
  auto message = fmt::format("cannot write chart '{}': {}: {}", path, what, std::generic_category().message(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
      return cloudmgr::invalid_argument_error(std::move(message));
    case EACCES:
    case EPERM:
    case EROFS:
      return cloudmgr::permission_denied_error(std::move(message));
    case ENOSPC:
    case EDQUOT:
      return cloudmgr::resource_exhausted_error(std::move(message));
    default:
      return cloudmgr::unavailable_error(std::move(message));
  }
}

// Writes `bytes` to a new file next to `path`, then renames it over `path`. The temporary
// file is removed on any failure.
Status write_file_atomically(const std::string& path, const std::string& bytes) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path target(path);
  if (target.filename().empty()) {
    return cloudmgr::invalid_argument_error(fmt::format("cannot write chart '{}': no file name", path));
  }
  const std::filesystem::path temp =
      target.parent_path() / fmt::format(".{}.{}.{}.tmp", target.filename().string(), getpid(), counter++);
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    return errno_error(path, "cannot create a file in its directory", errno);
  }
  const auto fail = [&](std::string_view what, int error) {
    ::close(fd);
    ::unlink(temp.c_str());
    return errno_error(path, what, error);
  };
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail("write", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) {
    return fail("fsync", errno);
  }
  if (::close(fd) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return errno_error(path, "close", error);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return errno_error(path, "rename", error);
  }
  return Status();
}

// The chart as the bytes of a PNG or SVG file.
cloudmgr::Result<std::string> render_file(const ChartData& data, int width, int height, ChartFormat format,
                                          const std::string& path) {
  std::string bytes;
  SurfacePtr surface(format == ChartFormat::kPng
                         ? cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height)
                         : cairo_svg_surface_create_for_stream(append_to_string, &bytes, width, height));
  if (const cairo_status_t s = cairo_surface_status(surface.get()); s != CAIRO_STATUS_SUCCESS) {
    return cairo_error(path, s);
  }
  if (format == ChartFormat::kSvg) {
    cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
  }
  {
    const CairoPtr cr(cairo_create(surface.get()));
    draw_chart(cr.get(), data, width, height);
    if (const cairo_status_t s = cairo_status(cr.get()); s != CAIRO_STATUS_SUCCESS) {
      return cairo_error(path, s);
    }
  }
  if (format == ChartFormat::kPng) {
    cairo_surface_flush(surface.get());
    if (const cairo_status_t s = cairo_surface_write_to_png_stream(surface.get(), append_to_string, &bytes);
        s != CAIRO_STATUS_SUCCESS) {
      return cairo_error(path, s);
    }
    return bytes;
  }
  cairo_surface_finish(surface.get());
  if (const cairo_status_t s = cairo_surface_status(surface.get()); s != CAIRO_STATUS_SUCCESS) {
    return cairo_error(path, s);
  }
  // Cairo draws text as glyph outlines; a <title> keeps the chart's name searchable and
  // gives it an accessible name.
  if (const auto svg = bytes.find("<svg"); svg != std::string::npos) {
    if (const auto end = bytes.find('>', svg); end != std::string::npos) {
      bytes.insert(end + 1, fmt::format("\n<title>{}</title>", xml_escape(data.title)));
    }
  }
  return bytes;
}

}  // namespace

Status write_chart(const std::vector<HistorySeries>& series, const ChartOptions& options, ChartFormat format,
                   const std::string& path) {
  // Cairo's limit for image surfaces; SVG gets the same so both formats agree.
  constexpr int kMaxPixels = 32767;
  if (options.width < 0 || options.height < 0 || options.width > kMaxPixels || options.height > kMaxPixels) {
    return cloudmgr::invalid_argument_error(fmt::format("cannot draw chart '{}': size {} x {} is not 0-{} pixels", path,
                                                        options.width, options.height, kMaxPixels));
  }
  const ChartData data = prepare(series, options);
  const int panels = std::max<int>(1, static_cast<int>(data.panels.size()));
  const int width = options.width > 0 ? options.width : 1200;
  const int height = options.height > 0 ? options.height : std::min(kMaxPixels, 360 * panels);
  auto bytes = render_file(data, width, height, format, path);
  if (!bytes.ok()) {
    return bytes.status();
  }
  return write_file_atomically(path, *bytes);
}

cloudmgr::Result<ChartFormat> chart_format_for(const std::string& path) {
  std::string extension = std::filesystem::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension == ".png") {
    return ChartFormat::kPng;
  }
  if (extension == ".svg") {
    return ChartFormat::kSvg;
  }
  return cloudmgr::invalid_argument_error(
      fmt::format("chart file '{}' must end in .png or .svg (the format is taken from the name)", path));
}

}  // namespace cloudctl
