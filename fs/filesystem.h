// Filesystem: the passthrough-with-journal logic behind the FUSE adapter.
//
// Every method is one filesystem operation on the backing directory (reached
// through root_fd, opened before the mount so that mounting over DATADIR
// works). Methods return a value or a Status carrying an errno; the adapter in
// fuse_adapter.cc (the only file that includes fuse_lowlevel.h) converts that
// once into a reply. No libfuse types here, so tests can drive it without a
// mount.
//
// The journal invariant (README, "Semantics"): a mutation's record is committed
// before the mutation reaches the backing directory. Namespace and metadata
// changes commit their own record synchronously. Data writes commit an intent
// record on the first write to a clean file; later writes only add byte ranges
// to the inode's in-memory set, which RangeFlusher commits every few
// milliseconds, and which Flush/Fsync commit before they return.
//
// Mutating methods whose own records name their change (namespace and
// metadata changes, close, fsync) return a Mutation: the outcome together with
// the SyncTicket of the records committed for it. The caller takes the outcome
// out with Settle(), which releases those records to the uploader and, in
// sync mode, waits until they are stored in the target; there is no other way
// to the outcome, so no reply can forget the wait. Only code that holds a
// ticket can commit records that sync mode waits for (CommitWithPending).
//
// Thread-safe: called from many FUSE worker threads at once.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "fs/dir_fd_cache.h"
#include "fs/fd_budget.h"
#include "fs/inode_table.h"
#include "fs/mutation_gate.h"
#include "fs/resource_caps.h"
#include "journal/journal.h"
#include "journal/upload_waiter.h"

namespace scribefs {

class CowSpool;

struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  // The caller's umask when the kernel left it to us (FUSE_CAP_DONT_MASK,
  // negotiated with POSIX ACLs): create, mkdir and mknod apply it unless the
  // parent directory has a default ACL. 0: the kernel has applied it.
  mode_t umask = 0;
};

struct FsOptions {
  bool writeback_cache = true;
  bool xattr = true;
  // How long committed byte ranges may wait in memory before a group commit.
  int range_flush_ms = 5;
  // Directory descriptors kept open (see DirFdCache); at most an eighth of
  // the descriptor limit.
  size_t dir_fd_cache = 1024;
  // The descriptor limit the open-file budget is computed from (FdBudget);
  // 0: the process's RLIMIT_NOFILE.
  uint64_t max_open_fds = 0;
  // Sync mode: close, fsync and namespace operations return once their
  // record is stored in the target (nullptr: async mode).
  UploadWaiter* waiter = nullptr;
  std::chrono::milliseconds sync_timeout{30000};
  // Pause points: every mutating operation passes this gate before it takes
  // any lock (nullptr: no pauses). Not owned; must outlive the Filesystem.
  MutationGate* gate = nullptr;
  // Copy-on-write capture for checkpoints (fs/cow_spool.h): every mutation
  // first lets it preserve what it would destroy of a frozen inode. nullptr:
  // off. Not owned; must outlive the Filesystem.
  CowSpool* cow = nullptr;
};

struct Entry {
  uint64_t id = 0;  // fuse node id
  struct stat attr = {};
};

struct FileHandle {
  FileHandle(UniqueFd f, std::shared_ptr<Inode> i, bool w);  // lists fd in the inode's InodeActive::open_fds
  ~FileHandle();  // takes it out before it is closed
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  FdBudget::Slot slot;  // first: returned after fd is closed
  UniqueFd fd;
  std::shared_ptr<Inode> inode;
  bool writable = false;
  // Who opened it: the user whose limits (disk quotas, reserved blocks; see
  // ResourceCharge) a write through it is made under. On the disk the writing
  // task counts; a WRITE from the kernel's writeback names no useful caller,
  // so the opener stands in for it.
  uid_t opener_uid = 0;
  gid_t opener_gid = 0;
};

struct DirHandle {
  FdBudget::Slot slot;  // first: returned after the directory is closed
  UniqueFd fd;  // owned by dir's DIR* once opened
  void* dir = nullptr;  // DIR*, opaque here to keep <dirent.h> out of the header
  int64_t offset = 0;
  std::shared_ptr<Inode> inode;
  ~DirHandle();
};

