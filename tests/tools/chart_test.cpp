// The chart renderer: terminal text (title, units, legend, shape, gaps, markers), SVG and
// PNG files (well-formed, sized, drawn) and the atomic writer's failures.
#include "cloudctl/chart.h"

#include <cairo/cairo.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace cloudctl {
namespace {

using cloudmgr::HistoryPoint;
using cloudmgr::HistorySeries;
using cloudmgr::Metric;
using cloudmgr::StatusCode;

constexpr std::int64_t kNsPerS = 1'000'000'000;
constexpr std::int64_t kMinute = 60 * kNsPerS;
constexpr double kGiB = 1024.0 * 1024 * 1024;

// Today at hh:mm local time, in ns since the epoch.
std::int64_t local_time(int hour, int minute) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return static_cast<std::int64_t>(std::mktime(&tm)) * kNsPerS;
}

struct Value {
  double cpu;
  double memory;
};

// `count` one-minute points from `start`, avg given by `value(i)`, min/max 10% around it.
HistorySeries make_series(std::string host, std::int64_t start, int count, const std::function<Value(int)>& value) {
  HistorySeries s;
  s.host_id = std::move(host);
  s.step_ns = kMinute;
  for (int i = 0; i < count; ++i) {
    const Value v = value(i);
    HistoryPoint p;
    p.start_ns = start + i * kMinute;
    p.samples = 6;
    p.avg[static_cast<std::size_t>(Metric::kCpuPct)] = v.cpu;
    p.min[static_cast<std::size_t>(Metric::kCpuPct)] = v.cpu * 0.9;
    p.max[static_cast<std::size_t>(Metric::kCpuPct)] = std::min(100.0, v.cpu * 1.1);
    p.avg[static_cast<std::size_t>(Metric::kMemoryUsedBytes)] = v.memory;
    p.min[static_cast<std::size_t>(Metric::kMemoryUsedBytes)] = v.memory * 0.9;
    p.max[static_cast<std::size_t>(Metric::kMemoryUsedBytes)] = v.memory * 1.1;
    s.points.push_back(p);
  }
  return s;
}

// Three hosts over two hours: one busy with a daily-job spike, one idle, one ramping up.
std::vector<HistorySeries> three_hosts(std::int64_t start) {
  return {
      make_series("node1", start, 120,
                  [](int i) {
                    const double spike = (i > 50 && i < 70) ? 35.0 : 0.0;
                    return Value{45 + 12 * std::sin(i / 9.0) + spike, (9.5 + 1.5 * std::sin(i / 30.0)) * kGiB};
                  }),
      make_series("node2", start, 120,
                  [](int i) {
                    return Value{8 + 3 * std::sin(i / 5.0) + (i % 17 == 0 ? 9 : 0), (3.2 + 0.002 * i) * kGiB};
                  }),
      make_series("node3", start, 120,
                  [](int i) {
                    return Value{10 + 0.55 * i, (5 + 0.06 * i) * kGiB};
                  }),
  };
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

// The code points of a UTF-8 string.
std::u32string decode(const std::string& text) {
  std::u32string out;
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char32_t cp = n == 1 ? char32_t{c} : static_cast<char32_t>(c & (0xFFU >> (n + 1)));
    for (std::size_t k = 1; k < n && i + k < text.size(); ++k) {
      cp = (cp << 6) | static_cast<char32_t>(static_cast<unsigned char>(text[i + k]) & 0x3FU);
    }
    out += cp;
    i += n;
  }
  return out;
}

bool is_braille_dots(char32_t c) { return c > U'\u2800' && c <= U'\u28FF'; }

// The plot cells of a terminal row labelled `label`: what follows the axis.
std::u32string plot_row(const std::vector<std::string>& lines, const std::string& label) {
  for (const auto& line : lines) {
    const std::u32string row = decode(line);
    const auto axis = row.find(U'\u2524');
    if (axis == std::u32string::npos) {
      continue;
    }
    std::u32string head = row.substr(0, axis);
    head.erase(0, head.find_first_not_of(U' '));
    head.erase(head.find_last_not_of(U' ') + 1);
    if (head == decode(label)) {
      return row.substr(axis + 1);
    }
  }
  ADD_FAILURE() << "no row labelled " << label;
  return {};
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class ChartFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / "chart_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    cairo_debug_reset_static_data();  // font caches, so that LeakSanitizer sees only real leaks
  }

  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }

  std::filesystem::path dir_;
};

// ---------------------------------------------------------------------------------------------
// Terminal

