#include "fs/inode_table.h"

#include <algorithm>

namespace scribefs {
namespace {
constexpr uint64_t kRootId = 1;  // FUSE_ROOT_ID
// Hard links beyond this many known names keep only the newest: paths stay
// usable, the table stays bounded.
constexpr size_t kMaxAliases = 8;
}  // namespace

TreeLock::TreeLock() {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&rw_, &attr);
  pthread_rwlockattr_destroy(&attr);
}
TreeLock::~TreeLock() { pthread_rwlock_destroy(&rw_); }

InodeTable::InodeTable(dev_t root_dev, ino_t root_ino)
    : root_(std::make_shared<Inode>(root_dev, root_ino, S_IFDIR)) {
  root_->nlookup = 1;  // the kernel never forgets the root
  map_.emplace(Key{root_dev, root_ino}, root_);
}

std::shared_ptr<Inode> InodeTable::Get(uint64_t fuse_id) {
  if (fuse_id == kRootId) return root_;
  if (fuse_id == 0) return nullptr;
  // Valid while the kernel holds a reference: the table keeps it alive.
  return reinterpret_cast<Inode*>(fuse_id)->shared_from_this();
}

uint64_t InodeTable::FuseId(const Inode* inode) const {
  return inode == root_.get() ? kRootId : reinterpret_cast<uint64_t>(inode);
}

std::shared_ptr<Inode> InodeTable::Reference(dev_t dev, ino_t ino, mode_t mode,
                                             const std::string& handle,
                                             const std::shared_ptr<Inode>& parent,
                                             const std::string& name) {
  std::shared_ptr<Inode> inode;
  {
    std::lock_guard lk(map_mu_);
    auto [it, inserted] = map_.try_emplace(Key{dev, ino});
    if (!inserted && it->second != root_) {
      bool nameless;
      {
        std::lock_guard nl(names_mu_);
        nameless = it->second->aliases.empty();
      }
      bool reborn = !handle.empty() && !it->second->handle.empty() && it->second->handle != handle;
      if (nameless || reborn || it->second->type != (mode & S_IFMT)) {
        // A dead file's object (see the header): keep it for the kernel's
        // references, if any, and start afresh.
        if (it->second->nlookup.load() > 0) detached_[it->second.get()] = it->second;
        inserted = true;
      }
    }
    if (inserted) it->second = std::make_shared<Inode>(dev, ino, mode, handle);
    inode = it->second;
    inode->nlookup.fetch_add(1);
  }
  if (inode != root_ && parent) {
    std::lock_guard lk(names_mu_);
    auto& al = inode->aliases;
    bool known = std::any_of(al.begin(), al.end(), [&](const Alias& a) {
      return a.parent == parent && a.name == name;
    });
    if (!known) {
      if (al.size() >= kMaxAliases) al.erase(al.begin());
      al.push_back({parent, name});
    }
  }
  return inode;
}

std::shared_ptr<Inode> InodeTable::Find(dev_t dev, ino_t ino) {
  std::lock_guard lk(map_mu_);
  auto it = map_.find(Key{dev, ino});
  return it == map_.end() ? nullptr : it->second;
}

void InodeTable::Forget(uint64_t fuse_id, uint64_t n) {
  if (fuse_id == kRootId || fuse_id == 0) return;
  Inode* inode = reinterpret_cast<Inode*>(fuse_id);
  std::vector<std::shared_ptr<Inode>> work;
  {
    std::lock_guard lk(map_mu_);
    uint64_t before = inode->nlookup.load();
    inode->nlookup.store(before > n ? before - n : 0);
    if (before > n) return;
    if (auto d = detached_.find(inode); d != detached_.end()) {
      // Replaced by a fresh object for a new file: only the kernel kept it.
      work.push_back(std::move(d->second));
      detached_.erase(d);
    } else {
      auto it = map_.find(Key{inode->dev, inode->ino});
      if (it == map_.end() || it->second.get() != inode) return;
      // Children still naming this directory keep it (and its place in the
      // map) so that a later lookup finds the same object and renames stay
      // coherent.
      if (it->second.use_count() > 1) return;
      work.push_back(std::move(it->second));
      map_.erase(it);
    }
  }
  // An erased inode releases its parents; a parent the kernel already forgot
  // and that nothing else names leaves the table too.
  while (!work.empty()) {
    std::shared_ptr<Inode> gone = std::move(work.back());
    work.pop_back();
    std::vector<std::shared_ptr<Inode>> parents;
    {
      std::lock_guard lk(names_mu_);
      for (Alias& a : gone->aliases) parents.push_back(std::move(a.parent));
      gone->aliases.clear();
    }
    gone.reset();
    for (auto& p : parents) {
      if (!p || p == root_) continue;
      std::lock_guard lk(map_mu_);
      if (p->nlookup.load() != 0) continue;
      auto it = map_.find(Key{p->dev, p->ino});
      // 2 = the map's reference + ours.
      if (it != map_.end() && it->second == p && p.use_count() == 2) {
        map_.erase(it);
        work.push_back(std::move(p));
      }
    }
  }
}

