// Unit tests of the pieces behind `scribectl journal` and `stats` that do not
// need a process: filters, the DETAIL column, JSON rendering, state lookup.
#include "tools/journal_command.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "tools/stats_command.h"
#include "tools/time_spec.h"

namespace scribefs::ctl {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kNow = 1795255200LL * kSec;

TEST(JournalFilterTest, SeqAndTimeBoundsGoToTheirFields) {
  JournalOptions o;
  o.since = "5";
  o.until = "2026-11-21T10:00:00Z";
  auto f = BuildJournalFilter(o, kNow);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->since_seq, 5);
  EXPECT_FALSE(f->since_ns);
  EXPECT_EQ(f->until_ns, kNow);
  EXPECT_FALSE(f->until_seq);

  o.since = "10m";
  o.until = "17";
  f = BuildJournalFilter(o, kNow);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->since_ns, kNow - 600 * kSec);
  EXPECT_EQ(f->until_seq, 17);
}

TEST(JournalFilterTest, PathGlobLosesLeadingSlashes) {
  JournalOptions o;
  o.path_glob = "/docs/*.txt";
  EXPECT_EQ(BuildJournalFilter(o, kNow)->path_glob, "docs/*.txt");
  o.path_glob = "//docs/*";
  EXPECT_EQ(BuildJournalFilter(o, kNow)->path_glob, "docs/*");
  o.path_glob = "*.log";
  EXPECT_EQ(BuildJournalFilter(o, kNow)->path_glob, "*.log");
}

TEST(JournalFilterTest, RejectsUnknownOpsAndStates) {
  JournalOptions o;
  o.op = "frobnicate";
  auto f = BuildJournalFilter(o, kNow);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("valid operations: create, mkdir"), std::string::npos);
  EXPECT_EQ(ValidateOpName("write"), "");
  EXPECT_EQ(ValidateOpName("reconcile"), "");

  o = {};
  o.state = "finished";
  f = BuildJournalFilter(o, kNow);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("pending, uploading, done, failed, skipped"),
            std::string::npos);
  EXPECT_EQ(ValidateStateName("skipped"), "");

  o = {};
  o.since = "last tuesday";
  EXPECT_FALSE(BuildJournalFilter(o, kNow).ok());
  EXPECT_NE(ValidateSeqOrTime("last tuesday"), "");
  EXPECT_EQ(ValidateSeqOrTime("3d"), "");
}

TEST(JournalFilterTest, LimitMeansTheNewest) {
  JournalOptions o;
  o.limit = 20;
  o.op = "write";
  o.state = "failed";
  auto f = BuildJournalFilter(o, kNow);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->limit, 20);
  EXPECT_TRUE(f->newest_first);
  EXPECT_EQ(f->op, "write");
  EXPECT_EQ(f->state, "failed");
  o.limit = -1;
  EXPECT_FALSE(BuildJournalFilter(o, kNow).ok());
}

TEST(DisplayTest, PathColumn) {
  Record r;
  r.op = Op::kWrite;
  r.path = "docs/a.txt";
  EXPECT_EQ(DisplayPath(r), "docs/a.txt");
  r.op = Op::kRename;
  r.new_path = "archive/a.txt";
  EXPECT_EQ(DisplayPath(r), "docs/a.txt -> archive/a.txt");
  r = {};
  r.op = Op::kSetattr;
  EXPECT_EQ(DisplayPath(r), ".");  // DATADIR itself
  r.op = Op::kPause;
  EXPECT_EQ(DisplayPath(r), "");
  r.op = Op::kCreate;
  r.path = "evil\nname";
  EXPECT_EQ(DisplayPath(r), "evil\\nname");
}

TEST(DisplayTest, DetailColumn) {
  Record r;
  r.op = Op::kWrite;
  r.ranges = {{0, 4096}};
  EXPECT_EQ(DescribeRecord(r), "[0+4096]");
  r.ranges = {{0, 4096}, {8192, 4096}, {1 << 20, 4096}};
  EXPECT_EQ(DescribeRecord(r), "3 ranges, 12.0 KiB");

  r = {};
  r.op = Op::kCreate;
  r.mode = S_IFREG | 0644;
  r.size = 0;
  EXPECT_EQ(DescribeRecord(r), "size=0 mode=0644");
  r.mode = S_IFIFO | 0600;
  r.size.reset();
  EXPECT_EQ(DescribeRecord(r), "mode=0600 type=fifo");

  r = {};
  r.op = Op::kRename;
  r.flags = 1;
  EXPECT_EQ(DescribeRecord(r), "flags=noreplace");
  r.op = Op::kClose;  // open flags are not rename flags
  EXPECT_EQ(DescribeRecord(r), "");

  r = {};
  r.op = Op::kCheckpoint;
  r.detail = R"({"name":"nightly","held_ms":12})";
  EXPECT_EQ(DescribeRecord(r), "name=nightly held_ms=12");
  r.detail = "not json";
  EXPECT_EQ(DescribeRecord(r), "not json");

  // Details as the filesystem writes them: modes in octal, times readable.
  r = {};
  r.op = Op::kSetattr;
  r.detail = R"({"mode":420,"uid":7,"mtime":"now"})";
  EXPECT_EQ(DescribeRecord(r), "mode=0644 uid=7 mtime=now");
  r.mode = S_IFREG | 0644;  // the same mode is not shown twice
  EXPECT_EQ(DescribeRecord(r), "mode=0644 uid=7 mtime=now");
  r = {};
  r.op = Op::kClose;
  r.detail = R"({"mtime_ns":1795255200005000000})";
  EXPECT_EQ(DescribeRecord(r), "mtime_ns=" + FormatLocalTime(1795255200005000000));

  r = {};
  r.op = Op::kWrite;
  r.state = "failed";
  r.attempts = 3;
  r.error = "AccessDenied: Access Denied";
  EXPECT_EQ(DescribeRecord(r), "attempts=3 error: AccessDenied: Access Denied");
  r.state = "done";
  r.error.reset();
  EXPECT_EQ(DescribeRecord(r), "");
}

