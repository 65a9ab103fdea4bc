// The metrics text (daemon/metrics_format.h) and the HTTP decisions and
// address checks of the metrics server (daemon/metrics_server.h), without a
// mount. The mounted scrape is tests/control/metrics_test.cc.
#include "daemon/metrics_format.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "daemon/metrics_collect.h"
#include "daemon/metrics_server.h"
#include "journal/journal.h"
#include "tests/journal/journal_test_util.h"

namespace scribefs {
namespace {

// name{labels} -> value, and the families' TYPE lines, from the text.
struct Parsed {
  std::map<std::string, std::string> samples;
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
};
Parsed Parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      auto rest = line.substr(7);
      p.types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
    } else if (line.rfind("# HELP ", 0) == 0) {
      auto rest = line.substr(7);
      p.helps.insert(rest.substr(0, rest.find(' ')));
    } else if (!line.empty()) {
      auto sp = line.rfind(' ');
      p.samples[line.substr(0, sp)] = line.substr(sp + 1);
    }
  }
  return p;
}

MetricsSnapshot Example() {
  MetricsSnapshot m;
  m.version = "1.2.3";
  m.start_time_s = 1700000000.5;
  m.target = true;
  m.journal = MetricsSnapshot::Journal{42, 99, 3, 2, 4096, 1, 12.5};
  m.journal_size_bytes = 123456;
  MetricsSnapshot::Uploader u;
  u.uploads = 7;
  u.copies = 2;
  u.deletes = 1;
  u.bytes_sent = 1 << 20;
  u.failures = 1;
  u.retries_by_cause = {{"network", 3}, {"throttled", 0}};
  m.uploader = u;
  MetricsSnapshot::History hist;
  hist.loaded = true;
  hist.stored_through_seq = 1234;
  hist.chunks_already_stored = 7;
  m.history = hist;
  m.paused = true;
  m.held_ops = 5;
  m.inodes = MetricsSnapshot::Inodes{1000001, 3};
  DurationHistogram h({0.01, 0.1, 1});
  h.Observe(0.005);
  h.Observe(0.05);
  h.Observe(5);
  m.checkpoint_hold = h.Get();
  m.targets = {{"usb", 7, 0, 1048576, 0, 0, 0, 0, 0.0},
               {"off-site", 2, 1, 4096, 5, 1700000000.5, 12, 1, 30.5}};
  return m;
}

