#include "history/layout.h"

#include <cinttypes>
#include <cstdio>

namespace scribefs::history {
namespace {

constexpr size_t kSeqDigits = 20;

Status BadKey(std::string_view key, const char* why) {
  return Status::Error(EINVAL, "not a history key \"" + std::string(key) + "\": " + why);
}

// Exactly kSeqDigits decimal digits that fit in a uint64.
bool ParseSeq(std::string_view s, uint64_t* out) {
  if (s.size() != kSeqDigits) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

std::string PaddedSeq(uint64_t seq) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%020" PRIu64, seq);
  return buf;
}

}  // namespace

std::string_view SegmentKindName(SegmentKind kind) {
  return kind == SegmentKind::kBase ? "base" : "delta";
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ChunkKey(std::string_view sha256_hex) {
  std::string key(kChunkKeyPrefix);
  key.append(sha256_hex.substr(0, 2)).append("/").append(sha256_hex);
  return key;
}

Result<std::string> ParseChunkKey(std::string_view key) {
  if (!key.starts_with(kChunkKeyPrefix)) return BadKey(key, "not under .scribefs/chunks/");
  std::string_view rest = key.substr(kChunkKeyPrefix.size());
  if (rest.size() != 2 + 1 + 64 || rest[2] != '/') return BadKey(key, "not <xx>/<sha256>");
  std::string_view sha = rest.substr(3);
  if (!IsSha256Hex(sha)) return BadKey(key, "not a lower-case hex SHA-256");
  if (rest.substr(0, 2) != sha.substr(0, 2)) return BadKey(key, "wrong fan-out directory");
  return std::string(sha);
}

std::string LevelPrefix(SegmentKind kind, int level) {
  std::string p(kTimelineKeyPrefix);
  if (kind == SegmentKind::kBase) {
    p.append(kBaseLevelName);
  } else {
    p.append(std::to_string(level));
  }
  return p + "/";
}

std::string SegmentKey(const SegmentId& id) {
  return LevelPrefix(id.kind, id.level) + PaddedSeq(id.first_seq) + "-" + PaddedSeq(id.last_seq) +
         std::string(kSegmentSuffix);
}

Result<SegmentId> ParseSegmentKey(std::string_view key) {
  if (!key.starts_with(kTimelineKeyPrefix)) return BadKey(key, "not under .scribefs/timeline/");
  std::string_view rest = key.substr(kTimelineKeyPrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return BadKey(key, "no level");
  std::string_view level = rest.substr(0, slash);
  std::string_view name = rest.substr(slash + 1);
  SegmentId id;
  if (level == kBaseLevelName) {
    id.kind = SegmentKind::kBase;
  } else if (level.size() == 1 && level[0] >= '0' && level[0] <= '0' + kMaxLevel) {
    id.level = level[0] - '0';
  } else {
    return BadKey(key, "unknown level");
  }
  if (name.size() != 2 * kSeqDigits + 1 + kSegmentSuffix.size() || name[kSeqDigits] != '-' ||
      !name.ends_with(kSegmentSuffix)) {
    return BadKey(key, "not <first_seq:020>-<last_seq:020>.jsonl.zst");
  }
  if (!ParseSeq(name.substr(0, kSeqDigits), &id.first_seq) ||
      !ParseSeq(name.substr(kSeqDigits + 1, kSeqDigits), &id.last_seq)) {
    return BadKey(key, "a seq is not 20 decimal digits of a uint64");
  }
  if (id.first_seq > id.last_seq) return BadKey(key, "first_seq > last_seq");
  return id;
}

}  // namespace scribefs::history
