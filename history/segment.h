// Timeline entries and segments: the one owner of the segment format.
//
// An entry is the state a path was STORED with (what the uploader read and
// uploaded), not an operation to replay blindly:
//   put    - `path` now has `state` (type, size, mode, owner, mtime, content)
//   delete - `path` is absent, and so is everything below it
//   rename - `path` (and everything below it) moved to `new_path`, replacing
//            what was there; with `exchange`, the two swapped (RENAME_EXCHANGE)
// `seq` is the journal seq of the last record the upload covered.
//
// A segment is zstd-compressed JSON lines: a header line
//   {"format":"scribefs-timeline","version":1,"kind":"delta"|"base","level":L,
//    "first_seq":A,"last_seq":B,"first_time_ns":T0,"last_time_ns":T1,"count":N}
// then N lines, one entry each:
//   {"seq":S,"time_ns":T,"op":"put","path":"a/b","type":"file","size":N,
//    "mode":M,"uid":U,"gid":G,"mtime_ns":MT,"chunks":[{"sha256":"..","size":N}]}
//   (a symlink has "target"; a device "rdev"; every line ends in '\n')
//   {"seq":S,"time_ns":T,"op":"delete","path":"a/b"}
//   {"seq":S,"time_ns":T,"op":"rename","path":"a","new_path":"b","exchange":false}
// Names that are not valid UTF-8 (a Linux file name is any bytes) are written
// as {"hex":"..."} instead of a string, so that every name round-trips exactly.
//
// Delta: seqs strictly increasing, all in [first_seq, last_seq] (the journal
// range the segment accounts for; seqs in it without an entry had nothing to
// store), first/last_time_ns the least and greatest entry time.
// Base: the whole tree at last_seq, one put per live path, by path (strictly
// increasing); each entry's seq (<= last_seq) is when that state was stored;
// last_time_ns is the time of the instant last_seq.
//
// DecodeSegment treats its input as HOSTILE (whoever can write the target
// wrote it): the decompressed size is bounded, every field is type-checked,
// every path validated. Errors are EINVAL, "segment KEY line N: why".
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "history/chunker.h"
#include "history/layout.h"

namespace scribefs::history {

inline constexpr std::string_view kSegmentFormat = "scribefs-timeline";
inline constexpr int kSegmentVersion = 1;

// The longest symlink target Linux stores (PATH_MAX - 1).
inline constexpr size_t kMaxSymlinkTarget = 4095;

enum class EntryOp { kPut, kDelete, kRename };
std::string_view EntryOpName(EntryOp op);

// What a path was stored as. `type` is one of object_layout.h's kType*
// names, and agrees with the file-type bits of `mode`.
struct PathState {
  std::string type;
  uint64_t size = 0;  // files: the sum of the chunk sizes
  uint32_t mode = 0;  // st_mode, type bits included
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_ns = 0;
  std::string target;            // symlinks only (non-empty)
  uint64_t rdev = 0;             // special files only
  std::vector<ChunkRef> chunks;  // files only
  bool operator==(const PathState&) const = default;
};

struct Entry {
  uint64_t seq = 0;
  int64_t time_ns = 0;  // >= 0
  EntryOp op = EntryOp::kPut;
  std::string path;
  std::string new_path;   // rename only
  bool exchange = false;  // rename only
  PathState state;        // put only
  bool operator==(const Entry&) const = default;
};

struct SegmentHeader {
  SegmentKind kind = SegmentKind::kDelta;
  int level = 0;
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  int64_t first_time_ns = 0;
  int64_t last_time_ns = 0;
  uint64_t count = 0;
  SegmentId id() const { return {kind, level, first_seq, last_seq}; }
  bool operator==(const SegmentHeader&) const = default;
};

struct Segment {
  SegmentHeader header;
  std::vector<Entry> entries;
  bool operator==(const Segment&) const = default;
};

struct DecodeLimits {
  // Decompressed bytes a segment may have; a zstd bomb fails at this size.
  uint64_t max_decompressed = 256ull << 20;
};

// A path as history stores it: relative, not empty, no leading or trailing
// '/', no empty, "." or ".." component, no NUL, not under ".scribefs".
// EINVAL with the reason.
Status ValidatePath(std::string_view path);

// Every rule above, for a segment about to be written or just read.
Status ValidateSegment(const Segment& segment);

// A delta of `entries` (in seq order) at `level` accounting for journal seqs
// [first_seq, last_seq]; the times and count come from the entries.
Segment MakeDelta(std::vector<Entry> entries, int level, uint64_t first_seq, uint64_t last_seq);

// The bytes of a segment (validated first: an invalid one is never written).
Result<std::string> EncodeSegment(const Segment& segment);
// `what` (the key) names the segment in errors.
Result<Segment> DecodeSegment(std::string_view compressed, const std::string& what,
                              const DecodeLimits& limits = {});
// Only the header line (decompresses no further than its end).
Result<SegmentHeader> DecodeSegmentHeader(std::string_view compressed, const std::string& what,
                                          const DecodeLimits& limits = {});

}  // namespace scribefs::history
