// MarkedStates: the captures of checkpoints and the state of their frozen
// paths at the mark, as the replicator sees them (issue 12).
//
// A checkpoint marks journal seq S and freezes the paths whose state at S is
// not yet stored; until the capture is released, a frozen path reads as it
// was at S even while writers change it. The replicator stores that state
// for the records <= S of a frozen path, and the live state afterwards.
//
// The uploader does not depend on the filesystem library: the daemon adapts
// its CowSpool (fs/cow_spool.h) to this interface (daemon/spool_states.h).
//
// Implementations are thread-safe.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "uploader/object_store.h"

namespace scribefs {

// A capture that is neither released nor abandoned.
struct MarkedCapture {
  std::string id;   // the checkpoint's name
  int64_t seq = 0;  // its mark S
  bool operator==(const MarkedCapture&) const = default;
};

// One frozen path as it was at the mark.
struct MarkedState {
  enum class Kind { kAbsent, kDirectory, kSymlink, kRegular, kOther };
  Kind kind = Kind::kAbsent;
  struct stat attr {};  // lstat at the mark (type, mode, uid, gid, size, times, rdev)
  std::string target;   // a symlink's
  // A regular file's bytes at the mark (attr.st_size of them). Reads fail
  // once the capture is abandoned or released.
  std::shared_ptr<const PayloadSource> content;
};

class MarkedStates {
 public:
  virtual ~MarkedStates() = default;
  // Cheap: false when no capture is live (then the others need not be asked).
  virtual bool AnyLive() const = 0;
  // The live captures, by ascending mark.
  virtual std::vector<MarkedCapture> LiveCaptures() const = 0;
  // Whether `path` (relative to DATADIR) is frozen in capture `id`.
  virtual bool Frozen(const std::string& id, const std::string& path) const = 0;
  // `path` as it was at the mark of capture `id`. Fails when the capture is
  // unknown or abandoned, or the path is not frozen in it.
  virtual Result<MarkedState> Open(const std::string& id, const std::string& path) const = 0;
};

}  // namespace scribefs
