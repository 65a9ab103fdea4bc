// Replay: the tree at an instant, from timeline segments. Pure; the heart of
// restore --at. No I/O, thread-compatible.
//
// Rules (entries apply in seq order; see segment.h for what an entry is):
//   put     the path's state becomes the entry's. A put of anything but a
//           directory also removes what was below the path (a file cannot
//           have children; a stored "rm -r d; echo > d" may reach history as
//           the put of d before the deletes below it). A put under a parent
//           that history does not hold implies nothing about the parent: the
//           uploader stores directories as entries of their own.
//   delete  the path and everything below it are absent.
//   rename  the path and everything below it move to new_path, replacing
//           what was at new_path and below (POSIX rename). With `exchange`
//           (RENAME_EXCHANGE) the two subtrees swap. A source history does
//           not hold moves nothing but still clears the destination.
//   base    replaces the whole tree with the base's (state at its last_seq).
// An entry whose seq is not above the last one applied is skipped: it is
// already in a base, or in a segment that overlaps one already replayed.
//
// Instants: a seq S covers the entries with seq <= S. A time T covers the
// entries up to (not including) the first one stored after T: journal time
// may step back (the clock was set), and a prefix never mixes in a change
// made after one that is left out. A base counts when its last_seq <= S, or
// its last_time_ns <= T.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "history/digest_tree.h"
#include "history/segment.h"
#include "history/state_digest.h"

namespace scribefs::history {

// A path's state and when it was stored (the seq and time of the put, kept
// across renames: a base written from this tree says when each content was
// stored).
struct StoredState {
  PathState state;
  uint64_t seq = 0;
  int64_t time_ns = 0;
  static StoredState Of(const Entry& put) { return {put.state, put.seq, put.time_ns}; }
};
using Tree = std::map<std::string, StoredState>;

struct Instant {
  enum class Kind { kLatest, kSeq, kTime };
  Kind kind = Kind::kLatest;
  uint64_t seq = 0;
  int64_t time_ns = 0;
  static Instant Latest() { return {}; }
  static Instant AtSeq(uint64_t seq) { return {Kind::kSeq, seq, 0}; }
  static Instant AtTime(int64_t time_ns) { return {Kind::kTime, 0, time_ns}; }
  // Whether an entry (or a base ending) at seq / time_ns is within the instant.
  bool Covers(uint64_t entry_seq, int64_t entry_time_ns) const;
};

// Applies entries one at a time to a tree of Value: StoredState in a
// std::map (restore, prune), or StateDigest in a DigestTree (the uploader's
// recorder). Value::Of(put) is what a put leaves at its path.
template <class Value, class TreeT = std::map<std::string, Value>>
class BasicReplayer {
 public:
  using TreeType = TreeT;
  // The tree becomes the base's; entries up to its last_seq are then skipped.
  void ApplyBase(const Segment& base);
  // False when skipped (seq not above the last applied).
  bool Apply(const Entry& entry);
  const TreeType& tree() const { return tree_; }
  // Gives back the tree's spare room (a DigestTree rebuilds its array; after
  // a load).
  void Compact();
  TreeType&& TakeTree() && { return std::move(tree_); }
  // The seq of the last entry (or base) applied; 0 before any.
  uint64_t applied_seq() const { return applied_seq_; }

 private:
  void Put(const Entry& e);
  void Remove(const std::string& path);
  void Rename(const Entry& e);

  TreeType tree_;
  uint64_t applied_seq_ = 0;
  bool any_applied_ = false;
};
extern template class BasicReplayer<StoredState>;
extern template class BasicReplayer<StateDigest, DigestTree>;
using Replayer = BasicReplayer<StoredState>;
using DigestReplayer = BasicReplayer<StateDigest, DigestTree>;

// The tree at `at`, replaying `segments` in order (bases and deltas, as
// HistoryStore::LoadTimeline returns them: ordered by seq).
Tree Replay(const std::vector<Segment>& segments, const Instant& at = Instant::Latest());

// One version of a path: its state from `seq` on (nullopt: absent).
struct Version {
  uint64_t seq = 0;
  int64_t time_ns = 0;
  std::optional<PathState> state;
};
// Every change of `path`'s state over `segments`, in order; the first version
// is the first time history holds the path. A path is its name: a rename
// shows as the old name's end (absent) and the new name's start; following a
// file across renames is left to the caller (the entries say where it went).
std::vector<Version> HistoryOf(const std::vector<Segment>& segments, const std::string& path);

// A base segment holding `tree` as the state at seq `last_seq`, time
// `time_ns` (first_seq: the oldest entry's seq, or last_seq when empty).
Segment MakeBase(const Tree& tree, uint64_t last_seq, int64_t time_ns);

// The states only (what a restore writes), for comparing trees.
std::map<std::string, PathState> States(const Tree& tree);

}  // namespace scribefs::history
