// HistoryStore: writes and reads a target's history (chunks and timeline
// segments, history/layout.h) through an ObjectStore. The one module that
// does I/O on those keys; the formats are segment.h's, the rules replay.h's.
//
// Immutability: a chunk key names its content, so a chunk that exists is
// never uploaded again; a segment key is written once (AppendSegment fails
// if the key holds other bytes). Nothing is overwritten, so a reader never
// sees a half-replaced object, and a crash at any point leaves at worst an
// unreferenced chunk or a duplicate segment (which ListSegments hides).
//
// One writer per target at a time (the daemon that owns the mount); readers
// any number. Thread-compatible: one thread uses an instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "history/chunker.h"
#include "history/layout.h"
#include "history/replay.h"
#include "history/segment.h"
#include "uploader/object_store.h"

namespace scribefs::history {

// The grace a prune gives unreferenced chunks unless told otherwise
// (--prune-grace).
inline constexpr int64_t kDefaultChunkGraceNs = 3600LL * 1'000'000'000;

struct HistoryOptions {
  uint64_t part_size = kDefaultPartSize;
  // The --prune-grace of the prunes PutChunks must be safe against: a chunk
  // it finds stored but older than half of it is stored again (see
  // ChunkNeedsRefresh).
  int64_t prune_grace_ns = kDefaultChunkGraceNs;
  DecodeLimits limits;
  // A segment object larger than this is not even fetched (hostile target).
  uint64_t max_segment_object = 64ull << 20;
};

// A segment as listed: where it is and how big.
struct SegmentRef {
  SegmentId id;
  std::string key;
  uint64_t size = 0;  // compressed bytes
};

struct SegmentList {
  std::vector<SegmentRef> bases;    // by last_seq
  std::vector<SegmentRef> deltas;   // by first_seq; without those a higher level covers
  std::vector<SegmentRef> covered;  // those: left over by compaction, safe to delete
};

// A chunk as listed.
struct ChunkInfo {
  std::string sha256;
  uint64_t size = 0;
  int64_t mtime = 0;  // the server's Last-Modified, unix seconds; 0 if unknown
};

// What the target holds under .scribefs/ for history.
struct HistoryUsage {
  uint64_t chunk_objects = 0, chunk_bytes = 0;
  uint64_t segment_objects = 0, segment_bytes = 0;
};

// What this instance did.
struct HistoryCounters {
  uint64_t chunks_uploaded = 0, chunk_bytes_uploaded = 0;  // refreshes included
  uint64_t chunks_already_stored = 0;
  // Found stored but older than half the grace: stored again.
  uint64_t chunks_refreshed = 0;
  uint64_t segments_written = 0, segment_bytes_written = 0;
};

struct CompactOptions {
  // At most this many entries per compacted segment (a run is split).
  uint64_t max_entries = 100'000;
  // False leaves the inputs in place: what a crash between the write of the
  // compacted segment and the deletes leaves (for tests).
  bool delete_inputs = true;
};

struct CompactResult {
  uint64_t segments_read = 0, segments_written = 0, segments_deleted = 0;
};

// ---- deduplicating against stored chunks (docs/history.md, "Chunks and
// prune"); pure decisions, unit-tested ----
//
// A prune deletes a chunk no retained segment references once its
// Last-Modified is at least the grace old. A writer that finds a chunk
// stored and references it again (its segment comes seconds later) must
// therefore only rely on a chunk that is young: one older than half the
// grace is stored again, which makes it young (the same bytes under the same
// name), so a prune running at that moment cannot delete it before the
// writer's segment is written. And what the writer learned stays true for a
// quarter of the grace at most: after that a chunk is asked for again (a
// prune may have deleted it meanwhile, as unreferenced and older than the
// grace).

// Whether a stored chunk whose Last-Modified is `last_modified_s` (unix
// seconds; 0 unknown) must be stored again before a new entry references it
// at `now_ns`: older than half of `grace_ns`, or of unknown age.
bool ChunkNeedsRefresh(int64_t last_modified_s, int64_t now_ns, int64_t grace_ns);

// How long an entry of KnownChunks is trusted: a quarter of `grace_ns`.
std::chrono::nanoseconds KnownChunkTtl(int64_t grace_ns);

// The names of chunks known to be stored, shared by the threads that call
// PutChunks (one HistoryStore each): a chunk in the set is not asked for
// with a HEAD again until its entry expires (`ttl` after it was inserted).
// Thread-safe.
class KnownChunks {
 public:
  using Clock = std::chrono::steady_clock;
  explicit KnownChunks(Clock::duration ttl = Clock::duration::max()) : ttl_(ttl) {}

  bool Contains(const std::string& sha256, Clock::time_point now = Clock::now()) const;
  void Insert(const std::string& sha256, Clock::time_point now = Clock::now());
  // Forgets every chunk (a prune deleted some).
  void Clear();
  size_t size() const;

 private:
  mutable std::mutex mu_;
  const Clock::duration ttl_;
  std::unordered_map<std::string, Clock::time_point> expires_;  // GUARDED_BY(mu_)
  size_t inserts_ = 0;                                          // GUARDED_BY(mu_)
};

class HistoryStore {
 public:
  // `store` must outlive this object.
  explicit HistoryStore(ObjectStore& store, HistoryOptions options = {});

