#include "uploader/local_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/strings.h"
#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs {
namespace {

constexpr char kInternalDir[] = ".scribefs-local";
constexpr size_t kChunk = 1 << 20;

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // Fall back to something unique within this process.
      static std::atomic<uint64_t> counter{0};
      std::string s = std::to_string(getpid()) + "." + std::to_string(++counter) + "." +
                      std::to_string(time(nullptr));
      return HexEncode(s).substr(0, bytes * 2);
    }
    got += static_cast<size_t>(n);
  }
  return HexEncode(raw);
}

// Splits "a/b/c" into ("a/b", "c") and the marker "a/b/" into ("a", "b").
void SplitKey(const std::string& key, std::string* dirs, std::string* leaf) {
  std::string k = key;
  if (!k.empty() && k.back() == '/') k.pop_back();
  size_t slash = k.rfind('/');
  if (slash == std::string::npos) {
    dirs->clear();
    *leaf = k;
  } else {
    *dirs = k.substr(0, slash);
    *leaf = k.substr(slash + 1);
  }
}

bool IsMarker(const std::string& key) { return !key.empty() && key.back() == '/'; }

// Modes of what the store creates for itself: directories made only as
// parents of a key, temporary files, sidecars. Private: the replica may hold
// the source's private files (and often sits on a removable disk).
constexpr mode_t kPrivateDirMode = 0700;
constexpr mode_t kPrivateFileMode = 0600;

// The permission bits an object's file (or a marker's directory) gets in the
// replica, from its source mode (metadata "mode": decimal st_mode) - the
// decision only; GiveToOwner applies it. The replica never shows an object to
// more users than the source did, and only the store writes into it:
//  - group and other keep at most their read and execute bits;
//  - set-user-ID, set-group-ID and sticky bits are dropped;
//  - when the object could not be given to its source owner (the store does
//    not run as root, or the filesystem cannot chown), the group bits refer
//    to the store's group and are dropped, and the store's user keeps rw(x);
//  - without a valid mode (checkpoint manifests, other tools): 0600 / 0700.
mode_t ReplicaPermissions(const Metadata& metadata, bool dir, bool owner_given) {
  const mode_t fallback = dir ? kPrivateDirMode : kPrivateFileMode;
  auto it = metadata.find("mode");
  if (it == metadata.end()) return fallback;
  unsigned long mode = 0;
  const char* begin = it->second.c_str();
  char* end = nullptr;
  errno = 0;
  mode = strtoul(begin, &end, 10);
  if (errno != 0 || end == begin || *end != '\0' || mode > 0177777) return fallback;
  mode_t perm = static_cast<mode_t>(mode) & 0755;
  // A symlink, FIFO or device object is a plain file here: its 0777 says nothing.
  mode_t type = static_cast<mode_t>(mode) & S_IFMT;
  if (!dir && type != 0 && type != S_IFREG) perm &= 0644;
  if (!owner_given) perm = (perm & 0705) | fallback;
  return perm;
}

// Gives the file or directory `fd` its source owner (metadata "uid"/"gid",
// only when the store runs as root) and the mode ReplicaPermissions decides.
// Through the fd, so the name it will have plays no part. A filesystem
// without owners (FAT) refuses the chown; the mode then covers for it.
Status GiveToOwner(int fd, const Metadata& metadata, bool dir) {
  bool owner_given = false;
  auto uid = metadata.find("uid");
  auto gid = metadata.find("gid");
  if (geteuid() == 0 && uid != metadata.end() && gid != metadata.end()) {
    char* end_u = nullptr;
    char* end_g = nullptr;
    unsigned long u = strtoul(uid->second.c_str(), &end_u, 10);
    unsigned long g = strtoul(gid->second.c_str(), &end_g, 10);
    if (!uid->second.empty() && !gid->second.empty() && *end_u == '\0' && *end_g == '\0' &&
        u < 0xffffffffUL && g < 0xffffffffUL) {
      owner_given = fchown(fd, static_cast<uid_t>(u), static_cast<gid_t>(g)) == 0;
    }
  }
  if (fchmod(fd, ReplicaPermissions(metadata, dir, owner_given)) != 0) {
    return PosixError("chmod", errno);
  }
  return Status::Ok();
}

// Opens the directory `rel` (components separated by '/', may be empty) below
// `base`, one component at a time without following symlinks; creates missing
// ones when `create`.
Result<UniqueFd> OpenDirChain(int base, std::string_view rel, bool create) {
  UniqueFd cur(openat(base, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur) return PosixError("open directory", errno);
  size_t start = 0;
  while (start < rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string_view::npos) end = rel.size();
    std::string part(rel.substr(start, end - start));
    start = end + 1;
    if (part.empty()) continue;
    int fd = openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (mkdirat(cur.get(), part.c_str(), kPrivateDirMode) != 0 && errno != EEXIST) {
        return PosixError("mkdir " + std::string(rel), errno);
      }
      fd = openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int err = errno;
      if (err == ELOOP) {
        return Status::Error(ELOOP,
                             "\"" + std::string(rel) + "\": symlink in path, refusing to follow");
      }
      if (err == ENOTDIR) {
        return Status::Error(ENOTDIR, "\"" + std::string(rel) + "\": a path component is a file");
      }
      return PosixError("open " + std::string(rel), err);
    }
    cur.Reset(fd);
  }
  return cur;
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Result<std::string> ReadSmallFile(int dir_fd, const std::string& name) {
  UniqueFd fd(openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return PosixError("open " + name, errno);
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("read " + name, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (16u << 20)) return Status::Error(EFBIG, name + ": too large");
  }
  return out;
}

