// The daemon's side of the bounded journal (daemon/journal_trim.h):
// --journal-retention on the command line, and the task that trims in the
// background once the target's history holds the records.
#include "daemon/journal_trim.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "daemon/daemon.h"
#include "daemon/options.h"
#include "journal/journal.h"
#include "journal/reader.h"

namespace scribefs {
namespace {

constexpr int64_t kSec = 1'000'000'000;

TEST(JournalRetentionTest, Parses) {
  EXPECT_EQ(*ParseJournalRetention("0"), 0);
  EXPECT_EQ(*ParseJournalRetention("0s"), 0);
  EXPECT_EQ(*ParseJournalRetention("7d"), 7 * 86400 * kSec);
  EXPECT_EQ(*ParseJournalRetention("12h"), 12 * 3600 * kSec);
  EXPECT_EQ(*ParseJournalRetention("30m"), 30 * 60 * kSec);
  EXPECT_EQ(*ParseJournalRetention("1.5d"), 129600 * kSec);
  for (const char* bad : {"", "d", "-1d", "7", "7 days", "7w", "nan", "1e300d"})
    EXPECT_FALSE(ParseJournalRetention(bad).ok()) << bad;
}

std::optional<int> Parse(std::vector<std::string> args, Config& cfg) {
  args.insert(args.begin(), "scribefs");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data(), cfg);
}

TEST(JournalRetentionTest, CommandLine) {
  Config def;
  ASSERT_EQ(Parse({"/d"}, def), std::nullopt);
  EXPECT_EQ(def.journal_retention_ns, 7 * 86400 * kSec) << "7 days by default";
  Config zero;
  ASSERT_EQ(Parse({"/d", "--journal-retention", "0"}, zero), std::nullopt);
  EXPECT_EQ(zero.journal_retention_ns, 0);
  Config fstab;
  ASSERT_EQ(Parse({"/d", "-o", "journal_retention=2h"}, fstab), std::nullopt);
  EXPECT_EQ(fstab.journal_retention_ns, 7200 * kSec);
  Config bad;
  EXPECT_EQ(Parse({"/d", "--journal-retention", "forever"}, bad), kExitUsage);
}

TEST(JournalTrimTaskTest, TrimsInTheBackgroundOnceTheHistoryHoldsTheRecords) {
  char tmpl[] = "/tmp/scribefs-trimtask-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  {
    auto j = Journal::Open(dir + "/journal.db");
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    std::vector<Record> recs(100);
    for (auto& r : recs) {
      r.path = "f";
      r.state = "done";
    }
    ASSERT_TRUE((*j)->Commit(recs).ok());
    auto count = [&] {
      auto reader = JournalReader::Open(dir + "/journal.db");
      EXPECT_TRUE(reader.ok());
      auto st = (*reader)->Stats();
      EXPECT_TRUE(st.ok());
      return st.ok() ? st->records : -1;
    };
    JournalTrimTask task(j->get(), {0, std::chrono::milliseconds(20)});
    task.Start();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(count(), 100) << "no history in the target: nothing goes";
    ASSERT_TRUE((*j)->SetMeta("history_stored_through", "60").ok());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (count() != 40 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(count(), 40);
    auto reader = JournalReader::Open(dir + "/journal.db");
    ASSERT_TRUE(reader.ok());
    EXPECT_EQ((*reader)->Meta("trimmed_through")->value_or(""), "60");
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace scribefs
