// HistoryStore on a real LocalStore in a temp directory (no mocks): chunks
// stored once, a 4 KiB change costs one part, segments immutable and listed in
// order, timelines loaded from a base, corrupted chunks caught, compaction
// (and a crash in the middle of it) leaves the same history.
#include "history/history_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>

#include "tests/history/history_test_util.h"
#include "tests/uploader/memory_store.h"
#include "tests/uploader/test_util.h"
#include "uploader/local_store.h"

namespace scribefs::history {
namespace {

using namespace history::testing;  // NOLINT: the builders
using testing_util::Blob;
using testing_util::ReadFile;
using testing_util::TempDir;
using testing_util::WriteFile;

constexpr uint64_t kPart = kDefaultPartSize;

class HistoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = LocalStore::Open(target_.path() + "/target");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    history_ = std::make_unique<HistoryStore>(*store_);
  }
  std::string Local(const std::string& name) const { return data_.path() + "/" + name; }
  // Bytes of the files under the target's .scribefs/chunks, as the disk has them.
  std::pair<uint64_t, uint64_t> ChunkFilesOnDisk() const {
    uint64_t files = 0, bytes = 0;
    const std::filesystem::path dir = target_.path() + "/target/.scribefs/chunks";
    if (!std::filesystem::exists(dir)) return {0, 0};
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (e.is_regular_file()) {
        ++files;
        bytes += e.file_size();
      }
    }
    return {files, bytes};
  }
  std::vector<ChunkRef> Store(const std::string& name, const std::string& content) {
    UniqueFd fd = WriteFile(Local(name), content);
    auto chunks = history_->PutChunks(fd.get(), content.size());
    EXPECT_TRUE(chunks.ok()) << chunks.status().ToString();
    return chunks.ok() ? *chunks : std::vector<ChunkRef>{};
  }

  TempDir data_, target_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<HistoryStore> history_;
};

TEST_F(HistoryStoreTest, HundredIdenticalFilesAreOneChunk) {
  const std::string content = Blob(300 << 10, 1);
  std::vector<ChunkRef> first;
  for (int i = 0; i < 100; ++i) {
    auto chunks = Store("f" + std::to_string(i), content);
    if (i == 0) first = chunks;
    ASSERT_EQ(chunks, first);
  }
  EXPECT_EQ(ChunkFilesOnDisk(), std::make_pair(uint64_t{1}, uint64_t{300 << 10}));
  auto usage = history_->Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->chunk_objects, 1u);
  EXPECT_EQ(history_->counters().chunks_uploaded, 1u);
  EXPECT_EQ(history_->counters().chunks_already_stored, 99u);
  // With a set of known chunks not even a HEAD is sent.
  std::set<std::string> known;
  UniqueFd fd = WriteFile(Local("again"), content);
  ASSERT_TRUE(history_->PutChunks(fd.get(), content.size(), &known).ok());
  EXPECT_TRUE(known.contains(first[0].sha256));
  const uint64_t requests = store_->stats().requests;
  ASSERT_TRUE(history_->PutChunks(fd.get(), content.size(), &known).ok());
  EXPECT_EQ(store_->stats().requests, requests);
}

// A prune deletes an unreferenced chunk once it is the grace old; a writer
// refers only to chunks younger than half the grace (or stores them again),
// and trusts what it knows for a quarter of the grace.
TEST(ChunkFreshnessTest, RefreshAfterHalfTheGraceTrustForAQuarter) {
  constexpr int64_t kS = 1'000'000'000;
  const int64_t grace = 3600 * kS;
  const int64_t now = 1'800'000'000 * kS;
  const int64_t now_s = now / kS;
  EXPECT_FALSE(ChunkNeedsRefresh(now_s, now, grace));         // just stored
  EXPECT_FALSE(ChunkNeedsRefresh(now_s - 1800, now, grace));  // exactly half
  EXPECT_TRUE(ChunkNeedsRefresh(now_s - 1801, now, grace));   // older
  EXPECT_TRUE(ChunkNeedsRefresh(now_s - 100 * 3600, now, grace));
  EXPECT_TRUE(ChunkNeedsRefresh(0, now, grace));           // age unknown
  EXPECT_FALSE(ChunkNeedsRefresh(now_s + 5, now, grace));  // the server's clock ahead
  EXPECT_TRUE(ChunkNeedsRefresh(now_s - 1, now, 0));       // no grace: always
  EXPECT_EQ(KnownChunkTtl(grace), std::chrono::seconds(900));
  EXPECT_EQ(KnownChunkTtl(2 * kS), std::chrono::milliseconds(500));
  EXPECT_EQ(KnownChunkTtl(0).count(), 0);
  // A known chunk expires before a prune with that grace can delete it: its
  // age when it was last seen was at most half the grace.
  EXPECT_LT(KnownChunkTtl(grace).count() + grace / 2, grace);
}

