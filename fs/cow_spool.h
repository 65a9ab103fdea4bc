// CowSpool: copy-on-write capture of the state of DATADIR at a journal mark.
//
// A checkpoint freezes, under a pause, the set of paths whose state at journal
// seq S is not yet stored (Capture). From then on the Filesystem calls the
// Before* hooks below BEFORE a mutation reaches the backing directory; the
// spool preserves what that mutation would destroy of a frozen inode: the
// original bytes of the range it overwrites (each byte at most once per
// capture), the inode's attributes at the mark (at its first mutation), and
// the inode itself (a hard link) when its frozen name goes away. OpenAtMark
// then reads any frozen path as it was at the mark: preserved bytes where
// preserved, the live inode's bytes elsewhere (nothing touched them since).
//
// A spool failure (ENOSPC, EIO, --max-spool exceeded) never fails or blocks
// the writer: that capture is abandoned (its spool freed, the reason kept for
// Captures()), and the mutation goes on.
//
// This class is the one owner of the spool's on-disk format, under DIR
// (<state dir>/spool, 0700):
//
//   DIR/<id>/capture.json      the CaptureSpec: {"id","seq","paths":[{"path",
//                              "dev","ino"}]}; written to capture.json.tmp and
//                              renamed (Capture), then fsynced with the
//                              directories (Persist): a capture directory
//                              without it is debris (removed by Open).
//   DIR/<id>/<dev>-<ino>/      one per frozen inode that was mutated:
//     attrs.json               its lstat at the mark {"mode","uid","gid","size",
//                              "rdev","atime_ns","mtime_ns","ctime_ns"} (+
//                              "target" for a symlink); written (tmp + rename)
//                              before anything else of the inode.
//     data                     sparse; preserved bytes at their own offsets.
//     ranges                   append-only log of preserved ranges: records of
//                              two little-endian uint64 (off, end), 16 bytes;
//                              a record is appended only after its bytes are in
//                              `data` (a torn tail record is ignored).
//     link                     the inode itself (hard link, taken before an
//                              unlink/rename removed its frozen name), or a copy
//                              of it when the spool is on another filesystem.
//
// Order of a data hook (what makes kill -9 safe): attrs.json, then the bytes
// into `data`, then the `ranges` record, then the caller's backing write.
// After kill -9 of the daemon the page cache holds all of it; the spool does
// not fsync per write, so a power loss may lose preserved bytes (see README).
//
// Thread-safe. One mutex guards every live capture; it is a leaf lock (the
// spool never calls back into the Filesystem). With no capture live every
// hook costs one atomic load.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/inode_key.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fs/preserved_ranges.h"

namespace scribefs {

struct FrozenPath {
  std::string path;    // relative to DATADIR, as at the mark
  InodeKey key{0, 0};  // {0,0}: absent at the mark (nothing to preserve)
};

struct CaptureSpec {
  std::string id;   // a file name: no '/', not "." or ".."
  int64_t seq = 0;  // the journal mark S
  std::vector<FrozenPath> paths;
};

struct CaptureInfo {
  std::string id;
  int64_t seq = 0;
  size_t paths = 0;
  uint64_t spool_bytes = 0;  // held by the spool and no longer by DATADIR
  bool abandoned = false;
  std::string why;  // the reason when abandoned
};

class CowSpool;
namespace cow_internal {
struct CaptureState;
struct InodeState;
}  // namespace cow_internal

// One frozen path as it was at the mark. Pread is consistent with writers
// that run meanwhile (it reads under the spool's lock). Valid while the
// capture is neither released nor abandoned (Pread then fails).
class FrozenFile {
 public:
  enum class Kind { kAbsent, kDirectory, kSymlink, kRegular, kOther };
  Kind kind() const { return kind_; }
  // lstat at the mark (type, mode, uid, gid, size, times, rdev); zero when absent.
  const struct stat& attr() const { return attr_; }
  uint64_t size() const { return static_cast<uint64_t>(attr_.st_size); }
  const std::string& target() const { return target_; }  // a symlink's
  // Up to n bytes at off of the file at the mark (short at its end).
  Result<size_t> Pread(void* buf, size_t n, uint64_t off) const;

 private:
  friend class CowSpool;
  Kind kind_ = Kind::kAbsent;
  struct stat attr_ = {};
  std::string target_;
  const CowSpool* spool_ = nullptr;
  std::shared_ptr<cow_internal::CaptureState> capture_;
  InodeKey key_{0, 0};
  UniqueFd live_;  // the inode itself (regular files)
};

class CowSpool {
 public:
  // A range end meaning "to the end of the file" (truncate, collapse).
  static constexpr uint64_t kToEnd = ~uint64_t{0};

