// Record: one row of the journal (see README "Journal schema").
//
// A record describes one change that reached (or was about to reach) the
// backing directory through the mount, or a control event (pause, resume,
// checkpoint). Paths are relative to DATADIR without a leading slash; "" is
// DATADIR itself. A plain value type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/byte_range.h"

namespace scribefs {

enum class Op {
  kCreate, kMkdir, kMknod, kSymlink, kLink, kWrite, kTruncate, kSetattr, kSetxattr,
  kRemovexattr, kRename, kUnlink, kRmdir, kClose, kFsync, kPause, kResume, kCheckpoint,
  kReconcile,
};

std::string_view OpName(Op op);
std::optional<Op> ParseOp(std::string_view name);
// Every op name, in enum order (for --help and validation).
const std::vector<std::string_view>& AllOpNames();

// Upload states. "skipped": the local operation failed after its intent was
// recorded, so there is nothing to upload; "done" is also used for control
// events, which need no upload.
inline constexpr std::string_view kStatePending = "pending";
inline constexpr std::string_view kStateUploading = "uploading";
inline constexpr std::string_view kStateDone = "done";
inline constexpr std::string_view kStateFailed = "failed";
inline constexpr std::string_view kStateSkipped = "skipped";
bool IsValidState(std::string_view s);

struct Record {
  int64_t seq = 0;      // assigned by the journal when queued for commit
  int64_t time_ns = 0;  // wall clock, ns since the epoch; filled on commit when 0
  Op op = Op::kWrite;
  std::string path;
  std::optional<std::string> new_path;  // rename/link: the destination
  std::vector<ByteRange> ranges;        // write: the byte ranges written
  std::optional<int64_t> size;          // truncate/close/create: file size
  std::optional<uint32_t> mode;         // st_mode incl. file type where known
  uint32_t uid = 0, gid = 0;            // of the calling process
  int32_t pid = 0;
  std::optional<int64_t> flags;         // rename flags, open flags, setattr mask...
  std::string detail;                   // op-specific JSON object, or empty
  std::string state = std::string(kStatePending);
  int64_t attempts = 0;
  std::optional<std::string> error;
  std::optional<std::string> etag, sha256, version_id;
  std::optional<int64_t> state_ns;
};

// "[[0,4096],[8192,512]]" <-> ranges. Parse returns nullopt on malformed text.
std::string RangesToJson(const std::vector<ByteRange>& ranges);
std::optional<std::vector<ByteRange>> RangesFromJson(std::string_view text);

int64_t NowNs();

}  // namespace scribefs
