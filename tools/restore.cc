#include "tools/restore.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/beneath.h"
#include "common/unique_fd.h"
#include "uploader/checkpoint.h"
#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs::ctl {

std::string UnsafeKeyReason(std::string_view key) {
  if (key.empty()) return "empty key";
  if (key.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (key.front() == '/') return "absolute (starts with \"/\")";
  std::string_view path = key;
  if (path.back() == '/') path.remove_suffix(1);  // a directory marker
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return "empty path component";
    if (part == "." || part == "..") return "\"" + std::string(part) + "\" path component";
    start = end + 1;
  }
  return "";
}

mode_t RestoredPermissions(mode_t mode, const RestoreOptions& options) {
  mode_t perm = mode & 07777;
  if (options.same_owner) return perm;
  perm &= ~S_ISUID;
  if (!S_ISDIR(mode)) perm &= ~S_ISGID;
  return perm;
}

std::string LeftOutReason(mode_t mode, bool has_rdev, dev_t rdev, const RestoreOptions& options) {
  const mode_t type = mode & S_IFMT;
  if (options.special || (type != S_IFCHR && type != S_IFBLK)) return "";
  std::string what = type == S_IFCHR ? "a character device" : "a block device";
  if (has_rdev) {
    what += " (" + std::to_string(major(rdev)) + ", " + std::to_string(minor(rdev)) + ")";
  }
  return what + ": device nodes are restored only with --special";
}

namespace {

// The attribute changes for one inode: decided by Restorer::Impl::PlanAttrs
// from the entry, the options and what the inode has now; done by SetAttrs.
struct AttrChanges {
  bool chown = false;
  uid_t uid = 0;
  gid_t gid = 0;
  bool chmod = false;
  mode_t perm = 0;
  bool mtime = false;
  struct timespec mtime_spec = {0, 0};
};

// Applies `c` to the inode `fd`: any descriptor, O_PATH included, so that
// symlinks and device nodes (which must not be opened) get their attributes
// through a descriptor like the rest, never by a name that may have been
// swapped since it was checked. chown before chmod: chown clears
// set-user-ID bits. A symlink has no mode of its own.
Status SetAttrs(int fd, const AttrChanges& c, bool link) {
  if (c.chown && fchownat(fd, "", c.uid, c.gid, AT_EMPTY_PATH) != 0) {
    return PosixError("chown", errno);
  }
  if (c.chmod && !link && fchmod(fd, c.perm) != 0) {
    // fchmod refuses O_PATH descriptors; /proc/self/fd/N is the same inode
    // (glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does the same).
    if (errno != EBADF) return PosixError("chmod", errno);
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    if (chmod(proc.c_str(), c.perm) != 0) return PosixError("chmod", errno);
  }
  if (c.mtime) {
    struct timespec times[2] = {{0, UTIME_OMIT}, c.mtime_spec};
    if (utimensat(fd, "", times, AT_EMPTY_PATH) != 0) return PosixError("set mtime", errno);
  }
  return Status::Ok();
}

// An O_PATH descriptor of dir_fd/name (a symlink is not followed) that is
// still the inode `expect` describes (device, inode, type) and, unless a
// directory, has no other name: a hard link planted in the destination would
// otherwise lend the attributes to a file elsewhere.
Result<UniqueFd> OpenCheckedInode(int dir_fd, const std::string& name, const struct stat& expect) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return PosixError("open", errno);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return PosixError("stat", errno);
  if (st.st_dev != expect.st_dev || st.st_ino != expect.st_ino ||
      (st.st_mode & S_IFMT) != (expect.st_mode & S_IFMT)) {
    return Status::Error(EAGAIN, "replaced in the destination during the restore; run it again");
  }
  if (!S_ISDIR(st.st_mode) && st.st_nlink != 1) {
    return Status::Error(EMLINK,
                         "has other hard links in the destination; its attributes are left alone");
  }
  return fd;
}

}  // namespace

