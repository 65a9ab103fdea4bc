// HistoryRecorder: the replicator's writer of the target's history (issue 11,
// docs/history.md): chunks of the files it stores, and level-0 timeline
// segments of the entries it settles.
//
// The replicator hands over, for every path it stored, the entries that
// describe what it stored (a put of the state it read, a delete, a rename),
// each with the journal seq and time it stands for, BEFORE it marks the
// records done. The recorder keeps them in arrival order (the order the
// target changed in) and, every `interval`, every `max_entries` entries, at
// a flush (StoreThrough) and at Stop, closes a segment:
//
//   1. the watermark W: every journal record <= W is settled (done, skipped;
//      not pending, uploading or failed), so every entry for a seq <= W is
//      in the buffer (a failed record holds W back until it is stored);
//   2. the buffered entries are compared with the history's tree as the
//      stored segments leave it (loaded from the target at start; a digest
//      of each path's state, history::DigestTree): an entry
//      that changes nothing (the put of an unchanged state, the delete of an
//      absent path, the second path's half of a rename) is dropped;
//   3. the entries left get distinct seqs in (last stored, W], in arrival
//      order, each at most the seq it stands for where there is room
//      (AssignSeqs); ones that do not fit wait for the next segment;
//   4. the segment [last stored + 1, W] is written (the exact same segment
//      again after a failure, so that no two segments overlap), then W is
//      noted as this target's in the journal (NoteHistoryStoredThrough:
//      meta `history_stored_through` is the least over the targets).
//
// At start (Load, on the recorder's thread, retried while the target is
// down): the stored segments are read (for the tree of step 2 and the last
// seq L stored); records done above L (an earlier daemon stopped or died
// before their segment) are requeued, so their paths are stored again and
// yield entries, and the next segment starts at L + 1.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "history/history_store.h"
#include "history/replay.h"
#include "history/segment.h"
#include "journal/journal.h"
#include "journal/targets.h"
#include "uploader/object_store.h"