TEST(MetricsFormat, EveryFamilyHasHelpAndTypeAndTheValues) {
  Parsed p = Parse(FormatMetrics(Example()));
  EXPECT_EQ(p.samples["scribefs_replication_lag_seconds"], "12.5");
  EXPECT_EQ(p.samples["scribefs_pending_records"], "3");
  EXPECT_EQ(p.samples["scribefs_pending_files"], "2");
  EXPECT_EQ(p.samples["scribefs_pending_bytes"], "4096");
  EXPECT_EQ(p.samples["scribefs_failed_records"], "1");
  EXPECT_EQ(p.samples["scribefs_journal_size_bytes"], "123456");
  EXPECT_EQ(p.samples["scribefs_uploads_total"], "7");
  EXPECT_EQ(p.samples["scribefs_copies_total"], "2");
  EXPECT_EQ(p.samples["scribefs_deletes_total"], "1");
  EXPECT_EQ(p.samples["scribefs_sent_bytes_total"], "1048576");
  EXPECT_EQ(p.samples["scribefs_retries_total{cause=\"network\"}"], "3");
  EXPECT_EQ(p.samples["scribefs_retries_total{cause=\"throttled\"}"], "0");
  EXPECT_EQ(p.samples["scribefs_history_stored_through_seq"], "1234");
  EXPECT_EQ(p.samples["scribefs_history_chunks_already_stored_total"], "7");
  EXPECT_EQ(p.types["scribefs_history_segments_written_total"], "counter");
  EXPECT_EQ(p.samples["scribefs_paused"], "1");
  EXPECT_EQ(p.samples["scribefs_held_operations"], "5");
  EXPECT_EQ(p.samples["scribefs_inode_table_inodes"], "1000001");
  EXPECT_EQ(p.samples["scribefs_inode_table_active_inodes"], "3");
  EXPECT_EQ(p.samples["scribefs_build_info{version=\"1.2.3\"}"], "1");
  EXPECT_EQ(p.samples["scribefs_start_time_seconds"], "1700000000.5");
  // Each target's figures, labelled by name (issue 16).
  EXPECT_EQ(p.samples["scribefs_target_uploads_total{target=\"usb\"}"], "7");
  EXPECT_EQ(p.samples["scribefs_target_uploads_total{target=\"off-site\"}"], "2");
  EXPECT_EQ(p.samples["scribefs_target_upload_failures_total{target=\"off-site\"}"], "1");
  EXPECT_EQ(p.samples["scribefs_target_sent_bytes_total{target=\"usb\"}"], "1048576");
  EXPECT_EQ(p.samples["scribefs_target_upload_queue_paths{target=\"off-site\"}"], "5");
  EXPECT_EQ(p.samples["scribefs_target_failing_since_seconds{target=\"usb\"}"], "0");
  EXPECT_EQ(p.samples["scribefs_target_failing_since_seconds{target=\"off-site\"}"],
            "1700000000.5");
  EXPECT_EQ(p.samples["scribefs_target_pending_records{target=\"usb\"}"], "0");
  EXPECT_EQ(p.samples["scribefs_target_pending_records{target=\"off-site\"}"], "12");
  EXPECT_EQ(p.samples["scribefs_target_failed_records{target=\"off-site\"}"], "1");
  EXPECT_EQ(p.samples["scribefs_target_lag_seconds{target=\"off-site\"}"], "30.5");
  EXPECT_EQ(p.types["scribefs_target_lag_seconds"], "gauge");
  // Histogram: cumulative buckets, +Inf = count, sum.
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_bucket{le=\"0.01\"}"], "1");
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_bucket{le=\"0.1\"}"], "2");
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_bucket{le=\"1\"}"], "2");
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_bucket{le=\"+Inf\"}"], "3");
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_count"], "3");
  EXPECT_EQ(p.samples["scribefs_checkpoint_hold_seconds_sum"], "5.055");
  EXPECT_EQ(p.types["scribefs_checkpoint_hold_seconds"], "histogram");

  for (const auto& [name, type] : p.types) {
    EXPECT_EQ(name.rfind("scribefs_", 0), 0u) << name;
    EXPECT_TRUE(p.helps.count(name)) << name;
    bool total = name.size() > 6 && name.substr(name.size() - 6) == "_total";
    EXPECT_EQ(type == "counter", total) << name << " is a " << type;
  }
  // Every sample belongs to a declared family.
  for (const auto& [sample, value] : p.samples) {
    std::string name = sample.substr(0, sample.find('{'));
    bool declared = p.types.count(name) > 0;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (name.size() > strlen(suffix) && name.substr(name.size() - strlen(suffix)) == suffix)
        declared = declared || p.types.count(name.substr(0, name.size() - strlen(suffix)));
    EXPECT_TRUE(declared) << sample;
  }
}

TEST(MetricsFormat, JournalOnlyHasNoLagNorUploaderFigures) {
  MetricsSnapshot m = Example();
  m.target = false;
  m.uploader.reset();
  m.history.reset();
  Parsed p = Parse(FormatMetrics(m));
  EXPECT_EQ(p.samples["scribefs_target_configured"], "0");
  EXPECT_EQ(p.samples.count("scribefs_replication_lag_seconds"), 0u);
  EXPECT_EQ(p.samples.count("scribefs_pending_records"), 0u);
  EXPECT_EQ(p.samples.count("scribefs_uploads_total"), 0u);
  EXPECT_EQ(p.samples.count("scribefs_history_loaded"), 0u);
  EXPECT_EQ(p.samples["scribefs_journal_records"], "42");
}

TEST(MetricsFormat, UnreadableJournalSaysSo) {
  MetricsSnapshot m = Example();
  m.journal.reset();
  Parsed p = Parse(FormatMetrics(m));
  EXPECT_EQ(p.samples["scribefs_journal_readable"], "0");
  EXPECT_EQ(p.samples.count("scribefs_pending_records"), 0u);
}

TEST(MetricsFormat, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  MetricsSnapshot m;
  m.version = "x\"y";
  EXPECT_NE(FormatMetrics(m).find("scribefs_build_info{version=\"x\\\"y\"} 1\n"),
            std::string::npos);
}

TEST(MetricsFormat, HistogramCountsNegativeAndNanAsZero) {
  DurationHistogram h({0.1});
  h.Observe(-1);
  h.Observe(std::nan(""));
  auto c = h.Get();
  EXPECT_EQ(c.count, 2u);
  EXPECT_EQ(c.buckets[0], 2u);
  EXPECT_EQ(c.sum, 0.0);
}