// Writes `content` to dir_fd/name atomically (temp in the same dir, fsync, rename).
Status WriteFileAtomic(int dir_fd, const std::string& name, std::string_view content) {
  std::string tmp = "." + name + ".tmp." + RandomHex(8);
  UniqueFd fd(
      openat(dir_fd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, kPrivateFileMode));
  if (!fd) return PosixError("create " + tmp, errno);
  Status st = WriteAll(fd.get(), content);
  if (st.ok() && fsync(fd.get()) != 0) st = PosixError("fsync " + tmp, errno);
  if (st.ok() && renameat(dir_fd, tmp.c_str(), dir_fd, name.c_str()) != 0) {
    st = PosixError("rename " + tmp, errno);
  }
  if (!st.ok()) unlinkat(dir_fd, tmp.c_str(), 0);
  return st;
}

using DirPtr = std::unique_ptr<DIR, int (*)(DIR*)>;

// Names in the directory `fd` (without . and ..). Does not take ownership of fd.
Result<std::vector<std::pair<std::string, unsigned char>>> ReadDirNames(int fd) {
  int dup_fd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return PosixError("opendir", errno);
  DirPtr dir(fdopendir(dup_fd), closedir);
  if (!dir) {
    int err = errno;
    close(dup_fd);
    return PosixError("fdopendir", err);
  }
  std::vector<std::pair<std::string, unsigned char>> out;
  errno = 0;
  while (struct dirent* e = readdir(dir.get())) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      out.emplace_back(e->d_name, e->d_type);
    }
    errno = 0;
  }
  if (errno != 0) return PosixError("readdir", errno);
  return out;
}

// Removes `name` in dir_fd and everything below it (no symlink is followed).
void RemoveTree(int dir_fd, const std::string& name) {
  int fd = openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    UniqueFd sub(fd);
    auto names = ReadDirNames(sub.get());
    if (names.ok()) {
      for (const auto& [n, type] : *names) RemoveTree(sub.get(), n);
    }
    unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR);
  } else {
    unlinkat(dir_fd, name.c_str(), 0);
  }
}

struct Sidecar {
  std::string etag;
  uint64_t size = 0;
  uint64_t ino = 0;
  int64_t mtime_ns = 0;
  Metadata metadata;
};

std::string SidecarJson(const Sidecar& s) {
  nlohmann::json j;
  j["etag"] = s.etag;
  j["size"] = s.size;
  j["ino"] = s.ino;
  j["mtime_ns"] = s.mtime_ns;
  j["metadata"] = s.metadata;
  return j.dump();
}

bool ParseSidecar(const std::string& text, Sidecar* out) {
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    out->etag = j.at("etag").get<std::string>();
    out->size = j.at("size").get<uint64_t>();
    out->ino = j.at("ino").get<uint64_t>();
    out->mtime_ns = j.at("mtime_ns").get<int64_t>();
    out->metadata = j.at("metadata").get<Metadata>();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// The sidecar's directory (below meta/) and file name for `key`: the leaf
// name plus ".obj.json" (".dir.json" for a marker). A leaf too long for that
// and for WriteFileAtomic's temporary name (".NAME.tmp.<16 hex>") within
// NAME_MAX (any name of 225 bytes or more) is named by its SHA-256 instead:
// "#<64 hex>.obj.json"; "#" starts no shorter leaf's sidecar that way, as
// such a name has another length, and no sidecar of those leaves could be
// written before.
void SidecarPath(const std::string& key, std::string* dirs, std::string* name) {
  std::string leaf;
  SplitKey(key, dirs, &leaf);
  const char* suffix = IsMarker(key) ? ".dir.json" : ".obj.json";
  constexpr size_t kTempExtra = 1 + 5 + 16;  // "." ... ".tmp." + RandomHex(8)
  if (leaf.size() + strlen(suffix) + kTempExtra > NAME_MAX) {
    auto h = Sha256(leaf);
    if (h.ok()) leaf = "#" + HexEncode(*h);
  }
  *name = leaf + suffix;
}

Result<ByteRange> ClipRange(std::optional<ByteRange> range, uint64_t size, const std::string& key,
                            const char* op) {
  if (!range) return ByteRange{0, size};
  if (range->length == 0)
    return Status::Error(EINVAL, std::string(op) + " " + key + ": empty range");
  if (range->offset >= size) {
    return Status::Error(EINVAL, std::string(op) + " " + key + ": range starts at or past the end");
  }
  return ByteRange{range->offset, std::min(range->length, size - range->offset)};
}

}  // namespace

// ---------------------------------------------------------------------------

struct LocalStore::Object {
  UniqueFd fd;
  uint64_t size = 0;
  int64_t mtime = 0;
  std::string etag;
  Metadata metadata;
};

// A file in a temp directory, removed on destruction unless committed.
class LocalStore::TempFile {
 public:
  TempFile(int dir_fd, std::string name, UniqueFd fd)
      : dir_fd_(dir_fd), name_(std::move(name)), fd_(std::move(fd)) {}
  TempFile(TempFile&& o) noexcept
      : dir_fd_(o.dir_fd_), name_(std::move(o.name_)), fd_(std::move(o.fd_)) {
    o.name_.clear();
  }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!name_.empty()) unlinkat(dir_fd_, name_.c_str(), 0);
  }
  int dir_fd() const { return dir_fd_; }
  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }
  void Committed() { name_.clear(); }

 private:
  int dir_fd_;
  std::string name_;
  UniqueFd fd_;
};

LocalStore::LocalStore(std::string root, UniqueFd root_fd, UniqueFd meta_fd, UniqueFd tmp_fd,
                       UniqueFd uploads_fd)
    : root_(std::move(root)),
      root_fd_(std::move(root_fd)),
      meta_fd_(std::move(meta_fd)),
      tmp_fd_(std::move(tmp_fd)),
      uploads_fd_(std::move(uploads_fd)) {}