TEST(TerminalChart, ShowsTitleLegendAndUnitLabels) {
  const auto series = three_hosts(local_time(10, 0));
  const std::string text = render_terminal_chart(series, {.title = "web CPU and memory, last 2 h"});
  const auto lines = split_lines(text);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "web CPU and memory, last 2 h");
  EXPECT_EQ(text.find("simulated"), std::string::npos);
  EXPECT_NE(text.find("CPU\n"), std::string::npos);
  EXPECT_NE(text.find("Memory used\n"), std::string::npos);
  // CPU to 100%; memory peaks near 11 GiB: 0, 5, 10, 15 GiB.
  EXPECT_FALSE(plot_row(lines, "100%").empty());
  EXPECT_FALSE(plot_row(lines, "50%").empty());
  EXPECT_FALSE(plot_row(lines, "0%").empty());
  EXPECT_FALSE(plot_row(lines, "15 GiB").empty());
  EXPECT_FALSE(plot_row(lines, "5 GiB").empty());
  // Without colors, each host has its own marker, named in the legend.
  EXPECT_NE(text.find("* node1   + node2   o node3"), std::string::npos) << text;
  // 100 columns by default, 12 rows per panel plus title, time labels and legend.
  EXPECT_EQ(lines.size(), 2U * 12 + 3) << text;
  for (const auto& line : lines) {
    EXPECT_LE(decode(line).size(), 100U) << line;
  }
}

TEST(TerminalChart, MemoryAxisWithDecimals) {
  const auto series = std::vector{make_series("node1", local_time(10, 0), 30, [](int i) {
    return Value{20, (1.2 + 0.02 * i) * kGiB};  // up to 1.78 GiB avg, 1.96 max
  })};
  const auto lines = split_lines(render_terminal_chart(series, {.metrics = {Metric::kMemoryUsedBytes}}));
  EXPECT_FALSE(plot_row(lines, "2.0 GiB").empty());
  EXPECT_FALSE(plot_row(lines, "1.0 GiB").empty());
  EXPECT_FALSE(plot_row(lines, "0").empty());
}

TEST(TerminalChart, TimeLabelsInLocalTime) {
  const auto text = render_terminal_chart(three_hosts(local_time(10, 0)), {});
  const auto lines = split_lines(text);
  const std::string& labels = lines[lines.size() - 2];
  EXPECT_NE(labels.find("10:00"), std::string::npos) << text;
  EXPECT_NE(labels.find("11:00"), std::string::npos) << text;
  EXPECT_TRUE(std::regex_search(labels, std::regex(R"(^ +10:00( +10:\d\d)+ +11:00)"))) << labels;

  // Over a day: month and day too.
  auto week = make_series("node1", local_time(0, 0), 7 * 24, [](int) { return Value{30, 2 * kGiB}; });
  week.step_ns = 60 * kMinute;
  for (std::size_t i = 0; i < week.points.size(); ++i) {
    week.points[i].start_ns = local_time(0, 0) + static_cast<std::int64_t>(i) * 60 * kMinute;
  }
  const auto week_lines = split_lines(render_terminal_chart({week}, {}));
  EXPECT_TRUE(std::regex_search(week_lines[week_lines.size() - 2], std::regex(R"(\d\d-\d\d \d\d:\d\d)")))
      << week_lines[week_lines.size() - 2];
}

TEST(TerminalChart, SimulatedSeriesAreMarkedInTheTitle) {
  auto series = three_hosts(local_time(10, 0));
  series[1].simulated = true;
  const auto lines = split_lines(render_terminal_chart(series, {.title = "cpu"}));
  EXPECT_EQ(lines[0], "cpu (simulated load)");
  // Also with colors, and with nothing to draw.
  EXPECT_NE(render_terminal_chart(series, {.title = "cpu", .color = true}).find("(simulated load)"), std::string::npos);
  series[1].points.clear();
  EXPECT_EQ(split_lines(render_terminal_chart({series[1]}, {.title = "cpu"}))[0], "cpu (simulated load)");
}

TEST(TerminalChart, EmptyInputSaysSo) {
  EXPECT_EQ(render_terminal_chart({}, {.title = "node1 CPU"}), "node1 CPU\nno samples in this period\n");
  HistorySeries empty;
  empty.host_id = "node1";
  EXPECT_EQ(render_terminal_chart({empty, empty}, {.title = "t"}), "t\nno samples in this period\n");
}