namespace {

using Clock = std::chrono::steady_clock;

enum class Kind { kUnknown, kFile, kDir, kSymlink, kSpecial };
// kLeftOut: not restored by policy (a device node without --special).
enum class Outcome { kPending, kRestored, kSkipped, kFailed, kRefused, kLeftOut };

constexpr size_t kMaxSymlinkTarget = PATH_MAX;
constexpr const char* kTempTag = ".scribefs-restore-";

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string Base(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool IsBelow(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

// A decimal metadata value (as the uploader writes them); false when absent or not a number.
bool ParseInt(const Metadata& m, const char* name, int64_t* out) {
  auto it = m.find(name);
  if (it == m.end()) return false;
  const char* begin = it->second.data();
  const char* end = begin + it->second.size();
  auto [ptr, ec] = std::from_chars(begin, end, *out);
  return ec == std::errc() && ptr == end && begin != end;
}

// A plain MD5 ETag (single-part upload): 32 hex digits.
bool IsMd5Etag(const std::string& etag) {
  return etag.size() == 32 && etag.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string TempName(const std::string& base) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string suffix(6, 'x');
  for (char& c : suffix) c = kChars[rng() % (sizeof kChars - 1)];
  // "." + base + tag + suffix must fit NAME_MAX.
  size_t room = NAME_MAX - 1 - strlen(kTempTag) - suffix.size();
  return "." + base.substr(0, room) + kTempTag + suffix;
}

// Hex digest of the first `size` bytes of fd.
Result<std::string> HashFd(int fd, uint64_t size, Hasher::Algorithm alg) {
  auto h = Hasher::Create(alg);
  if (!h.ok()) return h.status();
  std::string buf(1 << 20, '\0');
  uint64_t off = 0;
  while (off < size) {
    ssize_t n =
        pread(fd, buf.data(), std::min<uint64_t>(buf.size(), size - off), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("read", errno);
    }
    if (n == 0) return Status::Error(EIO, "file shorter than expected");
    SCRIBEFS_RETURN_IF_ERROR(h->Update(std::string_view(buf.data(), static_cast<size_t>(n))));
    off += static_cast<uint64_t>(n);
  }
  auto d = h->Finish();
  if (!d.ok()) return d.status();
  return HexEncode(*d);
}

// An unnamed file in $TMPDIR (default /tmp), gone when closed: O_TMPFILE,
// or where the file system lacks it a named file unlinked at once.
Result<UniqueFd> AnonymousTempFile() {
  const char* env = getenv("TMPDIR");
  std::string dir = env && *env ? env : "/tmp";
  UniqueFd fd(open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (fd) return fd;
  std::string name = dir + "/.scribectl-manifest.XXXXXX";
  fd = UniqueFd(mkostemp(name.data(), O_CLOEXEC));
  if (!fd) return PosixError("temporary file in " + dir, errno);
  unlink(name.c_str());
  return fd;
}

// Retries retryable store errors with exponential backoff.
template <typename F>
auto WithRetries(int max_attempts, F&& f) -> decltype(f()) {
  double delay_s = 0.25;
  for (int attempt = 1;; ++attempt) {
    auto r = f();
    if (r.ok() || !r.status().retryable() || attempt >= max_attempts) return r;
    std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
    delay_s = std::min(delay_s * 2, 8.0);
  }
}

}  // namespace

// ---------------------------------------------------------------------------

namespace {

struct Entry {
  std::string path;  // relative, no trailing "/"
  std::string key;   // object key ("path/" for a marker)
  Kind kind = Kind::kUnknown;
  bool marker = false;  // a directory with a marker object (else implied by keys below it)
  bool from_manifest = false;
  // restore --at: the stored state (in RestoreOptions::history's tree), which
  // says everything (kind, attributes, symlink target, rdev, chunks).
  const history::PathState* hstate = nullptr;
  // Attributes; meaningful when meta_known (a manifest, or after HEAD/GET).
  bool meta_known = false;
  mode_t mode = 0;  // st_mode: type and permission bits
  bool has_owner = false;
  uid_t uid = 0;
  gid_t gid = 0;
  bool mtime_known = false;
  bool mtime_exact = false;  // nanoseconds known (else whole seconds)
  int64_t mtime_ns = 0;
  bool has_rdev = false;
  dev_t rdev = 0;
  uint64_t size = 0;
  std::string etag, sha256, version_id;

  Outcome outcome = Outcome::kPending;
  std::string error;  // kFailed: the error; kRefused: the reason
  // Directories.
  bool created = false;
  bool blocked = false;  // nothing is restored below it; entries below get block_outcome
  Outcome block_outcome = Outcome::kFailed;
  std::string block_reason;
  std::string head_error;  // a marker whose attributes could not be read

  // Counted in the summary: every object (implied directories are not).
  bool counted() const { return kind != Kind::kDir || marker; }
};

// Temporary files of downloads in flight, so that a signal can remove them.
class TempRegistry {
 public:
  // Creates a temporary entry beside `base` in dir_fd with create(name)
  // (which returns 0 or an errno), trying other names on EEXIST.
  Result<uint64_t> Create(int dir_fd, const std::string& base,
                          const std::function<int(const std::string&)>& create, std::string* name) {
    std::lock_guard lock(mu_);
    if (abandoned_) return Status::Error(ECANCELED, "interrupted");
    for (int tries = 0; tries < 20; ++tries) {
      std::string n = TempName(base);
      int err = create(n);
      if (err == EEXIST) continue;
      if (err != 0) return PosixError("create a temporary file", err);
      uint64_t id = next_id_++;
      temps_[id] = Temp{dir_fd, n};
      *name = n;
      return id;
    }
    return Status::Error(EEXIST, "no free temporary name");
  }

  // Renames the temporary entry over `final_name` (or removes it on failure).
  Status Commit(uint64_t id, const std::string& final_name) {
    std::lock_guard lock(mu_);
    auto it = temps_.find(id);
    if (it == temps_.end() || abandoned_) return Status::Error(ECANCELED, "interrupted");
    const Temp t = it->second;
    temps_.erase(it);
    if (renameat(t.dir_fd, t.name.c_str(), t.dir_fd, final_name.c_str()) != 0) {
      int err = errno;
      unlinkat(t.dir_fd, t.name.c_str(), 0);
      if (err == EISDIR || err == ENOTEMPTY || err == EEXIST) {
        return Status::Error(err, "a directory is in the way in the destination");
      }
      return PosixError("rename into place", err);
    }
    return Status::Ok();
  }

  void Discard(uint64_t id) {
    std::lock_guard lock(mu_);
    auto it = temps_.find(id);
    if (it == temps_.end()) return;
    unlinkat(it->second.dir_fd, it->second.name.c_str(), 0);
    temps_.erase(it);
  }

  void Abandon() {
    std::lock_guard lock(mu_);
    abandoned_ = true;
    for (auto& [id, t] : temps_) unlinkat(t.dir_fd, t.name.c_str(), 0);
    temps_.clear();
  }

 private:
  struct Temp {
    int dir_fd;  // owned by the FileJob, which outlives its registration
    std::string name;
  };
  std::mutex mu_;
  bool abandoned_ = false;          // GUARDED_BY(mu_)
  uint64_t next_id_ = 1;            // GUARDED_BY(mu_)
  std::map<uint64_t, Temp> temps_;  // GUARDED_BY(mu_)
};

// One entry being restored by the workers; a large file is fetched in
// `parts` ranges by several workers, the last of which finishes it.
struct FileJob {
  Entry* e = nullptr;
  bool head_only = false;  // a directory marker whose attributes are read
  int parts = 1;

  std::mutex mu;
  bool prepared = false;              // GUARDED_BY(mu)
  bool done = false;                  // GUARDED_BY(mu): nothing (more) to download
  int parts_left = 0;                 // GUARDED_BY(mu)
  std::string part_error;             // GUARDED_BY(mu)
  std::vector<ObjectInfo> part_info;  // GUARDED_BY(mu)

  // Set by Prepare, then read-only until the last part finishes.
  UniqueFd dir_fd;  // O_PATH of the parent directory
  UniqueFd fd;      // the temporary file
  uint64_t temp_id = 0;
  std::string temp_name;
};

struct Task {
  FileJob* job;
  int part;
};

// Reads an object's attributes from its metadata into e: mode (type and
// permissions; default 0644 for files, 0755 for directories), uid/gid,
// mtime (scribefs-mtime-ns, else mtime seconds, else Last-Modified), rdev;
// and, for an object that is not a marker, its kind. "" or an error.
std::string ApplyMetadata(const ObjectInfo& info, Entry* e) {
  const Metadata& m = info.metadata;
  int64_t v = 0;
  e->meta_known = true;
  if (ParseInt(m, "mode", &v) && v > 0 && v <= 0177777) {
    e->mode = static_cast<mode_t>(v);
    if ((e->mode & S_IFMT) == 0) e->mode |= e->marker ? S_IFDIR : S_IFREG;
  } else {
    e->mode = e->marker ? (S_IFDIR | 0755) : (S_IFREG | 0644);
  }
  if (e->marker) {
    e->mode = S_IFDIR | (e->mode & 07777);
    e->kind = Kind::kDir;
  } else {
    switch (e->mode & S_IFMT) {
      case S_IFREG:
        e->kind = Kind::kFile;
        break;
      case S_IFLNK:
        e->kind = Kind::kSymlink;
        break;
      case S_IFIFO:
      case S_IFSOCK:
      case S_IFCHR:
      case S_IFBLK:
        e->kind = Kind::kSpecial;
        break;
      case S_IFDIR:
        return "its mode says directory, but it is not a directory marker (\"" + e->path + "/\")";
      default:
        e->mode = S_IFREG | (e->mode & 07777);
        e->kind = Kind::kFile;
        break;
    }
  }
  int64_t uid = 0, gid = 0;
  e->has_owner = ParseInt(m, "uid", &uid) && ParseInt(m, "gid", &gid) && uid >= 0 && gid >= 0 &&
                 uid <= 0xfffffffe && gid <= 0xfffffffe;
  e->uid = static_cast<uid_t>(uid);
  e->gid = static_cast<gid_t>(gid);
  if (ParseInt(m, "scribefs-mtime-ns", &v)) {
    e->mtime_ns = v;
    e->mtime_exact = e->mtime_known = true;
  } else if (ParseInt(m, "mtime", &v)) {
    e->mtime_ns = v * 1000000000;
    e->mtime_exact = false;
    e->mtime_known = true;
  } else if (info.mtime > 0) {
    e->mtime_ns = info.mtime * 1000000000;
    e->mtime_exact = false;
    e->mtime_known = true;
  }
  if (ParseInt(m, "rdev", &v) && v >= 0) {
    e->rdev = static_cast<dev_t>(v);
    e->has_rdev = true;
  }
  return "";
}

bool SameMtime(const Entry& e, const struct stat& st) {
  if (!e.mtime_known) return true;
  if (e.mtime_exact) return MtimeNs(st) == e.mtime_ns;
  return int64_t(st.st_mtim.tv_sec) == e.mtime_ns / 1000000000;
}

struct timespec MtimeSpec(const Entry& e) {
  struct timespec t;
  t.tv_sec = static_cast<time_t>(e.mtime_ns / 1000000000);
  t.tv_nsec = static_cast<long>(e.mtime_ns % 1000000000);
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    t.tv_sec -= 1;
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------

struct Restorer::Impl {
  ObjectStore* store;
  int root_fd;
  const ExcludeFilter* filter;
  RestoreOptions opt;
  RestoreProgress* progress;
  mode_t umask_bits = 022;

  TempRegistry temps;
  std::vector<Entry> entries;  // sorted by path once planned
  std::unordered_map<std::string, size_t> dir_index;
  std::vector<RestoreRefusal> refused;  // keys refused before they became entries
  uint64_t excluded = 0;
  std::string manifest_target;
  std::atomic<uint64_t> bytes{0};

  // ---- planning ----

  // --path, the key rules, the reserved prefix and the excludes. True when
  // the key is to be restored; *path is it without a marker's "/".
  bool Admit(const std::string& key, std::string* path, bool* marker) {
    std::string p = key;
    *marker = !p.empty() && p.back() == '/';
    if (*marker) p.pop_back();
    if (!opt.path.empty() && p != opt.path && !IsBelow(p, opt.path)) return false;
    std::string why = UnsafeKeyReason(key);
    if (!why.empty()) {
      refused.push_back({key, why});
      return false;
    }
    if (IsReservedPath(p)) return false;
    if (filter && filter->Excluded(p)) {
      ++excluded;
      return false;
    }
    *path = std::move(p);
    return true;
  }

  Status BuildFromListing() {
    ListOptions lo;
    lo.prefix = opt.path;
    auto listed = WithRetries(opt.max_attempts, [&] { return store->ListAll(lo); });
    if (!listed.ok()) return listed.status().status().WithContext("listing " + store->Describe());
    for (const ListEntry& le : *listed) {
      if (le.is_prefix) continue;
      Entry e;
      if (!Admit(le.key, &e.path, &e.marker)) continue;
      e.key = le.key;
      e.kind = e.marker ? Kind::kDir : Kind::kUnknown;
      e.size = le.size;
      e.etag = le.etag;
      entries.push_back(std::move(e));
    }
    return Status::Ok();
  }

  Status BuildFromManifest() {
    const std::string mkey = CheckpointManifestKey(opt.checkpoint);
    // Downloaded to an unnamed file, then read entry by entry: a manifest of
    // many paths is never held whole in memory (nor parsed into a document).
    auto file = AnonymousTempFile();
    if (!file.ok())
      return file.status().WithContext("reading the manifest of checkpoint \"" + opt.checkpoint +
                                       "\"");
    const int fd = file->get();
    auto got = WithRetries(opt.max_attempts, [&]() -> StoreResult<ObjectInfo> {
      if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        return StoreStatus(PosixError("temporary manifest file", errno));
      return store->GetToFile(mkey, fd);
    });
    if (!got.ok()) {
      if (got.status().not_found()) {
        return Status::Error(ENOENT, "no checkpoint \"" + opt.checkpoint + "\" in " +
                                         store->Describe() + " (see 'scribectl checkpoints')");
      }
      return got.status().status().WithContext("reading the manifest of checkpoint \"" +
                                               opt.checkpoint + "\"");
    }
    if (lseek(fd, 0, SEEK_SET) != 0) return PosixError("temporary manifest file", errno);
    const std::string what = "the manifest " + mkey;
    // Entries are collected as they come; a manifest that turns out bad
    // (ReadManifest fails) leaves nothing restored: Run() stops on it.
    return ReadManifest(fd, what, &manifest_target,
                        [&](ManifestEntry&& j) { return AddManifestEntry(what, std::move(j)); });
  }

  // One entry of the manifest `what` into entries (or refused).
  Status AddManifestEntry(const std::string& what, ManifestEntry&& j) {
    Entry e;
    const std::string& key = j.key;
    const std::string& type = j.type;
    if (!Admit(key, &e.path, &e.marker)) return Status::Ok();
    if (j.path != e.path || e.marker != (type == kTypeDir)) {
      refused.push_back({key, "the manifest names it for another path (\"" + j.path + "\")"});
      return Status::Ok();
    }
    e.key = key;
    e.from_manifest = true;
    if (type == kTypeFile) {
      e.kind = Kind::kFile;
    } else if (type == kTypeDir) {
      e.kind = Kind::kDir;
    } else if (type == kTypeSymlink) {
      e.kind = Kind::kSymlink;
    } else if (type == kTypeSpecial) {
      e.kind = Kind::kSpecial;
    } else {
      return Status::Error(EINVAL,
                           what + ": entry \"" + e.path + "\" has unknown type \"" + type + "\"");
    }
    if (!j.has_attributes)
      return Status::Error(EINVAL, what + ": entry \"" + e.path + "\" lacks its attributes");
    e.mode = j.mode;
    e.uid = j.uid;
    e.gid = j.gid;
    e.mtime_ns = j.mtime_ns;
    e.size = j.size;
    e.meta_known = e.has_owner = e.mtime_known = e.mtime_exact = true;
    e.etag = std::move(j.etag);
    e.sha256 = std::move(j.sha256);
    e.version_id = std::move(j.version_id);
    entries.push_back(std::move(e));
    return Status::Ok();
  }

  // The entries of a tree replayed from history (RestoreOptions::history).
  Status BuildFromHistory() {
    for (const auto& [path, stored] : *opt.history->tree) {
      const history::PathState& st = stored.state;
      const bool dir = st.type == kTypeDir;
      Entry e;
      if (!Admit(dir ? path + "/" : path, &e.path, &e.marker)) continue;
      e.key = dir ? path + "/" : path;
      e.hstate = &st;
      if (st.type == kTypeFile) {
        e.kind = Kind::kFile;
      } else if (dir) {
        e.kind = Kind::kDir;
      } else if (st.type == kTypeSymlink) {
        e.kind = Kind::kSymlink;
      } else if (st.type == kTypeSpecial) {
        e.kind = Kind::kSpecial;
        e.rdev = static_cast<dev_t>(st.rdev);
        e.has_rdev = true;
      } else {  // the segment decoder admits no other type
        return Status::Error(EINVAL, "history: \"" + path + "\" has unknown type " + st.type);
      }
      e.mode = st.mode;
      e.uid = st.uid;
      e.gid = st.gid;
      e.mtime_ns = st.mtime_ns;
      e.size = st.size;
      e.meta_known = e.has_owner = e.mtime_known = e.mtime_exact = true;
      entries.push_back(std::move(e));
    }
    return Status::Ok();
  }

  Status Build() {
    if (opt.history) return BuildFromHistory();
    return opt.checkpoint.empty() ? BuildFromListing() : BuildFromManifest();
  }

  Entry* DirAt(const std::string& path) {
    auto it = dir_index.find(path);
    return it == dir_index.end() ? nullptr : &entries[it->second];
  }

  // Adds the directories that keys imply, sorts, and settles paths that are
  // both a directory and something else (the symlink rule).
  void Resolve() {
    std::set<std::string> dirs;
    for (const Entry& e : entries)
      if (e.kind == Kind::kDir) dirs.insert(e.path);
    std::vector<Entry> implied;
    for (const Entry& e : entries) {
      for (std::string p = Parent(e.path); !p.empty(); p = Parent(p)) {
        if (!dirs.insert(p).second) break;  // known, and so are its parents
        Entry d;
        d.path = p;
        d.key = p + "/";
        d.kind = Kind::kDir;
        implied.push_back(std::move(d));
      }
    }
    for (auto& d : implied) entries.push_back(std::move(d));
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
      if (a.path != b.path) return a.path < b.path;
      return a.kind == Kind::kDir && b.kind != Kind::kDir;  // the directory first
    });
    // Duplicate paths (a manifest that names one twice): the first wins.
    entries.erase(std::unique(entries.begin(), entries.end(),
                              [](const Entry& a, const Entry& b) {
                                return a.path == b.path &&
                                       (a.kind == Kind::kDir) == (b.kind == Kind::kDir);
                              }),
                  entries.end());
    dir_index.clear();
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].kind == Kind::kDir) dir_index[entries[i].path] = i;

    for (size_t i = 0; i < entries.size(); ++i) {
      Entry& n = entries[i];
      if (n.kind == Kind::kDir || !dirs.count(n.path)) continue;
      if (n.kind == Kind::kUnknown) {
        auto h = WithRetries(opt.max_attempts, [&] { return store->Head(n.key); });
        if (h.ok()) (void)ApplyMetadata(*h, &n);
      }
      if (n.kind == Kind::kSymlink) {
        // Nothing is restored through a symlink: the directory at its path
        // and everything below it are refused.
        const std::string reason = "below \"" + n.path + "\", which is a symlink in the target";
        for (Entry& d : entries) {
          if (&d == &n || (d.path != n.path && !IsBelow(d.path, n.path))) continue;
          if (d.outcome != Outcome::kPending) continue;
          d.outcome = Outcome::kRefused;
          d.error = reason;
          d.blocked = true;
          d.block_outcome = Outcome::kRefused;
          d.block_reason = reason;
        }
      } else {
        n.outcome = Outcome::kFailed;
        n.error = "both a file and a directory in the target; the directory is restored";
      }
    }
    uint64_t paths = 0, total = 0;
    for (const Entry& e : entries) {
      if (!e.counted()) continue;
      ++paths;
      if (e.kind != Kind::kDir) total += e.size;
      if (e.outcome != Outcome::kPending) progress->done_paths++;
    }
    progress->total_paths = paths;
    progress->total_bytes = total;
  }

  void Finish(Entry& e, Outcome o, std::string error = "") {
    e.outcome = o;
    e.error = std::move(error);
    if (e.counted()) progress->done_paths++;
    if (o == Outcome::kSkipped && e.kind != Kind::kDir) progress->done_bytes += e.size;
  }

  void Block(Entry& d, Outcome o, const std::string& reason) {
    d.blocked = true;
    d.block_outcome = o;
    d.block_reason = reason;
    Finish(d, o, reason);
  }

  // ---- directories, parents first ----

  void MakeDirectories() {
    std::string cached_path = "\x01";  // never a path
    UniqueFd cached;
    for (Entry& d : entries) {
      if (d.kind != Kind::kDir || d.outcome != Outcome::kPending) continue;
      const std::string parent = Parent(d.path);
      if (Entry* p = DirAt(parent); p && p->blocked) {
        Block(d, p->block_outcome, p->block_reason);
        continue;
      }
      if (parent != cached_path) {
        auto fd = OpenBeneath(root_fd, parent, O_PATH | O_DIRECTORY);
        if (!fd.ok()) {
          Block(d, Outcome::kFailed, "cannot open its parent: " + fd.status().message());
          continue;
        }
        cached = std::move(fd).value();
        cached_path = parent;
      }
      const std::string name = Base(d.path);
      if (mkdirat(cached.get(), name.c_str(), 0700) == 0) {
        d.created = true;
        continue;
      }
      int err = errno;
      struct stat st;
      if (err != EEXIST || fstatat(cached.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        Block(d, Outcome::kFailed, std::string("mkdir: ") + strerror(err));
      } else if (S_ISLNK(st.st_mode)) {
        Block(d, Outcome::kRefused,
              "\"" + d.path + "\" is a symlink in the destination; nothing is restored through it");
      } else if (!S_ISDIR(st.st_mode)) {
        Block(d, Outcome::kFailed,
              "\"" + d.path + "\" exists in the destination and is not a directory");
      }
    }
  }

  // ---- files, symlinks, special files: the workers ----

  void RunJobs() {
    std::vector<std::unique_ptr<FileJob>> jobs;
    for (Entry& e : entries) {
      if (e.outcome != Outcome::kPending) continue;
      if (e.kind == Kind::kDir) {
        if (e.marker && !e.meta_known) {
          auto j = std::make_unique<FileJob>();
          j->e = &e;
          j->head_only = true;
          jobs.push_back(std::move(j));
        }
        continue;
      }
      if (Entry* p = DirAt(Parent(e.path)); p && p->blocked) {
        Finish(e, p->block_outcome, p->block_reason);
        continue;
      }
      auto j = std::make_unique<FileJob>();
      j->e = &e;
      // A file from history is written chunk by chunk by one worker.
      if ((e.kind == Kind::kFile || e.kind == Kind::kUnknown) && !e.hstate && opt.workers > 1 &&
          opt.range_size > 0 && e.size > opt.range_threshold) {
        j->parts = static_cast<int>((e.size + opt.range_size - 1) / opt.range_size);
      }
      jobs.push_back(std::move(j));
    }
    // Largest first, so that the last big file does not run alone at the end.
    std::stable_sort(jobs.begin(), jobs.end(),
                     [](const auto& a, const auto& b) { return a->e->size > b->e->size; });
    std::vector<Task> tasks;
    for (auto& j : jobs)
      for (int p = 0; p < j->parts; ++p) tasks.push_back(Task{j.get(), p});
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next++) < tasks.size();) RunTask(tasks[i]);
    };
    int n = std::max(1, std::min<int>(opt.workers, static_cast<int>(tasks.size())));
    std::vector<std::thread> threads;
    for (int t = 1; t < n; ++t) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
  }

  void RunTask(const Task& t) {
    FileJob& j = *t.job;
    if (j.head_only) {
      HeadMarker(j);
      return;
    }
    {
      std::lock_guard lock(j.mu);
      if (!j.prepared) {
        j.prepared = true;
        if (!Prepare(j)) j.done = true;
      }
      if (j.done) return;
    }
    DownloadPart(j, t.part);
  }

  void HeadMarker(FileJob& j) {
    Entry& e = *j.e;
    auto h = WithRetries(opt.max_attempts, [&] { return store->Head(e.key); });
    if (h.ok()) {
      (void)ApplyMetadata(*h, &e);
    } else if (!h.status().not_found()) {  // gone meanwhile: an implied directory then
      e.head_error = h.status().message();
    }
  }

  // Decides what to do with j's entry, and does all of it but the download
  // of a file. True when a download into the temporary file j.fd follows.
  bool Prepare(FileJob& j) {
    Entry& e = *j.e;
    auto dfd = OpenBeneath(root_fd, Parent(e.path), O_PATH | O_DIRECTORY);
    if (!dfd.ok()) {
      Finish(e, Outcome::kFailed, "cannot open its directory: " + dfd.status().message());
      return false;
    }
    j.dir_fd = std::move(dfd).value();
    const std::string name = Base(e.path);
    struct stat st;
    bool exists = fstatat(j.dir_fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT) {
      Finish(e, Outcome::kFailed, std::string("stat: ") + strerror(errno));
      return false;
    }
    if (exists && S_ISDIR(st.st_mode)) {
      Finish(e, Outcome::kFailed, "a directory is in the way in the destination");
      return false;
    }
    // A listed object: learn what it is when the local entry may already be it.
    if (exists && e.kind == Kind::kUnknown) {
      bool special = !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode);
      bool maybe = ((S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) &&
                    static_cast<uint64_t>(st.st_size) == e.size) ||
                   (special && e.size == 0);
      if (maybe) {
        auto h = WithRetries(opt.max_attempts, [&] { return store->Head(e.key); });
        if (!h.ok()) {
          Finish(e, Outcome::kFailed, Vanished(e, h.status()));
          return false;
        }
        if (std::string err = ApplyMetadata(*h, &e); !err.empty()) {
          Finish(e, Outcome::kFailed, err);
          return false;
        }
        e.size = h->size;
        e.etag = h->etag;
      }
    }
    switch (e.kind) {
      case Kind::kFile:
        // A file with other names is downloaded again and renamed over this
        // one: its attributes would change the other names' too.
        if (exists && S_ISREG(st.st_mode) && st.st_nlink == 1 && UpToDate(j, st)) {
          Status s = FixAttrs(j, name, st);
          Finish(e, s.ok() ? Outcome::kSkipped : Outcome::kFailed, s.ok() ? "" : s.message());
          return false;
        }
        break;
      case Kind::kSymlink:
        RestoreSymlink(j, exists ? &st : nullptr);
        return false;
      case Kind::kSpecial:
        RestoreSpecial(j, exists ? &st : nullptr);
        return false;
      default:
        break;  // unknown until its GET answers
    }
    auto id = temps.Create(
        j.dir_fd.get(), name,
        [&](const std::string& n) {
          int fd = openat(j.dir_fd.get(), n.c_str(),
                          O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
          if (fd < 0) return errno;
          j.fd.Reset(fd);
          return 0;
        },
        &j.temp_name);
    if (!id.ok()) {
      Finish(e, Outcome::kFailed, id.status().message());
      return false;
    }
    j.temp_id = *id;
    if (j.parts > 1 && ftruncate(j.fd.get(), static_cast<off_t>(e.size)) != 0) {
      int err = errno;
      temps.Discard(j.temp_id);
      Finish(e, Outcome::kFailed, std::string("allocate: ") + strerror(err));
      return false;
    }
    j.parts_left = j.parts;
    j.part_info.resize(static_cast<size_t>(j.parts));
    return true;
  }

  // The message for a failed read of e's object.
  std::string Vanished(const Entry& e, const StoreStatus& s) const {
    // From history: the message names the chunk that is missing.
    if (!s.not_found() || e.hstate) return s.message();
    if (!e.from_manifest) return "no longer in the target (deleted during the restore?)";
    if (e.version_id.empty()) {
      return "deleted from the target since checkpoint \"" + opt.checkpoint +
             "\"; the bucket keeps no version of it (versioning is off), so that content is gone";
    }
    return "version " + e.version_id + " is no longer in the target";
  }

  std::string ChangedSinceCheckpoint(const Entry& e, const std::string& etag_now) const {
    return "changed in the target since checkpoint \"" + opt.checkpoint + "\" (ETag now " +
           etag_now + ", the checkpoint recorded " + e.etag +
           "); the bucket keeps no version of it (versioning is off), so that content is gone";
  }

  // The resume rule for a regular file (see restore.h).
  bool UpToDate(FileJob& j, const struct stat& st) {
    const Entry& e = *j.e;
    if (static_cast<uint64_t>(st.st_size) != e.size || !e.mtime_known || !SameMtime(e, st)) {
      return false;
    }
    if (e.hstate) return ChunksMatch(j, *e.hstate);
    Hasher::Algorithm alg;
    std::string want;
    if (!e.sha256.empty()) {
      alg = Hasher::Algorithm::kSha256;
      want = e.sha256;
    } else if (IsMd5Etag(e.etag)) {
      alg = Hasher::Algorithm::kMd5;
      want = e.etag;
    } else {
      return true;  // multipart object without a SHA-256: size and mtime decide
    }
    UniqueFd fd(openat(j.dir_fd.get(), Base(e.path).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return false;
    auto h = HashFd(fd.get(), e.size, alg);
    return h.ok() && *h == want;
  }

  // Whether the existing file has each of the chunks of `state` (SHA-256 of
  // each range), so that a resumed restore --at does not fetch it again.
  bool ChunksMatch(FileJob& j, const history::PathState& state) {
    UniqueFd fd(openat(j.dir_fd.get(), Base(j.e->path).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return false;
    std::string buf;
    uint64_t off = 0;
    for (const history::ChunkRef& c : state.chunks) {
      buf.resize(c.size);
      uint64_t got = 0;
      while (got < c.size) {
        ssize_t n = pread(fd.get(), buf.data() + got, c.size - got, static_cast<off_t>(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        got += static_cast<uint64_t>(n);
      }
      auto h = Sha256(buf);
      if (!h.ok() || HexEncode(*h) != c.sha256) return false;
      off += c.size;
    }
    return off == state.size;
  }

  // The changes that give e its attributes as the options allow (owner only
  // with same_owner, RestoredPermissions); with `now` (an existing inode),
  // only those that differ from it.
  AttrChanges PlanAttrs(const Entry& e, const struct stat* now) const {
    AttrChanges c;
    if (opt.same_owner && e.has_owner) {
      c.chown = !now || now->st_uid != e.uid || now->st_gid != e.gid;
      c.uid = e.uid;
      c.gid = e.gid;
    }
    if (e.meta_known) {
      c.perm = RestoredPermissions(e.mode, opt);
      // chown may have cleared set-user-ID bits: set them again in any case.
      c.chmod = !now || (now->st_mode & 07777) != c.perm || (c.perm & (S_ISUID | S_ISGID));
    }
    if (e.mtime_known) {
      c.mtime = !now || !SameMtime(e, *now);
      c.mtime_spec = MtimeSpec(e);
    }
    return c;
  }

  // Sets mode, owner and mtime of an existing entry that is otherwise right
  // (`st`, as checked), through a descriptor of that very inode.
  Status FixAttrs(FileJob& j, const std::string& name, const struct stat& st) {
    AttrChanges c = PlanAttrs(*j.e, &st);
    if (!c.chown && !c.chmod && !c.mtime) return Status::Ok();
    auto fd = OpenCheckedInode(j.dir_fd.get(), name, st);
    if (!fd.ok()) return fd.status();
    return SetAttrs(fd->get(), c, S_ISLNK(st.st_mode));
  }

  // Owner, mode and mtime on a new temporary entry (a symlink or special
  // file: no descriptor to open it with), through an O_PATH descriptor of
  // what this restore just created there: its type, ours, one name.
  Status SetAttrsAt(int dfd, const std::string& name, const Entry& e, bool link) {
    UniqueFd fd(openat(dfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return PosixError("open", errno);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return PosixError("stat", errno);
    const mode_t type = link ? S_IFLNK : (e.mode & S_IFMT);
    if ((st.st_mode & S_IFMT) != type || st.st_uid != geteuid() || st.st_nlink != 1) {
      return Status::Error(EAGAIN, "replaced in the destination during the restore; run it again");
    }
    return SetAttrs(fd.get(), PlanAttrs(e, nullptr), link);
  }

  // Creates the entry with create(temp name), gives it its attributes and
  // renames it into place.
  void CreateByRename(FileJob& j, bool link, const std::function<int(const std::string&)>& create) {
    Entry& e = *j.e;
    std::string temp;
    auto id = temps.Create(j.dir_fd.get(), Base(e.path), create, &temp);
    if (!id.ok()) {
      Finish(e, Outcome::kFailed, id.status().message());
      return;
    }
    Status s = SetAttrsAt(j.dir_fd.get(), temp, e, link);
    if (!s.ok()) {
      temps.Discard(*id);
      Finish(e, Outcome::kFailed, s.message());
      return;
    }
    s = temps.Commit(*id, Base(e.path));
    Finish(e, s.ok() ? Outcome::kRestored : Outcome::kFailed, s.ok() ? "" : s.message());
  }

  void RestoreSymlink(FileJob& j, const struct stat* existing) {
    Entry& e = *j.e;
    if (e.hstate) {
      CompleteSymlink(j, e.hstate->target, existing);
      return;
    }
    const std::string name = Base(e.path);
    // A checkpoint knows the target's SHA-256: an identical link needs no GET.
    if (e.from_manifest && !e.sha256.empty() && existing && S_ISLNK(existing->st_mode)) {
      std::string now = ReadLink(j.dir_fd.get(), name);
      auto h = Sha256(now);
      if (!now.empty() && h.ok() && HexEncode(*h) == e.sha256) {
        Status s = FixAttrs(j, name, *existing);
        Finish(e, s.ok() ? Outcome::kSkipped : Outcome::kFailed, s.ok() ? "" : s.message());
        return;
      }
    }
    auto got =
        WithRetries(opt.max_attempts, [&] { return store->GetVersion(e.key, e.version_id); });
    if (!got.ok()) {
      Finish(e, Outcome::kFailed, Vanished(e, got.status()));
      return;
    }
    bytes += got->body.size();
    progress->done_bytes += got->body.size();
    if (e.from_manifest) {
      if (std::string err = CheckAgainstManifest(e, got->info.etag, got->body); !err.empty()) {
        Finish(e, Outcome::kFailed, err);
        return;
      }
    } else {
      if (std::string err = ApplyMetadata(got->info, &e); !err.empty()) {
        Finish(e, Outcome::kFailed, err);
        return;
      }
      if (e.kind != Kind::kSymlink) {
        Finish(e, Outcome::kFailed, "changed in the target during the restore; run it again");
        return;
      }
    }
    CompleteSymlink(j, got->body, existing);
  }

  static std::string ReadLink(int dfd, const std::string& name) {
    std::string buf(kMaxSymlinkTarget + 1, '\0');
    ssize_t n = readlinkat(dfd, name.c_str(), buf.data(), buf.size());
    if (n < 0 || static_cast<size_t>(n) > kMaxSymlinkTarget) return "";
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  // A checkpoint entry's content (a symlink target) against the manifest:
  // its SHA-256 when known, else its ETag. "" or why not.
  std::string CheckAgainstManifest(const Entry& e, const std::string& etag_now,
                                   const std::string& content) const {
    bool same;
    if (!e.sha256.empty()) {
      auto h = Sha256(content);
      same = h.ok() && HexEncode(*h) == e.sha256;
    } else {
      same = e.etag.empty() || etag_now == e.etag;
    }
    if (same) return "";
    if (e.version_id.empty()) return ChangedSinceCheckpoint(e, etag_now);
    return "the content does not match the checkpoint's SHA-256";
  }

  void CompleteSymlink(FileJob& j, const std::string& target, const struct stat* existing) {
    Entry& e = *j.e;
    if (target.empty() || target.size() > kMaxSymlinkTarget ||
        target.find('\0') != std::string::npos) {
      Finish(e, Outcome::kFailed, "not a valid symlink target (empty, too long, or a NUL byte)");
      return;
    }
    if (existing && S_ISLNK(existing->st_mode) &&
        ReadLink(j.dir_fd.get(), Base(e.path)) == target) {
      Status s = FixAttrs(j, Base(e.path), *existing);
      Finish(e, s.ok() ? Outcome::kSkipped : Outcome::kFailed, s.ok() ? "" : s.message());
      return;
    }
    CreateByRename(j, /*link=*/true, [&](const std::string& n) {
      return symlinkat(target.c_str(), j.dir_fd.get(), n.c_str()) == 0 ? 0 : errno;
    });
  }

  void RestoreSpecial(FileJob& j, const struct stat* existing) {
    Entry& e = *j.e;
    const mode_t type = e.mode & S_IFMT;
    const bool device = type == S_IFCHR || type == S_IFBLK;
    if (std::string why = LeftOutReason(e.mode, e.has_rdev, e.rdev, opt); !why.empty()) {
      Finish(e, Outcome::kLeftOut, why);
      return;
    }
    if (device && !e.has_rdev) {
      // A manifest does not carry rdev: the object's metadata does.
      auto h =
          WithRetries(opt.max_attempts, [&] { return store->HeadVersion(e.key, e.version_id); });
      if (!h.ok()) {
        Finish(e, Outcome::kFailed, Vanished(e, h.status()));
        return;
      }
      int64_t v = 0;
      if (ParseInt(h->metadata, "rdev", &v) && v >= 0) {
        e.rdev = static_cast<dev_t>(v);
        e.has_rdev = true;
      } else {
        Finish(e, Outcome::kFailed, "a device node without x-amz-meta-rdev");
        return;
      }
    }
    if (existing && (existing->st_mode & S_IFMT) == type &&
        (!device || existing->st_rdev == e.rdev)) {
      Status s = FixAttrs(j, Base(e.path), *existing);
      Finish(e, s.ok() ? Outcome::kSkipped : Outcome::kFailed, s.ok() ? "" : s.message());
      return;
    }
    CreateByRename(j, /*link=*/false, [&](const std::string& n) {
      if (mknodat(j.dir_fd.get(), n.c_str(), type | 0600, device ? e.rdev : 0) == 0) return 0;
      return errno;
    });
    if (e.outcome == Outcome::kFailed && device &&
        e.error.find("Operation not permitted") != std::string::npos) {
      e.error += " (device nodes can only be restored by root)";
    }
  }

  void DownloadPart(FileJob& j, int part) {
    Entry& e = *j.e;
    UniqueFd own;
    int fd = j.fd.get();
    std::optional<ByteRange> range;
    StoreResult<ObjectInfo> r = StoreStatus(Status::Error(ECANCELED, "skipped"));
    bool skip;
    {
      std::lock_guard lock(j.mu);
      skip = !j.part_error.empty();
    }
    if (!skip) {
      if (j.parts > 1) {
        uint64_t off = static_cast<uint64_t>(part) * opt.range_size;
        range = ByteRange{off, std::min<uint64_t>(opt.range_size, e.size - off)};
        own.Reset(openat(j.dir_fd.get(), j.temp_name.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
        fd = own.get();
      }
      if (fd < 0) {
        r = StoreStatus(PosixError("open the temporary file", errno));
      } else {
        r = WithRetries(opt.max_attempts, [&]() -> StoreResult<ObjectInfo> {
          if (e.hstate) return WriteFromHistory(e, fd);
          off_t at = range ? static_cast<off_t>(range->offset) : 0;
          if (lseek(fd, at, SEEK_SET) < 0) return StoreStatus(PosixError("seek", errno));
          if (!range && ftruncate(fd, 0) != 0) return StoreStatus(PosixError("truncate", errno));
          return store->GetVersionToFile(e.key, e.version_id, fd, range);
        });
      }
    }
    own.Reset();
    bool last;
    {
      std::lock_guard lock(j.mu);
      if (!r.ok()) {
        if (j.part_error.empty()) j.part_error = Vanished(e, r.status());
      } else {
        j.part_info[static_cast<size_t>(part)] = *r;
        uint64_t n = range ? range->length : r->size;
        bytes += n;
        progress->done_bytes += n;
      }
      last = --j.parts_left == 0;
    }
    if (last) Finalize(j);
  }

  // A file's content from history chunks (each checked before it is
  // written); ObjectInfo says its size, as a GET would.
  StoreResult<ObjectInfo> WriteFromHistory(const Entry& e, int fd) {
    if (ftruncate(fd, 0) != 0) return StoreStatus(PosixError("truncate", errno));
    StoreStatus s = opt.history->write_content(*e.hstate, fd);
    if (!s.ok()) return s;
    ObjectInfo info;
    info.size = e.size;
    return info;
  }

  // After the last part: checks, attributes, rename into place (or, for a
  // listed object that turned out to be a symlink or special file, that).
  void Finalize(FileJob& j) {
    Entry& e = *j.e;
    auto fail = [&](const std::string& msg) {
      j.fd.Reset();
      temps.Discard(j.temp_id);
      Finish(e, Outcome::kFailed, msg);
    };
    if (!j.part_error.empty()) return fail(j.part_error);
    const ObjectInfo& first = j.part_info[0];
    for (const ObjectInfo& p : j.part_info) {
      if (p.etag != first.etag || p.version_id != first.version_id || p.size != first.size) {
        return fail("changed in the target during the restore; run it again");
      }
    }
    struct stat st;
    if (fstat(j.fd.get(), &st) != 0) return fail(std::string("stat: ") + strerror(errno));
    const uint64_t size = first.size;
    if (static_cast<uint64_t>(st.st_size) != size || (j.parts > 1 && size != e.size)) {
      return fail(j.parts > 1 ? "changed in the target during the restore; run it again"
                              : "short download (" + std::to_string(st.st_size) + " of " +
                                    std::to_string(size) + " bytes)");
    }
    if (e.hstate) {
      // Attributes from the tree; every chunk was checked as it was written.
    } else if (e.from_manifest) {
      // Without a SHA-256 the ETag is all there is to check (the SHA-256,
      // when there is one, is checked below and decides).
      if (e.sha256.empty() && e.version_id.empty() && !e.etag.empty() && first.etag != e.etag) {
        return fail(ChangedSinceCheckpoint(e, first.etag));
      }
    } else {
      if (std::string err = ApplyMetadata(first, &e); !err.empty()) return fail(err);
      e.etag = first.etag;
      e.size = size;
    }
    const std::string name = Base(e.path);
    if (e.kind == Kind::kSymlink || e.kind == Kind::kSpecial) {
      std::string target;
      if (e.kind == Kind::kSymlink) {
        if (size > kMaxSymlinkTarget) return fail("symlink target longer than PATH_MAX");
        target.resize(size);
        if (pread(j.fd.get(), target.data(), size, 0) != static_cast<ssize_t>(size)) {
          return fail("read back the link target");
        }
      }
      j.fd.Reset();
      temps.Discard(j.temp_id);
      struct stat now;
      bool exists = fstatat(j.dir_fd.get(), name.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0;
      if (exists && S_ISDIR(now.st_mode)) {
        Finish(e, Outcome::kFailed, "a directory is in the way in the destination");
      } else if (e.kind == Kind::kSymlink) {
        CompleteSymlink(j, target, exists ? &now : nullptr);
      } else {
        RestoreSpecial(j, exists ? &now : nullptr);
      }
      return;
    }
    // A regular file: verify, then attributes, then rename into place.
    if (e.hstate) {
      // Checked chunk by chunk by write_content.
    } else if (!e.sha256.empty()) {
      auto h = HashFd(j.fd.get(), size, Hasher::Algorithm::kSha256);
      if (!h.ok()) return fail("verify: " + h.status().message());
      if (*h != e.sha256) {
        return fail(e.from_manifest && e.version_id.empty()
                        ? ChangedSinceCheckpoint(e, first.etag)
                        : "the downloaded content does not match its SHA-256 in the checkpoint");
      }
    } else if (IsMd5Etag(first.etag)) {
      auto h = HashFd(j.fd.get(), size, Hasher::Algorithm::kMd5);
      if (!h.ok()) return fail("verify: " + h.status().message());
      if (*h != first.etag) {
        return fail("the downloaded content does not match its ETag (MD5 " + first.etag + ")");
      }
    }
    if (Status a = SetAttrs(j.fd.get(), PlanAttrs(e, nullptr), /*link=*/false); !a.ok()) {
      return fail(a.message());
    }
    j.fd.Reset();
    Status s = temps.Commit(j.temp_id, name);
    Finish(e, s.ok() ? Outcome::kRestored : Outcome::kFailed, s.ok() ? "" : s.message());
  }

  // ---- directory attributes, deepest first ----

  void FinishDirectories() {
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      Entry& d = *it;
      if (d.kind != Kind::kDir || d.outcome != Outcome::kPending) continue;
      if (!d.marker && !d.created) continue;  // implied and already there: not ours to change
      if (!d.head_error.empty()) {
        Finish(d, Outcome::kFailed, "reading its attributes: " + d.head_error);
        continue;
      }
      auto fd = OpenBeneath(root_fd, d.path, O_RDONLY | O_DIRECTORY);
      struct stat st;
      if (!fd.ok() || fstat(fd->get(), &st) != 0) {
        Finish(d, Outcome::kFailed,
               "cannot open it to set its attributes: " +
                   (fd.ok() ? std::string(strerror(errno)) : fd.status().message()));
        continue;
      }
      bool changed = d.created;
      std::string error;
      if (d.marker && d.meta_known) {
        AttrChanges c = PlanAttrs(d, &st);
        changed |= c.chown || (c.chmod && (st.st_mode & 07777) != c.perm) || c.mtime;
        if (Status a = SetAttrs(fd->get(), c, /*link=*/false); !a.ok()) error = a.message();
      } else if (d.created) {
        if (fchmod(fd->get(), 0777 & ~umask_bits) != 0)
          error = std::string("chmod: ") + strerror(errno);
      }
      if (!error.empty()) {
        Finish(d, Outcome::kFailed, error);
      } else {
        Finish(d, changed ? Outcome::kRestored : Outcome::kSkipped);
      }
    }
  }

  RestoreSummary Summarize() {
    RestoreSummary s;
    for (const Entry& e : entries) {
      if (!e.counted()) continue;
      switch (e.outcome) {
        case Outcome::kRestored:
          s.restored++;
          break;
        case Outcome::kSkipped:
          s.skipped++;
          break;
        case Outcome::kRefused:
          s.refused.push_back({e.key, e.error});
          break;
        case Outcome::kFailed:
          s.failed.push_back({e.path, e.error});
          break;
        case Outcome::kLeftOut:
          s.left_out.push_back({e.path, e.error});
          break;
        case Outcome::kPending:
          s.failed.push_back({e.path, "not restored (interrupted)"});
          break;
      }
    }
    for (auto& r : refused) s.refused.push_back(std::move(r));
    std::sort(s.refused.begin(), s.refused.end(),
              [](const auto& a, const auto& b) { return a.key < b.key; });
    s.excluded = excluded;
    s.bytes = bytes;
    s.manifest_target = manifest_target;
    return s;
  }
};

// ---------------------------------------------------------------------------

Restorer::Restorer(ObjectStore* store, int root_fd, const ExcludeFilter* filter,
                   RestoreOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->store = store;
  impl_->root_fd = root_fd;
  impl_->filter = filter;
  impl_->opt = std::move(options);
  impl_->opt.workers = std::max(1, impl_->opt.workers);
  impl_->opt.max_attempts = std::max(1, impl_->opt.max_attempts);
  impl_->progress = &progress_;
  // umask cannot be read without setting it; nothing else runs yet.
  impl_->umask_bits = umask(022);
  umask(impl_->umask_bits);
}

Restorer::~Restorer() = default;

void Restorer::AbandonTempFiles() { impl_->temps.Abandon(); }

Result<RestorePlan> Restorer::Plan() {
  Status s = impl_->Build();
  if (!s.ok()) return s;
  impl_->Resolve();
  RestorePlan plan;
  plan.refused = impl_->refused;
  plan.excluded = impl_->excluded;
  for (const Entry& e : impl_->entries) {
    RestorePlanEntry p{e.path, e.kind == Kind::kDir, false};
    // Only a look: the restore itself opens every path beneath the root
    // without following symlinks (and refuses what that rules out).
    struct stat st;
    p.exists = impl_->root_fd >= 0 &&
               fstatat(impl_->root_fd, e.path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    plan.entries.push_back(std::move(p));
  }
  return plan;
}

Result<RestoreSummary> Restorer::Run() {
  auto start = Clock::now();
  Status s = impl_->Build();
  if (!s.ok()) return s;
  impl_->Resolve();
  impl_->MakeDirectories();
  impl_->RunJobs();
  impl_->FinishDirectories();
  RestoreSummary summary = impl_->Summarize();
  summary.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return summary;
}

}  // namespace scribefs::ctl