Result<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& root_in,
                                                     std::shared_ptr<BandwidthLimiter> bandwidth) {
  if (root_in.empty() || root_in.front() != '/') {
    return Status::Error(EINVAL, "file:// target \"" + root_in + "\": path must be absolute");
  }
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (mkdir(root.c_str(), kPrivateDirMode) != 0 && errno != EEXIST) {
    return PosixError("file:// target: mkdir " + root, errno);
  }
  UniqueFd root_fd(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return PosixError("file:// target: open " + root, errno);
  auto internal = OpenDirChain(root_fd.get(), kInternalDir, true);
  if (!internal.ok()) return internal.status().WithContext("file:// target " + root);
  // Sidecars name every path and hold modes and owners: private, also in a
  // replica that an earlier version created 0755.
  if (fchmod(internal->get(), kPrivateDirMode) != 0) {
    return PosixError("file:// target: chmod " + root + "/" + kInternalDir, errno);
  }
  auto meta = OpenDirChain(internal->get(), "meta", true);
  if (!meta.ok()) return meta.status().WithContext("file:// target " + root);
  auto tmp = OpenDirChain(internal->get(), "tmp", true);
  if (!tmp.ok()) return tmp.status().WithContext("file:// target " + root);
  auto uploads = OpenDirChain(internal->get(), "uploads", true);
  if (!uploads.ok()) return uploads.status().WithContext("file:// target " + root);
  // Leftovers of a crash: temp files are never reused. Only old ones go, as
  // another LocalStore on the same PATH may be writing the young ones.
  if (auto names = ReadDirNames(tmp->get()); names.ok()) {
    const time_t cutoff = time(nullptr) - 3600;
    for (const auto& [n, type] : *names) {
      struct stat st {};
      if (fstatat(tmp->get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mtime < cutoff) {
        RemoveTree(tmp->get(), n);
      }
    }
  }
  std::unique_ptr<LocalStore> store(new LocalStore(root, std::move(root_fd), std::move(*meta),
                                                   std::move(*tmp), std::move(*uploads)));
  store->bandwidth_ = std::move(bandwidth);
  return store;
}

StoreStats LocalStore::stats() const {
  return StoreStats{requests_.load(), bytes_sent_.load(), bytes_received_.load()};
}

StoreStatus LocalStore::CheckKey(const std::string& key, const char* op) const {
  Status st = ValidateKey(key);
  if (!st.ok()) return StoreStatus(st.WithContext(op));
  std::string_view first = std::string_view(key).substr(0, key.find('/'));
  if (first == kInternalDir) {
    return StoreStatus(Status::Error(
        EINVAL, std::string(op) + " " + key + ": keys under " + kInternalDir + "/ are reserved"));
  }
  return StoreStatus();
}

StoreResult<LocalStore::Object> LocalStore::OpenObject(const std::string& key, const char* op) {
  std::string dirs, leaf;
  SplitKey(key, &dirs, &leaf);
  auto parent = OpenDirChain(root_fd_.get(), dirs, false);
  if (!parent.ok()) {
    if (parent.status().code() == ENOENT || parent.status().code() == ENOTDIR) {
      return NoSuchKey(op, key);
    }
    return StoreStatus(parent.status().WithContext(std::string(op) + " " + key));
  }
  Object obj;
  struct stat st {};
  std::string side_dirs, side_name;
  SidecarPath(key, &side_dirs, &side_name);
  if (IsMarker(key)) {
    if (fstatat(parent->get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISDIR(st.st_mode)) {
      return NoSuchKey(op, key);
    }
    auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, false);
    if (!side_dir.ok()) return NoSuchKey(op, key);
    auto text = ReadSmallFile(side_dir->get(), side_name);
    Sidecar side;
    if (!text.ok() || !ParseSidecar(*text, &side)) return NoSuchKey(op, key);
    obj.size = 0;
    obj.mtime = st.st_mtim.tv_sec;
    obj.etag = side.etag;
    obj.metadata = side.metadata;
    return obj;
  }
  int fd = openat(parent->get(), leaf.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ELOOP) return NoSuchKey(op, key);
    return StoreStatus(PosixError(std::string(op) + " " + key, errno));
  }
  obj.fd.Reset(fd);
  if (fstat(fd, &st) != 0) return StoreStatus(PosixError(std::string(op) + " " + key, errno));
  if (!S_ISREG(st.st_mode)) return NoSuchKey(op, key);
  obj.size = static_cast<uint64_t>(st.st_size);
  obj.mtime = st.st_mtim.tv_sec;
  Sidecar side;
  bool valid = false;
  if (auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, false); side_dir.ok()) {
    auto text = ReadSmallFile(side_dir->get(), side_name);
    valid = text.ok() && ParseSidecar(*text, &side) && side.ino == st.st_ino &&
            side.size == obj.size && side.mtime_ns == MtimeNs(st);
  }
  if (valid) {
    obj.etag = side.etag;
    obj.metadata = side.metadata;
    return obj;
  }
  // No or stale sidecar: the data is the truth; metadata is unknown.
  auto hasher = Hasher::Create(Hasher::Algorithm::kMd5);
  if (!hasher.ok()) return StoreStatus(hasher.status());
  std::string buf(kChunk, '\0');
  for (uint64_t off = 0; off < obj.size;) {
    ssize_t n = pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return StoreStatus(PosixError(std::string(op) + " " + key + ": read", errno));
    }
    if (n == 0) break;
    Status us = hasher->Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    if (!us.ok()) return StoreStatus(us);
    off += static_cast<uint64_t>(n);
  }
  auto md5 = hasher->Finish();
  if (!md5.ok()) return StoreStatus(md5.status());
  obj.etag = HexEncode(*md5);
  return obj;
}

