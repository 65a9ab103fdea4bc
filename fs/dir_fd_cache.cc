#include "fs/dir_fd_cache.h"

namespace scribefs {

Result<DirFdCache::Fd> DirFdCache::Get(dev_t dev, ino_t ino,
                                       const std::function<Result<UniqueFd>()>& open) {
  Key key{dev, ino};
  {
    std::lock_guard lk(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  auto fd = open();
  if (!fd.ok()) return fd.status();
  Fd shared = std::make_shared<const UniqueFd>(std::move(fd.value()));
  if (capacity_ == 0) return shared;
  Fd evicted;  // closed outside the lock (if no user holds it)
  std::lock_guard lk(mu_);
  auto it = map_.find(key);
  if (it != map_.end()) return it->second->second;  // another thread won the race
  lru_.emplace_front(key, shared);
  map_[key] = lru_.begin();
  if (lru_.size() > capacity_) {
    evicted = std::move(lru_.back().second);
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return shared;
}

DirFdCache::Fd DirFdCache::Peek(dev_t dev, ino_t ino) {
  std::lock_guard lk(mu_);
  auto it = map_.find(Key{dev, ino});
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void DirFdCache::Invalidate(dev_t dev, ino_t ino) {
  Fd evicted;
  std::lock_guard lk(mu_);
  auto it = map_.find(Key{dev, ino});
  if (it == map_.end()) return;
  evicted = std::move(it->second->second);
  lru_.erase(it->second);
  map_.erase(it);
}

size_t DirFdCache::size() {
  std::lock_guard lk(mu_);
  return map_.size();
}

}  // namespace scribefs
