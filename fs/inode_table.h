// Inode and InodeTable: the daemon's view of the names it has handed to the kernel.
//
// scribefs is path-based: an Inode holds no file descriptor, only the names it
// is known by (parent inode + name), so the daemon's fd use is bounded by open
// files, not by known inodes (the fd limit here is 20,000; users have millions
// of files). Every operation resolves an Inode to a path relative to DATADIR
// and opens it beneath the DATADIR descriptor. The journal needs those paths
// anyway.
//
// Locking. TreeLock guards every Inode's names: shared while a path is resolved
// and used (including the journal commit that names it), exclusive while a
// rename/unlink/link changes names, so a journal record never names a path that
// a concurrent rename has made stale. Lock order:
//   TreeLock  ->  Inode::mu  ->  Journal (internal)
// TreeLock must never be acquired twice by one thread (it prefers writers).
#pragma once

#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <sys/stat.h>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/inode_key.h"
#include "journal/range_set.h"

namespace scribefs {

// A writer-preferring reader/writer lock (glibc's default prefers readers, which
// would let a stream of writes starve a rename).
class TreeLock {
 public:
  TreeLock();
  ~TreeLock();
  TreeLock(const TreeLock&) = delete;
  TreeLock& operator=(const TreeLock&) = delete;
  void lock_shared() { pthread_rwlock_rdlock(&rw_); }
  void unlock_shared() { pthread_rwlock_unlock(&rw_); }
  void lock() { pthread_rwlock_wrlock(&rw_); }
  void unlock() { pthread_rwlock_unlock(&rw_); }

 private:
  pthread_rwlock_t rw_;
};

struct Inode;

struct Alias {
  std::shared_ptr<Inode> parent;  // never null in an AliasList
  std::string name;
};

// The names an inode is known by, oldest first (paths use the newest). Nearly
// every file has one name: that one is kept inline and only hard links
// allocate, which saves a vector's 24 B plus a 64 B heap block on each cached
// inode compared with std::vector<Alias>.
class AliasList {
 public:
  bool empty() const { return first_.parent == nullptr; }
  size_t size() const { return empty() ? 0 : 1 + (more_ ? more_->size() : 0); }
  const Alias& operator[](size_t i) const { return i == 0 ? first_ : (*more_)[i - 1]; }
  Alias& operator[](size_t i) { return i == 0 ? first_ : (*more_)[i - 1]; }
  const Alias& back() const { return (*this)[size() - 1]; }
  void push_back(Alias a);
  // Removes the i-th name, keeping the order of the others.
  Alias Take(size_t i);
  // Removes every name and returns them.
  std::vector<Alias> TakeAll();

 private:
  Alias first_;
  std::unique_ptr<std::vector<Alias>> more_;  // the 2nd.. names; null for one name
};

// Per-file journaling state: whether the file has a committed intent record
// ("dirty") and the byte ranges written since the last range record.
struct DirtyState {
  bool dirty = false;          // an intent record is committed and no close since
  bool in_flush_list = false;  // queued for the periodic range flusher
  uint32_t inflight = 0;       // data mutations between intent check and range add
  uint64_t write_gen = 0;      // bumped by every data mutation
  RangeSet pending{256};       // written, not yet in a committed record
  // The dirty session began with create or open(O_TRUNC): that record already
  // covers every byte of the file, so ranges add nothing and close need not
  // wait for a commit of its own.
  bool whole = false;
};

// What only a file that is open, dirty, being written or unlinked needs.
// Most cached inodes are none of these (a million files created and closed
// are a million clean, closed inodes), so an Inode holds this only while it
// is pinned or has something here to keep: it is made by the first
// Inode::Pin() and freed by the last pin's release once Idle(). That keeps a
// cached inode at ~1/4 of its size with all of this inline (two mutexes, a
// condition variable, a RangeSet, a vector and an optional stat: ~430 B).
struct InodeActive {
  std::mutex mu;               // guards dirty
  std::condition_variable cv;  // dirty.inflight reached 0
  DirtyState dirty;

  // Serializes changes of the backing file's times while the kernel owns
  // mtime (Filesystem::SetKernelOwnsMtime): a data request's save-and-restore
  // of mtime against a SETATTR of the times. A leaf lock.
  std::mutex times_mu;