StoreStatus LocalStore::CopyOut(const Object& obj, ByteRange range, std::string* to_string,
                                int to_fd) {
  if (range.length == 0) return StoreStatus();
  std::string buf(std::min<uint64_t>(kChunk, range.length), '\0');
  uint64_t off = range.offset;
  uint64_t end = range.offset + range.length;
  while (off < end) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - off));
    ssize_t n = pread(obj.fd.get(), buf.data(), want, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return StoreStatus(PosixError("read", errno));
    }
    if (n == 0) {
      return S3LikeError(EAGAIN, 0, "SourceChanged", "object shrank while being read");
    }
    std::string_view chunk(buf.data(), static_cast<size_t>(n));
    if (to_string) {
      to_string->append(chunk);
    } else {
      Status st = WriteAll(to_fd, chunk);
      if (!st.ok()) return StoreStatus(st);
    }
    bytes_received_ += static_cast<uint64_t>(n);
    off += static_cast<uint64_t>(n);
  }
  return StoreStatus();
}

StoreStatus LocalStore::WriteBody(int fd, std::string_view data, bool limited) {
  if (!limited || !bandwidth_) return StoreStatus(WriteAll(fd, data));
  // Small slices, so that the limit holds within a second, not only per chunk.
  constexpr size_t kSlice = 64 << 10;
  for (size_t off = 0; off < data.size(); off += kSlice) {
    std::string_view slice = data.substr(off, kSlice);
    if (!bandwidth_->Acquire(slice.size())) {
      StoreErrorInfo info;
      info.error_code = "Cancelled";
      info.retryable = true;  // not the request's fault: tried again after the restart
      return StoreStatus(Status::Error(ECANCELED, "upload stopped (the uploader stops)"), info);
    }
    Status st = WriteAll(fd, slice);
    if (!st.ok()) return StoreStatus(st);
  }
  return StoreStatus();
}

StoreResult<LocalStore::TempFile> LocalStore::WriteTemp(const Payload& payload, int dir_fd,
                                                        std::string* md5, std::string* sha256,
                                                        bool limited) {
  if (dir_fd < 0) dir_fd = tmp_fd_.get();
  std::string name = "t." + RandomHex(12);
  UniqueFd fd(
      openat(dir_fd, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, kPrivateFileMode));
  if (!fd) return StoreStatus(PosixError("create temp file", errno));
  TempFile temp(dir_fd, name, std::move(fd));
  auto hasher = DualHasher::Create();
  if (!hasher.ok()) return StoreStatus(hasher.status());
  if (payload.is_file()) {
    std::string buf(std::min<uint64_t>(kChunk, std::max<uint64_t>(payload.size(), 1)), '\0');
    uint64_t off = payload.offset();
    uint64_t end = payload.offset() + payload.size();
    while (off < end) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - off));
      auto n = payload.ReadAt(buf.data(), want, off - payload.offset());
      if (!n.ok()) return n.status();
      if (*n == 0) {
        return S3LikeError(EAGAIN, 0, "SourceChanged", "source file shrank during the upload");
      }
      // A file deleted meanwhile is not stored (its delete follows); stop
      // reading it, so that its blocks are freed.
      if (payload.Unlinked()) {
        return S3LikeError(EAGAIN, 0, "SourceChanged", "source file deleted during the upload");
      }
      std::string_view chunk(buf.data(), *n);
      Status st = hasher->Update(chunk);
      if (!st.ok()) return StoreStatus(st);
      SCRIBEFS_RETURN_IF_STORE_ERROR(WriteBody(temp.fd(), chunk, limited));
      off += *n;
    }
  } else {
    Status st = hasher->Update(payload.data());
    if (!st.ok()) return StoreStatus(st);
    SCRIBEFS_RETURN_IF_STORE_ERROR(WriteBody(temp.fd(), payload.data(), limited));
  }
  if (fsync(temp.fd()) != 0) return StoreStatus(PosixError("fsync temp file", errno));
  auto digests = hasher->Finish();
  if (!digests.ok()) return StoreStatus(digests.status());
  *md5 = HexEncode(digests->md5);
  *sha256 = HexEncode(digests->sha256);
  if (limited) bytes_sent_ += payload.size();
  return temp;
}

StoreStatus LocalStore::Commit(const std::string& key, TempFile& temp, const std::string& etag,
                               const Metadata& metadata) {
  // Owner and mode before the object gets its name (a chmod leaves the mtime).
  Status os = GiveToOwner(temp.fd(), metadata, /*dir=*/false);
  if (!os.ok()) return StoreStatus(os.WithContext("PUT " + key));
  struct stat st {};
  if (fstat(temp.fd(), &st) != 0) return StoreStatus(PosixError("stat temp file", errno));
  Sidecar side{etag, static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_ino),
               MtimeNs(st), metadata};
  std::string dirs, leaf, side_dirs, side_name;
  SplitKey(key, &dirs, &leaf);
  SidecarPath(key, &side_dirs, &side_name);

  std::shared_lock lock(namespace_mu_);
  auto parent = OpenDirChain(root_fd_.get(), dirs, true);
  if (!parent.ok()) return StoreStatus(parent.status().WithContext("PUT " + key));
  struct stat dst {};
  if (fstatat(parent->get(), leaf.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISDIR(dst.st_mode)) {
    return StoreStatus(Status::Error(
        EISDIR, "PUT " + key + ": a directory of that name exists (file:// cannot hold both)"));
  }
  auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, true);
  if (!side_dir.ok()) return StoreStatus(side_dir.status().WithContext("PUT " + key));
  // Data first, then the sidecar: a crash in between leaves a sidecar that no
  // longer matches the data file's inode, which readers detect.
  if (renameat(temp.dir_fd(), temp.name().c_str(), parent->get(), leaf.c_str()) != 0) {
    return StoreStatus(PosixError("PUT " + key + ": rename", errno));
  }
  temp.Committed();
  Status ws = WriteFileAtomic(side_dir->get(), side_name, SidecarJson(side));
  if (!ws.ok()) return StoreStatus(ws.WithContext("PUT " + key + ": sidecar"));
  if (fsync(parent->get()) != 0)
    return StoreStatus(PosixError("PUT " + key + ": fsync dir", errno));
  if (fsync(side_dir->get()) != 0) {
    return StoreStatus(PosixError("PUT " + key + ": fsync dir", errno));
  }
  return StoreStatus();
}

