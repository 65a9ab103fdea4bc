#include "fs/inode_table.h"

#include <algorithm>
#include <array>

namespace scribefs {
namespace {
constexpr uint64_t kRootId = 1;  // FUSE_ROOT_ID
// Hard links beyond this many known names keep only the newest: paths stay
// usable, the table stays bounded.
constexpr size_t kMaxAliases = 8;

// The locks that guard Inode::pins_ and Inode::active_, shared by stripes of
// inodes: a mutex in every Inode would cost 40 B on each of millions of
// cached inodes, and these are held only for a count and a pointer (never
// while taking another lock), so sharing one costs little.
constexpr size_t kActiveStripes = 64;
std::array<std::mutex, kActiveStripes> active_locks;
std::atomic<uint64_t> active_count{0};

std::mutex& ActiveLock(const Inode* inode) {
  // Fibonacci hashing of the address (its low bits are alignment).
  auto bits = reinterpret_cast<uintptr_t>(inode) >> 4;
  return active_locks[(bits * 0x9E3779B97F4A7C15ull) >> 58];
}
static_assert(kActiveStripes == 64, "ActiveLock takes the top 6 bits");
}  // namespace

void AliasList::push_back(Alias a) {
  if (empty()) {
    first_ = std::move(a);
    return;
  }
  if (!more_) more_ = std::make_unique<std::vector<Alias>>();
  more_->push_back(std::move(a));
}

Alias AliasList::Take(size_t i) {
  size_t n = size();  // first: moving the first name out empties first_
  Alias taken = std::move((*this)[i]);
  // Shift the later names down one place (the last slot is then spare).
  for (size_t j = i; j + 1 < n; ++j) (*this)[j] = std::move((*this)[j + 1]);
  if (n == 1) {
    first_ = Alias();
  } else {
    more_->pop_back();
    if (more_->empty()) more_.reset();
  }
  return taken;
}

std::vector<Alias> AliasList::TakeAll() {
  std::vector<Alias> all;
  while (!empty()) all.push_back(Take(size() - 1));
  return all;
}

bool InodeActive::Idle() const {
  return !dirty.dirty && !dirty.in_flush_list && dirty.inflight == 0 && dirty.pending.empty() &&
         open_fds.empty() && !gone_attr;
}

ActivePin& ActivePin::operator=(ActivePin&& o) noexcept {
  if (this != &o) {
    Release();
    std::swap(inode_, o.inode_);
    std::swap(active_, o.active_);
  }
  return *this;
}

void ActivePin::Release() {
  if (inode_) inode_->Unpin();
  inode_ = nullptr;
  active_ = nullptr;
}

uint64_t Inode::HandleId(std::string_view handle) {
  if (handle.empty()) return 0;
  uint64_t h = std::hash<std::string_view>()(handle);
  return h == 0 ? 1 : h;  // 0 means "no handle"
}

Inode::~Inode() {
  if (active_) active_count.fetch_sub(1, std::memory_order_relaxed);
}

ActivePin Inode::Pin() {
  std::lock_guard lk(ActiveLock(this));
  if (!active_) {
    active_ = std::make_unique<InodeActive>();
    active_count.fetch_add(1, std::memory_order_relaxed);
  }
  ++pins_;
  return ActivePin(this, active_.get());
}

ActivePin Inode::PinIfActive() {
  std::lock_guard lk(ActiveLock(this));
  if (!active_) return ActivePin();
  ++pins_;
  return ActivePin(this, active_.get());
}

void Inode::Unpin() {
  std::unique_ptr<InodeActive> freed;  // destroyed outside the stripe lock
  {
    std::lock_guard lk(ActiveLock(this));
    // No pin left: nobody can reach the state but through this lock, and the
    // last user's changes happened before its Unpin took it.
    if (--pins_ == 0 && active_->Idle()) freed = std::move(active_);
  }
  if (freed) active_count.fetch_sub(1, std::memory_order_relaxed);
}

uint64_t Inode::ActiveCount() { return active_count.load(std::memory_order_relaxed); }

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
  map_.insert(root_);
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
    auto it = map_.find(Key{dev, ino});
    if (it != map_.end() && *it != root_) {
      const std::shared_ptr<Inode>& old = *it;
      bool nameless;
      {
        std::lock_guard nl(names_mu_);
        nameless = old->aliases.empty();
      }
      uint64_t id = Inode::HandleId(handle);
      bool reborn = id != 0 && old->handle_id != 0 && old->handle_id != id;
      if (nameless || reborn || old->type != (mode & S_IFMT)) {
        // A dead file's object (see the header): keep it for the kernel's
        // references, if any, and start afresh.
        if (old->nlookup.load() > 0) detached_[old.get()] = old;
        map_.erase(it);
        it = map_.end();
      }
    }
    if (it == map_.end()) it = map_.insert(std::make_shared<Inode>(dev, ino, mode, handle)).first;
    inode = *it;
    inode->nlookup.fetch_add(1);
  }
  Alias dropped;  // released outside names_mu_ (may free inodes)
  if (inode != root_ && parent) {
    std::lock_guard lk(names_mu_);
    auto& al = inode->aliases;
    bool known = false;
    for (size_t i = 0; i < al.size() && !known; ++i)
      known = al[i].parent == parent && al[i].name == name;
    if (!known) {
      if (al.size() >= kMaxAliases) dropped = al.Take(0);
      al.push_back({parent, name});
    }
  }
  return inode;
}