  // Chunks the first `size` bytes of `fd` and uploads the chunks the target
  // does not hold yet (HEAD first, unless `known` says it is stored; stored
  // ones are added to `known`), and again those it holds with a
  // Last-Modified older than half of options.prune_grace_ns. Each part is read once and the bytes
  // hashed are the bytes sent, so a chunk always matches its name; a file that shrinks while it is
  // read fails with EAGAIN (retryable). A file written to during the call may mix old and new
  // parts: the caller checks that it did not change (as the replicator does around a mirror
  // upload).
  StoreResult<std::vector<ChunkRef>> PutChunks(int fd, uint64_t size,
                                               std::set<std::string>* known = nullptr);
  // The same with a set shared by threads.
  StoreResult<std::vector<ChunkRef>> PutChunks(int fd, uint64_t size, KnownChunks* known);
  // The same over a file range or a source (Payload::FromSource: a frozen
  // file at a checkpoint mark); the payload's size is the file's.
  StoreResult<std::vector<ChunkRef>> PutChunks(const Payload& content, KnownChunks* known);

  // Writes a validated segment under its key. Appending the same bytes again
  // succeeds (a retry); other bytes under the key fail with EEXIST.
  StoreResult<SegmentRef> AppendSegment(const Segment& segment);

  // Every base and delta segment, in seq order. Keys under .scribefs/timeline/
  // that do not parse are ignored (not ours). A delta whose range lies within
  // one of a higher level is left out (compaction wrote the higher one and
  // has not deleted it yet, or crashed before it could).
  StoreResult<SegmentList> ListSegments();

  // Fetches and decodes one segment; its header must agree with its key.
  StoreResult<Segment> LoadSegment(const SegmentRef& ref);
  // Only its header line (a ranged read of the first block).
  StoreResult<SegmentHeader> LoadSegmentHeader(const SegmentRef& ref);

  // The segments Replay needs for `at`: the newest base at or before it (if
  // any), then the deltas after that base up to the instant. Consecutive
  // deltas must cover contiguous seq ranges (and the first one after a base
  // must start at most one past it): a hole fails with ENODATA naming the
  // missing seqs, since replay across a lost segment would give a wrong tree.
  // Before the first segment there is no history, not a hole (an empty
  // tree); but before the oldest base with no delta reaching back before it
  // (prune deleted what was there) fails with ENODATA.
  // A segment that vanishes between the List and its Get (a compaction or a
  // prune deleted it after writing what replaces it) makes it list again, up
  // to a few times.
  StoreResult<std::vector<Segment>> LoadTimeline(const Instant& at = Instant::Latest());
  // The same segments one at a time, for a caller that folds them (a replay
  // of every stored path then holds one decoded segment, not all of them):
  // `restart` is called before each attempt (a List that raced a compaction
  // is tried again, and `visit` then sees the segments from the first one
  // again).
  StoreStatus ForEachTimelineSegment(const Instant& at, const std::function<void()>& restart,
                                     const std::function<void(Segment&&)>& visit);

  // Writes the content of a file state to `fd` (at offset 0, with pwrite),
  // fetching each chunk and checking its size and SHA-256 before any of its
  // bytes are written: a corrupted chunk fails with EIO naming its key.
  StoreStatus RestoreFile(const PathState& state, int fd);

  // Merges each run of consecutive level-`level` deltas (two or more, not
  // interrupted by another level or by a seq gap) into one segment of
  // level+1, written
  // first; the inputs are deleted after. Level-`level` deltas that a higher
  // level already covers (a compaction that crashed before its deletes) are
  // deleted too.
  StoreResult<CompactResult> Compact(int level, const CompactOptions& options = {});

  // Every chunk the target holds (keys that are not exactly a chunk key are
  // not ours and are skipped), in key order; `fn` returns false to stop.
  StoreStatus ListChunks(const std::function<bool(const ChunkInfo&)>& fn);
  // Deletes chunks by SHA-256 (prune: only chunks no retained segment
  // references). Deleting one that is gone succeeds.
  StoreStatus DeleteChunks(const std::vector<std::string>& sha256s);
  // Deletes segments (prune, after the bases that replace them are written).
  StoreStatus DeleteSegments(const std::vector<SegmentRef>& refs);

  StoreResult<HistoryUsage> Usage();
  const HistoryCounters& counters() const { return counters_; }

 private:
  // PutChunks over any set with Contains/Insert (or none).
  template <typename Known>
  StoreResult<std::vector<ChunkRef>> PutChunksImpl(const Payload& content, Known* known);
  enum class ChunkCheck { kMissing, kStored, kStale };
  StoreResult<ChunkCheck> CheckChunk(const std::string& sha256, uint64_t size);
  StoreResult<SegmentRef> WriteMerged(const std::vector<Segment>& run, int level);
  // The newest base at or before `at`, if any.
  StoreResult<std::optional<SegmentRef>> ChooseBase(const SegmentList& list, const Instant& at);
  StoreStatus VisitTimelineOnce(const Instant& at, const std::function<void(Segment&&)>& visit);
  StoreStatus FlushGroup(std::vector<Segment>& group, std::vector<std::string>& keys, int level,
                         const CompactOptions& options, CompactResult* result);

  ObjectStore& store_;
  HistoryOptions options_;
  HistoryCounters counters_;
};

// One segment of `level` holding the entries of `run` (consecutive deltas,
// in seq order), covering their whole seq range.
Segment MergeSegments(const std::vector<Segment>& run, int level);

}  // namespace scribefs::history