// The sync-wait obligation of one mutating operation: the records it
// committed ahead of performing its change, which stay unapplied in the
// journal (Journal::AppliedThrough) until the operation is done, and the
// newest of them, which sync mode must see stored in the target before the
// operation replies. Only a mutating Filesystem method fills one in; it leaves
// it inside the Mutation it returns. Move-only; if it is destroyed without
// being settled (an exception on the way to the reply), its records are
// released (never waited for), so a lost ticket cannot stall the uploader.
class SyncTicket {
 public:
  explicit SyncTicket(Journal* journal) : journal_(journal) {}
  SyncTicket(SyncTicket&& o) noexcept
      : journal_(o.journal_), held_(std::move(o.held_)), seq_(std::exchange(o.seq_, 0)) {
    o.held_.clear();
  }
  SyncTicket& operator=(SyncTicket&&) = delete;
  SyncTicket(const SyncTicket&) = delete;
  ~SyncTicket() { Release(); }

  // The seq sync mode waits for (0: nothing to wait for).
  int64_t seq() const { return seq_; }
  // Records held unapplied until Release().
  const std::vector<int64_t>& held() const { return held_; }
  // Adds records the operation committed before performing its change.
  void Hold(const std::vector<Record>& committed);
  // The operation is done (or failed): its records may be replayed now.
  void Release();

 private:
  Journal* journal_;
  std::vector<int64_t> held_;
  int64_t seq_ = 0;
};

// What a mutating Filesystem method returns: its outcome R (a Status or a
// Result<T>) and the SyncTicket for it. The outcome can only be taken out by
// Filesystem::Settle, which releases the held records and, in sync mode,
// waits for the upload: a caller cannot reply without having done both.
template <typename R>
class [[nodiscard]] Mutation {
 public:
  Mutation(R outcome, SyncTicket ticket) : outcome_(std::move(outcome)), ticket_(std::move(ticket)) {}
  Mutation(Mutation&&) = default;
  // For tests: what Settle would wait for and release.
  const SyncTicket& ticket() const { return ticket_; }

 private:
  friend class Filesystem;
  R outcome_;
  SyncTicket ticket_;
};

// Counters for status and tests.
struct FsCounters {
  std::atomic<uint64_t> intents{0};      // synchronous first-write records
  std::atomic<uint64_t> range_flushes{0};
  std::atomic<uint64_t> journal_errors{0};
};

class Filesystem {
 public:
  // root_fd: an O_RDONLY|O_DIRECTORY descriptor of DATADIR.
  Filesystem(UniqueFd root_fd, Journal* journal, FsOptions options);
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  const FsOptions& options() const { return options_; }
  // The kernel keeps its own mtime for regular files: the writeback cache was
  // negotiated (set by the FUSE init, before any request). Data requests then
  // leave the backing file's mtime alone; see KeptMtime in filesystem.cc.
  void SetKernelOwnsMtime(bool on) { kernel_owns_mtime_.store(on); }
  InodeTable& inodes() { return inodes_; }
  const FsCounters& counters() const { return counters_; }
  MutationGate* gate() const { return options_.gate; }
  // True when closing fh (Flush) or fsyncing it would journal something, so
  // that the operation passes the MutationGate.
  bool NeedsGate(FileHandle* fh);

  // Ends a mutating operation: releases the records its ticket holds and, in
  // sync mode, when the operation succeeded, waits until its newest record is
  // stored in the target; EIO after sync_timeout (the records stay pending).
  // A successful outcome whose wait failed is undone where it handed out a
  // reference (an Entry's lookup count) and becomes that EIO. Async mode
  // returns at once. Call with no lock held.
  // deadline: when the wait gives up (default: now + sync_timeout).
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  Status Settle(Mutation<Status> m, Deadline deadline = std::nullopt);
  template <typename T>
  Result<T> Settle(Mutation<Result<T>> m, Deadline deadline = std::nullopt) {
    Status w = Await(m.ticket_, m.outcome_.ok(), deadline);
    if (m.outcome_.ok() && !w.ok()) {
      Undo(m.outcome_.value());
      return w;
    }
    return std::move(m.outcome_);
  }

  // True when Settle(m) would wait for an upload: sync mode, and the
  // operation succeeded and committed a record.
  template <typename R>
  bool WouldWait(const Mutation<R>& m) const {
    return options_.waiter && m.ticket_.seq() != 0 && m.outcome_.ok();
  }
  // Releases m's held records now, as Settle would first: for a caller that
  // settles m later on another thread (the uploader must not wait for that).
  template <typename R>
  void ReleaseHeld(Mutation<R>& m) {
    m.ticket_.Release();
  }
  std::chrono::steady_clock::time_point SyncDeadline() const {
    return std::chrono::steady_clock::now() + options_.sync_timeout;
  }