namespace scribefs {

// One entry the replicator stored. entry.seq is the journal seq it stands
// for (the last record the upload covered), entry.time_ns that record's time.
struct HistoryEffect {
  history::Entry entry;
  // A rename entry: the rename record's seq. Both paths of a rename hold
  // that record; the first of them stored emits the rename, the other's is
  // dropped.
  int64_t rename_seq = 0;
  // A directory's put whose pass stored everything below it (a directory
  // renamed here: its children, as listed then, in the same Add): the paths
  // it stored below it. History may still hold other paths below it (moved
  // along by the rename, but deleted or moved away before the pass, whose
  // own passes come later and would find them gone); they are deleted with
  // this entry, so that the subtree is what the pass stored.
  std::shared_ptr<const std::set<std::string>> subtree;
};

struct HistoryRecorderOptions {
  // The target's id in the journal (ReplicatorOptions::target).
  int64_t target = kFirstTarget;
  std::chrono::milliseconds interval{5000};
  size_t max_entries = 10000;
  uint64_t part_size = history::kDefaultPartSize;
  // The daemon's --prune-grace: known chunks are trusted for a quarter of
  // it, and a chunk found stored but older than half of it is stored again
  // (history_store.h, ChunkNeedsRefresh), so that neither the daemon's prune
  // nor a `scribectl prune` with at most this grace deletes a chunk a new
  // entry references.
  int64_t prune_grace_ns = history::kDefaultChunkGraceNs;
  // A load or segment write failed with a retryable error and will be tried
  // again (the replicator counts it with its retries, by cause). Called once
  // per failed attempt, before a later attempt can succeed. A permanent
  // error (a 403, say) is not a retry: it is shown in last_error and tried
  // again only every kPermanentErrorBackoff or at a flush.
  std::function<void(const StoreStatus&)> retried;
  // Called when a flush's segment is stored after retries were counted: the
  // replicator notes its counters in the journal again (a note written
  // meanwhile by another thread may predate the last count).
  std::function<void()> counters_changed;
  // Niceness of the recorder's thread (ReplicatorOptions::nice).
  int nice = 0;
};

// After a permanent error (not retryable: wrong credentials, no bucket, a
// second writer), the next automatic try of a load or of a segment write.
inline constexpr std::chrono::minutes kPermanentErrorBackoff{5};

// For status --json and metrics.
struct HistoryStats {
  bool loaded = false;
  uint64_t stored_through_seq = 0;
  uint64_t buffered_entries = 0;
  uint64_t segments_written = 0;
  uint64_t chunks_uploaded = 0, chunk_bytes_uploaded = 0, chunks_already_stored = 0;
  uint64_t chunks_refreshed = 0;  // stored, but old: stored again (prune's grace)
  std::string last_error;
};

// ---- decisions (pure; unit-tested) ----

// Distinct, strictly increasing seqs for entries that stand for
// `preferred` (in arrival order) in a segment [lo, hi]: from the last one
// back, each gets its preferred seq, or one less than the next one's when
// that is lower; then, from the first one on, at least lo and one more
// than the previous one. Seqs above hi (a suffix) do not fit this segment.
// floors (one per entry, or empty): entry i gets a seq above floors[i].
std::vector<uint64_t> AssignSeqs(const std::vector<uint64_t>& preferred, uint64_t lo, uint64_t hi,
                                 const std::vector<uint64_t>& floors = {});

// The order of a segment's entries around checkpoint marks. Passes at a mark
// and live passes after it may arrive in either order (one path's passes
// at a later mark can finish while another's at an earlier mark are still
// to run), and AssignSeqs keeps arrival order by giving an entry that came
// first a seq below the next one's: an entry of a state after mark M would
// then stand at or below M, and `restore --checkpoint` would show a state
// from after the mark (CheckpointLoad). So every entry standing for a seq
// at or below a mark goes before every entry standing for a later one; the
// rest of arrival order is kept (stable); and each entry gets a seq above
// the last mark below the seq it stands for (floors).
struct MarkedOrder {
  std::vector<size_t> order;     // indices into preferred, in segment order
  std::vector<uint64_t> floors;  // per position of `order`: the last mark below its seq (0)
};
MarkedOrder OrderAtMarks(const std::vector<uint64_t>& preferred, const std::set<uint64_t>& marks);

// Whether `entry` changes the tree history holds (`tree`).
bool EntryChangesTree(const history::DigestTree& tree, const history::Entry& entry);

// The topmost paths below `dir` in `tree` that `kept` does not hold (each
// one's delete removes what is below it), for HistoryEffect::subtree.
std::vector<std::string> PathsToSweep(const history::DigestTree& tree, const std::string& dir,
                                      const std::set<std::string>& kept);

class HistoryRecorder {
 public:
  // `journal` and `store` must outlive the recorder. `requeued` is called
  // after Load requeued records (the replicator reads the journal again).
  HistoryRecorder(Journal* journal, ObjectStore* store, HistoryRecorderOptions options,
                  std::function<void()> requeued);
  ~HistoryRecorder();

  // Starts the thread that loads the history, then closes segments.
  void Start();
  // Stops it; writes a last segment up to the watermark if it can (once).
  void Stop();

  // Entries the replicator stored for one path (and what was below it),
  // before it marks the records done.
  void Add(std::vector<HistoryEffect> effects);
  // The journal seqs of the checkpoints' live captures (the replicator's
  // MarkedStates): segments order their entries around them (OrderAtMarks).
  // Asked at every Add and segment, and remembered until the history is
  // stored through them (a capture may be released before).
  void SetMarks(std::function<std::vector<int64_t>()> live_marks);