TEST(JsonTest, RecordHasEveryColumn) {
  Record r;
  r.seq = 7;
  r.time_ns = kNow + 5'000'000;
  r.op = Op::kRename;
  r.path = "a";
  r.new_path = "b";
  r.ranges = {{1, 2}, {10, 20}};
  r.mode = 0100644;
  r.uid = 1000;
  r.gid = 100;
  r.pid = 42;
  r.flags = 2;
  r.detail = R"({"k":[1,2]})";
  r.state = "failed";
  r.attempts = 2;
  r.error = "boom";
  r.etag = "\"abc\"";
  r.state_ns = kNow;
  auto j = RecordToJson(r);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{
                      "seq",   "time_ns",  "time",  "op",   "path",   "new_path",   "ranges",
                      "size",  "mode",     "uid",   "gid",  "pid",    "flags",      "detail",
                      "state", "attempts", "error", "etag", "sha256", "version_id", "state_ns"}));
  EXPECT_EQ(j["seq"], 7);
  EXPECT_EQ(j["time"], "2026-11-21T10:00:00.005Z");
  EXPECT_EQ(j["op"], "rename");
  EXPECT_EQ(j["new_path"], "b");
  EXPECT_EQ(j["ranges"].dump(), "[[1,2],[10,20]]");
  EXPECT_TRUE(j["size"].is_null());
  EXPECT_EQ(j["mode"], 0100644);
  EXPECT_EQ(j["flags"], 2);
  EXPECT_EQ(j["detail"]["k"][1], 2);
  EXPECT_EQ(j["error"], "boom");
  EXPECT_EQ(j["etag"], "\"abc\"");
  EXPECT_TRUE(j["sha256"].is_null());

  r.detail = "{broken";
  EXPECT_EQ(RecordToJson(r)["detail"], "{broken");
  r.detail.clear();
  r.ranges.clear();
  EXPECT_TRUE(RecordToJson(r)["detail"].is_null());
  EXPECT_EQ(RecordToJson(r)["ranges"].dump(), "[]");
}

TEST(JsonTest, StatsObject) {
  JournalStats s;
  s.by_op = {{"write", 3}, {"create", 1}};
  s.by_state = {{"pending", 2}, {"done", 2}};
  s.by_op_state = {{"write", {{"pending", 2}, {"done", 1}}}, {"create", {{"done", 1}}}};
  s.records = 4;
  s.max_seq = 9;
  s.pending_records = 2;
  s.pending_files = 1;
  s.pending_bytes = 4096;
  s.oldest_pending_ns = kNow - 3 * kSec;
  auto j = StatsToJson(s, "/s/journal.db", kNow);
  EXPECT_EQ(j["records"], 4);
  EXPECT_EQ(j["max_seq"], 9);
  EXPECT_EQ(j["pending_bytes"], 4096);
  EXPECT_DOUBLE_EQ(j["oldest_pending_age_s"].get<double>(), 3.0);
  EXPECT_EQ(j["by_state"].dump(), R"({"pending":2,"uploading":0,"done":2,"failed":0,"skipped":0})");
  EXPECT_EQ(j["by_op"].dump(), R"({"create":1,"write":3})");  // enum order
  EXPECT_EQ(j["by_op_state"]["write"].dump(), R"({"pending":2,"done":1})");
  s.oldest_pending_ns.reset();
  j = StatsToJson(s, "/s/journal.db", kNow);
  EXPECT_TRUE(j["oldest_pending_ns"].is_null());
  EXPECT_TRUE(j["oldest_pending_age_s"].is_null());
}

TEST(LocateStateTest, Precedence) {
  std::string tmp = testing::TempDir() + "/locate_state_data";
  std::filesystem::create_directories(tmp);
  auto canonical = CanonicalDir(tmp);
  ASSERT_TRUE(canonical.ok());

  GlobalOptions o;
  o.state_dir = "/explicit";
  o.datadir = tmp;
  auto loc = LocateState(o, "/from-env");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->paths.dir, "/explicit");
  EXPECT_EQ(loc->paths.journal(), "/explicit/journal.db");

  o.state_dir.clear();
  loc = LocateState(o, "/from-env");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->datadir, *canonical);
  EXPECT_EQ(loc->paths.dir, DefaultStateDir(*canonical));

  o.datadir.clear();
  loc = LocateState(o, "/from-env");
  ASSERT_TRUE(loc.ok());
  EXPECT_EQ(loc->paths.dir, "/from-env");

  loc = LocateState(o, nullptr);
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), EINVAL);
  EXPECT_NE(loc.status().message().find("-m DATADIR"), std::string::npos);

  o.datadir = tmp + "/missing";
  loc = LocateState(o, nullptr);
  ASSERT_FALSE(loc.ok());
  EXPECT_EQ(loc.status().code(), ENOENT);
}

}  // namespace
}  // namespace scribefs::ctl