  // Commits every pending byte range now (shutdown, tests).
  Status FlushAllRanges();
  // Queues the records of every pending byte range, then `then`, for one
  // commit, and returns without waiting for it (Journal::CommitAsync): their
  // seqs are assigned, and every record queued later comes after them. A
  // checkpoint's pause so needs no journal write under the hold.
  Result<std::unique_ptr<Journal::PendingCommit>> QueueAllRanges(std::vector<Record> then);
  // Stops the range flusher after committing what is pending.
  void Shutdown();

  Result<Entry> Lookup(uint64_t parent, const std::string& name);
  void Forget(uint64_t id, uint64_t nlookup);
  Result<struct stat> GetAttr(uint64_t id, FileHandle* fh);
  // to_set: a mask of kSet* bits below.
  Mutation<Result<struct stat>> SetAttr(const Caller& c, uint64_t id, const struct stat& attr,
                                        int to_set, FileHandle* fh);
  Result<std::string> ReadLink(uint64_t id);
  Mutation<Result<Entry>> MkNod(const Caller& c, uint64_t parent, const std::string& name,
                                mode_t mode, dev_t rdev);
  Mutation<Result<Entry>> MkDir(const Caller& c, uint64_t parent, const std::string& name,
                                mode_t mode);
  Mutation<Result<Entry>> Symlink(const Caller& c, const std::string& target, uint64_t parent,
                                  const std::string& name);
  Mutation<Result<Entry>> Link(const Caller& c, uint64_t id, uint64_t new_parent,
                               const std::string& new_name);
  Mutation<Status> Unlink(const Caller& c, uint64_t parent, const std::string& name);
  Mutation<Status> Rmdir(const Caller& c, uint64_t parent, const std::string& name);
  Mutation<Status> Rename(const Caller& c, uint64_t parent, const std::string& name,
                          uint64_t new_parent, const std::string& new_name, unsigned int flags);

  Result<std::unique_ptr<FileHandle>> Open(const Caller& c, uint64_t id, int flags);
  using Created = std::pair<Entry, std::unique_ptr<FileHandle>>;
  Mutation<Result<Created>> Create(const Caller& c, uint64_t parent, const std::string& name,
                                   mode_t mode, int flags);
  // Writes through copy(fd, offset), which returns bytes written or -errno.
  Result<size_t> Write(const Caller& c, FileHandle* fh, off_t offset, size_t size,
                       const std::function<ssize_t(int fd, off_t offset)>& copy);
  Status Fallocate(const Caller& c, FileHandle* fh, int mode, off_t offset, off_t length);
  Result<size_t> CopyFileRange(const Caller& c, FileHandle* in, off_t off_in, FileHandle* out,
                               off_t off_out, size_t len, int flags);
  Result<off_t> Lseek(FileHandle* fh, off_t off, int whence);
  // close(2) of one descriptor: commits pending ranges and a close record.
  Mutation<Status> Flush(const Caller& c, FileHandle* fh);
  Mutation<Status> Fsync(const Caller& c, FileHandle* fh, bool datasync);

  // Opens (Open, Create, OpenDir) beyond the FdBudget fail with EMFILE.
  Result<std::unique_ptr<DirHandle>> OpenDir(const Caller& c, uint64_t id);
  const FdBudget& fd_budget() const { return fd_budget_; }
  // Calls emit(name, d_ino, d_type, next_offset) for entries from dh->offset on
  // until emit returns false (buffer full) or the directory ends.
  Status ReadDir(DirHandle* dh, int64_t offset,
                 const std::function<bool(const char* name, ino_t ino, unsigned char type,
                                          int64_t next)>& emit);
  Status FsyncDir(const Caller& c, DirHandle* dh, bool datasync);
  Result<struct statvfs> StatFs();

  Result<std::string> GetXattr(uint64_t id, const std::string& name, size_t size);
  // acl_only: list only system.posix_acl_* names (xattrs off, ACLs on).
  // trusted.* names only for callers with CAP_SYS_ADMIN.
  Result<std::string> ListXattr(const Caller& c, uint64_t id, size_t size, bool acl_only);
  Mutation<Status> SetXattr(const Caller& c, uint64_t id, const std::string& name,
                            const std::string& value, int flags);
  Mutation<Status> RemoveXattr(const Caller& c, uint64_t id, const std::string& name);

