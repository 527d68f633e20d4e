#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "cloudmgr/host.h"

namespace cloudmgr {
namespace {

namespace fs = std::filesystem;

class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("cloudmgr-proc-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    write("stat", "cpu  1 2 3 4\nbtime 1700000000\nprocesses 9\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  void write(const std::string& rel, const std::string& text) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
  }

  // proc(5) stat line; fields after comm: state ppid ... utime(14) stime(15) ... threads(20)
  // ... starttime(22) vsize(23) rss(24).
  static std::string stat_line(int pid, const std::string& comm, char state, int ppid, int utime, int stime,
                               int threads, long start, long vsize, long rss) {
    std::string s = std::to_string(pid) + " (" + comm + ") " + state + " " + std::to_string(ppid);
    for (int f = 5; f <= 13; ++f) s += " 0";
    s += " " + std::to_string(utime) + " " + std::to_string(stime);
    for (int f = 16; f <= 19; ++f) s += " 0";
    s += " " + std::to_string(threads) + " 0 " + std::to_string(start) + " " + std::to_string(vsize) + " " +
         std::to_string(rss);
    for (int f = 25; f <= 52; ++f) s += " 0";
    return s + "\n";
  }

  fs::path root_;
};

TEST_F(FakeProc, ParsesEveryField) {
  write("42/stat", stat_line(42, "qemu-system-x86", 'S', 1, 250, 50, 7, 12345, 1073741824, 1000));
  write("42/status", "Name:\tqemu-system-x86\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\nGid:\t0\n");
  write("42/cmdline", std::string("/usr/bin/qemu-system-x86_64\0-name\0guest=web1\0", 46));
  auto r = list_processes(root_.string());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1U);
  const ProcessInfo& p = r->front();
  const long ticks = sysconf(_SC_CLK_TCK);
  EXPECT_EQ(p.pid, 42);
  EXPECT_EQ(p.ppid, 1);
  EXPECT_EQ(p.name, "qemu-system-x86");
  EXPECT_EQ(p.state, 'S');
  EXPECT_EQ(p.uid, 0U);
  EXPECT_EQ(p.user, "root");
  EXPECT_EQ(p.threads, 7U);
  EXPECT_EQ(p.vsize_bytes, 1073741824U);
  EXPECT_EQ(p.rss_bytes, 1000U * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(p.cpu_time_ns, 300U * (1'000'000'000U / static_cast<std::uint64_t>(ticks)));
  EXPECT_EQ(p.start_time_ns, 1700000000LL * 1'000'000'000LL + 12345LL * (1'000'000'000LL / ticks));
  EXPECT_EQ(p.cmdline, "/usr/bin/qemu-system-x86_64 -name guest=web1");
}

// Regression: a comm with spaces and ')' must not shift the fields after it.
TEST_F(FakeProc, CommWithParenthesesAndSpaces) {
  write("7/stat", stat_line(7, "a) (b c", 'R', 3, 1, 1, 2, 10, 100, 5));
  write("7/status", "Name:\tx\nUid:\t1000\t1000\t1000\t1000\n");
  write("7/cmdline", "");
  auto r = list_processes(root_.string());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1U);
  EXPECT_EQ(r->front().name, "a) (b c");
  EXPECT_EQ(r->front().state, 'R');
  EXPECT_EQ(r->front().ppid, 3);
  EXPECT_EQ(r->front().threads, 2U);
  EXPECT_EQ(r->front().uid, 1000U);
  EXPECT_EQ(r->front().cmdline, "");  // kernel threads have none
}

TEST_F(FakeProc, SkipsVanishedAndMalformedEntriesAndNonPids) {
  write("10/stat", stat_line(10, "ok", 'S', 1, 0, 0, 1, 1, 1, 1));
  write("10/status", "Uid:\t0\t0\t0\t0\n");
  write("11/stat", "11 (truncated");  // malformed
  write("11/status", "Uid:\t0\t0\t0\t0\n");
  write("12/status", "Uid:\t0\t0\t0\t0\n");  // exited: no stat
  write("self/stat", stat_line(10, "self", 'S', 1, 0, 0, 1, 1, 1, 1));
  write("sys/kernel", "x");
  auto r = list_processes(root_.string());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1U);
  EXPECT_EQ(r->front().pid, 10);
}

TEST_F(FakeProc, MissingRootIsUnavailable) {
  auto r = list_processes((root_ / "nope").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("nope"), std::string::npos);
}

TEST_F(FakeProc, MissingBootTimeIsUnavailable) {
  write("stat", "cpu 1 2 3\n");
  auto r = list_processes(root_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(RealProc, FindsThisProcess) {
  auto r = list_processes();
  ASSERT_TRUE(r.ok()) << r.status();
  const auto self = std::find_if(r->begin(), r->end(), [](const ProcessInfo& p) { return p.pid == getpid(); });
  ASSERT_NE(self, r->end());
  EXPECT_EQ(self->ppid, getppid());
  EXPECT_EQ(self->uid, getuid());
  EXPECT_GT(self->rss_bytes, 0U);
  EXPECT_GE(self->threads, 1U);
  EXPECT_NE(self->cmdline.find("core_test"), std::string::npos);
  EXPECT_TRUE(std::is_sorted(r->begin(), r->end(), [](auto& a, auto& b) { return a.pid < b.pid; }));
}

}  // namespace
}  // namespace cloudmgr