StoreResult<PutResult> LocalStore::PutMarker(const std::string& key, const Metadata& metadata) {
  std::string dirs, leaf, side_dirs, side_name;
  SplitKey(key, &dirs, &leaf);
  SidecarPath(key, &side_dirs, &side_name);
  auto empty_md5 = Md5("");
  if (!empty_md5.ok()) return StoreStatus(empty_md5.status());
  std::string md5 = HexEncode(*empty_md5);
  std::shared_lock lock(namespace_mu_);
  auto dir = OpenDirChain(root_fd_.get(), dirs.empty() ? leaf : dirs + "/" + leaf, true);
  if (!dir.ok()) return StoreStatus(dir.status().WithContext("PUT " + key));
  Status os = GiveToOwner(dir->get(), metadata, /*dir=*/true);
  if (!os.ok()) return StoreStatus(os.WithContext("PUT " + key));
  auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, true);
  if (!side_dir.ok()) return StoreStatus(side_dir.status().WithContext("PUT " + key));
  Sidecar side{md5, 0, 0, 0, metadata};
  Status ws = WriteFileAtomic(side_dir->get(), side_name, SidecarJson(side));
  if (!ws.ok()) return StoreStatus(ws.WithContext("PUT " + key));
  if (fsync(side_dir->get()) != 0) return StoreStatus(PosixError("PUT " + key + ": fsync", errno));
  return PutResult{md5, "", md5, std::string(kEmptySha256Hex), 0};
}

StoreResult<PutResult> LocalStore::Put(const std::string& key, const Payload& payload,
                                       const Metadata& metadata) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "PUT"));
  Status ms = ValidateMetadata(metadata);
  if (!ms.ok()) return StoreStatus(ms.WithContext("PUT " + key));
  if (IsMarker(key)) {
    if (payload.size() != 0) {
      return StoreStatus(Status::Error(
          EINVAL, "PUT " + key + ": a directory marker must be empty on a file:// target"));
    }
    return PutMarker(key, metadata);
  }
  std::string md5, sha256;
  auto temp = WriteTemp(payload, -1, &md5, &sha256, /*limited=*/true);
  if (!temp.ok()) return temp.status().WithContext("PUT " + key);
  SCRIBEFS_RETURN_IF_STORE_ERROR(Commit(key, *temp, md5, metadata));
  return PutResult{md5, "", md5, sha256, payload.size()};
}

StoreResult<GetResult> LocalStore::Get(const std::string& key, std::optional<ByteRange> range) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "GET"));
  auto obj = OpenObject(key, "GET");
  if (!obj.ok()) return obj.status();
  GetResult out;
  out.info = ObjectInfo{key, obj->size, obj->etag, "", obj->metadata, obj->mtime};
  auto r = ClipRange(range, obj->size, key, "GET");
  if (!r.ok()) return S3LikeError(EINVAL, 416, "InvalidRange", r.status().message());
  out.body.reserve(r->length);
  SCRIBEFS_RETURN_IF_STORE_ERROR(CopyOut(*obj, *r, &out.body, -1));
  return out;
}

StoreResult<ObjectInfo> LocalStore::GetToFile(const std::string& key, int fd,
                                              std::optional<ByteRange> range) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "GET"));
  auto obj = OpenObject(key, "GET");
  if (!obj.ok()) return obj.status();
  auto r = ClipRange(range, obj->size, key, "GET");
  if (!r.ok()) return S3LikeError(EINVAL, 416, "InvalidRange", r.status().message());
  SCRIBEFS_RETURN_IF_STORE_ERROR(CopyOut(*obj, *r, nullptr, fd));
  return ObjectInfo{key, obj->size, obj->etag, "", obj->metadata, obj->mtime};
}

StoreResult<ObjectInfo> LocalStore::Head(const std::string& key) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "HEAD"));
  auto obj = OpenObject(key, "HEAD");
  if (!obj.ok()) return obj.status();
  return ObjectInfo{key, obj->size, obj->etag, "", obj->metadata, obj->mtime};
}

void LocalStore::Prune(const std::string& key) {
  // Remove parent directories of `key` that became empty and are not markers.
  std::string dirs, leaf;
  SplitKey(key, &dirs, &leaf);
  std::unique_lock lock(namespace_mu_);
  while (!dirs.empty()) {
    std::string parent_dirs, name;
    SplitKey(dirs, &parent_dirs, &name);
    std::string side_dirs, side_name;
    SidecarPath(dirs + "/", &side_dirs, &side_name);
    auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, false);
    struct stat st {};
    if (side_dir.ok() && fstatat(side_dir->get(), side_name.c_str(), &st, 0) == 0) break;  // marker
    auto parent = OpenDirChain(root_fd_.get(), parent_dirs, false);
    if (!parent.ok() || unlinkat(parent->get(), name.c_str(), AT_REMOVEDIR) != 0) break;
    if (auto mparent = OpenDirChain(meta_fd_.get(), parent_dirs, false); mparent.ok()) {
      unlinkat(mparent->get(), name.c_str(), AT_REMOVEDIR);  // fails harmlessly if not empty
    }
    dirs = parent_dirs;
  }
}