TEST(TerminalChart, RisingSeriesGoesFromBottomLeftToTopRight) {
  const auto series = std::vector{make_series("node1", local_time(10, 0), 120, [](int i) {
    return Value{100.0 * i / 119, 0};
  })};
  const auto lines = split_lines(render_terminal_chart(series, {.metrics = {Metric::kCpuPct}}));
  const std::u32string top = plot_row(lines, "100%");
  const std::u32string bottom = plot_row(lines, "0%");
  ASSERT_EQ(top.size(), bottom.size());
  ASSERT_GT(top.size(), 10U);
  // Bottom-left: dots in the cell's bottom row (dots 7 and 8: bits 0x40, 0x80).
  EXPECT_TRUE(is_braille_dots(bottom.front()));
  EXPECT_NE((bottom.front() - U'\u2800') & 0xC0, 0U);
  // Top-right: dots in the cell's top row (dots 1 and 4: bits 0x01, 0x08).
  EXPECT_TRUE(is_braille_dots(top.back()));
  EXPECT_NE((top.back() - U'\u2800') & 0x09, 0U);
  // The other corners stay empty.
  EXPECT_EQ(top.front(), U' ');
  EXPECT_EQ(bottom.back(), U' ');
  // A single series shows its min-max band, and says so in the legend.
  const std::string text = render_terminal_chart(series, {});
  EXPECT_NE(text.find("\u2591"), std::string::npos);
  EXPECT_NE(text.find("node1 (avg)"), std::string::npos);
  EXPECT_NE(text.find("min-max"), std::string::npos);
}

TEST(TerminalChart, PointsMoreThanTwoStepsApartAreNotJoined) {
  auto series = make_series("node1", local_time(10, 0), 120, [](int) { return Value{50, 0}; });
  series.points.erase(series.points.begin() + 40, series.points.begin() + 80);  // 40 minutes missing
  const auto lines = split_lines(render_terminal_chart({series}, {.metrics = {Metric::kCpuPct}}));
  const std::u32string row = plot_row(lines, "50%");
  // The line's row: dots on both sides, about a third of the width blank in between.
  const auto first_blank = row.find(U' ');
  ASSERT_NE(first_blank, std::u32string::npos);
  const auto resume = row.find_first_not_of(U' ', first_blank);
  ASSERT_NE(resume, std::u32string::npos);
  EXPECT_GT(resume - first_blank, row.size() / 4) << std::string(lines[5]);
  EXPECT_TRUE(is_braille_dots(row.front()));
  EXPECT_TRUE(is_braille_dots(row.back()));
}

TEST(TerminalChart, SinglePointIsDrawn) {
  const auto series = std::vector{make_series("node1", local_time(10, 0), 1, [](int) { return Value{40, kGiB}; })};
  const std::string text = render_terminal_chart(series, {.metrics = {Metric::kCpuPct}});
  std::size_t dots = 0;
  for (const char32_t c : decode(text)) {
    dots += is_braille_dots(c) ? 1U : 0U;
  }
  EXPECT_GE(dots, 1U) << text;
  EXPECT_NE(text.find("10:00"), std::string::npos) << text;
  EXPECT_EQ(text.find("no samples"), std::string::npos);
}

TEST(TerminalChart, ColorsDistinguishSeriesAndSizeIsHonoured) {
  const auto series = three_hosts(local_time(10, 0));
  const std::string text = render_terminal_chart(series, {.width = 80, .height = 30, .color = true});
  EXPECT_NE(text.find("\x1b[36m"), std::string::npos);
  EXPECT_NE(text.find("\x1b[33m"), std::string::npos);
  EXPECT_NE(text.find("\x1b[35m"), std::string::npos);
  EXPECT_EQ(text.find('*'), std::string::npos);  // braille, not markers
  // Panels share the rows equally: at most the height, at most a row per panel less.
  const auto lines = split_lines(text);
  EXPECT_LE(lines.size(), 30U);
  EXPECT_GE(lines.size(), 29U);
  const std::regex ansi("\x1b\\[[0-9;]*m");
  for (const auto& line : lines) {
    EXPECT_LE(decode(std::regex_replace(line, ansi, "")).size(), 80U) << line;
  }
}

// ---------------------------------------------------------------------------------------------
// Files

TEST(ChartFormatFor, TakesTheFormatFromTheExtension) {
  EXPECT_EQ(*chart_format_for("/tmp/a.png"), ChartFormat::kPng);
  EXPECT_EQ(*chart_format_for("cpu.SVG"), ChartFormat::kSvg);
  for (const char* bad : {"chart.pdf", "png", "chart", "chart.png.txt"}) {
    const auto r = chart_format_for(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status();
  }
}

TEST_F(ChartFileTest, SvgIsWellFormedWithTitleAndOnePathPerSeries) {
  auto series = three_hosts(local_time(10, 0));
  series[0].simulated = true;
  const auto path = dir_ / "chart.svg";
  ASSERT_TRUE(write_chart(series, {.title = "web <CPU> & memory"}, ChartFormat::kSvg, path).ok());
  const std::string svg = read_file(path);
  EXPECT_TRUE(svg.starts_with("<?xml") || svg.starts_with("<svg")) << svg.substr(0, 100);
  EXPECT_EQ(count(svg, "<svg"), 1U);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("<title>web &lt;CPU&gt; &amp; memory (simulated load)</title>"), std::string::npos);
  EXPECT_NE(svg.find(R"(width="1200px" height="720px")"), std::string::npos) << svg.substr(0, 300);
  // The data lines are the only round-capped strokes: one per series per panel.
  EXPECT_EQ(count(svg, "stroke-linecap:round"), 3U * 2) << svg;
  EXPECT_EQ(entries(), std::vector<std::string>{"chart.svg"});
}

