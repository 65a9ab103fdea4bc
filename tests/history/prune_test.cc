// Prune (history/prune.h) on a real file:// target: old segments and chunks
// go, every retained point still restores exactly (by seq and by time, every
// file's chunks checked), points outside retention fail cleanly, a young
// unreferenced chunk survives, a dry run changes nothing, checkpoints are
// kept, and a prune interrupted between its phases is finished by the next.
#include "history/prune.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/time.h>

#include "tests/history/prune_test_util.h"
#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders

constexpr int64_t kMin = 60 * kNsPerSecond;
constexpr int64_t kHour = 60 * kMin;

class PruneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "UTC0", 1);
    tzset();
    h_ = std::make_unique<PruneHistory>(dir_.path());
  }
  PruneOptions Options(int64_t retention, int hourly, int64_t grace = 0) {
    PruneOptions o;
    o.policy.retention_ns = retention;
    o.policy.keep_hourly = hourly;
    o.grace_ns = grace;
    o.now_ns = h_->now();
    return o;
  }
  std::string ChunkFile(const std::string& sha) const {
    return h_->target_dir() + "/" + ChunkKey(sha);
  }
  void Backdate(const std::string& path, int64_t seconds) {
    struct timeval tv[2];
    gettimeofday(&tv[0], nullptr);
    tv[0].tv_sec -= seconds;
    tv[1] = tv[0];
    ASSERT_EQ(utimes(path.c_str(), tv), 0) << path;
  }

  testing_util::TempDir dir_;
  std::unique_ptr<PruneHistory> h_;
};

std::vector<uint64_t> Seqs(const RetentionDecision& d) {
  std::vector<uint64_t> out;
  for (const KeptPoint& k : d.older) out.push_back(k.state.seq);
  return out;
}

TEST_F(PruneTest, DeletesOldSegmentsAndChunksAndKeepsEveryRetainedPoint) {
  // 60 entries, one per 10 minutes over 10 hours, 4 per segment, compacted.
  h_->Build(60, 10 * kMin, 4, true);
  const PruneOptions o = Options(2 * kHour, 6);
  const RetentionDecision expected = DecideRetention(h_->states(), {}, o.policy, h_->now());
  ASSERT_TRUE(expected.window_start);
  // The window's start and the older of the 6 hours (2 or 3 are in the window).
  ASSERT_GE(expected.older.size(), 4u);
  auto before = h_->history().Usage();
  ASSERT_TRUE(before.ok());

  auto report = Prune(h_->store(), o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(Seqs(report->decision), Seqs(expected));
  EXPECT_EQ(report->states, 60u);
  EXPECT_EQ(report->bases_written.size(), expected.older.size());
  EXPECT_GE(report->segments_deleted.size(), 3u);
  EXPECT_GT(report->chunks_deleted, 10u);
  EXPECT_EQ(report->chunks_in_grace, 0u);
  auto after = h_->history().Usage();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->chunk_objects, before->chunk_objects - report->chunks_deleted);
  EXPECT_EQ(after->chunk_objects, report->chunks_kept);
  EXPECT_LT(after->chunk_bytes, before->chunk_bytes);

  h_->ExpectRetainedRestore(expected);

  // Outside retention: an old state that is not kept either restores the
  // true tree (nothing changed since a kept point) or fails with ENODATA,
  // never a wrong tree; and most fail.
  int failed = 0;
  for (const StatePoint& p : h_->states()) {
    if (p.seq >= expected.window_start->seq) break;
    auto tl = h_->history().LoadTimeline(Instant::AtSeq(p.seq));
    if (!tl.ok()) {
      EXPECT_EQ(tl.status().code(), ENODATA) << p.seq << ": " << tl.status().ToString();
      ++failed;
      continue;
    }
    EXPECT_EQ(States(Replay(*tl, Instant::AtSeq(p.seq))),
              States(Replay(h_->truth(), Instant::AtSeq(p.seq))))
        << p.seq;
  }
  EXPECT_GT(failed, 30);
  auto first = h_->history().LoadTimeline(Instant::AtSeq(1));
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), ENODATA) << first.status().ToString();

  // A second prune finds nothing more to do.
  auto again = Prune(h_->store(), o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(Seqs(again->decision), Seqs(expected));
  EXPECT_TRUE(again->bases_written.empty());
  EXPECT_TRUE(again->segments_deleted.empty());
  EXPECT_EQ(again->chunks_deleted, 0u);
  h_->ExpectRetainedRestore(expected);
  // Compaction after a prune leaves the holes as holes.
  ASSERT_TRUE(h_->history().Compact(0).ok());
  h_->ExpectRetainedRestore(expected);
}