StoreStatus LocalStore::Delete(const std::string& key) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "DELETE"));
  std::string dirs, leaf, side_dirs, side_name;
  SplitKey(key, &dirs, &leaf);
  SidecarPath(key, &side_dirs, &side_name);
  {
    std::shared_lock lock(namespace_mu_);
    if (auto side_dir = OpenDirChain(meta_fd_.get(), side_dirs, false); side_dir.ok()) {
      if (unlinkat(side_dir->get(), side_name.c_str(), 0) != 0 && errno != ENOENT) {
        return StoreStatus(PosixError("DELETE " + key + ": sidecar", errno));
      }
    }
    auto parent = OpenDirChain(root_fd_.get(), dirs, false);
    if (parent.ok()) {
      if (IsMarker(key)) {
        // The directory goes only when empty; its objects stay, as on S3.
        unlinkat(parent->get(), leaf.c_str(), AT_REMOVEDIR);
      } else {
        struct stat st {};
        if (fstatat(parent->get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && unlinkat(parent->get(), leaf.c_str(), 0) != 0 &&
            errno != ENOENT) {
          return StoreStatus(PosixError("DELETE " + key, errno));
        }
      }
    }
  }
  Prune(IsMarker(key) ? key.substr(0, key.size() - 1) : key);
  return StoreStatus();
}

StoreStatus LocalStore::DeleteMany(const std::vector<std::string>& keys) {
  std::vector<std::string> failed;
  StoreStatus first;
  for (const auto& key : keys) {
    StoreStatus st = Delete(key);
    if (!st.ok()) {
      if (first.ok()) first = st;
      failed.push_back(key);
    }
  }
  if (failed.empty()) return StoreStatus();
  return StoreStatus(Status::Error(first.code(), "DELETE " + std::to_string(failed.size()) +
                                                     " of " + std::to_string(keys.size()) +
                                                     " keys failed; first: " + first.message()),
                     first.info());
}

StoreResult<CopyResult> LocalStore::Copy(const std::string& src_key, const std::string& dst_key,
                                         const CopyOptions& options) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(src_key, "COPY"));
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(dst_key, "COPY"));
  if (options.metadata) {
    Status ms = ValidateMetadata(*options.metadata);
    if (!ms.ok()) return StoreStatus(ms.WithContext("COPY " + dst_key));
  }
  auto src = OpenObject(src_key, "COPY");
  if (!src.ok()) return src.status();
  if (!options.if_match.empty() && StripQuotes(options.if_match) != src->etag) {
    return PreconditionFailed("COPY", src_key);
  }
  const Metadata& metadata = options.metadata ? *options.metadata : src->metadata;
  if (IsMarker(src_key) || IsMarker(dst_key)) {
    if (!IsMarker(src_key) || !IsMarker(dst_key)) {
      return StoreStatus(Status::Error(
          EINVAL, "COPY " + src_key + " -> " + dst_key + ": a marker copies only to a marker"));
    }
    auto r = PutMarker(dst_key, metadata);
    if (!r.ok()) return r.status();
    return CopyResult{r->etag, ""};
  }
  std::string md5, sha256;
  auto temp = WriteTemp(Payload::FromFile(src->fd.get(), 0, src->size), -1, &md5, &sha256,
                        /*limited=*/false);
  if (!temp.ok()) return temp.status().WithContext("COPY " + src_key);
  SCRIBEFS_RETURN_IF_STORE_ERROR(Commit(dst_key, *temp, md5, metadata));
  return CopyResult{md5, ""};
}

StoreStatus LocalStore::List(const ListOptions& options,
                             const std::function<bool(const ListEntry&)>& fn) {
  ++requests_;
  Status ps = ValidatePrefix(options.prefix);
  if (!ps.ok()) return StoreStatus(ps.WithContext("LIST"));
  // Walk from the deepest whole directory named by the prefix.
  std::string start_dir;
  if (size_t slash = options.prefix.rfind('/'); slash != std::string::npos) {
    start_dir = options.prefix.substr(0, slash);
  }
  auto start = OpenDirChain(root_fd_.get(), start_dir, false);
  if (!start.ok()) {
    if (start.status().code() == ENOENT || start.status().code() == ENOTDIR) return StoreStatus();
    return StoreStatus(start.status().WithContext("LIST"));
  }
  std::vector<std::string> keys;
  // (directory fd, key prefix of its entries)
  std::vector<std::pair<UniqueFd, std::string>> todo;
  todo.emplace_back(std::move(*start), start_dir.empty() ? "" : start_dir + "/");
  while (!todo.empty()) {
    auto [dir, base] = std::move(todo.back());
    todo.pop_back();
    auto names = ReadDirNames(dir.get());
    if (!names.ok()) return StoreStatus(names.status().WithContext("LIST " + base));
    for (const auto& [name, type] : *names) {
      if (base.empty() && name == kInternalDir) continue;
      std::string key = base + name;
      struct stat st {};
      if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISREG(st.st_mode)) {
        if (key.compare(0, options.prefix.size(), options.prefix) == 0) keys.push_back(key);
      } else if (S_ISDIR(st.st_mode)) {
        std::string dir_key = key + "/";
        // Descend only where keys with the prefix can be.
        size_t common = std::min(dir_key.size(), options.prefix.size());
        if (dir_key.compare(0, common, options.prefix, 0, common) != 0) continue;
        std::string side_dirs, side_name;
        SidecarPath(dir_key, &side_dirs, &side_name);
        if (auto sd = OpenDirChain(meta_fd_.get(), side_dirs, false); sd.ok()) {
          struct stat sst {};
          if (fstatat(sd->get(), side_name.c_str(), &sst, 0) == 0 &&
              dir_key.compare(0, options.prefix.size(), options.prefix) == 0) {
            keys.push_back(dir_key);
          }
        }
        int fd = openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) todo.emplace_back(UniqueFd(fd), dir_key);
      }
    }
  }
  std::sort(keys.begin(), keys.end());
  std::string last_prefix;
  for (const auto& key : keys) {
    ListEntry e;
    if (!options.delimiter.empty()) {
      size_t pos = key.find(options.delimiter, options.prefix.size());
      if (pos != std::string::npos) {
        std::string common = key.substr(0, pos + options.delimiter.size());
        if (common == last_prefix) continue;
        last_prefix = common;
        e.key = common;
        e.is_prefix = true;
        if (!fn(e)) return StoreStatus();
        continue;
      }
    }
    auto obj = OpenObject(key, "LIST");
    if (!obj.ok()) {
      if (obj.status().not_found()) continue;  // deleted meanwhile
      return obj.status();
    }
    e.key = key;
    e.size = obj->size;
    e.etag = obj->etag;
    e.mtime = obj->mtime;
    if (!fn(e)) return StoreStatus();
  }
  return StoreStatus();
}

