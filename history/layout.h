// The history layout: where the timeline and its content live in a target.
// This module is the one owner of those keys; everyone else calls it.
//
//   .scribefs/chunks/<sha256[0:2]>/<sha256>      one chunk of file content,
//       named by the SHA-256 (lower-case hex) of its bytes: identical content
//       is stored once, and a chunk is never rewritten with other bytes.
//   .scribefs/timeline/<level>/<first_seq:020>-<last_seq:020>.jsonl.zst
//       an immutable delta segment of level 0..9 (0: as appended; compaction
//       merges consecutive segments of level L into one of level L+1).
//   .scribefs/timeline/base/<first_seq:020>-<last_seq:020>.jsonl.zst
//       a base segment: the whole tree state at last_seq.
// The seqs are zero-padded to 20 digits (every uint64 fits), so that a List
// of one level, which is in key order, is in seq order.
//
// Keys are relative to the target's prefix, like kCheckpointKeyPrefix.
// Plain functions over values; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace scribefs::history {

inline constexpr std::string_view kChunkKeyPrefix = ".scribefs/chunks/";
inline constexpr std::string_view kTimelineKeyPrefix = ".scribefs/timeline/";
inline constexpr std::string_view kSegmentSuffix = ".jsonl.zst";
inline constexpr std::string_view kBaseLevelName = "base";
// Delta levels are 0..kMaxLevel (one digit, so that they sort).
inline constexpr int kMaxLevel = 9;

enum class SegmentKind { kDelta, kBase };
std::string_view SegmentKindName(SegmentKind kind);  // "delta" | "base"

// 64 lower-case hex digits.
bool IsSha256Hex(std::string_view s);

// ".scribefs/chunks/ab/ab…"; `sha256_hex` must satisfy IsSha256Hex.
std::string ChunkKey(std::string_view sha256_hex);
// The SHA-256 a chunk key names; EINVAL for anything that is not exactly a
// key ChunkKey makes.
Result<std::string> ParseChunkKey(std::string_view key);

// Where a segment is and what it covers, as its key says.
struct SegmentId {
  SegmentKind kind = SegmentKind::kDelta;
  int level = 0;  // 0..kMaxLevel for deltas; 0 for bases
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;  // first_seq <= last_seq
  bool operator==(const SegmentId&) const = default;
};

std::string SegmentKey(const SegmentId& id);
// The List prefix of one delta level (".scribefs/timeline/3/") or of the bases.
std::string LevelPrefix(SegmentKind kind, int level);
// EINVAL (naming the key) unless `key` is exactly what SegmentKey makes for a
// valid id: known level, 20 digits each, first_seq <= last_seq, the suffix.
Result<SegmentId> ParseSegmentKey(std::string_view key);

}  // namespace scribefs::history