TEST(ChunkFreshnessTest, KnownChunksExpireAndClear) {
  using Clock = KnownChunks::Clock;
  const Clock::time_point t0 = Clock::now();
  KnownChunks known(std::chrono::seconds(10));
  known.Insert("a", t0);
  EXPECT_TRUE(known.Contains("a", t0));
  EXPECT_TRUE(known.Contains("a", t0 + std::chrono::seconds(9)));
  EXPECT_FALSE(known.Contains("a", t0 + std::chrono::seconds(10)));
  EXPECT_FALSE(known.Contains("b", t0));
  known.Insert("a", t0 + std::chrono::seconds(8));  // seen again: trusted longer
  EXPECT_TRUE(known.Contains("a", t0 + std::chrono::seconds(17)));
  known.Clear();
  EXPECT_FALSE(known.Contains("a", t0));
  EXPECT_EQ(known.size(), 0u);
  // Without a ttl (the default) an entry never expires.
  KnownChunks forever;
  forever.Insert("c", t0);
  EXPECT_TRUE(forever.Contains("c", Clock::time_point::max() - std::chrono::seconds(1)));
}

// A chunk found stored but older than half the grace is stored again, so
// that its Last-Modified is young when a new entry references it.
TEST_F(HistoryStoreTest, OldChunkIsStoredAgainBeforeItIsReferenced) {
  const std::string content = Blob(5000, 9);
  auto first = Store("a", content);
  ASSERT_EQ(first.size(), 1u);
  const std::string file = target_.path() + "/target/" + ChunkKey(first[0].sha256);
  auto age = [&](int64_t seconds) {
    struct timespec times[2] = {{time(nullptr) - seconds, 0}, {time(nullptr) - seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, file.c_str(), times, 0), 0) << strerror(errno);
  };
  auto mtime = [&] {
    struct stat st {};
    EXPECT_EQ(stat(file.c_str(), &st), 0);
    return int64_t(st.st_mtime);
  };
  // Younger than half the grace (the default, 1 h): referenced as it is.
  age(1700);
  Store("b", content);
  EXPECT_EQ(history_->counters().chunks_already_stored, 1u);
  EXPECT_EQ(history_->counters().chunks_refreshed, 0u);
  EXPECT_LE(mtime(), time(nullptr) - 1700);
  // Older: the same bytes are stored again, and it is young.
  age(1900);
  EXPECT_EQ(Store("c", content), first);
  EXPECT_EQ(history_->counters().chunks_refreshed, 1u);
  EXPECT_EQ(history_->counters().chunks_uploaded, 1u);
  EXPECT_GE(mtime(), time(nullptr) - 5);
  EXPECT_EQ(ReadFile(file), content);
  // A shorter grace makes a younger chunk old.
  age(100);
  HistoryOptions o;
  o.prune_grace_ns = 120LL * 1'000'000'000;
  HistoryStore short_grace(*store_, o);
  UniqueFd fd = WriteFile(Local("d"), content);
  ASSERT_TRUE(short_grace.PutChunks(fd.get(), content.size()).ok());
  EXPECT_EQ(short_grace.counters().chunks_refreshed, 1u);
  EXPECT_GE(mtime(), time(nullptr) - 5);
}