TEST(MetricsHttp, Decisions) {
  auto a = DecideHttpAnswer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a.code, 200);
  EXPECT_TRUE(a.metrics);
  EXPECT_EQ(DecideHttpAnswer("GET /metrics?x=1 HTTP/1.0\r\n\r\n").code, 200);
  EXPECT_TRUE(DecideHttpAnswer("HEAD /metrics HTTP/1.1\r\n\r\n").head);
  EXPECT_EQ(DecideHttpAnswer("GET / HTTP/1.1\r\n\r\n").code, 404);
  EXPECT_EQ(DecideHttpAnswer("GET /metricsx HTTP/1.1\r\n\r\n").code, 404);
  EXPECT_EQ(DecideHttpAnswer("POST /metrics HTTP/1.1\r\n\r\n").code, 405);
  EXPECT_EQ(DecideHttpAnswer("GET /metrics\r\n\r\n").code, 400);
  EXPECT_EQ(DecideHttpAnswer("GET /metrics HTTP/2\r\n\r\n").code, 400);
  EXPECT_EQ(DecideHttpAnswer("\x01\x02\xff garbage").code, 400);
  EXPECT_EQ(DecideHttpAnswer("").code, 400);
  EXPECT_EQ(DecideHttpAnswer("GET metrics HTTP/1.1\r\n\r\n").code, 400);
}

TEST(MetricsHttp, ResponseHasLengthTypeAndCloses) {
  std::string r = HttpResponse({200, "OK", true, false}, "a 1\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(r.find("Content-Length: 4\r\n"), std::string::npos);
  EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(r.substr(r.size() - 4), "a 1\n");
  std::string head = HttpResponse({200, "OK", true, true}, "a 1\n");
  EXPECT_EQ(head.substr(head.size() - 4), "\r\n\r\n");
}

TEST(MetricsListen, Addresses) {
  auto a = ParseListenAddress("127.0.0.1:9108");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->loopback);
  EXPECT_TRUE(ParseListenAddress("localhost:9108")->loopback);
  EXPECT_TRUE(ParseListenAddress("[::1]:9108")->loopback);
  EXPECT_TRUE(ParseListenAddress("127.1.2.3:0")->loopback);
  auto any = ParseListenAddress("0.0.0.0:9108");
  ASSERT_TRUE(any.ok());
  EXPECT_FALSE(any->loopback);
  EXPECT_FALSE(ParseListenAddress("[::]:9108")->loopback);
  EXPECT_FALSE(ParseListenAddress("192.168.1.1:80")->loopback);
  for (const char* bad : {"9108", ":9108", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:x", "example.com:9108", "[::1:9108", "::1:9108"})
    EXPECT_FALSE(ParseListenAddress(bad).ok()) << bad;
}

TEST(MetricsFile, WrittenAtomicallyReadableByOthers) {
  char dir[] = "/tmp/scribefs-metrics-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/scribefs.prom";
  ASSERT_TRUE(WriteFileAtomically(path, "one 1\n").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "two 2\n").ok());
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(content, "two 2\n");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  unlink(path.c_str());
  EXPECT_EQ(rmdir(dir), 0) << "a temporary file was left behind";
  EXPECT_FALSE(WriteFileAtomically("/nonexistent-dir/x.prom", "x").ok());
}

// A scrape computes the journal's figures again once they are older than 20
// times what they took: every scrape when they are cheap, about once a minute
// when they take seconds (millions of records pending).
TEST(MetricsCollect, JournalFiguresAreReusedWhileYoungerThanTwentyTimesTheirCost) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  EXPECT_TRUE(ReuseJournalFigures(milliseconds(10), milliseconds(0)));
  EXPECT_TRUE(ReuseJournalFigures(milliseconds(10), milliseconds(199)));
  EXPECT_FALSE(ReuseJournalFigures(milliseconds(10), milliseconds(200)));
  EXPECT_TRUE(ReuseJournalFigures(seconds(3), seconds(59)));
  EXPECT_FALSE(ReuseJournalFigures(seconds(3), seconds(60)));
  EXPECT_FALSE(ReuseJournalFigures(milliseconds(0), milliseconds(0)));
}

// On a journal whose figures take a millisecond, a record committed between
// two scrapes is in the second one (nothing stale is served).
TEST(MetricsCollect, CheapFiguresAreFreshAtEachScrape) {
  TempDir dir;
  auto journal = Journal::Open(dir.path() + "/journal.db");
  ASSERT_TRUE(journal.ok()) << journal.status().ToString();
  MetricsCollector::Sources src;
  src.journal = journal->get();
  MetricsCollector collector(src);
  MetricsSnapshot first = collector.Collect();
  ASSERT_TRUE(first.journal);
  EXPECT_EQ(first.journal->pending_records, 0);
  Record r;
  r.op = Op::kCreate;
  r.path = "a";
  r.size = 0;
  ASSERT_TRUE((*journal)->Commit(r).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  MetricsSnapshot second = collector.Collect();
  ASSERT_TRUE(second.journal);
  EXPECT_EQ(second.journal->pending_records, 1);
  EXPECT_EQ(second.journal->last_seq, r.seq);
}

}  // namespace
}  // namespace scribefs