// ---------------------------------------------------------------------------
// Multipart

StoreResult<UniqueFd> LocalStore::OpenUpload(const std::string& key, const std::string& upload_id,
                                             const char* op, Metadata* metadata) {
  if (upload_id.empty() || upload_id.size() > 64 ||
      upload_id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return NoSuchUpload(op, key);
  }
  int fd =
      openat(uploads_fd_.get(), upload_id.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return NoSuchUpload(op, key);
  UniqueFd dir(fd);
  auto text = ReadSmallFile(dir.get(), "info.json");
  if (!text.ok()) return NoSuchUpload(op, key);
  try {
    nlohmann::json j = nlohmann::json::parse(*text);
    if (j.at("key").get<std::string>() != key) return NoSuchUpload(op, key);
    if (metadata) *metadata = j.at("metadata").get<Metadata>();
  } catch (const std::exception&) {
    return NoSuchUpload(op, key);
  }
  return dir;
}

StoreResult<std::string> LocalStore::CreateMultipartUpload(const std::string& key,
                                                           const Metadata& metadata) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "CREATE UPLOAD"));
  Status ms = ValidateMetadata(metadata);
  if (!ms.ok()) return StoreStatus(ms.WithContext("CREATE UPLOAD " + key));
  std::string id = RandomHex(16);
  if (mkdirat(uploads_fd_.get(), id.c_str(), 0700) != 0) {
    return StoreStatus(PosixError("CREATE UPLOAD " + key, errno));
  }
  UniqueFd dir(openat(uploads_fd_.get(), id.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return StoreStatus(PosixError("CREATE UPLOAD " + key, errno));
  nlohmann::json j;
  j["key"] = key;
  j["metadata"] = metadata;
  j["initiated"] = static_cast<int64_t>(time(nullptr));
  Status ws = WriteFileAtomic(dir.get(), "info.json", j.dump());
  if (!ws.ok()) {
    RemoveTree(uploads_fd_.get(), id);
    return StoreStatus(ws.WithContext("CREATE UPLOAD " + key));
  }
  return id;
}

static StoreStatus CheckPartNumber(int part_number, const std::string& key) {
  if (part_number < 1 || part_number > kMaxParts) {
    return S3LikeError(EINVAL, 400, "InvalidArgument",
                       "UPLOAD PART " + key + ": part number must be 1..10000");
  }
  return StoreStatus();
}

StoreResult<PartResult> LocalStore::UploadPart(const std::string& key, const std::string& upload_id,
                                               int part_number, const Payload& payload) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "UPLOAD PART"));
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckPartNumber(part_number, key));
  auto dir = OpenUpload(key, upload_id, "UPLOAD PART", nullptr);
  if (!dir.ok()) return dir.status();
  std::string md5, sha256;
  auto temp = WriteTemp(payload, dir->get(), &md5, &sha256, /*limited=*/true);
  if (!temp.ok()) return temp.status().WithContext("UPLOAD PART " + key);
  std::string name = "part." + std::to_string(part_number);
  if (renameat(dir->get(), temp->name().c_str(), dir->get(), name.c_str()) != 0) {
    return StoreStatus(PosixError("UPLOAD PART " + key, errno));
  }
  temp->Committed();
  return PartResult{part_number, md5, md5, sha256};
}

StoreResult<PartResult> LocalStore::UploadPartCopy(const std::string& key,
                                                   const std::string& upload_id, int part_number,
                                                   const std::string& src_key, ByteRange range,
                                                   const std::string& if_match) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "UPLOAD PART COPY"));
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(src_key, "UPLOAD PART COPY"));
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckPartNumber(part_number, key));
  auto dir = OpenUpload(key, upload_id, "UPLOAD PART COPY", nullptr);
  if (!dir.ok()) return dir.status();
  auto src = OpenObject(src_key, "UPLOAD PART COPY");
  if (!src.ok()) return src.status();
  if (!if_match.empty() && StripQuotes(if_match) != src->etag) {
    return PreconditionFailed("UPLOAD PART COPY", src_key);
  }
  if (range.length == 0 || range.offset + range.length > src->size) {
    return S3LikeError(EINVAL, 416, "InvalidRange",
                       "UPLOAD PART COPY " + src_key + ": range outside the source object");
  }
  std::string md5, sha256;
  auto temp = WriteTemp(Payload::FromFile(src->fd.get(), range.offset, range.length), dir->get(),
                        &md5, &sha256, /*limited=*/false);
  if (!temp.ok()) return temp.status().WithContext("UPLOAD PART COPY " + key);
  std::string name = "part." + std::to_string(part_number);
  if (renameat(dir->get(), temp->name().c_str(), dir->get(), name.c_str()) != 0) {
    return StoreStatus(PosixError("UPLOAD PART COPY " + key, errno));
  }
  temp->Committed();
  return PartResult{part_number, md5, "", ""};
}