  // The descriptors that open files hold on this inode (FileHandle::fd): the
  // only way left to an inode whose last name was unlinked while it was open
  // (fstat, fchmod on such a file). Guarded by fds_mu, a leaf lock.
  std::mutex fds_mu;
  std::vector<int> open_fds;
  // Its attributes when its last known name was removed (unlink, rmdir, a
  // rename over it), with the link count that removal left: what a SETATTR of
  // times that the kernel sends for it afterwards is answered with once
  // nothing of it is left to change (Filesystem::DoSetAttr). Guarded by fds_mu.
  std::optional<struct stat> gone_attr;

  // Holds nothing a later user would need, so that freeing it and starting
  // afresh is the same: clean, closed, no data request in flight, not queued
  // for the range flusher, not unlinked. Only called with no pin left.
  bool Idle() const;
};

// A use of an Inode's InodeActive: keeps it allocated while held (move-only).
// An empty pin (PinIfActive on an inode without one) tests false. The Inode
// must outlive the pin (callers hold its shared_ptr). Releasing the last pin
// frees the state when it is Idle(). Take it before the state's own locks and
// drop it after them (declare it first).
class ActivePin {
 public:
  ActivePin() = default;
  ActivePin(ActivePin&& o) noexcept : inode_(o.inode_), active_(o.active_) {
    o.inode_ = nullptr;
    o.active_ = nullptr;
  }
  ActivePin& operator=(ActivePin&& o) noexcept;
  ActivePin(const ActivePin&) = delete;
  ActivePin& operator=(const ActivePin&) = delete;
  ~ActivePin() { Release(); }

  explicit operator bool() const { return active_ != nullptr; }
  InodeActive* operator->() const { return active_; }
  InodeActive& operator*() const { return *active_; }

 private:
  friend struct Inode;
  ActivePin(Inode* inode, InodeActive* active) : inode_(inode), active_(active) {}
  void Release();
  Inode* inode_ = nullptr;
  InodeActive* active_ = nullptr;
};

struct Inode : std::enable_shared_from_this<Inode> {
  Inode(dev_t d, ino_t i, mode_t m, std::string_view h = {})
      : dev(d), ino(i), type(m & S_IFMT), handle_id(HandleId(h)) {}
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const dev_t dev;
  const ino_t ino;
  const mode_t type;  // S_IFMT bits

 private:
  // Fills the padding after `type`. Guarded by the stripe lock of this inode
  // (a leaf lock, held only to count and to make or free active_).
  uint32_t pins_ = 0;

 public:
  // The backing filesystem's file handle (name_to_handle_at) as a 64-bit
  // hash: the handle carries the inode's generation, so a reused inode number
  // is told apart even when the old file was deleted behind the mount's back.
  // Only ever compared for equality, so the hash serves (a reused number
  // whose handle hashes alike is a 2^-64 chance) in 8 B instead of a 32 B
  // string. 0 where unsupported.
  const uint64_t handle_id;
  static uint64_t HandleId(std::string_view handle);

  // Guarded by InodeTable::names_mu_ (and kept consistent with the backing
  // tree by TreeLock). Empty: unlinked (or the root).
  AliasList aliases;

  std::atomic<uint64_t> nlookup{0};  // kernel references

  // The state of an open/dirty/unlinked file, made on first use. Lock order
  // is unchanged by where it lives: TreeLock -> InodeActive::mu -> Journal.
  ActivePin Pin();
  // Pins the state only if there is one (else an empty pin: the file is
  // clean, closed and not unlinked, so it has nothing to read).
  ActivePin PinIfActive();
  // How many inodes hold an InodeActive now (the metrics' gauge).
  static uint64_t ActiveCount();

 private:
  friend class ActivePin;
  void Unpin();
  std::unique_ptr<InodeActive> active_;  // guarded like pins_
};

class InodeTable {
 public:
  // root_dev/root_ino identify DATADIR; the root's fuse id is FUSE_ROOT_ID (1).
  InodeTable(dev_t root_dev, ino_t root_ino);