  // The chunks of `content` (a file's first bytes, or a frozen file at a
  // checkpoint mark through a PayloadSource), stored in the target.
  StoreResult<std::vector<history::ChunkRef>> PutChunks(const Payload& content);
  // Forgets the chunks known stored (the daemon's prune deleted some).
  void ForgetKnownChunks();

  // Returns once a stored segment covers `seq` (flush, pause points).
  // ETIMEDOUT at the deadline, with the last error; at once the error of a
  // permanent failure (of the load it asked for, or of its segment write).
  Status StoreThrough(int64_t seq, std::chrono::steady_clock::time_point deadline);

  HistoryStats stats();

 private:
  // Whether a failed load or segment write will be tried again (and so is
  // counted as a retry when the error is retryable).
  enum class Attempt { kRetried, kLast };

  void Loop();
  // Load and CloseSegment note a failure (NoteFailure) before they return.
  StoreStatus Load();
  StoreStatus LoadLocked();  // requires close_mu_
  // Builds (if none is waiting) and writes the next segment, when the
  // watermark is past the last stored seq.
  StoreStatus CloseSegment(Attempt attempt = Attempt::kRetried);
  StoreStatus CloseSegmentLocked();  // requires close_mu_
  // Counts a retryable failure (options_.retried) and sets last_error.
  // Called with close_mu_ held: a flush that stores the segment after this
  // failure returns only once the failure is counted.
  void NoteFailure(const StoreStatus& s, Attempt attempt);
  // A flush's segment is stored: counters noted again if retries were counted.
  void NoteStored();
  // The watermark: every record <= it is settled.
  Result<int64_t> Watermark();
  // Builds the segment [lo, w] from the buffer and the carried entries.
  // Requires mu_.
  std::optional<history::Segment> BuildSegment(uint64_t lo, uint64_t w);
  // The live marks (live_marks_, called without mu_).
  std::vector<int64_t> LiveMarks();
  // Adds the live marks to marks_. Requires mu_.
  void NoteMarks(const std::vector<int64_t>& live);

  Journal* const journal_;
  ObjectStore* const store_;
  const HistoryRecorderOptions options_;
  const std::function<void()> requeued_;
  history::KnownChunks known_;

  // Serializes Load and segment writes; taken before mu_.
  std::mutex close_mu_;
  std::unique_ptr<history::HistoryStore> writer_;  // used under close_mu_
  std::optional<history::Segment> unwritten_;      // built, not yet stored (close_mu_)

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool load_now_ = false;  // a flush waits for the load: try at once
  bool loaded_ = false;
  uint64_t load_failures_ = 0;
  Status load_error_;  // the last failed load's error when it was permanent
  // After a permanent error, automatic tries wait until then.
  std::chrono::steady_clock::time_point retry_after_;
  uint64_t stored_through_ = 0;          // last seq of the stored segments
  uint64_t first_seq_ = 0;               // an empty history: where its first segment starts
  std::vector<HistoryEffect> buffer_;    // arrival order
  std::vector<history::Entry> carried_;  // decided, did not fit the last segment
  std::function<std::vector<int64_t>()> live_marks_;  // set before Start
  std::set<uint64_t> marks_;                          // seen, not yet stored through
  // The history with every decided entry: per path only a digest of its
  // state (enough to tell whether an entry changes it), as it holds every
  // stored path.
  history::DigestReplayer tree_;
  uint64_t tree_seq_ = 0;                // synthetic seqs for tree_
  std::set<int64_t> renames_seen_;       // rename records already emitted
  int64_t last_time_ns_ = 0;             // entry times never step back
  std::chrono::steady_clock::time_point last_close_;
  HistoryStats stats_;
  std::atomic<uint64_t> chunks_uploaded_{0}, chunk_bytes_uploaded_{0}, chunks_already_stored_{0};
  std::atomic<uint64_t> chunks_refreshed_{0};
  std::atomic<bool> retries_unnoted_{false};  // counted since the last NoteStored
  std::thread thread_;
};

}  // namespace scribefs