TEST_F(PruneTest, AnUnreferencedChunkYoungerThanTheGraceIsNeverDeleted) {
  h_->Build(30, 10 * kMin, 3, false);
  // Unreferenced: one just uploaded (its segment not written yet), one old.
  const Entry young = h_->StoredFile(1000, "x", testing_util::Blob(3000, 77), 0);
  const Entry old = h_->StoredFile(1001, "y", testing_util::Blob(3000, 78), 0);
  ASSERT_EQ(young.state.chunks.size(), 1u);
  ASSERT_EQ(old.state.chunks.size(), 1u);
  Backdate(ChunkFile(old.state.chunks[0].sha256), 2 * 3600);
  // And every referenced chunk old too: referenced ones stay whatever their age.
  const Segment& last = h_->truth().back();
  for (const Entry& e : last.entries) {
    for (const ChunkRef& c : e.state.chunks) Backdate(ChunkFile(c.sha256), 2 * 3600);
  }
  // Everything is within a retention of 1 day: no segment goes.
  auto report = Prune(h_->store(), Options(24 * kHour, 0, kHour));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_FALSE(report->decision.window_start);
  EXPECT_TRUE(report->segments_deleted.empty());
  EXPECT_EQ(report->chunks_deleted, 1u);
  EXPECT_GE(report->chunks_in_grace, 1u);
  EXPECT_TRUE(std::filesystem::exists(ChunkFile(young.state.chunks[0].sha256)));
  EXPECT_FALSE(std::filesystem::exists(ChunkFile(old.state.chunks[0].sha256)));
  for (const StatePoint& p : h_->states()) {
    h_->ExpectRestores(Instant::AtSeq(p.seq), "seq " + std::to_string(p.seq));
  }
  // With no grace, the young one goes too.
  PruneOptions no_grace_options = Options(24 * kHour, 0, 0);
  no_grace_options.now_ns = NowNs();  // after the upload
  auto no_grace = Prune(h_->store(), no_grace_options);
  ASSERT_TRUE(no_grace.ok());
  EXPECT_FALSE(std::filesystem::exists(ChunkFile(young.state.chunks[0].sha256)));
  h_->ExpectRestores(Instant::Latest(), "latest");
}

TEST_F(PruneTest, DryRunDeletesAndWritesNothingAndReportsWhatARealRunDoes) {
  h_->Build(40, 10 * kMin, 4, false);
  const auto files = h_->Files();
  PruneOptions o = Options(1 * kHour, 2);
  o.dry_run = true;
  auto dry = Prune(h_->store(), o);
  ASSERT_TRUE(dry.ok()) << dry.status().ToString();
  EXPECT_TRUE(dry->dry_run);
  EXPECT_EQ(h_->Files(), files);
  EXPECT_GT(dry->segments_deleted.size(), 0u);
  EXPECT_GT(dry->chunks_deleted, 0u);
  o.dry_run = false;
  auto real = Prune(h_->store(), o);
  ASSERT_TRUE(real.ok()) << real.status().ToString();
  EXPECT_EQ(real->segments_deleted.size(), dry->segments_deleted.size());
  EXPECT_EQ(real->segment_bytes_deleted, dry->segment_bytes_deleted);
  EXPECT_EQ(real->chunks_deleted, dry->chunks_deleted);
  EXPECT_EQ(real->chunk_bytes_deleted, dry->chunk_bytes_deleted);
  EXPECT_EQ(real->bases_written.size(), dry->bases_written.size());
  EXPECT_NE(h_->Files(), files);
  h_->ExpectRetainedRestore(real->decision);
}

TEST_F(PruneTest, KeepsTheNewestCheckpoints) {
  h_->Build(40, 10 * kMin, 4, false);
  // Two checkpoints stored as the daemon stores them, at seqs 9 and 21.
  for (auto [name, seq] : {std::pair<const char*, uint64_t>{"first", 9}, {"second", 21}}) {
    ManifestHeader header{name, h_->states()[seq - 1].time_ns, static_cast<int64_t>(seq),
                          h_->url()};
    ManifestEntry entry;
    entry.path = entry.key = "a";
    entry.type = "file";
    const std::string body = ManifestJson(header, {entry}).dump();
    ASSERT_TRUE(
        h_->store()
            .Put(std::string(kCheckpointKeyPrefix) + name + ".json", Payload::FromMemory(body), {})
            .ok());
  }
  auto points = ListCheckpointPoints(h_->store());
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  ASSERT_EQ(points->size(), 2u);
  PruneOptions o = Options(30 * kMin, 0);
  o.policy.keep_checkpoints = 1;
  auto report = Prune(h_->store(), o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->checkpoints, 2u);
  ASSERT_EQ(report->decision.older.size(), 2u);
  EXPECT_EQ(report->decision.older[0].state.seq, 21u);
  EXPECT_EQ(report->decision.older[0].reasons, (std::vector<std::string>{"checkpoint second"}));
  h_->ExpectRetainedRestore(report->decision);
  auto gone = h_->history().LoadTimeline(Instant::AtSeq(9));
  EXPECT_FALSE(gone.ok());
}

// A prune that stopped after its segment deletes but before its sweep (here:
// a grace so long that it sweeps nothing) leaves every retained point
// restorable, and the next prune sweeps what it left. (The kill -9 test does
// this to the real process at random moments.)
TEST_F(PruneTest, AnInterruptedPruneIsFinishedByTheNext) {
  h_->Build(60, 10 * kMin, 4, true);
  const PruneOptions o = Options(2 * kHour, 5);
  auto plan_only = Prune(h_->store(), [&] {
    PruneOptions d = o;
    d.dry_run = true;
    return d;
  }());
  ASSERT_TRUE(plan_only.ok());
  PruneOptions keep_chunks = o;
  keep_chunks.grace_ns = 1000 * kHour;
  auto first = Prune(h_->store(), keep_chunks);  // segments gone, chunks all kept
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->chunks_deleted, 0u);
  h_->ExpectRetainedRestore(plan_only->decision);
  auto second = Prune(h_->store(), o);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->chunks_deleted, plan_only->chunks_deleted);
  EXPECT_TRUE(second->segments_deleted.empty());
  h_->ExpectRetainedRestore(plan_only->decision);
}

}  // namespace
}  // namespace scribefs::history
