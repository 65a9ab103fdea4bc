// DirFdCache: a bounded cache of O_PATH descriptors of directories.
//
// Name operations (lookup, create, unlink, ...) work relative to the parent
// directory's descriptor. Opening it by path on every call costs a path walk
// and two syscalls; a cached descriptor also stays right when the directory is
// renamed (it names the directory, not the path). Bounded, so that the daemon's
// fd use stays far below the fd limit whatever the number of directories.
// Entries are keyed by (st_dev, st_ino); rmdir must Invalidate() its entry
// because the inode number can be reused. Thread-safe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "common/inode_key.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace scribefs {

class DirFdCache {
 public:
  using Fd = std::shared_ptr<const UniqueFd>;
  explicit DirFdCache(size_t capacity) : capacity_(capacity) {}

  // The cached descriptor for (dev, ino), or open() inserted and returned.
  Result<Fd> Get(dev_t dev, ino_t ino, const std::function<Result<UniqueFd>()>& open);
  // The cached descriptor for (dev, ino), or nullptr (opens nothing).
  Fd Peek(dev_t dev, ino_t ino);
  void Invalidate(dev_t dev, ino_t ino);
  size_t size();

 private:
  using Key = InodeKey;
  using KeyHash = InodeKeyHash;
  using Lru = std::list<std::pair<Key, Fd>>;

  const size_t capacity_;
  std::mutex mu_;
  Lru lru_;  // most recent first
  std::unordered_map<Key, Lru::iterator, KeyHash> map_;
};

}  // namespace scribefs
