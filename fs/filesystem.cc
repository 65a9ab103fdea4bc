#include "fs/filesystem.h"

#include "common/beneath.h"
#include "fs/cow_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <string_view>

#include <spdlog/spdlog.h>

namespace scribefs {
namespace {

using SharedTree = std::shared_lock<TreeLock>;
using ExclusiveTree = std::unique_lock<TreeLock>;

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

Status Errno(const std::string& what) { return PosixError(what, errno); }

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// Whether thread/process pid has CAP_SYS_ADMIN, which the kernel requires
// for seeing trusted.* xattr names. Unknown (it has exited): no.
bool HasSysAdmin(pid_t pid) {
  std::string status = "/proc/" + std::to_string(pid) + "/status";
  UniqueFd fd(open(status.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buf[4096];
  ssize_t n = read(fd.get(), buf, sizeof buf - 1);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* eff = strstr(buf, "\nCapEff:");
  if (!eff) return false;
  unsigned long long caps = strtoull(eff + strlen("\nCapEff:"), nullptr, 16);
  return (caps >> CAP_SYS_ADMIN) & 1;
}

// The permission bits a new node in directory dirfd gets. POSIX: a default
// ACL of the parent replaces the umask. The backing filesystem applies a
// default ACL itself (the daemon's own umask is 0), so the caller's umask is
// applied here only where there is none (see Caller::umask).
mode_t CreationMode(int dirfd, mode_t mode, mode_t umask) {
  if (umask == 0) return mode;
  if (getxattr(ProcPath(dirfd).c_str(), "system.posix_acl_default", nullptr, 0) > 0) return mode;
  return mode & ~umask;
}

// The descriptor limit the FdBudget and the directory cache are sized for.
uint64_t NofileLimit(const FsOptions& o) {
  if (o.max_open_fds) return o.max_open_fds;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return rl.rlim_cur;
}

InodeKey KeyOf(const Inode& inode) { return InodeKey{inode.dev, inode.ino}; }
InodeKey KeyOf(const struct stat& st) { return InodeKey{st.st_dev, st.st_ino}; }

// The bytes a fallocate(mode) of [offset, offset + length) destroys: a
// collapse or insert moves everything from offset to the end; a plain
// allocation destroys none (an empty range: only the attributes change).
uint64_t FallocateEnd(int mode, off_t offset, off_t length) {
  if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) return CowSpool::kToEnd;
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) return uint64_t(offset + length);
  return uint64_t(offset);
}

}  // namespace

DirHandle::~DirHandle() {
  if (dir) closedir(static_cast<DIR*>(dir));
}

FileHandle::FileHandle(UniqueFd f, std::shared_ptr<Inode> i, bool w)
    : fd(std::move(f)), inode(std::move(i)), writable(w) {
  ActivePin a = inode->Pin();  // the listed fd keeps the state until the close
  std::lock_guard lk(a->fds_mu);
  a->open_fds.push_back(fd.get());
}

FileHandle::~FileHandle() {
  ActivePin a = inode->Pin();  // its release frees the state of a clean, closed file
  std::lock_guard lk(a->fds_mu);
  auto& fds = a->open_fds;
  if (auto it = std::find(fds.begin(), fds.end(), fd.get()); it != fds.end()) fds.erase(it);
}

Filesystem::Filesystem(UniqueFd root_fd, Journal* journal, FsOptions options)
    : root_fd_(std::move(root_fd)),
      journal_(journal),
      options_(options),
      inodes_([&] {
        struct stat st = {};
        fstat(root_fd_.get(), &st);
        return InodeTable(st.st_dev, st.st_ino);
      }()),
      dir_fds_(FdBudget::DirCacheFor(NofileLimit(options), options.dir_fd_cache)),
      fd_budget_(FdBudget::ForRlimit(NofileLimit(options),
                                     FdBudget::DirCacheFor(NofileLimit(options),
                                                           options.dir_fd_cache))),
      flusher_([this] { FlusherLoop(); }) {}

Filesystem::~Filesystem() { Shutdown(); }

void Filesystem::Shutdown() {
  {
    std::lock_guard lk(flush_mu_);
    if (stopping_ && !flusher_.joinable()) return;
    stopping_ = true;
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
}

std::shared_ptr<Inode> Filesystem::Node(uint64_t id) { return inodes_.Get(id); }

CowSpool* Filesystem::LiveCow() const {
  return options_.cow && options_.cow->live() ? options_.cow : nullptr;
}

Result<UniqueFd> Filesystem::OpenRel(const std::string& rel, int flags) {
  // The daemon's paths never need a symlink; one in the way could only come
  // from outside the mount and must not lead elsewhere.
  return OpenBeneath(root_fd_.get(), rel, flags);
}

Result<UniqueFd> Filesystem::OpenFdOf(Inode& inode) {
  ActivePin a = inode.PinIfActive();  // none: not open
  if (!a) return Status::Error(ENOENT, "unlinked");
  std::lock_guard lk(a->fds_mu);  // the descriptor stays open while we dup it
  if (a->open_fds.empty()) return Status::Error(ENOENT, "unlinked");
  int fd = fcntl(a->open_fds.front(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Errno("dup");
  return UniqueFd(fd);
}

Record Filesystem::NewRecord(Op op, const Caller& c, std::string path) {
  Record r;
  r.op = op;
  r.path = std::move(path);
  r.uid = c.uid;
  r.gid = c.gid;
  r.pid = c.pid;
  return r;
}

Status Filesystem::JournalFailed(const Status& s) {
  // The journal failure is sticky; the mutation must not happen unrecorded.
  if (counters_.journal_errors.fetch_add(1) == 0)
    spdlog::error("journal failed, refusing mutations with EIO: {}", s.message());
  return Status::Error(EIO, "journal: " + s.message());
}

Status Filesystem::Commit(Record& r, bool durable) {
  Status s = journal_->Commit(r, durable);
  return s.ok() ? s : JournalFailed(s);
}

Status Filesystem::CommitAll(std::vector<Record>& rs, bool durable) {
  if (rs.empty() && !durable) return Status::Ok();
  Status s = rs.empty() ? journal_->Sync() : journal_->Commit(rs, durable);
  return s.ok() ? s : JournalFailed(s);
}

void SyncTicket::Hold(const std::vector<Record>& committed) {
  for (const Record& r : committed) held_.push_back(r.seq);
  if (!committed.empty()) seq_ = committed.back().seq;
}

void SyncTicket::Release() {
  for (int64_t held : held_) journal_->EndApply(held);
  held_.clear();
}

Status Filesystem::CommitWithPending(std::vector<Record>& rs, SyncTicket& ticket, bool durable) {
  std::vector<Record> all;
  TakePending(&all);
  // Our own records (last) stay unapplied until Settle: the uploader
  // must not look at their paths before the operation has happened.
  size_t first = all.size();
  for (Record& r : rs) all.push_back(std::move(r));
  Status s = all.empty() ? CommitAll(all, durable) : journal_->Commit(all, durable, rs.size());
  if (!s.ok() && !all.empty()) s = JournalFailed(s);
  for (size_t i = 0; i < rs.size(); ++i) rs[i] = std::move(all[first + i]);
  // A transient sync failure (Journal::IsTransientSyncErrno) leaves the
  // records committed and the journal healthy: they are released with the
  // operation all the same. (Their seqs say nothing: they are assigned
  // when queued.)
  if (s.ok() || (!rs.empty() && journal_->health().ok())) ticket.Hold(rs);
  return s;
}

Status Filesystem::CommitWithPending(Record& r, SyncTicket& ticket) {
  std::vector<Record> one;
  one.push_back(std::move(r));
  Status s = CommitWithPending(one, ticket);
  r = std::move(one[0]);
  return s;
}

void Filesystem::TakePending(std::vector<Record>* out) {
  std::vector<std::shared_ptr<Inode>> list;
  std::vector<Record> deferred;
  {
    std::lock_guard lk(flush_mu_);
    if (flush_list_.empty() && deferred_.empty()) return;
    list.swap(flush_list_);
    deferred.swap(deferred_);
  }
  for (auto& inode : list) {
    std::vector<ByteRange> ranges;
    {
      ActivePin a = inode->Pin();  // in_flush_list kept it
      std::lock_guard lk(a->mu);
      a->dirty.in_flush_list = false;
      ranges = a->dirty.pending.Take();
    }
    if (ranges.empty()) continue;
    // Every name (none when unlinked: nothing of it is left in DATADIR).
    for (const std::string& path : inodes_.PathsOf(*inode)) {
      Record r = NewRecord(Op::kWrite, Caller{}, path);
      r.ranges = ranges;
      out->push_back(std::move(r));
    }
  }
  for (Record& r : deferred) out->push_back(std::move(r));
}

Status Filesystem::Await(SyncTicket& ticket, bool op_ok, Deadline deadline) {
  // The operation is done (or failed): its records may be replayed now.
  ticket.Release();
  int64_t seq = ticket.seq();
  if (!op_ok || seq == 0 || !options_.waiter) return Status::Ok();
  Status s = options_.waiter->WaitUploaded(seq, deadline.value_or(SyncDeadline()));
  if (s.ok()) return s;
  spdlog::warn("sync mode: record {} not stored in the target: {} (it stays pending)", seq,
               s.message());
  return Status::Error(EIO, s.message());
}

Status Filesystem::Settle(Mutation<Status> m, Deadline deadline) {
  Status w = Await(m.ticket_, m.outcome_.ok(), deadline);
  return m.outcome_.ok() ? w : m.outcome_;
}

// ---- mutating operations: the outcome and its ticket ------------------------
// Each runs its Do* body with a fresh ticket and hands both to the caller,
// who must Settle them (README, "Replication", sync mode).

Mutation<Result<struct stat>> Filesystem::SetAttr(const Caller& c, uint64_t id,
                                                  const struct stat& attr, int to_set,
                                                  FileHandle* fh) {
  SyncTicket t(journal_);
  auto r = DoSetAttr(t, c, id, attr, to_set, fh);
  return {std::move(r), std::move(t)};
}

Mutation<Result<Entry>> Filesystem::MkNod(const Caller& c, uint64_t parent,
                                          const std::string& name, mode_t mode, dev_t rdev) {
  SyncTicket t(journal_);
  auto r = DoMkNod(t, c, parent, name, mode, rdev);
  return {std::move(r), std::move(t)};
}

Mutation<Result<Entry>> Filesystem::MkDir(const Caller& c, uint64_t parent,
                                          const std::string& name, mode_t mode) {
  SyncTicket t(journal_);
  auto r = DoMkDir(t, c, parent, name, mode);
  return {std::move(r), std::move(t)};
}

Mutation<Result<Entry>> Filesystem::Symlink(const Caller& c, const std::string& target,
                                            uint64_t parent, const std::string& name) {
  SyncTicket t(journal_);
  auto r = DoSymlink(t, c, target, parent, name);
  return {std::move(r), std::move(t)};
}

Mutation<Result<Entry>> Filesystem::Link(const Caller& c, uint64_t id, uint64_t new_parent,
                                         const std::string& new_name) {
  SyncTicket t(journal_);
  auto r = DoLink(t, c, id, new_parent, new_name);
  return {std::move(r), std::move(t)};
}

Mutation<Status> Filesystem::Unlink(const Caller& c, uint64_t parent, const std::string& name) {
  SyncTicket t(journal_);
  Status s = RemoveName(c, parent, name, /*dir=*/false, t);
  return {std::move(s), std::move(t)};
}

Mutation<Status> Filesystem::Rmdir(const Caller& c, uint64_t parent, const std::string& name) {
  SyncTicket t(journal_);
  Status s = RemoveName(c, parent, name, /*dir=*/true, t);
  return {std::move(s), std::move(t)};
}

Mutation<Status> Filesystem::Rename(const Caller& c, uint64_t parent, const std::string& name,
                                    uint64_t new_parent, const std::string& new_name,
                                    unsigned int flags) {
  SyncTicket t(journal_);
  Status s = DoRename(t, c, parent, name, new_parent, new_name, flags);
  return {std::move(s), std::move(t)};
}

Mutation<Result<Filesystem::Created>> Filesystem::Create(const Caller& c, uint64_t parent,
                                                         const std::string& name, mode_t mode,
                                                         int flags) {
  SyncTicket t(journal_);
  auto r = DoCreate(t, c, parent, name, mode, flags);
  return {std::move(r), std::move(t)};
}

Mutation<Status> Filesystem::Flush(const Caller& c, FileHandle* fh) {
  SyncTicket t(journal_);
  Status s = DoFlush(t, c, fh);
  return {std::move(s), std::move(t)};
}

Mutation<Status> Filesystem::Fsync(const Caller& c, FileHandle* fh, bool datasync) {
  SyncTicket t(journal_);
  Status s = DoFsync(t, c, fh, datasync);
  return {std::move(s), std::move(t)};
}

Mutation<Status> Filesystem::SetXattr(const Caller& c, uint64_t id, const std::string& name,
                                      const std::string& value, int flags) {
  SyncTicket t(journal_);
  Status s = DoSetXattr(t, c, id, name, value, flags);
  return {std::move(s), std::move(t)};
}

Mutation<Status> Filesystem::RemoveXattr(const Caller& c, uint64_t id, const std::string& name) {
  SyncTicket t(journal_);
  Status s = DoRemoveXattr(t, c, id, name);
  return {std::move(s), std::move(t)};
}

Status Filesystem::CommitWithDeferred(std::vector<Record>& rs) {
  // Only the deferred list (a leaf lock): callers may hold an Inode::mu.
  std::vector<Record> all;
  {
    std::lock_guard lk(flush_mu_);
    all.swap(deferred_);
  }
  size_t first = all.size();
  for (Record& r : rs) all.push_back(std::move(r));
  Status s = CommitAll(all);
  for (size_t i = 0; i < rs.size(); ++i) rs[i] = std::move(all[first + i]);
  return s;
}

Result<DirFdCache::Fd> Filesystem::DirFd(const Inode& dir) {
  if (auto fd = dir_fds_.Peek(dir.dev, dir.ino)) return fd;
  // Up to the nearest ancestor with a cached descriptor (or the root)...
  const Inode* root = inodes_.root().get();
  std::vector<std::pair<const Inode*, Alias>> chain;  // dir first
  DirFdCache::Fd base;
  for (const Inode* cur = &dir;;) {
    if (cur == root) {
      auto fd = dir_fds_.Get(cur->dev, cur->ino,
                             [&] { return OpenRel("", O_PATH | O_DIRECTORY); });
      if (!fd.ok()) return fd.status();
      base = std::move(fd.value());
      break;
    }
    if (cur != &dir && (base = dir_fds_.Peek(cur->dev, cur->ino))) break;
    auto alias = inodes_.PrimaryAlias(*cur);
    if (!alias) return Status::Error(ENOENT, "directory unlinked");
    if (chain.size() > 1u << 16) return Status::Error(ELOOP, "directory chain");  // a bug
    const Inode* node = cur;
    cur = alias->parent.get();  // kept alive by the alias, now in chain
    chain.emplace_back(node, std::move(*alias));
  }
  // ...then down again, one name per openat2().
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const Inode& d = *it->first;
    int parent_fd = base->get();
    auto fd = dir_fds_.Get(d.dev, d.ino, [&]() -> Result<UniqueFd> {
      auto o = OpenBeneath(parent_fd, it->second.name, O_PATH | O_DIRECTORY);
      if (!o.ok()) return o.status();
      struct stat st;
      if (fstat(o->get(), &st) != 0) return Errno("fstat");
      if (st.st_ino != d.ino || st.st_dev != d.dev)
        return Status::Error(ENOENT, it->second.name + ": replaced outside the mount");
      return o;
    });
    if (!fd.ok()) return fd.status();
    base = std::move(fd.value());
  }
  return base;
}

void Filesystem::Skip(const Record& r, int err) {
  // The record announced an operation that then failed locally: say so, so
  // that nobody replays it. Best effort: a failure here is sticky anyway.
  (void)journal_->MarkSkipped(r.seq, err);
}

Result<Entry> Filesystem::MakeEntry(const std::shared_ptr<Inode>& parent, const std::string& name,
                                    int dirfd) {
  Entry e;
  std::shared_lock identity(inodes_.identity());  // see InodeTable::identity()
  if (fstatat(dirfd, name.c_str(), &e.attr, AT_SYMLINK_NOFOLLOW) != 0) return Errno(name);
  // The file handle carries the inode generation (see Inode::handle).
  struct {
    struct file_handle fh;
    unsigned char bytes[MAX_HANDLE_SZ];
  } h;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  std::string handle;
  if (name_to_handle_at(dirfd, name.c_str(), &h.fh, &mount_id, 0) == 0)
    handle.assign(reinterpret_cast<const char*>(h.fh.f_handle), h.fh.handle_bytes);
  auto inode =
      inodes_.Reference(e.attr.st_dev, e.attr.st_ino, e.attr.st_mode, handle, parent, name);
  e.id = inodes_.FuseId(inode.get());
  return e;
}

Status Filesystem::ChownNew(const Caller& c, int dirfd, const std::string& name,
                            const struct stat& parent_st, mode_t mode) {
  // New files belong to the caller, not to the root daemon. In a set-group-ID
  // directory the backing fs already gave the directory's group.
  bool sgid_dir = parent_st.st_mode & S_ISGID;
  gid_t gid = sgid_dir ? static_cast<gid_t>(-1) : c.gid;
  if (c.uid == 0 && (sgid_dir || c.gid == 0)) return Status::Ok();
  if (fchownat(dirfd, name.c_str(), c.uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return Errno("chown " + name);
  // chown clears set-user/group-ID bits of non-directories; put them back.
  if (!S_ISDIR(mode) && !S_ISLNK(mode) && (mode & (S_ISUID | S_ISGID)))
    if (fchmodat(dirfd, name.c_str(), mode & 07777, 0) != 0) return Errno("chmod " + name);
  return Status::Ok();
}

// ---- lookup / attributes -------------------------------------------------

Result<Entry> Filesystem::Lookup(uint64_t parent_id, const std::string& name) {
  auto parent = Node(parent_id);
  if (!parent) return Status::Error(EINVAL, "unknown inode");
  SharedTree tree(inodes_.tree());
  auto pfd = DirFd(*parent);
  if (!pfd.ok()) return pfd.status();
  return MakeEntry(parent, name, pfd.value()->get());
}

void Filesystem::Forget(uint64_t id, uint64_t nlookup) { inodes_.Forget(id, nlookup); }

Result<struct stat> Filesystem::GetAttr(uint64_t id, FileHandle* fh) {
  struct stat st;
  if (fh) {
    if (fstat(fh->fd.get(), &st) != 0) return Errno("fstat");
    return st;
  }
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  if (inode == inodes_.root()) {
    if (fstat(root_fd_.get(), &st) != 0) return Errno("fstat");
    return st;
  }
  SharedTree tree(inodes_.tree());
  auto alias = inodes_.PrimaryAlias(*inode);
  if (!alias) {
    // Unlinked while open: the open file still answers (st_nlink 0).
    auto fd = OpenFdOf(*inode);
    if (!fd.ok()) return fd.status();
    if (fstat(fd->get(), &st) != 0) return Errno("fstat");
    return st;
  }
  auto pfd = DirFd(*alias->parent);
  if (!pfd.ok()) return pfd.status();
  if (fstatat(pfd.value()->get(), alias->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return Errno(alias->name);
  if (st.st_ino != inode->ino || st.st_dev != inode->dev)
    return Status::Error(ENOENT, alias->name + ": replaced outside the mount");
  return st;
}

Result<struct stat> Filesystem::DoSetAttr(SyncTicket& t, const Caller& c, uint64_t id,
                                          const struct stat& attr, int to_set, FileHandle* fh) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  SharedTree tree(inodes_.tree());
  auto path = inodes_.PathOf(*inode);
  bool is_root = inode == inodes_.root();
  // The change reaches every hard link of the file.
  std::vector<std::string> paths = inodes_.PathsOf(*inode);

  // Records first: a truncate, and one setattr naming every attribute set.
  std::vector<Record> recs;
  for (const std::string& name_path : paths) {
    if (to_set & kSetSize) {
      Record r = NewRecord(Op::kTruncate, c, name_path);
      r.size = attr.st_size;
      recs.push_back(std::move(r));
    }
    nlohmann::json d = nlohmann::json::object();
    if (to_set & kSetMode) d["mode"] = attr.st_mode & 07777;
    if (to_set & kSetUid) d["uid"] = attr.st_uid;
    if (to_set & kSetGid) d["gid"] = attr.st_gid;
    if (to_set & kSetAtimeNow) d["atime"] = "now";
    else if (to_set & kSetAtime)
      d["atime"] = int64_t(attr.st_atim.tv_sec) * 1000000000 + attr.st_atim.tv_nsec;
    if (to_set & kSetMtimeNow) d["mtime"] = "now";
    else if (to_set & kSetMtime)
      d["mtime"] = int64_t(attr.st_mtim.tv_sec) * 1000000000 + attr.st_mtim.tv_nsec;
    if (!d.empty()) {
      Record r = NewRecord(Op::kSetattr, c, name_path);
      if (to_set & kSetMode) r.mode = (inode->type | (attr.st_mode & 07777));
      r.flags = to_set;
      r.detail = d.dump();
      recs.push_back(std::move(r));
    }
  }
  if (path) SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(recs, t));
  auto skip_all = [&](int err) {
    for (auto& r : recs) Skip(r, err);
  };

  // An fd for the inode itself: the open file if there is one, else O_PATH;
  // without a name (unlinked while open, fchmod), another open file's.
  UniqueFd own;
  int fd = fh ? fh->fd.get() : -1;
  bool is_path_fd = false;
  if (fd < 0) {
    auto o = !path     ? OpenFdOf(*inode)
             : is_root ? OpenRel("", O_PATH | O_DIRECTORY)
                       : OpenByName(*inode, O_PATH | O_NOFOLLOW);
    if (!o.ok()) {
      // Under the writeback cache the kernel keeps a file's times and writes
      // them back (mtime, ctime) right after an unlink, rmdir or rename has
      // taken the inode's last name (fuse_update_ctime), with no open file
      // left to name it. On a native filesystem that sets the times of a dead
      // inode, which go with it; failing would make the error the mount's
      // writeback error, which every later syncfs(2) reports.
      if (!path && !is_root && (to_set & ~kSetTimes) == 0 && o.status().code() == ENOENT)
        return SetTimesOfGone(*inode, attr, to_set);
      skip_all(o.status().code());
      return o.status();
    }
    own = std::move(o.value());
    fd = own.get();
    is_path_fd = path.has_value();
  }
  if (CowSpool* cow = LiveCow()) {
    // What the mark's state needs of this inode, before any of it changes.
    if (to_set & kSetSize)
      cow->BeforeData(KeyOf(*inode), fd, uint64_t(attr.st_size), CowSpool::kToEnd);
    else
      cow->BeforeMetadata(KeyOf(*inode), fd);
  }
  std::string proc = ProcPath(fd);
  if (to_set & kSetMode) {
    int rc = is_path_fd ? chmod(proc.c_str(), attr.st_mode & 07777) : fchmod(fd, attr.st_mode & 07777);
    if (rc != 0) {
      int e = errno;
      skip_all(e);
      return PosixError("chmod", e);
    }
  }
  if (to_set & (kSetUid | kSetGid)) {
    uid_t u = (to_set & kSetUid) ? attr.st_uid : static_cast<uid_t>(-1);
    gid_t g = (to_set & kSetGid) ? attr.st_gid : static_cast<gid_t>(-1);
    if (fchownat(fd, "", u, g, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      int e = errno;
      skip_all(e);
      return PosixError("chown", e);
    }
  }
  if (to_set & kSetSize) {
    // Charged to the handle's opener (ftruncate) or the caller (truncate).
    // Only growing can allocate; a shrink under the user's limits is what the
    // user's own truncate would do.
    ResourceCharge charge = fh ? ChargeOf(*fh) : ChargeOf(c);
    int rc;
    int e = 0;
    if (is_path_fd) {
      UniqueFd w(open(proc.c_str(), O_WRONLY | O_CLOEXEC));
      if (!w) {
        rc = -1;
        e = errno;
      } else {
        ScopedResourceCharge as_user(charge);
        rc = ftruncate(w.get(), attr.st_size);
        e = errno;
      }
    } else {
      ScopedResourceCharge as_user(charge);
      rc = ftruncate(fd, attr.st_size);
      e = errno;
    }
    if (rc != 0) {
      skip_all(e);
      return PosixError("truncate", e);
    }
  }
  if (to_set & (kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow)) {
    struct timespec tv[2];
    tv[0].tv_sec = 0;
    tv[1].tv_sec = 0;
    tv[0].tv_nsec = UTIME_OMIT;
    tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & kSetAtimeNow) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & kSetAtime) tv[0] = attr.st_atim;
    if (to_set & kSetMtimeNow) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & kSetMtime) tv[1] = attr.st_mtim;
    ActivePin a = inode->Pin();
    std::lock_guard times(a->times_mu);  // not between a write's save and restore
    int rc = is_path_fd ? utimensat(AT_FDCWD, proc.c_str(), tv, 0) : futimens(fd, tv);
    if (rc != 0 && is_path_fd && errno == ENOENT) rc = utimensat(fd, "", tv, AT_EMPTY_PATH);
    if (rc != 0) {
      int e = errno;
      skip_all(e);
      return PosixError("utimens", e);
    }
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno("fstat");
  return st;
}

Result<struct stat> Filesystem::SetTimesOfGone(Inode& inode, const struct stat& attr, int to_set) {
  // Nothing is journaled: every record names a path, which the replay takes
  // the state of, and no path leads to this inode; nothing changes in DATADIR.
  ActivePin a = inode.PinIfActive();
  if (!a) return Status::Error(ENOENT, "unlinked");  // no name we removed
  std::lock_guard lk(a->fds_mu);
  if (!a->gone_attr) return Status::Error(ENOENT, "unlinked");  // no name we removed
  struct stat& st = *a->gone_attr;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (to_set & kSetAtimeNow)
    st.st_atim = now;
  else if (to_set & kSetAtime)
    st.st_atim = attr.st_atim;
  if (to_set & kSetMtimeNow)
    st.st_mtim = now;
  else if (to_set & kSetMtime)
    st.st_mtim = attr.st_mtim;
  st.st_ctim = (to_set & kSetCtime) ? attr.st_ctim : now;
  return st;
}

void Filesystem::NoteRemoved(Inode& inode, const struct stat& st) {
  if (inodes_.PrimaryAlias(inode)) return;  // another name still reaches it
  struct stat gone = st;
  // The link count the removal left (a directory's own "." goes with it).
  gone.st_nlink = S_ISDIR(st.st_mode) || st.st_nlink == 0 ? 0 : st.st_nlink - 1;
  ActivePin a = inode.Pin();  // gone_attr keeps it until the inode goes
  std::lock_guard lk(a->fds_mu);
  a->gone_attr = gone;
}

Result<UniqueFd> Filesystem::OpenNode(uint64_t id, int flags) {
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  // The descriptor names the inode itself: the lock is only needed to
  // resolve the name, not while the caller uses it.
  SharedTree tree(inodes_.tree());
  return OpenByName(*inode, flags);
}

Result<UniqueFd> Filesystem::OpenByName(const Inode& inode, int flags) {
  if (&inode == inodes_.root().get()) return OpenRel("", flags);
  auto alias = inodes_.PrimaryAlias(inode);
  if (!alias) return Status::Error(ENOENT, "unlinked");
  auto parent_fd = DirFd(*alias->parent);
  if (!parent_fd.ok()) return parent_fd.status();
  return OpenBeneath(parent_fd.value()->get(), alias->name, flags);
}

Result<std::string> Filesystem::ReadLink(uint64_t id) {
  auto fd = OpenNode(id, O_PATH | O_NOFOLLOW);
  if (!fd.ok()) return fd.status();
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(fd->get(), "", buf, sizeof buf);
  if (n < 0) return Errno("readlink");
  if (n >= static_cast<ssize_t>(sizeof buf)) return Status::Error(ENAMETOOLONG, "readlink");
  return std::string(buf, n);
}

// ---- namespace -------------------------------------------------------------

// A directory and the path of a name in it, resolved under the TreeLock (held
// by the caller for as long as the result is used).
class Filesystem::Resolved {
 public:
  static Result<Resolved> In(Filesystem* fs, uint64_t parent_id, const std::string& name) {
    Resolved r;
    r.parent = fs->Node(parent_id);
    if (!r.parent) return Status::Error(EINVAL, "unknown inode");
    auto ppath = fs->inodes_.PathOf(*r.parent);
    if (!ppath) return Status::Error(ENOENT, "directory unlinked");
    auto fd = fs->DirFd(*r.parent);
    if (!fd.ok()) return fd.status();
    r.dirfd = std::move(fd.value());
    r.path = Join(*ppath, name);
    r.name = name;
    return r;
  }
  Result<struct stat> ParentStat() const {
    struct stat st;
    if (fstat(dirfd->get(), &st) != 0) return PosixError("fstat", errno);
    return st;
  }
  int fd() const { return dirfd->get(); }
  std::shared_ptr<Inode> parent;
  DirFdCache::Fd dirfd;
  std::string path;  // relative to DATADIR
  std::string name;
};

Result<Entry> Filesystem::DoMkNod(SyncTicket& t, const Caller& c, uint64_t parent,
                                  const std::string& name, mode_t mode, dev_t rdev) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  SharedTree tree(inodes_.tree());
  auto r = Resolved::In(this, parent, name);
  if (!r.ok()) return r.status();
  auto pst = r->ParentStat();
  if (!pst.ok()) return pst.status();
  mode = CreationMode(r->fd(), mode, c.umask);
  if (CowSpool* cow = LiveCow()) cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
  Record rec = NewRecord(Op::kMknod, c, r->path);
  rec.mode = mode;
  if (rdev) rec.detail = nlohmann::json{{"rdev", rdev}}.dump();
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  int rc, e;
  {
    ScopedResourceCharge as_user(ChargeOf(c));  // the new inode counts against c's limits
    rc = mknodat(r->fd(), name.c_str(), mode, rdev);
    e = errno;
  }
  if (rc != 0) {
    Skip(rec, e);
    return PosixError(r->path, e);
  }
  SCRIBEFS_RETURN_IF_ERROR(ChownNew(c, r->fd(), name, *pst, mode));
  return MakeEntry(r->parent, name, r->fd());
}

Result<Entry> Filesystem::DoMkDir(SyncTicket& t, const Caller& c, uint64_t parent,
                                  const std::string& name, mode_t mode) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  SharedTree tree(inodes_.tree());
  auto r = Resolved::In(this, parent, name);
  if (!r.ok()) return r.status();
  auto pst = r->ParentStat();
  if (!pst.ok()) return pst.status();
  mode = CreationMode(r->fd(), mode, c.umask);
  if (CowSpool* cow = LiveCow()) cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
  Record rec = NewRecord(Op::kMkdir, c, r->path);
  rec.mode = S_IFDIR | (mode & 07777);
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  int rc, e;
  {
    ScopedResourceCharge as_user(ChargeOf(c));  // the new inode counts against c's limits
    rc = mkdirat(r->fd(), name.c_str(), mode);
    e = errno;
  }
  if (rc != 0) {
    Skip(rec, e);
    return PosixError(r->path, e);
  }
  SCRIBEFS_RETURN_IF_ERROR(ChownNew(c, r->fd(), name, *pst, S_IFDIR | mode));
  return MakeEntry(r->parent, name, r->fd());
}

Result<Entry> Filesystem::DoSymlink(SyncTicket& t, const Caller& c, const std::string& target,
                                    uint64_t parent, const std::string& name) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  SharedTree tree(inodes_.tree());
  auto r = Resolved::In(this, parent, name);
  if (!r.ok()) return r.status();
  auto pst = r->ParentStat();
  if (!pst.ok()) return pst.status();
  if (CowSpool* cow = LiveCow()) cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
  Record rec = NewRecord(Op::kSymlink, c, r->path);
  rec.mode = S_IFLNK | 0777;
  rec.detail = nlohmann::json{{"target", target}}.dump(-1, ' ', false,
                                                      nlohmann::json::error_handler_t::replace);
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  int rc, e;
  {
    ScopedResourceCharge as_user(ChargeOf(c));  // the new inode counts against c's limits
    rc = symlinkat(target.c_str(), r->fd(), name.c_str());
    e = errno;
  }
  if (rc != 0) {
    Skip(rec, e);
    return PosixError(r->path, e);
  }
  SCRIBEFS_RETURN_IF_ERROR(ChownNew(c, r->fd(), name, *pst, S_IFLNK));
  return MakeEntry(r->parent, name, r->fd());
}

Result<Entry> Filesystem::DoLink(SyncTicket& t, const Caller& c, uint64_t id,
                                 uint64_t new_parent, const std::string& new_name) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  SharedTree tree(inodes_.tree());
  auto old_path = inodes_.PathOf(*inode);
  if (!old_path) return Status::Error(ENOENT, "unlinked");
  auto r = Resolved::In(this, new_parent, new_name);
  if (!r.ok()) return r.status();
  auto src = OpenByName(*inode, O_PATH | O_NOFOLLOW);
  if (!src.ok()) return src.status();
  if (CowSpool* cow = LiveCow()) {
    cow->BeforeMetadata(KeyOf(*inode), src->get());  // its link count and ctime
    cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
  }
  Record rec = NewRecord(Op::kLink, c, *old_path);
  rec.new_path = r->path;
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  // AT_EMPTY_PATH on an O_PATH fd links exactly this inode (needs
  // CAP_DAC_READ_SEARCH, which the root daemon has).
  if (linkat(src->get(), "", r->fd(), new_name.c_str(), AT_EMPTY_PATH) != 0) {
    int e = errno;
    Skip(rec, e);
    return PosixError(r->path, e);
  }
  // Name it first, so that it is the same object (and node id) as the source
  // even when the source had no name left (a file linked back after unlink).
  inodes_.AddAlias(*inode, r->parent, new_name);
  return MakeEntry(r->parent, new_name, r->fd());
}