TEST_F(HistoryStoreTest, FourKibChangeInA24MibFileAddsOneChunk) {
  std::string content = Blob(3 * kPart, 2);
  auto before = Store("big", content);
  ASSERT_EQ(before.size(), 3u);
  EXPECT_EQ(ChunkFilesOnDisk(), std::make_pair(uint64_t{3}, 3 * kPart));
  // 4 KiB in place in the middle of the file, as an application would write it.
  {
    UniqueFd fd(open(Local("big").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const std::string patch = Blob(4096, 3);
    ASSERT_EQ(pwrite(fd.get(), patch.data(), patch.size(), 12 << 20), 4096);
  }
  UniqueFd fd(open(Local("big").c_str(), O_RDONLY | O_CLOEXEC));
  auto after = history_->PutChunks(fd.get(), 3 * kPart);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0], before[0]);
  EXPECT_NE((*after)[1], before[1]);
  EXPECT_EQ((*after)[2], before[2]);
  EXPECT_EQ(ChunkFilesOnDisk(), std::make_pair(uint64_t{4}, 4 * kPart));  // one part more
  EXPECT_EQ(history_->counters().chunk_bytes_uploaded, 4 * kPart);
}

TEST_F(HistoryStoreTest, SegmentsAreListedInSeqOrderAndImmutable) {
  std::vector<Segment> segs = {
      MakeDelta({FilePut(3, "a", "1")}, 0, 1, 5), MakeDelta({FilePut(9, "b", "2")}, 0, 6, 20),
      MakeDelta({Delete(500, "a")}, 0, 21, 1000), MakeDelta({}, 0, 1001, 1001)};
  for (int i : {2, 0, 3, 1}) ASSERT_TRUE(history_->AppendSegment(segs[i]).ok());
  // Not ours: ignored by the listing.
  ASSERT_TRUE(store_->Put(".scribefs/timeline/0/notes.txt", Payload::FromMemory("x"), {}).ok());
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->deltas.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(list->deltas[i].id, segs[i].header.id());
  EXPECT_TRUE(list->bases.empty());
  // The same bytes again: a retry, fine. Other bytes under the same key: refused.
  EXPECT_TRUE(history_->AppendSegment(segs[1]).ok());
  Segment other = MakeDelta({FilePut(9, "b", "other")}, 0, 6, 20);
  auto clash = history_->AppendSegment(other);
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), EEXIST);
  auto kept = history_->LoadSegment(list->deltas[1]);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, segs[1]);
  // An invalid segment is never written.
  Segment bad = segs[0];
  bad.entries[0].path = "../escape";
  EXPECT_FALSE(history_->AppendSegment(bad).ok());
}

TEST_F(HistoryStoreTest, SegmentWhoseHeaderDisagreesWithItsKeyIsRefused) {
  auto bytes = EncodeSegment(MakeDelta({FilePut(3, "a", "1")}, 0, 1, 5)).value();
  const std::string lying = SegmentKey({SegmentKind::kDelta, 0, 1, 9});
  ASSERT_TRUE(store_->Put(lying, Payload::FromMemory(bytes), {}).ok());
  auto timeline = history_->LoadTimeline();
  ASSERT_FALSE(timeline.ok());
  EXPECT_NE(timeline.status().message().find(lying), std::string::npos);
}

// A history of deltas with a base in the middle, written to the store.
struct Written {
  std::vector<Segment> deltas;
  Segment base;
};

Written WriteHistory(HistoryStore& history) {
  Written w;
  w.deltas.push_back(Delta({DirPut(1, "d"), FilePut(2, "d/a", "a1"), FilePut(3, "b", "b1")}));
  w.deltas.push_back(Delta({FilePut(4, "d/a", "a2"), Rename(5, "b", "d/b"), FilePut(6, "c", "")}));
  w.base = MakeBase(Replay(w.deltas), 6, 6000);
  w.deltas.push_back(Delta({Delete(7, "d"), FilePut(8, "e", "e1")}));
  w.deltas.push_back(Delta({FilePut(9, "e", "e2")}));
  for (const Segment& s : w.deltas) EXPECT_TRUE(history.AppendSegment(s).ok());
  EXPECT_TRUE(history.AppendSegment(w.base).ok());
  return w;
}

