#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cloudmgr/agent.h"
#include "cloudmgr/cloud.h"
#include "cloudmgr/verbs.h"
#include "core/audit.h"
#include "core/journal.h"

namespace cloudmgr {
namespace {

TEST(TargetTest, PartitionsRoundTrip) {
  for (const Target& t : {Target::host("node1"), Target::group("web"), Target::all()}) {
    auto parsed = Target::parse(t.partition());
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, t);
  }
  EXPECT_EQ(Target::host("n1").partition(), "host.n1");
  EXPECT_EQ(Target::group("web").partition(), "group.web");
  EXPECT_EQ(Target::parse("host.bad id").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Target::parse("cluster.x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(validate_group_name("a b").message().find("group name"), std::string::npos);
}

TEST(RandomUuid, IsAValidVersion4UuidAndUnique) {
  const std::string a = random_uuid();
  const std::string b = random_uuid();
  EXPECT_TRUE(validate_uuid(a).ok()) << a;
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(a, b);
}

TEST(Verbs, ValidateCommandNamesTheProblem) {
  EXPECT_TRUE(validate_command("vm.start", {{"vm", "web1"}}).ok());
  EXPECT_TRUE(
      validate_command("vm.define", {{"name", "a"}, {"memory_bytes", "67108864"}, {"disk", "/a"}, {"disk", "/b"}})
          .ok());
  auto expect = [](const Status& s, const std::string& text) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(text), std::string::npos) << s;
  };
  expect(validate_command("vm.explode", {}), "unknown verb 'vm.explode'");
  expect(validate_command("vm.start", {}), "vm.start needs the argument 'vm'");
  expect(validate_command("vm.start", {{"vm", "a"}, {"colour", "red"}}), "unknown argument 'colour'");
  expect(validate_command("vm.start", {{"vm", "a"}, {"vm", "b"}}), "given twice");
  expect(validate_command("vm.start", {{"vm", "bad name"}}), "neither a VM name nor a uuid");
  expect(validate_command("vm.shutdown", {{"vm", "a"}, {"timeout_ms", "soon"}}), "'soon', not a non-negative integer");
  expect(validate_command("vm.undefine", {{"vm", "a"}, {"force", "maybe"}}), "not true or false");
  expect(validate_command("group.join", {{"group", "a/b"}}), "group name");
  for (const auto& v : verbs()) {
    EXPECT_EQ(find_verb(v.name), &v);
  }
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("cloudmgr-journal-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return (dir_ / "commands.jsonl").string(); }
  std::filesystem::path dir_;
};

TEST_F(JournalTest, SecondBeginReportsTheFirstAcrossReopen) {
  const std::int64_t later = now_ns() + 3'600'000'000'000LL;
  {
    auto j = CommandJournal::open(path());
    ASSERT_TRUE(j.ok()) << j.status();
    auto first = (*j)->begin("c1", "vm.start", "m", later);
    ASSERT_TRUE(first.ok());
    EXPECT_FALSE(first->has_value());
    ASSERT_TRUE((*j)->finish("c1", not_found_error("VM 'x' not found")).ok());
    auto again = (*j)->begin("c1", "vm.start", "m", later);
    ASSERT_TRUE(again.ok());
    ASSERT_TRUE(again->has_value());
    EXPECT_TRUE((*again)->done);
    // A command that began but never finished (the agent died).
    ASSERT_FALSE((*(*j)->begin("c2", "vm.stop", "m", later)).has_value());
  }
  auto j = CommandJournal::open(path());
  ASSERT_TRUE(j.ok()) << j.status();
  auto c1 = (*j)->begin("c1", "vm.start", "m", later);
  ASSERT_TRUE(c1.ok() && c1->has_value());
  EXPECT_EQ((*c1)->status.code(), StatusCode::kNotFound);
  EXPECT_EQ((*c1)->status.message(), "VM 'x' not found");
  auto c2 = (*j)->begin("c2", "vm.stop", "m", later);
  ASSERT_TRUE(c2.ok() && c2->has_value());
  EXPECT_FALSE((*c2)->done);
}

TEST_F(JournalTest, ExpiredEntriesAreDroppedAndTornLinesSkipped) {
  {
    auto j = CommandJournal::open(path());
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->begin("old", "vm.start", "m", now_ns() - 1).ok());
    ASSERT_TRUE((*j)->begin("new", "vm.start", "m", now_ns() + 3'600'000'000'000LL).ok());
  }
  std::ofstream(path(), std::ios::app) << "{\"event\":\"begin\",\"id\":\"tor";  // a crash mid-write
  auto j = CommandJournal::open(path());
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ((*j)->size(), 1U);
}

TEST_F(JournalTest, UnwritableDirectoryIsUnavailable) {
  auto j = CommandJournal::open((dir_ / "missing" / "commands.jsonl").string());
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), StatusCode::kUnavailable);
}

using AuditLogTest = JournalTest;  // a fresh directory per test

Command audited_command(const std::string& id, const std::string& verb) {
  Command c;
  c.id = id;
  c.verb = verb;
  c.issuer = "manager.admin";
  c.target = Target::host("node1");
  return c;
}

TEST_F(AuditLogTest, SyncedArrivalsAreOnDiskAtOnceTheRestWithinTheFlushDelay) {
  const std::string file = (dir_ / "audit.jsonl").string();
  auto log = AuditLog::open(file);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->received(audited_command("c1", "vm.start"), 1, true).ok());
  EXPECT_TRUE((*log)->synced());
  ASSERT_TRUE((*log)->result("c1", {}, 2).ok());
  ASSERT_TRUE((*log)->received(audited_command("c2", "host.ping"), 3, false).ok());
  EXPECT_FALSE((*log)->synced());
  // Unsynced lines are in the file at once (an agent crash loses nothing): readers see them.
  auto entries = read_audit_log(file, 0, 0);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2U);
  EXPECT_EQ((*entries)[0].command_id, "c1");
  EXPECT_EQ((*entries)[0].completed_ns, 2);
  EXPECT_EQ((*entries)[1].verb, "host.ping");
  EXPECT_EQ((*entries)[1].completed_ns, 0);  // no outcome yet
  // The log's own thread syncs them (the wait is far above kFlushDelay: no timing is tested).
  const auto end = std::chrono::steady_clock::now() + 20 * AuditLog::kFlushDelay;
  while (!(*log)->synced() && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE((*log)->synced());
  // A synced arrival carries the unsynced lines before it.
  ASSERT_TRUE((*log)->result("c2", {}, 4).ok());
  EXPECT_FALSE((*log)->synced());
  ASSERT_TRUE((*log)->received(audited_command("c3", "vm.destroy"), 5, true).ok());
  EXPECT_TRUE((*log)->synced());
  log->reset();  // closing syncs and joins the flusher: nothing is lost
  entries = read_audit_log(file, 0, 0);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3U);
  EXPECT_EQ((*entries)[1].completed_ns, 4);
}

}  // namespace
}  // namespace cloudmgr