  TreeLock& tree() { return tree_; }
  const std::shared_ptr<Inode>& root() const { return root_; }

  // The inode for a fuse id handed out earlier (nullptr for unknown ids: a bug
  // in the caller or the kernel; callers answer EINVAL... never crash).
  std::shared_ptr<Inode> Get(uint64_t fuse_id);
  uint64_t FuseId(const Inode* inode) const;

  // Finds or creates the inode for (dev, ino), adds one kernel reference and
  // records (parent, name) as one of its names. Requires TreeLock (shared)
  // and IdentityLock (shared).
  //
  // Inode numbers are reused by the backing filesystem as soon as a file is
  // gone. An existing object that has no name left (its file was unlinked)
  // or is of another type therefore describes a different, dead file: it is
  // detached (kept until the kernel forgets its id) and a fresh object, with
  // a fresh node id, is made for the new file. Handing the kernel the old id
  // would give the new file the dead one's cached size and pages.
  std::shared_ptr<Inode> Reference(dev_t dev, ino_t ino, mode_t mode, const std::string& handle,
                                   const std::shared_ptr<Inode>& parent, const std::string& name);
  // Looks up a known inode without adding a reference.
  std::shared_ptr<Inode> Find(dev_t dev, ino_t ino);
  // Drops n kernel references; the inode leaves the table at zero.
  void Forget(uint64_t fuse_id, uint64_t n);

  // Path relative to DATADIR ("" for the root); nullopt when the inode has no
  // name left. Requires TreeLock (shared suffices).
  std::optional<std::string> PathOf(const Inode& inode);
  // The paths of every name the table knows for inode (newest first; ""
  // for the root, empty when unlinked): a data change through one hard
  // link changes them all. Requires TreeLock (shared suffices).
  std::vector<std::string> PathsOf(const Inode& inode);
  // The name paths use (newest alias), if any. Requires TreeLock.
  std::optional<Alias> PrimaryAlias(const Inode& inode);
  // Name changes. Require TreeLock exclusive.
  void AddAlias(Inode& inode, const std::shared_ptr<Inode>& parent, const std::string& name);
  void RemoveAlias(Inode& inode, const Inode* parent, const std::string& name);
  void MoveAlias(Inode& inode, const Inode* old_parent, const std::string& old_name,
                 const std::shared_ptr<Inode>& new_parent, const std::string& new_name);

  size_t size();
  size_t detached();

  // Held exclusively from unlinkat()/rmdir() until the name is dropped from
  // the table, shared from fstatat() of a new entry until its Reference():
  // a new file can then never pick up a just-deleted file's object while
  // that object still carries the deleted name.
  std::shared_mutex& identity() { return identity_; }

 private:
  using Key = InodeKey;
  // The table is a set of the inodes themselves, looked up by (dev, ino):
  // its nodes hold only the pointer (32 B with malloc's header, where a map
  // from a key to the pointer takes 48 B). noexcept, so that nodes do not
  // store their hash.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(const Key& k) const noexcept { return InodeKeyHash()(k); }
    size_t operator()(const std::shared_ptr<Inode>& i) const noexcept {
      return InodeKeyHash()(Key{i->dev, i->ino});
    }
  };
  struct KeyEq {
    using is_transparent = void;
    static Key KeyOf(const Key& k) { return k; }
    static Key KeyOf(const std::shared_ptr<Inode>& i) { return Key{i->dev, i->ino}; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const noexcept {
      return KeyOf(a) == KeyOf(b);
    }
  };

  // PathOf with names_mu_ held.
  std::optional<std::string> PathOfLocked(const Inode& inode);

  TreeLock tree_;
  std::shared_ptr<Inode> root_;
  std::mutex map_mu_;    // guards map_
  std::mutex names_mu_;  // guards every Inode::aliases; taken after map_mu_
  std::unordered_set<std::shared_ptr<Inode>, KeyHash, KeyEq> map_;
  // Objects replaced by a fresh one for the same (dev, ino) while the kernel
  // still holds their id; freed by Forget. Guarded by map_mu_.
  std::unordered_map<const Inode*, std::shared_ptr<Inode>> detached_;
  std::shared_mutex identity_;
};

}  // namespace scribefs