TEST_F(HistoryStoreTest, LoadTimelineStartsFromTheNewestBaseAtOrBeforeTheInstant) {
  Written w = WriteHistory(*history_);
  auto latest = history_->LoadTimeline();
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  ASSERT_EQ(latest->size(), 3u);  // the base, then the two deltas after it
  EXPECT_EQ((*latest)[0], w.base);
  EXPECT_EQ(States(Replay(*latest)), States(Replay(w.deltas)));
  for (uint64_t seq = 0; seq <= 10; ++seq) {
    auto t = history_->LoadTimeline(Instant::AtSeq(seq));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->empty() ? SegmentKind::kDelta : t->front().header.kind,
              seq >= 6 ? SegmentKind::kBase : SegmentKind::kDelta);
    EXPECT_EQ(States(Replay(*t, Instant::AtSeq(seq))),
              States(Replay(w.deltas, Instant::AtSeq(seq))))
        << seq;
  }
  for (int64_t time : {500, 2000, 5999, 6000, 7500, 100000}) {
    auto t = history_->LoadTimeline(Instant::AtTime(time));
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(!t->empty() && t->front().header.kind == SegmentKind::kBase, time >= 6000);
    EXPECT_EQ(States(Replay(*t, Instant::AtTime(time))),
              States(Replay(w.deltas, Instant::AtTime(time))))
        << time;
  }
}

TEST_F(HistoryStoreTest, AMissingSegmentIsAHoleNotASilentlyWrongTree) {
  Written w = WriteHistory(*history_);
  // The deltas cover 1-3, 4-6 | base at 6 | 7-8, 9-9. Lose 7-8.
  ASSERT_TRUE(store_->Delete(SegmentKey(w.deltas[2].header.id())).ok());
  auto latest = history_->LoadTimeline();
  ASSERT_FALSE(latest.ok());
  EXPECT_EQ(latest.status().code(), ENODATA);
  EXPECT_NE(latest.status().message().find("seqs 7..8"), std::string::npos)
      << latest.status().message();
  // Instants before the hole still load.
  auto at6 = history_->LoadTimeline(Instant::AtSeq(6));
  ASSERT_TRUE(at6.ok()) << at6.status().ToString();
  EXPECT_EQ(States(Replay(*at6, Instant::AtSeq(6))), States(Replay(w.deltas, Instant::AtSeq(6))));
  // Without the base, a hole between two deltas is caught the same way.
  ASSERT_TRUE(store_->Delete(SegmentKey(w.base.header.id())).ok());
  ASSERT_TRUE(store_->Delete(SegmentKey(w.deltas[1].header.id())).ok());
  auto at9 = history_->LoadTimeline(Instant::AtSeq(9));
  ASSERT_FALSE(at9.ok());
  EXPECT_NE(at9.status().message().find("seqs 4..8"), std::string::npos) << at9.status().message();
}