StoreResult<PutResult> LocalStore::CompleteMultipartUpload(
    const std::string& key, const std::string& upload_id, const std::vector<CompletedPart>& parts) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "COMPLETE UPLOAD"));
  Metadata metadata;
  auto dir = OpenUpload(key, upload_id, "COMPLETE UPLOAD", &metadata);
  if (!dir.ok()) return dir.status();
  const std::string what = "COMPLETE UPLOAD " + key;
  if (parts.empty()) return S3LikeError(EINVAL, 400, "MalformedXML", what + ": no parts");
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].part_number <= parts[i - 1].part_number) {
      return S3LikeError(EINVAL, 400, "InvalidPartOrder", what + ": parts not in ascending order");
    }
  }
  // Open and size-check every part first, as S3 does before assembling.
  std::vector<UniqueFd> fds;
  std::vector<uint64_t> sizes;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string name = "part." + std::to_string(parts[i].part_number);
    int fd = openat(dir->get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      return S3LikeError(EINVAL, 400, "InvalidPart",
                         what + ": part " + std::to_string(parts[i].part_number) + " not uploaded");
    }
    fds.emplace_back(fd);
    struct stat st {};
    if (fstat(fd, &st) != 0) return StoreStatus(PosixError(what, errno));
    sizes.push_back(static_cast<uint64_t>(st.st_size));
    if (i + 1 < parts.size() && sizes.back() < kMinPartSize) {
      return S3LikeError(EINVAL, 400, "EntityTooSmall",
                         what + ": part " + std::to_string(parts[i].part_number) +
                             " is smaller than 5 MiB and not the last");
    }
  }
  std::string name = "t." + RandomHex(12);
  UniqueFd out(
      openat(tmp_fd_.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, kPrivateFileMode));
  if (!out) return StoreStatus(PosixError(what + ": create temp file", errno));
  TempFile temp(tmp_fd_.get(), name, std::move(out));
  std::string md5_concat;
  std::string buf(kChunk, '\0');
  for (size_t i = 0; i < parts.size(); ++i) {
    auto hasher = Hasher::Create(Hasher::Algorithm::kMd5);
    if (!hasher.ok()) return StoreStatus(hasher.status());
    for (uint64_t off = 0; off < sizes[i];) {
      ssize_t n = pread(fds[i].get(), buf.data(), buf.size(), static_cast<off_t>(off));
      if (n < 0) {
        if (errno == EINTR) continue;
        return StoreStatus(PosixError(what + ": read part", errno));
      }
      if (n == 0) break;
      std::string_view chunk(buf.data(), static_cast<size_t>(n));
      Status st = hasher->Update(chunk);
      if (st.ok()) st = WriteAll(temp.fd(), chunk);
      if (!st.ok()) return StoreStatus(st.WithContext(what));
      off += static_cast<uint64_t>(n);
    }
    auto md5 = hasher->Finish();
    if (!md5.ok()) return StoreStatus(md5.status());
    if (HexEncode(*md5) != StripQuotes(parts[i].etag)) {
      return S3LikeError(
          EINVAL, 400, "InvalidPart",
          what + ": ETag of part " + std::to_string(parts[i].part_number) + " does not match");
    }
    md5_concat += *md5;
  }
  if (fsync(temp.fd()) != 0) return StoreStatus(PosixError(what + ": fsync", errno));
  auto final_md5 = Md5(md5_concat);
  if (!final_md5.ok()) return StoreStatus(final_md5.status());
  std::string etag = HexEncode(*final_md5) + "-" + std::to_string(parts.size());
  SCRIBEFS_RETURN_IF_STORE_ERROR(Commit(key, temp, etag, metadata));
  dir->Reset();
  RemoveTree(uploads_fd_.get(), upload_id);
  uint64_t total = 0;
  for (uint64_t s : sizes) total += s;
  return PutResult{etag, "", "", "", total};
}

StoreStatus LocalStore::AbortMultipartUpload(const std::string& key, const std::string& upload_id) {
  ++requests_;
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckKey(key, "ABORT UPLOAD"));
  auto dir = OpenUpload(key, upload_id, "ABORT UPLOAD", nullptr);
  if (!dir.ok()) return dir.status();
  dir->Reset();
  RemoveTree(uploads_fd_.get(), upload_id);
  return StoreStatus();
}

StoreResult<std::vector<MultipartUpload>> LocalStore::ListMultipartUploads(
    const std::string& prefix) {
  ++requests_;
  auto names = ReadDirNames(uploads_fd_.get());
  if (!names.ok()) return StoreStatus(names.status().WithContext("LIST UPLOADS"));
  std::vector<MultipartUpload> out;
  for (const auto& [name, type] : *names) {
    int fd =
        openat(uploads_fd_.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    UniqueFd dir(fd);
    auto text = ReadSmallFile(dir.get(), "info.json");
    if (!text.ok()) continue;
    try {
      nlohmann::json j = nlohmann::json::parse(*text);
      MultipartUpload u{j.at("key").get<std::string>(), name, j.at("initiated").get<int64_t>()};
      if (u.key.compare(0, prefix.size(), prefix) == 0) out.push_back(std::move(u));
    } catch (const std::exception&) {
      continue;
    }
  }
  std::sort(out.begin(), out.end(), [](const MultipartUpload& a, const MultipartUpload& b) {
    return std::tie(a.key, a.initiated, a.upload_id) < std::tie(b.key, b.initiated, b.upload_id);
  });
  return out;
}

}  // namespace scribefs