  static constexpr int kSetMode = 1 << 0, kSetUid = 1 << 1, kSetGid = 1 << 2, kSetSize = 1 << 3,
                       kSetAtime = 1 << 4, kSetMtime = 1 << 5, kSetAtimeNow = 1 << 7,
                       kSetMtimeNow = 1 << 8,
                       kSetCtime = 1 << 10;  // same values as FUSE_SET_ATTR_*
  // Bits that change only times (the kernel sends ctime with mtime when it
  // writes back the times it keeps under the writeback cache).
  static constexpr int kSetTimes = kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow | kSetCtime;

 private:
  class Resolved;  // a name resolved under the TreeLock
  // The mutating operations proper, behind the public methods that wrap their
  // outcome and ticket into a Mutation (the do_/sfs_ split of passthrough_hp).
  Result<struct stat> DoSetAttr(SyncTicket& t, const Caller& c, uint64_t id,
                                const struct stat& attr, int to_set, FileHandle* fh);
  Result<Entry> DoMkNod(SyncTicket& t, const Caller& c, uint64_t parent, const std::string& name,
                        mode_t mode, dev_t rdev);
  Result<Entry> DoMkDir(SyncTicket& t, const Caller& c, uint64_t parent, const std::string& name,
                        mode_t mode);
  Result<Entry> DoSymlink(SyncTicket& t, const Caller& c, const std::string& target,
                          uint64_t parent, const std::string& name);
  Result<Entry> DoLink(SyncTicket& t, const Caller& c, uint64_t id, uint64_t new_parent,
                       const std::string& new_name);
  // The copy-on-write hooks of a rename: both parents, the source (and the
  // frozen paths below it), the replaced or exchanged destination.
  void PreserveRenamed(CowSpool& cow, const Resolved& src, const struct stat& sst,
                       const Resolved& dst, const struct stat* dst_st, unsigned int flags);
  Status DoRename(SyncTicket& t, const Caller& c, uint64_t parent, const std::string& name,
                  uint64_t new_parent, const std::string& new_name, unsigned int flags);
  Result<Created> DoCreate(SyncTicket& t, const Caller& c, uint64_t parent,
                           const std::string& name, mode_t mode, int flags);
  Status DoFlush(SyncTicket& t, const Caller& c, FileHandle* fh);
  Status DoFsync(SyncTicket& t, const Caller& c, FileHandle* fh, bool datasync);
  Status DoSetXattr(SyncTicket& t, const Caller& c, uint64_t id, const std::string& name,
                    const std::string& value, int flags);
  Status DoRemoveXattr(SyncTicket& t, const Caller& c, uint64_t id, const std::string& name);
  // Releases ticket's records; in sync mode waits for its seq when op_ok.
  Status Await(SyncTicket& ticket, bool op_ok, Deadline deadline);
  // Undoes what a successful outcome handed out when its sync wait failed:
  // the lookup reference of a new entry (a created file's handle closes with
  // the outcome).
  void Undo(const Entry& e) { Forget(e.id, 1); }
  void Undo(const Created& c) { Forget(c.first.id, 1); }
  void Undo(const struct stat&) {}
  // Notes on inode, whose name a removal just took (st: its attributes
  // before), what it looked like if that was its last known name (see
  // InodeActive::gone_attr). Requires the TreeLock.
  void NoteRemoved(Inode& inode, const struct stat& st);
  // DoSetAttr of only times (to_set within kSetTimes) on an inode with no
  // name and no open file left: nothing of it is in DATADIR any more.
  Result<struct stat> SetTimesOfGone(Inode& inode, const struct stat& attr, int to_set);
  std::shared_ptr<Inode> Node(uint64_t id);
  // The copy-on-write spool while a capture is live (one atomic load), else
  // nullptr: its hooks run before the mutation reaches the backing directory.
  CowSpool* LiveCow() const;
  Result<UniqueFd> OpenRel(const std::string& rel, int flags);
  // A duplicate of a descriptor an open file holds on inode: how an inode
  // with no name left (unlinked while open) is still reached. ENOENT if none.
  Result<UniqueFd> OpenFdOf(Inode& inode);
  // Opens inode `id` by its current name (resolved under the TreeLock).
  Result<UniqueFd> OpenNode(uint64_t id, int flags);
  // Opens inode by its newest name, beneath its parent directory's
  // descriptor: no system call sees more than one component, so trees
  // deeper than PATH_MAX work as on the disk. Requires the TreeLock.
  Result<UniqueFd> OpenByName(const Inode& inode, int flags);
  Result<Entry> MakeEntry(const std::shared_ptr<Inode>& parent, const std::string& name, int dirfd);
  // Counts and logs a failed journal commit; the EIO the mutation returns.
  Status JournalFailed(const Status& s);
  Status Commit(Record& r, bool durable = false);
  Status CommitAll(std::vector<Record>& rs, bool durable = false);
  // Commits rs together with every record waiting for a group commit
  // (pending ranges, deferred closes), those first, in one transaction: the
  // journal's order stays the order in which things happened. Requires the
  // TreeLock and no InodeActive::mu held.
  // Our own records (rs) are held in ticket until the operation is done.
  Status CommitWithPending(std::vector<Record>& rs, SyncTicket& ticket, bool durable = false);
  Status CommitWithPending(Record& r, SyncTicket& ticket);
  // Commits rs after the deferred close records; safe with an InodeActive::mu held.
  Status CommitWithDeferred(std::vector<Record>& rs);
  Result<std::string> ReadXattrs(uint64_t id, size_t size, const char* what,
                                 const std::function<ssize_t(const char*, char*, size_t)>& call);
  // unlink (dir false) or rmdir (dir true) of parent/name.
  Status RemoveName(const Caller& c, uint64_t parent, const std::string& name, bool dir,
                    SyncTicket& ticket);
  // Moves the waiting records into out. Requires the TreeLock.
  void TakePending(std::vector<Record>* out);
  // The O_PATH descriptor of directory `dir`, opened (on a cache miss)
  // below the nearest cached ancestor one name at a time. Requires the
  // TreeLock.
  Result<DirFdCache::Fd> DirFd(const Inode& dir);
  void Skip(const Record& r, int err);
  Record NewRecord(Op op, const Caller& c, std::string path);
  Status ChownNew(const Caller& c, int dirfd, const std::string& name, const struct stat& parent_st,
                  mode_t mode);
  // Data mutation gate: see DirtyState. Begin commits an intent record when the
  // inode is clean (*covered = true: that record already names the range);
  // End adds the range written unless it is covered.
  Status BeginData(const Caller& c, Inode& inode, uint64_t offset, uint64_t length, bool* covered);
  void EndData(Inode& inode, uint64_t offset, uint64_t length, bool covered);
  // Commits inode's pending ranges plus `extra` records (close/fsync).
  Status CommitInodeRanges(const Caller& c, Inode& inode, std::vector<Record> extra, bool durable,
                           bool mark_clean, SyncTicket& ticket);
  Status DeferClose(Inode& inode, Record close);
  void FlusherLoop();
  // The charge of a block- or inode-allocating syscall made for uid/gid.
  ResourceCharge ChargeOf(uid_t uid, gid_t gid) const {
    return ChargeFor(resource_caps_, uid, gid);
  }
  ResourceCharge ChargeOf(const Caller& c) const { return ChargeOf(c.uid, c.gid); }
  ResourceCharge ChargeOf(const FileHandle& fh) const {
    return ChargeOf(fh.opener_uid, fh.opener_gid);
  }
  // Passes the mutation gate (blocks while paused). Call before any lock.
  // A kData mutation that records a change of a path (`new_path`: all but
  // writes into an open file, which BeginData charges only when the file
  // was clean) counts one path against bounded lag's grant
  // (MutationGate::SetPathBudget).
  MutationGate::Pass EnterGate(MutationKind kind = MutationKind::kData, bool new_path = true) {
    if (!options_.gate) return MutationGate::Pass();
    MutationGate::Pass pass = options_.gate->Enter(kind);
    if (kind == MutationKind::kData && new_path) options_.gate->ChargePath();
    return pass;
  }

  UniqueFd root_fd_;
  Journal* const journal_;
  const FsOptions options_;
  InodeTable inodes_;
  DirFdCache dir_fds_;
  FdBudget fd_budget_;
  FsCounters counters_;
  std::atomic<bool> kernel_owns_mtime_{false};
  // Read once: the daemon does not change its capabilities while it serves.
  const DaemonResourceCaps resource_caps_ = DaemonResourceCaps::OfThisThread();

  // One FlushAllRanges or QueueAllRanges at a time, from taking the ranges
  // until their records have seqs (are queued): records of writes from
  // before a pause that the flusher has taken must come before the pause
  // record.
  std::mutex flush_all_mu_;
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::vector<std::shared_ptr<Inode>> flush_list_;  // GUARDED_BY(flush_mu_)
  std::vector<Record> deferred_;                     // GUARDED_BY(flush_mu_)
  bool stopping_ = false;                            // GUARDED_BY(flush_mu_)
  bool flusher_idle_ = false;  // waiting for work, needs a notify; GUARDED_BY(flush_mu_)
  std::thread flusher_;
};

}  // namespace scribefs