std::shared_ptr<Inode> InodeTable::Find(dev_t dev, ino_t ino) {
  std::lock_guard lk(map_mu_);
  auto it = map_.find(Key{dev, ino});
  return it == map_.end() ? nullptr : *it;
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
      if (it == map_.end() || it->get() != inode) return;
      // Children still naming this directory keep it (and its place in the
      // map) so that a later lookup finds the same object and renames stay
      // coherent.
      if (it->use_count() > 1) return;
      work.push_back(*it);
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
      for (Alias& a : gone->aliases.TakeAll()) parents.push_back(std::move(a.parent));
    }
    gone.reset();
    for (auto& p : parents) {
      if (!p || p == root_) continue;
      std::lock_guard lk(map_mu_);
      if (p->nlookup.load() != 0) continue;
      auto it = map_.find(Key{p->dev, p->ino});
      // 2 = the map's reference + ours.
      if (it != map_.end() && *it == p && p.use_count() == 2) {
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
  for (size_t i = inode.aliases.size(); i-- > 0;) {
    const Alias& a = inode.aliases[i];
    auto dir = PathOfLocked(*a.parent);
    if (dir) paths.push_back(dir->empty() ? a.name : *dir + "/" + a.name);
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
  Alias dropped;  // released outside names_mu_ (may free inodes)
  std::lock_guard lk(names_mu_);
  auto& al = inode.aliases;
  for (size_t i = 0; i < al.size(); ++i)
    if (al[i].parent == parent && al[i].name == name) return;
  if (al.size() >= kMaxAliases) dropped = al.Take(0);
  al.push_back({parent, name});
}

void InodeTable::RemoveAlias(Inode& inode, const Inode* parent, const std::string& name) {
  std::vector<Alias> dropped;  // released outside names_mu_ (may free inodes)
  {
    std::lock_guard lk(names_mu_);
    auto& al = inode.aliases;
    for (size_t i = 0; i < al.size();) {
      if (al[i].parent.get() == parent && al[i].name == name)
        dropped.push_back(al.Take(i));
      else
        ++i;
    }
  }
}

void InodeTable::MoveAlias(Inode& inode, const Inode* old_parent, const std::string& old_name,
                           const std::shared_ptr<Inode>& new_parent, const std::string& new_name) {
  std::vector<Alias> dropped;
  {
    std::lock_guard lk(names_mu_);
    auto& al = inode.aliases;
    for (size_t i = 0; i < al.size();) {
      if ((al[i].parent.get() == old_parent && al[i].name == old_name) ||
          (al[i].parent == new_parent && al[i].name == new_name))
        dropped.push_back(al.Take(i));
      else
        ++i;
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