TEST_F(ChartFileTest, PngHasTheRequestedSizeAndIsDrawn) {
  const auto path = dir_ / "chart.png";
  ASSERT_TRUE(
      write_chart(three_hosts(local_time(10, 0)), {.title = "t", .width = 900, .height = 500}, ChartFormat::kPng, path)
          .ok());
  const std::string png = read_file(path);
  ASSERT_GT(png.size(), 33U);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  const auto be32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      v = (v << 8) | static_cast<unsigned char>(png[at + i]);
    }
    return v;
  };
  EXPECT_EQ(be32(16), 900U);
  EXPECT_EQ(be32(20), 500U);

  cairo_surface_t* image = cairo_image_surface_create_from_png(path.c_str());
  ASSERT_EQ(cairo_surface_status(image), CAIRO_STATUS_SUCCESS);
  const int width = cairo_image_surface_get_width(image);
  const int height = cairo_image_surface_get_height(image);
  const int stride = cairo_image_surface_get_stride(image);
  const unsigned char* data = cairo_image_surface_get_data(image);
  std::size_t drawn = 0;
  std::size_t colored = 0;  // saturated: data lines, not grey text or grid
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const unsigned char* px =
          data + static_cast<std::ptrdiff_t>(y) * stride + static_cast<std::ptrdiff_t>(x) * 4;  // B, G, R, A
      const int hi = std::max({px[0], px[1], px[2]});
      const int lo = std::min({px[0], px[1], px[2]});
      drawn += lo < 250 ? 1U : 0U;
      colored += hi - lo > 80 ? 1U : 0U;
    }
  }
  cairo_surface_destroy(image);
  const auto pixels = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
  EXPECT_GT(drawn, pixels / 50);
  EXPECT_GT(colored, pixels / 500);
  EXPECT_LT(drawn, pixels / 2);  // a white background
}

TEST_F(ChartFileTest, EmptyChartIsStillAFile) {
  const auto path = dir_ / "empty.png";
  ASSERT_TRUE(write_chart({}, {.title = "nothing"}, ChartFormat::kPng, path).ok());
  EXPECT_EQ(read_file(path).substr(1, 3), "PNG");
}

TEST_F(ChartFileTest, MissingDirectoryFailsNamingThePath) {
  const auto path = (dir_ / "no-such-dir" / "chart.png").string();
  const auto status = write_chart(three_hosts(local_time(10, 0)), {}, ChartFormat::kPng, path);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_NE(status.message().find("No such file or directory"), std::string::npos) << status;
  EXPECT_TRUE(entries().empty());
}

TEST_F(ChartFileTest, FailedRenameLeavesNoTemporaryFile) {
  // The target is a non-empty directory: the temporary file is written, the rename fails.
  std::filesystem::create_directories(dir_ / "chart.svg" / "inside");
  const auto path = (dir_ / "chart.svg").string();
  const auto status = write_chart(three_hosts(local_time(10, 0)), {}, ChartFormat::kSvg, path);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_EQ(entries(), std::vector<std::string>{"chart.svg"});
  EXPECT_TRUE(std::filesystem::is_directory(dir_ / "chart.svg" / "inside"));
}

TEST_F(ChartFileTest, BadSizeIsInvalidArgument) {
  const auto path = (dir_ / "chart.png").string();
  const auto status = write_chart(three_hosts(local_time(10, 0)), {.width = -1}, ChartFormat::kPng, path);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(path), std::string::npos) << status;
  EXPECT_TRUE(entries().empty());
}

TEST_F(ChartFileTest, ReplacesAnExistingFile) {
  const auto path = dir_ / "chart.png";
  std::ofstream(path) << "old";
  ASSERT_TRUE(write_chart(three_hosts(local_time(10, 0)), {}, ChartFormat::kPng, path).ok());
  EXPECT_EQ(read_file(path).substr(1, 3), "PNG");
  EXPECT_EQ(entries(), std::vector<std::string>{"chart.png"});
}

}  // namespace
}  // namespace cloudctl