TEST_F(HistoryStoreTest, RestoreFileWritesTheContentAndCatchesACorruptedChunk) {
  const std::string content = Blob(kPart + 1000, 4);
  auto chunks = Store("src", content);
  ASSERT_EQ(chunks.size(), 2u);
  PathState state = FilePut(1, "src", "").state;
  state.chunks = chunks;
  state.size = content.size();
  {
    UniqueFd out(open(Local("restored").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    auto st = history_->RestoreFile(state, out.get());
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  EXPECT_EQ(ReadFile(Local("restored")), content);
  // One byte of the second chunk changes on the target.
  const std::string key = ChunkKey(chunks[1].sha256);
  {
    UniqueFd f(open(store_->PathOf(key).c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(f.valid());
    ASSERT_EQ(pwrite(f.get(), "!", 1, 10), 1);
  }
  UniqueFd out(open(Local("restored2").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  auto st = history_->RestoreFile(state, out.get());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), EIO);
  EXPECT_NE(st.message().find(key), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("damaged"), std::string::npos) << st.message();
  // A missing chunk: an error too.
  ASSERT_TRUE(store_->Delete(key).ok());
  EXPECT_FALSE(history_->RestoreFile(state, out.get()).ok());
}

std::vector<Segment> ManySmallDeltas(uint64_t* seq) {
  std::vector<Segment> out;
  std::mt19937 rng(7);
  for (int s = 0; s < 8; ++s) {
    std::vector<Entry> entries;
    for (int i = 0; i < 5; ++i) {
      ++*seq;
      const std::string path = "p" + std::to_string(rng() % 6);
      if (rng() % 4 == 0) {
        entries.push_back(Delete(*seq, path));
      } else if (rng() % 5 == 0) {
        entries.push_back(Rename(*seq, path, "q" + std::to_string(rng() % 3)));
      } else {
        entries.push_back(FilePut(*seq, path, "v" + std::to_string(*seq)));
      }
    }
    out.push_back(Delta(std::move(entries)));
  }
  return out;
}

TEST_F(HistoryStoreTest, CompactionKeepsTheSameHistory) {
  uint64_t seq = 0;
  auto deltas = ManySmallDeltas(&seq);
  for (const Segment& s : deltas) ASSERT_TRUE(history_->AppendSegment(s).ok());
  auto before = history_->LoadTimeline();
  ASSERT_TRUE(before.ok());
  auto result = history_->Compact(0);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->segments_read, 8u);
  EXPECT_EQ(result->segments_written, 1u);
  EXPECT_EQ(result->segments_deleted, 8u);
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->deltas.size(), 1u);
  EXPECT_EQ(list->deltas[0].id, (SegmentId{SegmentKind::kDelta, 1, 1, seq}));
  EXPECT_EQ(history_->Usage()->segment_objects, 1u);
  auto after = history_->LoadTimeline();
  ASSERT_TRUE(after.ok());
  for (uint64_t s = 0; s <= seq; ++s) {
    EXPECT_EQ(States(Replay(*after, Instant::AtSeq(s))), States(Replay(*before, Instant::AtSeq(s))))
        << s;
  }
  // More level-0 segments later, with a limit on entries per merged segment.
  uint64_t seq2 = seq;
  auto more = ManySmallDeltas(&seq2);
  for (const Segment& s : more) ASSERT_TRUE(history_->AppendSegment(s).ok());
  auto limited = history_->Compact(0, CompactOptions{.max_entries = 20});
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->segments_written, 2u);  // 8 segments of 5 entries, 4 per merged one
  auto all = history_->LoadTimeline();
  ASSERT_TRUE(all.ok());
  std::vector<Segment> truth = deltas;
  truth.insert(truth.end(), more.begin(), more.end());
  EXPECT_EQ(States(Replay(*all)), States(Replay(truth)));
}

// The recorder folds the timeline one segment at a time. A segment gone
// between the List and its Get (a compaction deleted it after writing what
// replaces it) makes it list again: `restart` comes first, so that a fold
// starts over instead of applying the first segments twice.
TEST_F(HistoryStoreTest, ForEachTimelineSegmentStartsOverWhenASegmentVanishes) {
  uint64_t seq = 0;
  auto deltas = ManySmallDeltas(&seq);
  for (const Segment& s : deltas) ASSERT_TRUE(history_->AppendSegment(s).ok());
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->deltas.size(), 8u);
  auto inner = LocalStore::Open(target_.path() + "/target");
  ASSERT_TRUE(inner.ok());
  FaultyStore faulty(std::move(inner).value());
  faulty.Inject("Get", StoreStatus(Status::Error(ENOENT, "NoSuchKey")), 1,
                FaultyStore::Fault::kError, list->deltas[3].key);
  HistoryStore reader(faulty);
  int restarts = 0;
  std::vector<uint64_t> visited;  // first_seq of each segment handed over
  DigestReplayer fold;
  StoreStatus s = reader.ForEachTimelineSegment(
      Instant::Latest(),
      [&] {
        ++restarts;
        fold = {};
      },
      [&](Segment&& seg) {
        visited.push_back(seg.header.first_seq);
        for (const Entry& e : seg.entries) fold.Apply(e);
      });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(restarts, 2);
  std::vector<uint64_t> want;
  for (size_t i = 0; i < 3; ++i) want.push_back(deltas[i].header.first_seq);  // then the Get fails
  for (const Segment& d : deltas) want.push_back(d.header.first_seq);
  EXPECT_EQ(visited, want);
  std::map<std::string, StateDigest> truth;
  for (const auto& [path, state] : States(Replay(deltas))) truth.emplace(path, DigestOf(state));
  EXPECT_EQ(fold.tree().ToMap(), truth);
  // A segment that stays gone (pruned for good) fails after a few lists.
  faulty.Inject("Get", StoreStatus(Status::Error(ENOENT, "NoSuchKey")), 100,
                FaultyStore::Fault::kError, list->deltas[3].key);
  restarts = 0;
  s = reader.ForEachTimelineSegment(
      Instant::Latest(), [&] { ++restarts; }, [](Segment&&) {});
  EXPECT_TRUE(s.not_found()) << s.ToString();
  EXPECT_EQ(restarts, 5);
}

TEST_F(HistoryStoreTest, CrashBetweenTheCompactedWriteAndTheDeletesStillLoads) {
  uint64_t seq = 0;
  auto deltas = ManySmallDeltas(&seq);
  for (const Segment& s : deltas) ASSERT_TRUE(history_->AppendSegment(s).ok());
  // Only the first half of a compaction: the merged segment is written, the
  // inputs are still there.
  auto half = history_->Compact(0, CompactOptions{.delete_inputs = false});
  ASSERT_TRUE(half.ok());
  EXPECT_EQ(half->segments_deleted, 0u);
  EXPECT_EQ(history_->Usage()->segment_objects, 9u);
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->deltas.size(), 1u);  // the inputs are hidden
  EXPECT_EQ(list->deltas[0].id.level, 1);
  auto timeline = history_->LoadTimeline();
  ASSERT_TRUE(timeline.ok());
  EXPECT_EQ(timeline->size(), 1u);
  for (uint64_t s = 0; s <= seq; ++s) {
    EXPECT_EQ(States(Replay(*timeline, Instant::AtSeq(s))),
              States(Replay(deltas, Instant::AtSeq(s))));
  }
  // Compacting again finds nothing left to merge at level 0, and deletes
  // the leftovers.
  auto again = history_->Compact(0);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_written, 0u);
  EXPECT_EQ(again->segments_deleted, 8u);
  EXPECT_EQ(history_->Usage()->segment_objects, 1u);
  auto reloaded = history_->LoadTimeline();
  ASSERT_TRUE(reloaded.ok());
  EXPECT_EQ(States(Replay(*reloaded)), States(Replay(deltas)));
}