std::optional<std::string> InodeTable::PathOf(const Inode& inode) {
  if (&inode == root_.get()) return std::string();
  std::lock_guard lk(names_mu_);
  return PathOfLocked(inode);
}

std::optional<std::string> InodeTable::PathOfLocked(const Inode& inode) {
  if (&inode == root_.get()) return std::string();
  std::vector<const std::string*> parts;
  const Inode* cur = &inode;
  // Depth bound guards against a cycle that a bug could create.
  for (int depth = 0; cur != root_.get(); ++depth) {
    if (cur->aliases.empty() || depth > 4096) return std::nullopt;
    const Alias& a = cur->aliases.back();
    parts.push_back(&a.name);
    cur = a.parent.get();
  }
  std::string path;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!path.empty()) path += '/';
    path += **it;
  }
  return path;
}

std::vector<std::string> InodeTable::PathsOf(const Inode& inode) {
  if (&inode == root_.get()) return {std::string()};
  // One pass under names_mu_: called on every commit of a file's records,
  // where nearly every file has one name.
  std::lock_guard lk(names_mu_);
  std::vector<std::string> paths;
  paths.reserve(inode.aliases.size());
  for (auto it = inode.aliases.rbegin(); it != inode.aliases.rend(); ++it) {
    auto dir = PathOfLocked(*it->parent);
    if (dir) paths.push_back(dir->empty() ? it->name : *dir + "/" + it->name);
  }
  return paths;
}

std::optional<Alias> InodeTable::PrimaryAlias(const Inode& inode) {
  std::lock_guard lk(names_mu_);
  if (inode.aliases.empty()) return std::nullopt;
  return inode.aliases.back();
}

void InodeTable::AddAlias(Inode& inode, const std::shared_ptr<Inode>& parent,
                          const std::string& name) {
  std::lock_guard lk(names_mu_);
  auto& al = inode.aliases;
  for (const Alias& a : al)
    if (a.parent == parent && a.name == name) return;
  if (al.size() >= kMaxAliases) al.erase(al.begin());
  al.push_back({parent, name});
}

void InodeTable::RemoveAlias(Inode& inode, const Inode* parent, const std::string& name) {
  std::vector<Alias> dropped;  // released outside names_mu_ (may free inodes)
  {
    std::lock_guard lk(names_mu_);
    auto& al = inode.aliases;
    for (auto it = al.begin(); it != al.end();) {
      if (it->parent.get() == parent && it->name == name) {
        dropped.push_back(std::move(*it));
        it = al.erase(it);
      } else {
        ++it;
      }
    }
  }
}

void InodeTable::MoveAlias(Inode& inode, const Inode* old_parent, const std::string& old_name,
                           const std::shared_ptr<Inode>& new_parent, const std::string& new_name) {
  std::vector<Alias> dropped;
  {
    std::lock_guard lk(names_mu_);
    auto& al = inode.aliases;
    for (auto it = al.begin(); it != al.end();) {
      if ((it->parent.get() == old_parent && it->name == old_name) ||
          (it->parent == new_parent && it->name == new_name)) {
        dropped.push_back(std::move(*it));
        it = al.erase(it);
      } else {
        ++it;
      }
    }
    al.push_back({new_parent, new_name});  // newest name is the one paths use
  }
}

size_t InodeTable::detached() {
  std::lock_guard lk(map_mu_);
  return detached_.size();
}

size_t InodeTable::size() {
  std::lock_guard lk(map_mu_);
  return map_.size();
}

}  // namespace scribefs