  // dir: <state dir>/spool (created 0700). backing_root_fd: DATADIR (not
  // owned; must outlive the spool). Loads the captures a previous run left
  // and keeps preserving for them. max_bytes: the bound per capture.
  static Result<std::unique_ptr<CowSpool>> Open(std::string dir, int backing_root_fd,
                                                uint64_t max_bytes);
  ~CowSpool();
  CowSpool(const CowSpool&) = delete;
  CowSpool& operator=(const CowSpool&) = delete;

  // Starts preserving for spec. O(paths), no I/O per path, no fsync: call
  // while no mutation runs (under the pause), then Persist once writers run
  // again. Until then the capture survives kill -9 (the page cache) but not
  // a power loss.
  Status Capture(const CaptureSpec& spec);
  // Makes capture id durable (fsync of capture.json and its directories).
  Status Persist(const std::string& id);
  // Deletes a capture's spool (stored, or abandoned). ENOENT if unknown.
  Status Release(const std::string& id);
  std::vector<CaptureInfo> Captures() const;
  // Whether path is frozen in capture id (false for an unknown one; an
  // abandoned capture still knows its paths).
  bool Freezes(const std::string& id, const std::string& path) const;
  // The state of path at capture id's mark. Error for a path not in the
  // capture (read it live), an unknown or abandoned capture.
  Result<FrozenFile> OpenAtMark(const std::string& id, const std::string& path) const;

  // ---- hooks: called BEFORE the mutation reaches the backing directory ----
  // True when some live capture is preserving for key (cheap when none).
  bool Watches(InodeKey key) const;
  // A data change of [off, end) of the inode open as fd (any access mode,
  // O_PATH too): write, copy_file_range, fallocate, truncate (off = new
  // size, end = kToEnd), open(O_TRUNC) (0, kToEnd). An empty range (off >=
  // end) records only the attributes (a size-extending fallocate).
  void BeforeData(InodeKey key, int fd, uint64_t off, uint64_t end);
  // A metadata change (mode, owner, times, xattrs, links) of the inode of
  // fd (O_PATH is fine); also the parent directory of a namespace change.
  void BeforeMetadata(InodeKey key, int fd);
  // dirfd/name (inode key) loses this name: unlink, rmdir, rename-from,
  // rename-over. A non-directory is hard-linked into the spool. gone: DATADIR
  // no longer holds the inode afterwards (unlink, rename-over), so its size
  // counts against --max-spool.
  void BeforeRemoveName(InodeKey key, int dirfd, const std::string& name, bool gone);
  // The directory at rel_path (relative to DATADIR, now) is about to be
  // renamed: every frozen path below it that still leads to its frozen
  // inode is preserved (linked, or a directory's attributes recorded).
  void BeforeRenameDir(const std::string& rel_path);

  // True while any capture is live (one atomic load).
  bool live() const { return live_.load(std::memory_order_acquire) != 0; }

 private:
  friend class FrozenFile;
  using CaptureState = cow_internal::CaptureState;
  using InodeState = cow_internal::InodeState;
  CowSpool(std::string dir, UniqueFd dir_fd, int backing_root_fd, uint64_t max_bytes);
  Status Load(const std::string& id);
  // The inode's spool state, created with its attributes (lstat of
  // dirfd/name, AT_EMPTY_PATH for name "") on its first mutation. nullptr
  // when key is not frozen in c or c was abandoned (by this call).
  InodeState* First(CaptureState& c, InodeKey key, int dirfd, const char* name);
  // Copies the missing parts of [off, end) of inode st (open as fd) into
  // its data file and logs them. False: c was abandoned.
  bool Preserve(CaptureState& c, InodeState& st, int fd, uint64_t off, uint64_t end);
  // Links (or copies) the inode at dirfd/name into the spool. False: abandoned.
  bool LinkInode(CaptureState& c, InodeState& st, int dirfd, const char* name, bool gone);
  void Abandon(CaptureState& c, const std::string& why);
  void UpdateLive();
  Result<size_t> ReadAtMark(const CaptureState& c, InodeKey key, int live_fd, void* buf, size_t n,
                            uint64_t off) const;

  const std::string dir_;
  UniqueFd dir_fd_;
  const int backing_root_fd_;
  const uint64_t max_bytes_;
  std::atomic<int> live_{0};  // captures not abandoned
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<CaptureState>> captures_;  // GUARDED_BY(mu_)
};

}  // namespace scribefs
