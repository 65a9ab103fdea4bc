// The bounded journal on a real mount (issue 11, item 5; daemon/journal_trim.h):
// a daemon with --journal-retention 0 and a file:// target deletes the done
// records once the target's history holds them. The replicator that writes
// the meta key history_stored_through is built in parallel, so the test
// writes it, as the replicator will after storing a timeline segment.
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "journal/reader.h"
#include "tests/control/control_util.h"

namespace scribefs::ctltest {
namespace {

using JournalTrimMountTest = it::MountTest;

JournalStats Stats(const std::string& journal) {
  auto reader = JournalReader::Open(journal);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return {};
  auto st = (*reader)->Stats();
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  return st.ok() ? *st : JournalStats{};
}

// Records with seq <= seq still in the journal.
int64_t RecordsThrough(const std::string& journal, int64_t seq) {
  auto reader = JournalReader::Open(journal);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  if (!reader.ok()) return -1;
  JournalFilter f;
  f.until_seq = seq;
  auto rows = (*reader)->Query(f);
  EXPECT_TRUE(rows.ok()) << rows.status().ToString();
  return rows.ok() ? static_cast<int64_t>(rows->size()) : -1;
}

// Another writer of the live journal, as `sqlite3 journal.db` would be.
void SetMeta(const std::string& journal, const std::string& key, const std::string& value) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(journal.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  std::string sql = "INSERT INTO meta(key, value) VALUES('" + key + "', '" + value +
                    "') ON CONFLICT(key) DO UPDATE SET value = excluded.value";
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close_v2(db);
}

TEST_F(JournalTrimMountTest, RetentionZeroTrimsWhatTheHistoryHolds) {
  ASSERT_EQ(mkdir((root() + "/target").c_str(), 0755), 0);
  Options o;
  o.args = {"--target", "file://" + root() + "/target", "--journal-retention", "0"};
  Mount(o);
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(it::WriteFile(mnt("f" + std::to_string(i)), "content " + std::to_string(i)));
  ASSERT_EQ(Scribectl(state(), {"flush"}).exit_code, 0);
  const std::string journal = state() + "/journal.db";
  JournalStats before = Stats(journal);
  ASSERT_GE(before.records, 400);  // create, write(s), close per file
  EXPECT_EQ(before.pending_records, 0);

  SetMeta(journal, "history_stored_through", std::to_string(before.max_seq));
  // The trimmer runs every 10 s.
  int64_t left = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    left = RecordsThrough(journal, before.max_seq);
  } while (left > 1 && std::chrono::steady_clock::now() < deadline);
  JournalStats after = Stats(journal);
  printf("journal records: %lld before, %lld after the trim (max seq %lld)\n",
         static_cast<long long>(before.records), static_cast<long long>(after.records),
         static_cast<long long>(before.max_seq));
  // Everything up to the stored seq is gone but the last record (the
  // journal's max seq at the time); records committed since stay.
  EXPECT_LE(left, 1);
  EXPECT_GE(after.max_seq, before.max_seq);
  // The mount still journals and replicates.
  ASSERT_TRUE(it::WriteFile(mnt("after"), "later"));
  ASSERT_EQ(Scribectl(state(), {"flush"}).exit_code, 0);
  EXPECT_EQ(it::ReadFile(root() + "/target/after").value_or(""), "later");
  it::RunResult listing = Scribectl(state(), {"journal"});
  ASSERT_EQ(listing.exit_code, 0) << listing.Describe();
  EXPECT_NE(listing.err.find("were trimmed from the local journal"), std::string::npos)
      << listing.err;
  EXPECT_NE(listing.out.find("after"), std::string::npos) << listing.out;
}

}  // namespace
}  // namespace scribefs::ctltest