// A prune deletes the deltas between two kept points, leaving a seq gap
// between level-0 deltas. Compaction must not merge across it: a merged delta
// would claim the missing seqs, and a restore inside the gap would give a
// wrong tree instead of failing with "timeline hole".
TEST_F(HistoryStoreTest, CompactionDoesNotMergeAcrossASeqGap) {
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(1, "a", "1"), FilePut(2, "b", "2")})).ok());
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(3, "a", "3")})).ok());
  // seqs 4..9 are missing
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(10, "c", "10")})).ok());
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(11, "c", "11")})).ok());
  auto result = history_->Compact(0);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->segments_written, 2u);
  auto list = history_->ListSegments();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->deltas.size(), 2u);
  EXPECT_EQ(list->deltas[0].id, (SegmentId{SegmentKind::kDelta, 1, 1, 3}));
  EXPECT_EQ(list->deltas[1].id, (SegmentId{SegmentKind::kDelta, 1, 10, 11}));
  auto inside = history_->LoadTimeline(Instant::AtSeq(10));
  ASSERT_FALSE(inside.ok());
  EXPECT_EQ(inside.status().code(), ENODATA) << inside.status().ToString();
}

// A seq inside a hole: the tree at it is unknown (the missing segment may
// have changed anything), so it fails rather than give the tree before it.
TEST_F(HistoryStoreTest, ASeqInsideAHoleFailsInsteadOfGivingTheTreeBeforeIt) {
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(1, "a", "1"), FilePut(3, "a", "3")})).ok());
  ASSERT_TRUE(history_->AppendSegment(Delta({FilePut(10, "a", "10")})).ok());
  for (uint64_t seq : {1, 3}) EXPECT_TRUE(history_->LoadTimeline(Instant::AtSeq(seq)).ok()) << seq;
  for (uint64_t seq : {4, 7, 9, 10, 20}) {
    auto t = history_->LoadTimeline(Instant::AtSeq(seq));
    ASSERT_FALSE(t.ok()) << seq;
    EXPECT_EQ(t.status().code(), ENODATA) << t.status().ToString();
  }
}

}  // namespace
}  // namespace scribefs::history