Status Filesystem::RemoveName(const Caller& c, uint64_t parent, const std::string& name, bool dir,
                              SyncTicket& t) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  SharedTree tree(inodes_.tree());
  auto r = Resolved::In(this, parent, name);
  if (!r.ok()) return r.status();
  struct stat st;
  if (fstatat(r->fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno(r->path);
  Record rec = NewRecord(dir ? Op::kRmdir : Op::kUnlink, c, r->path);
  rec.mode = st.st_mode;
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  if (CowSpool* cow = LiveCow()) {
    cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
    cow->BeforeRemoveName(KeyOf(st), r->fd(), name, /*gone=*/true);
  }
  {
    // The name leaves the table before anyone can see its inode number reused.
    std::unique_lock identity(inodes_.identity());
    if (unlinkat(r->fd(), name.c_str(), dir ? AT_REMOVEDIR : 0) != 0) {
      int e = errno;
      identity.unlock();
      Skip(rec, e);
      return PosixError(r->path, e);
    }
    if (dir) dir_fds_.Invalidate(st.st_dev, st.st_ino);  // the inode number may be reused
    if (auto child = inodes_.Find(st.st_dev, st.st_ino)) {
      inodes_.RemoveAlias(*child, r->parent.get(), name);
      NoteRemoved(*child, st);
    }
  }
  return Status::Ok();
}

void Filesystem::PreserveRenamed(CowSpool& cow, const Resolved& src, const struct stat& sst,
                                 const Resolved& dst, const struct stat* dst_st,
                                 unsigned int flags) {
  cow.BeforeMetadata(KeyOf(*src.parent), src.fd());
  cow.BeforeMetadata(KeyOf(*dst.parent), dst.fd());
  // Frozen paths below a renamed directory lose their names too.
  if (S_ISDIR(sst.st_mode)) cow.BeforeRenameDir(src.path);
  cow.BeforeRemoveName(KeyOf(sst), src.fd(), src.name, /*gone=*/false);
  if (!dst_st) return;
  bool exchange = flags & RENAME_EXCHANGE;
  if (exchange && S_ISDIR(dst_st->st_mode)) cow.BeforeRenameDir(dst.path);
  cow.BeforeRemoveName(KeyOf(*dst_st), dst.fd(), dst.name, /*gone=*/!exchange);
}

Status Filesystem::DoRename(SyncTicket& t, const Caller& c, uint64_t parent,
                            const std::string& name, uint64_t new_parent,
                            const std::string& new_name, unsigned int flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
    return Status::Error(EINVAL, "unsupported rename flags");
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  // Exclusive: a rename changes the path of everything below it, and no other
  // operation may name a path between this record and the rename itself.
  ExclusiveTree tree(inodes_.tree());
  auto src = Resolved::In(this, parent, name);
  if (!src.ok()) return src.status();
  auto dst = Resolved::In(this, new_parent, new_name);
  if (!dst.ok()) return dst.status();
  struct stat sst, dst_st;
  if (fstatat(src->fd(), name.c_str(), &sst, AT_SYMLINK_NOFOLLOW) != 0)
    return Errno(src->path);
  bool dst_exists = fstatat(dst->fd(), new_name.c_str(), &dst_st, AT_SYMLINK_NOFOLLOW) == 0;
  Record rec = NewRecord(Op::kRename, c, src->path);
  rec.new_path = dst->path;
  rec.mode = sst.st_mode;
  if (flags) rec.flags = flags;
  if (flags & RENAME_EXCHANGE) rec.detail = R"({"exchange":true})";
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  if (CowSpool* cow = LiveCow())
    PreserveRenamed(*cow, *src, sst, *dst, dst_exists ? &dst_st : nullptr, flags);
  if (renameat2(src->fd(), name.c_str(), dst->fd(), new_name.c_str(), flags) != 0) {
    int e = errno;
    Skip(rec, e);
    return PosixError(src->path + " -> " + dst->path, e);
  }
  auto moved = inodes_.Find(sst.st_dev, sst.st_ino);
  std::shared_ptr<Inode> other = dst_exists ? inodes_.Find(dst_st.st_dev, dst_st.st_ino) : nullptr;
  if (moved == other && moved) return Status::Ok();  // two names of one inode: no-op
  if (moved) inodes_.MoveAlias(*moved, src->parent.get(), name, dst->parent, new_name);
  if (other) {
    if (flags & RENAME_EXCHANGE) {
      inodes_.MoveAlias(*other, dst->parent.get(), new_name, src->parent, name);
    } else {
      inodes_.RemoveAlias(*other, dst->parent.get(), new_name);
      NoteRemoved(*other, dst_st);
    }
  }
  return Status::Ok();
}

// ---- files ----------------------------------------------------------------

namespace {
int BackingOpenFlags(int flags, bool writeback) {
  // O_DIRECT stays with the kernel, which sends the application's direct I/O
  // as it is: the data reaches us behind a request header, in a buffer no
  // O_DIRECT descriptor accepts (EINVAL even for aligned 4 KiB writes), and
  // the kernel's writeback of cached pages of the same file may use this
  // descriptor with a partial last page.
  flags &= ~(O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT);
  if (writeback) {
    // The kernel may read pages of a file opened write-only to fill its
    // cache, and it implements O_APPEND itself from the cached size.
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    flags &= ~O_APPEND;
  }
  return flags | O_CLOEXEC | O_NOFOLLOW;
}

// Under the writeback cache the kernel, not the backing file, owns a regular
// file's mtime. It stamps the file itself at write(2) time (with its coarse
// clock), ignores the mtime of every later reply of ours (the kernel's
// fuse_get_cache_mask), and sends its value in a SETATTR when it writes the
// inode back, which it does only when its stamp changed the mtime. The WRITEs
// it sends later are page writeback, which the backing filesystem would stamp
// with its own, later "now". A file written within one clock tick of its
// creation (most small files of a `cp -r`) got no SETATTR at all: its mtime
// stayed the create time through the mount but became the WRITE's time on
// disk and in the target, and `flush && verify` reported it (issue 13).
//
// So a data request (WRITE, FALLOCATE, COPY_FILE_RANGE) leaves the backing
// file's mtime as it was, and only the kernel's SETATTR moves it: both ends
// then agree by construction. Holding InodeActive::times_mu, which DoSetAttr takes
// to set times, so that a SETATTR arriving between the save and the restore
// (background writeback sends it alongside the WRITEs) is not undone; this
// also serializes the writes of one file, which the backing filesystem's
// inode lock mostly does already (buffered writes on ext4, xfs). The
// restore is part of the journaled data change: the disk's mtime ends where
// the journal's last record of the times (create, setattr) left it.
class KeptMtime {
 public:
  KeptMtime(bool active, Inode& inode, int fd) {
    if (!active) return;
    pin_ = inode.Pin();
    lock_ = std::unique_lock(pin_->times_mu);
    struct stat st;
    if (fstat(fd, &st) != 0) return;  // nothing to restore; the write goes on
    fd_ = fd;
    mtime_ = st.st_mtim;
  }
  ~KeptMtime() {
    if (fd_ < 0) return;
    const struct timespec tv[2] = {{0, UTIME_OMIT}, mtime_};
    // Fails only where an explicit time is refused (a daemon that does not
    // own the file and lacks CAP_FOWNER): the disk then keeps the write's.
    if (futimens(fd_, tv) != 0) spdlog::debug("futimens after a write: {}", strerror(errno));
  }
  KeptMtime(const KeptMtime&) = delete;
  KeptMtime& operator=(const KeptMtime&) = delete;

 private:
  ActivePin pin_;                       // declared first: released last
  std::unique_lock<std::mutex> lock_;  // released after the restore
  int fd_ = -1;
  struct timespec mtime_ = {};
};
}  // namespace

Result<std::unique_ptr<FileHandle>> Filesystem::Open(const Caller& c, uint64_t id, int flags) {
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  bool writable = (flags & O_ACCMODE) != O_RDONLY;
  bool truncating = writable && (flags & O_TRUNC);
  // Refused before anything is recorded or opened (see FdBudget).
  auto slot = fd_budget_.Acquire(c.uid == 0);
  if (!slot.ok()) return slot.status();
  // open(O_TRUNC) changes data: it passes the gate (before any lock).
  MutationGate::Pass pass = truncating ? EnterGate() : MutationGate::Pass();
  SharedTree tree(inodes_.tree());
  auto path = inodes_.PathOf(*inode);
  if (!path) return Status::Error(ENOENT, "unlinked");
  if (CowSpool* cow = LiveCow(); cow && truncating && cow->Watches(KeyOf(*inode))) {
    // O_PATH: safe for every file type; the spool reopens it to read.
    auto old = OpenByName(*inode, O_PATH | O_NOFOLLOW);
    if (old.ok()) cow->BeforeData(KeyOf(*inode), old->get(), 0, CowSpool::kToEnd);
  }
  std::vector<Record> recs;
  if (truncating) {
    // open(O_TRUNC) is a data change (of every hard link): record it, and
    // treat the file as dirty from here to its close (the record is the
    // intent).
    ActivePin a = inode->Pin();
    std::lock_guard lk(a->mu);
    for (const std::string& name_path : inodes_.PathsOf(*inode)) {
      Record rec = NewRecord(Op::kTruncate, c, name_path);
      rec.size = 0;
      rec.flags = flags;
      recs.push_back(std::move(rec));
    }
    SCRIBEFS_RETURN_IF_ERROR(CommitWithDeferred(recs));  // InodeActive::mu is held
    a->dirty.dirty = true;
    a->dirty.whole = true;
    a->dirty.write_gen++;
  }
  auto fd = OpenByName(*inode, BackingOpenFlags(flags, options_.writeback_cache));
  if (!fd.ok()) {
    for (const Record& rec : recs) Skip(rec, fd.status().code());
    return fd.status();
  }
  auto fh = std::make_unique<FileHandle>(std::move(fd.value()), inode, writable);
  fh->slot = std::move(slot.value());
  fh->opener_uid = c.uid;
  fh->opener_gid = c.gid;
  return fh;
}

Result<Filesystem::Created> Filesystem::DoCreate(SyncTicket& t, const Caller& c,
                                                 uint64_t parent, const std::string& name,
                                                 mode_t mode, int flags) {
  // Refused before anything is recorded or created (see FdBudget).
  auto slot = fd_budget_.Acquire(c.uid == 0);
  if (!slot.ok()) return slot.status();
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  SharedTree tree(inodes_.tree());
  auto r = Resolved::In(this, parent, name);
  if (!r.ok()) return r.status();
  auto pst = r->ParentStat();
  if (!pst.ok()) return pst.status();
  mode = CreationMode(r->fd(), mode, c.umask);
  if (CowSpool* cow = LiveCow()) {
    cow->BeforeMetadata(KeyOf(*r->parent), r->fd());
    // An existing file that create(O_TRUNC) empties.
    UniqueFd old((flags & O_TRUNC) && !(flags & O_EXCL)
                     ? openat(r->fd(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)
                     : -1);
    struct stat ost;
    if (old && fstat(old.get(), &ost) == 0)
      cow->BeforeData(KeyOf(ost), old.get(), 0, CowSpool::kToEnd);
  }
  Record rec = NewRecord(Op::kCreate, c, r->path);
  rec.mode = S_IFREG | (mode & 07777);
  rec.flags = flags;
  rec.size = 0;
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  int fd, err;
  {
    ScopedResourceCharge as_user(ChargeOf(c));  // the new inode counts against c's limits
    fd = openat(r->fd(), name.c_str(),
                BackingOpenFlags(flags, options_.writeback_cache) | O_CREAT | (flags & O_EXCL),
                mode);
    err = errno;
  }
  if (fd < 0) {
    Skip(rec, err);
    return PosixError(r->path, err);
  }
  UniqueFd ufd(fd);
  SCRIBEFS_RETURN_IF_ERROR(ChownNew(c, r->fd(), name, *pst, S_IFREG | mode));
  auto e = MakeEntry(r->parent, name, r->fd());
  if (!e.ok()) return e.status();
  auto fh = std::make_unique<FileHandle>(std::move(ufd), inodes_.Get(e->id), true);
  fh->slot = std::move(slot.value());
  fh->opener_uid = c.uid;
  fh->opener_gid = c.gid;
  {
    // The create record is the intent for the data that follows.
    ActivePin a = fh->inode->Pin();
    std::lock_guard lk(a->mu);
    a->dirty.dirty = true;
    a->dirty.whole = true;
    a->dirty.write_gen++;
  }
  return std::make_pair(*e, std::move(fh));
}

Status Filesystem::BeginData(const Caller& c, Inode& inode, uint64_t offset, uint64_t length,
                             bool* covered) {
  *covered = false;
  ActivePin a = inode.Pin();  // dirty.inflight keeps it until EndData
  {
    std::lock_guard lk(a->mu);
    if (a->dirty.dirty) {
      a->dirty.inflight++;
      a->dirty.write_gen++;
      *covered = a->dirty.whole;  // a create/O_TRUNC record covers every byte
      return Status::Ok();
    }
  }
  // Clean: commit the intent (naming the first range) before any byte moves.
  // Lock order: TreeLock before InodeActive::mu.
  SharedTree tree(inodes_.tree());
  std::lock_guard lk(a->mu);
  if (!a->dirty.dirty) {
    // One intent per hard link: the write changes the file under every name.
    std::vector<Record> recs;
    for (const std::string& path : inodes_.PathsOf(inode)) {
      Record rec = NewRecord(Op::kWrite, c, path);
      rec.ranges.push_back({offset, length});
      recs.push_back(std::move(rec));
    }
    if (!recs.empty()) {
      // A deferred close of this file's previous session must come first.
      SCRIBEFS_RETURN_IF_ERROR(CommitWithDeferred(recs));
      counters_.intents++;
      *covered = true;
      // A clean file now has a change to store: one path against bounded
      // lag's grant (the gate's lock is a leaf).
      if (options_.gate) options_.gate->ChargePath();
    }
    // Nameless (unlinked while open): nothing is recorded. No path names
    // these bytes and none can again (the kernel's link(2) refuses an inode
    // with no links left, here as on a native filesystem): they reach only
    // the open file, and nothing in DATADIR's tree changes.
    a->dirty.dirty = true;
    a->dirty.whole = false;
  }
  a->dirty.inflight++;
  a->dirty.write_gen++;
  return Status::Ok();
}

void Filesystem::EndData(Inode& inode, uint64_t offset, uint64_t length, bool covered) {
  // Bounded lag counts these bytes before the journal shows them.
  if (options_.gate) options_.gate->ChargeWrite(length);
  bool enqueue = false;
  {
    ActivePin a = inode.Pin();  // BeginData's inflight kept it
    std::lock_guard lk(a->mu);
    if (!covered) a->dirty.pending.Add(offset, length);
    if (--a->dirty.inflight == 0) a->cv.notify_all();
    if (!a->dirty.in_flush_list && !a->dirty.pending.empty()) {
      a->dirty.in_flush_list = true;
      enqueue = true;
    }
  }
  if (enqueue) {
    bool wake;
    {
      std::lock_guard lk(flush_mu_);
      flush_list_.push_back(inode.shared_from_this());
      wake = flusher_idle_;
    }
    if (wake) flush_cv_.notify_one();
  }
}

Result<size_t> Filesystem::Write(const Caller& c, FileHandle* fh, off_t offset, size_t size,
                                 const std::function<ssize_t(int, off_t)>& copy) {
  // Before any lock: pauses hold us here. A path is charged in BeginData.
  MutationGate::Pass pass = EnterGate(MutationKind::kData, /*new_path=*/false);
  Inode& inode = *fh->inode;
  bool covered;
  SCRIBEFS_RETURN_IF_ERROR(BeginData(c, inode, offset, size, &covered));
  if (CowSpool* cow = LiveCow())
    cow->BeforeData(KeyOf(inode), fh->fd.get(), uint64_t(offset), uint64_t(offset) + size);
  ssize_t n;
  {
    KeptMtime kept(kernel_owns_mtime_.load(), inode, fh->fd.get());
    // The opener's limits, not the daemon's (a writeback WRITE has no caller).
    ScopedResourceCharge as_opener(ChargeOf(*fh));
    n = copy(fh->fd.get(), offset);
  }
  // Even a failed or short write may have changed bytes: cover the request.
  EndData(inode, offset, n > 0 ? static_cast<uint64_t>(n) : size, covered);
  if (n < 0) return PosixError("write", static_cast<int>(-n));
  return static_cast<size_t>(n);
}

Status Filesystem::Fallocate(const Caller& c, FileHandle* fh, int mode, off_t offset,
                             off_t length) {
  // Before any lock: pauses hold us here. A path is charged in BeginData.
  MutationGate::Pass pass = EnterGate(MutationKind::kData, /*new_path=*/false);
  Inode& inode = *fh->inode;
  bool covered;
  SCRIBEFS_RETURN_IF_ERROR(BeginData(c, inode, offset, length, &covered));
  if (CowSpool* cow = LiveCow())
    cow->BeforeData(KeyOf(inode), fh->fd.get(), uint64_t(offset),
                    FallocateEnd(mode, offset, length));
  int rc, e;
  {
    KeptMtime kept(kernel_owns_mtime_.load(), inode, fh->fd.get());
    ScopedResourceCharge as_opener(ChargeOf(*fh));  // the opener's limits
    rc = fallocate(fh->fd.get(), mode, offset, length);
    e = errno;
  }
  EndData(inode, offset, length, covered);
  if (rc != 0) return PosixError("fallocate", e);
  return Status::Ok();
}

Result<size_t> Filesystem::CopyFileRange(const Caller& c, FileHandle* in, off_t off_in,
                                         FileHandle* out, off_t off_out, size_t len, int flags) {
  // Before any lock: pauses hold us here. A path is charged in BeginData.
  MutationGate::Pass pass = EnterGate(MutationKind::kData, /*new_path=*/false);
  Inode& inode = *out->inode;
  bool covered;
  SCRIBEFS_RETURN_IF_ERROR(BeginData(c, inode, off_out, len, &covered));
  if (CowSpool* cow = LiveCow())
    cow->BeforeData(KeyOf(inode), out->fd.get(), uint64_t(off_out), uint64_t(off_out) + len);
  loff_t oi = off_in, oo = off_out;
  ssize_t n;
  int e;
  {
    KeptMtime kept(kernel_owns_mtime_.load(), inode, out->fd.get());
    ScopedResourceCharge as_opener(ChargeOf(*out));  // the writing file's opener's limits
    n = copy_file_range(in->fd.get(), &oi, out->fd.get(), &oo, len, flags);
    e = errno;
  }
  EndData(inode, off_out, n > 0 ? static_cast<uint64_t>(n) : len, covered);
  if (n < 0) return PosixError("copy_file_range", e);
  return static_cast<size_t>(n);
}

Result<off_t> Filesystem::Lseek(FileHandle* fh, off_t off, int whence) {
  off_t r = lseek(fh->fd.get(), off, whence);
  if (r < 0) return Errno("lseek");
  return r;
}

Status Filesystem::CommitInodeRanges(const Caller& c, Inode& inode, std::vector<Record> extra,
                                     bool durable, bool mark_clean, SyncTicket& t) {
  SharedTree tree(inodes_.tree());
  std::vector<std::string> paths = inodes_.PathsOf(inode);  // every hard link
  uint64_t gen;
  std::vector<ByteRange> ranges;
  ActivePin a = inode.Pin();  // write_gen is compared below
  {
    std::unique_lock lk(a->mu);
    a->cv.wait(lk, [&] { return a->dirty.inflight == 0; });
    gen = a->dirty.write_gen;
    ranges = a->dirty.pending.Take();
  }
  std::vector<Record> recs;
  for (const std::string& path : paths) {
    if (!ranges.empty()) {
      Record r = NewRecord(Op::kWrite, c, path);
      r.ranges = ranges;
      recs.push_back(std::move(r));
    }
    for (const Record& r : extra) {
      recs.push_back(r);
      recs.back().path = path;
    }
  }
  Status s = CommitWithPending(recs, t, durable);
  if (!s.ok()) return s;
  if (mark_clean) {
    std::lock_guard lk(a->mu);
    if (a->dirty.write_gen == gen && a->dirty.inflight == 0 && a->dirty.pending.empty())
      a->dirty.dirty = false;
  }
  return Status::Ok();
}

Status Filesystem::DoFlush(SyncTicket& t, const Caller& c, FileHandle* fh) {
  if (!fh->writable) return Status::Ok();
  Inode& inode = *fh->inode;
  ActivePin a = inode.PinIfActive();  // the open fh keeps one
  if (!a) return Status::Ok();
  {
    std::lock_guard lk(a->mu);
    if (!a->dirty.dirty) return Status::Ok();
  }
  // Closing a dirty file journals: it passes the gate (before any lock);
  // bounded lag never holds it (the uploader waits for the close).
  MutationGate::Pass pass = EnterGate(MutationKind::kFinish);
  struct stat st;
  if (fstat(fh->fd.get(), &st) != 0) return Errno("fstat");
  Record close = NewRecord(Op::kClose, c, "");
  close.size = st.st_size;
  close.mode = st.st_mode;
  close.detail = nlohmann::json{{"mtime_ns", int64_t(st.st_mtim.tv_sec) * 1000000000 +
                                                 st.st_mtim.tv_nsec}}
                     .dump();
  bool whole;
  {
    std::lock_guard lk(a->mu);
    whole = a->dirty.whole;
  }
  // In sync mode close waits for the upload of its own record.
  if (whole && !options_.waiter) return DeferClose(inode, std::move(close));
  std::vector<Record> extra;
  extra.push_back(std::move(close));
  return CommitInodeRanges(c, inode, std::move(extra), /*durable=*/false, /*mark_clean=*/true, t);
}

Status Filesystem::DeferClose(Inode& inode, Record close) {
  // The create/O_TRUNC record already covers every byte, so no range is
  // uncovered: the close record joins the next group commit (at most
  // range_flush_ms away, or sooner with the next namespace operation).
  SharedTree tree(inodes_.tree());
  std::vector<std::string> paths = inodes_.PathsOf(inode);  // every hard link
  {
    ActivePin a = inode.Pin();
    std::unique_lock lk(a->mu);
    a->cv.wait(lk, [&] { return a->dirty.inflight == 0; });
    a->dirty.pending.Clear();
    a->dirty.dirty = false;
    a->dirty.whole = false;
  }
  if (paths.empty()) return Status::Ok();
  bool wake;
  {
    std::lock_guard lk(flush_mu_);
    for (const std::string& path : paths) {
      deferred_.push_back(close);
      deferred_.back().path = path;
    }
    wake = flusher_idle_;
  }
  if (wake) flush_cv_.notify_one();
  return journal_->health().ok() ? Status::Ok() : Status::Error(EIO, "journal failed");
}

Status Filesystem::DoFsync(SyncTicket& t, const Caller& c, FileHandle* fh, bool datasync) {
  // fsync of a dirty file journals: it passes the gate (before any lock).
  MutationGate::Pass pass =
      NeedsGate(fh) ? EnterGate(MutationKind::kFinish) : MutationGate::Pass();
  // The journal becomes durable first: it must never be weaker than the data.
  std::vector<Record> extra;
  bool dirty = false;
  if (ActivePin a = fh->inode->PinIfActive()) {
    std::lock_guard lk(a->mu);
    dirty = a->dirty.dirty;
  }
  if (dirty) {
    Record r = NewRecord(Op::kFsync, c, "");
    if (datasync) r.flags = 1;
    extra.push_back(std::move(r));
  }
  SCRIBEFS_RETURN_IF_ERROR(CommitInodeRanges(c, *fh->inode, std::move(extra), /*durable=*/true,
                                             /*mark_clean=*/false, t));
  int rc = datasync ? fdatasync(fh->fd.get()) : fsync(fh->fd.get());
  if (rc != 0) return Errno("fsync");
  return Status::Ok();
}

bool Filesystem::NeedsGate(FileHandle* fh) {
  if (!fh || !fh->writable) return false;
  ActivePin a = fh->inode->PinIfActive();
  if (!a) return false;
  std::lock_guard lk(a->mu);
  return a->dirty.dirty;
}

Status Filesystem::FlushAllRanges() {
  // Paths are taken and queued under the TreeLock so that no rename lands
  // between them.
  SharedTree tree(inodes_.tree());
  std::unique_lock one(flush_all_mu_);
  std::vector<Record> recs;
  TakePending(&recs);
  if (recs.empty()) return Status::Ok();
  // Once queued, the records have their seqs: a pause may take what is
  // pending after them without waiting for their write.
  Status s = journal_->CommitQueued(recs, [&] { one.unlock(); });
  if (!s.ok()) return JournalFailed(s);
  counters_.range_flushes++;
  return Status::Ok();
}

Result<std::unique_ptr<Journal::PendingCommit>> Filesystem::QueueAllRanges(
    std::vector<Record> then) {
  SharedTree tree(inodes_.tree());
  std::lock_guard one(flush_all_mu_);
  std::vector<Record> recs;
  TakePending(&recs);
  if (!recs.empty()) counters_.range_flushes++;
  for (Record& r : then) recs.push_back(std::move(r));
  auto p = journal_->CommitAsync(std::move(recs));
  if (!p.ok()) return JournalFailed(p.status());
  return p;
}

void Filesystem::FlusherLoop() {
  std::unique_lock lk(flush_mu_);
  while (true) {
    // Idle: only now does new work need a wake-up. While the flusher waits
    // for more to gather (below) or commits, a notify per close or per
    // write would only cost it a futile wake-up (a context switch per file
    // created); what is queued meanwhile goes with the next commit.
    flusher_idle_ = true;
    flush_cv_.wait(lk, [&] { return stopping_ || !flush_list_.empty() || !deferred_.empty(); });
    flusher_idle_ = false;
    if (flush_list_.empty() && deferred_.empty() && stopping_) return;
    if (!stopping_) {
      // Let more ranges gather: one commit for all of them.
      flush_cv_.wait_for(lk, std::chrono::milliseconds(options_.range_flush_ms),
                         [&] { return stopping_; });
    }
    lk.unlock();
    (void)FlushAllRanges();  // failures are sticky in the journal and surface as EIO
    lk.lock();
  }
}

// ---- directories ------------------------------------------------------------

Result<std::unique_ptr<DirHandle>> Filesystem::OpenDir(const Caller& c, uint64_t id) {
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  auto slot = fd_budget_.Acquire(c.uid == 0);  // see FdBudget
  if (!slot.ok()) return slot.status();
  auto o = OpenNode(id, O_RDONLY | O_DIRECTORY);
  if (!o.ok()) return o.status();
  UniqueFd fd = std::move(o.value());
  DIR* d = fdopendir(fd.get());
  if (!d) return Errno("opendir");
  fd.Release();  // owned by d now
  auto dh = std::make_unique<DirHandle>();
  dh->slot = std::move(slot.value());
  dh->dir = d;
  dh->inode = inode;
  return dh;
}

Status Filesystem::ReadDir(DirHandle* dh, int64_t offset,
                           const std::function<bool(const char*, ino_t, unsigned char, int64_t)>& emit) {
  DIR* d = static_cast<DIR*>(dh->dir);
  if (offset != dh->offset) {
    seekdir(d, offset);
    dh->offset = offset;
  }
  while (true) {
    errno = 0;
    struct dirent* ent = readdir(d);
    if (!ent) {
      if (errno) return Errno("readdir");
      return Status::Ok();
    }
    int64_t next = ent->d_off;
    if (!emit(ent->d_name, ent->d_ino, ent->d_type, next)) {
      // Not consumed: the next call starts at this entry again.
      seekdir(d, dh->offset);
      return Status::Ok();
    }
    dh->offset = next;
  }
}

Status Filesystem::FsyncDir(const Caller& c, DirHandle* dh, bool datasync) {
  std::vector<Record> none;
  SCRIBEFS_RETURN_IF_ERROR(CommitAll(none, /*durable=*/true));
  int fd = dirfd(static_cast<DIR*>(dh->dir));
  if ((datasync ? fdatasync(fd) : fsync(fd)) != 0) return Errno("fsyncdir");
  return Status::Ok();
}

Result<struct statvfs> Filesystem::StatFs() {
  struct statvfs sv;
  if (fstatvfs(root_fd_.get(), &sv) != 0) return Errno("statfs");
  return sv;
}

// ---- xattrs -------------------------------------------------------------------
// Through /proc/self/fd/N of an O_PATH descriptor: works for every file type
// without opening FIFOs or devices for I/O.

// getxattr/listxattr: `call(proc_path, buf, size)` with the usual size-probe
// convention (size 0 asks for the length).
Result<std::string> Filesystem::ReadXattrs(
    uint64_t id, size_t size, const char* what,
    const std::function<ssize_t(const char*, char*, size_t)>& call) {
  auto o = OpenNode(id, O_PATH | O_NOFOLLOW);
  if (!o.ok()) return o.status();
  UniqueFd fd = std::move(o.value());
  std::string proc = ProcPath(fd.get());
  std::string buf(size, '\0');
  ssize_t n = call(proc.c_str(), size ? buf.data() : nullptr, size);
  if (n < 0) return Errno(what);
  if (size == 0) return std::string(static_cast<size_t>(n), '\0');  // size probe
  buf.resize(n);
  return buf;
}

Result<std::string> Filesystem::GetXattr(uint64_t id, const std::string& name, size_t size) {
  return ReadXattrs(id, size, "getxattr", [&](const char* p, char* b, size_t n) {
    return getxattr(p, name.c_str(), b, n);
  });
}

Result<std::string> Filesystem::ListXattr(const Caller& c, uint64_t id, size_t size,
                                          bool acl_only) {
  auto o = OpenNode(id, O_PATH | O_NOFOLLOW);
  if (!o.ok()) return o.status();
  std::string proc = ProcPath(o->get());
  // The whole list, then the names this caller may see: the size the kernel
  // probes for must be that of the filtered list.
  std::string all;
  for (int attempt = 0;; ++attempt) {
    ssize_t n = listxattr(proc.c_str(), nullptr, 0);
    if (n < 0) return Errno("listxattr");
    all.resize(static_cast<size_t>(n));
    n = n ? listxattr(proc.c_str(), all.data(), all.size()) : 0;
    if (n >= 0) {
      all.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE || attempt == 3) return Errno("listxattr");  // ERANGE: it grew
  }
  std::optional<bool> admin;  // asked only when there is a trusted.* name
  std::string shown;
  for (size_t i = 0; i < all.size();) {
    std::string_view name(all.data() + i);
    i += name.size() + 1;
    if (acl_only && name != "system.posix_acl_access" && name != "system.posix_acl_default")
      continue;
    if (name.starts_with("trusted.")) {
      if (!admin) admin = HasSysAdmin(c.pid);
      if (!*admin) continue;  // hidden from users, as the kernel does on ext4
    }
    shown.append(name).push_back('\0');
  }
  if (size == 0) return std::string(shown.size(), '\0');  // size probe
  if (shown.size() > size) return Status::Error(ERANGE, "listxattr");
  return shown;
}

Status Filesystem::DoSetXattr(SyncTicket& t, const Caller& c, uint64_t id,
                              const std::string& name, const std::string& value, int flags) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  SharedTree tree(inodes_.tree());
  auto path = inodes_.PathOf(*inode);
  if (!path) return Status::Error(ENOENT, "unlinked");
  auto fd = OpenByName(*inode, O_PATH | O_NOFOLLOW);
  if (!fd.ok()) return fd.status();
  if (CowSpool* cow = LiveCow()) cow->BeforeMetadata(KeyOf(*inode), fd->get());
  Record rec = NewRecord(Op::kSetxattr, c, *path);
  rec.flags = flags;
  rec.detail = nlohmann::json{{"name", name}, {"size", value.size()}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  std::string proc = ProcPath(fd->get());
  if (setxattr(proc.c_str(), name.c_str(), value.data(), value.size(), flags) != 0) {
    int e = errno;
    Skip(rec, e);
    return PosixError("setxattr", e);
  }
  return Status::Ok();
}

Status Filesystem::DoRemoveXattr(SyncTicket& t, const Caller& c, uint64_t id,
                                 const std::string& name) {
  MutationGate::Pass pass = EnterGate();  // before any lock: pauses hold us here
  auto inode = Node(id);
  if (!inode) return Status::Error(EINVAL, "unknown inode");
  SharedTree tree(inodes_.tree());
  auto path = inodes_.PathOf(*inode);
  if (!path) return Status::Error(ENOENT, "unlinked");
  auto fd = OpenByName(*inode, O_PATH | O_NOFOLLOW);
  if (!fd.ok()) return fd.status();
  if (CowSpool* cow = LiveCow()) cow->BeforeMetadata(KeyOf(*inode), fd->get());
  Record rec = NewRecord(Op::kRemovexattr, c, *path);
  rec.detail = nlohmann::json{{"name", name}}.dump(-1, ' ', false,
                                                  nlohmann::json::error_handler_t::replace);
  SCRIBEFS_RETURN_IF_ERROR(CommitWithPending(rec, t));
  std::string proc = ProcPath(fd->get());
  if (removexattr(proc.c_str(), name.c_str()) != 0) {
    int e = errno;
    Skip(rec, e);
    return PosixError("removexattr", e);
  }
  return Status::Ok();
}

}  // namespace scribefs
