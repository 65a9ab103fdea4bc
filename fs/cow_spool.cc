#include "fs/cow_spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/beneath.h"

namespace scribefs {
namespace cow_internal {

// One frozen inode that was mutated since the mark.
struct InodeState {
  UniqueFd dir_fd;      // DIR/<id>/<dev>-<ino>
  struct stat attr {};  // lstat at the mark
  std::string target;   // a symlink's, at the mark
  UniqueFd data_fd;     // opened on the first preserved range
  UniqueFd log_fd;
  PreservedRanges ranges;
  bool linked = false;  // `link` holds the inode
};

struct CaptureState {
  std::string id;
  int64_t seq = 0;
  std::map<std::string, InodeKey> paths;  // sorted: prefix scans of a renamed directory
  // Every frozen inode; nullptr until its first mutation.
  std::unordered_map<InodeKey, std::unique_ptr<InodeState>, InodeKeyHash> inodes;
  UniqueFd dir_fd;  // DIR/<id>
  uint64_t bytes = 0;
  bool abandoned = false;
  std::string why;
};

}  // namespace cow_internal

namespace {

using cow_internal::CaptureState;
using cow_internal::InodeState;

constexpr size_t kCopyChunk = 1 << 20;
constexpr char kCaptureFile[] = "capture.json";

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string KeyName(InodeKey k) {
  return std::to_string(uint64_t(k.dev)) + "-" + std::to_string(uint64_t(k.ino));
}

bool ParseKeyName(const std::string& name, InodeKey* k) {
  unsigned long long dev, ino;
  char tail;
  if (sscanf(name.c_str(), "%llu-%llu%c", &dev, &ino, &tail) != 2) return false;
  *k = InodeKey{static_cast<dev_t>(dev), static_cast<ino_t>(ino)};
  return true;
}

bool ValidId(const std::string& id) {
  return !id.empty() && id != "." && id != ".." && id.find('/') == std::string::npos &&
         id.find('\0') == std::string::npos && id.size() < 200;
}

Status WriteAll(int fd, const char* p, size_t n, const std::string& what) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return PosixError(what, errno);
    if (w == 0) return Status::Error(EIO, what + ": short write");
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

// name in dirfd replaced by content: tmp file, (fsync), rename, (fsync dir).
Status WriteFileAtomic(int dirfd, const std::string& name, const std::string& content,
                       bool durable) {
  std::string tmp = name + ".tmp";
  UniqueFd fd(openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return PosixError("create " + tmp, errno);
  SCRIBEFS_RETURN_IF_ERROR(WriteAll(fd.get(), content.data(), content.size(), "write " + tmp));
  if (durable && fsync(fd.get()) != 0) return PosixError("fsync " + tmp, errno);
  if (renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0)
    return PosixError("rename " + tmp, errno);
  if (durable && fsync(dirfd) != 0) return PosixError("fsync dir", errno);
  return Status::Ok();
}

Result<std::string> ReadFileAt(int dirfd, const std::string& name) {
  UniqueFd fd(openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return PosixError("open " + name, errno);
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError("read " + name, errno);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

int64_t Ns(const struct timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }
struct timespec Ts(int64_t ns) {
  return {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
}

std::string AttrsJson(const struct stat& st, const std::string& target) {
  nlohmann::json j = {{"mode", st.st_mode},
                      {"uid", st.st_uid},
                      {"gid", st.st_gid},
                      {"size", st.st_size},
                      {"rdev", uint64_t(st.st_rdev)},
                      {"atime_ns", Ns(st.st_atim)},
                      {"mtime_ns", Ns(st.st_mtim)},
                      {"ctime_ns", Ns(st.st_ctim)}};
  if (S_ISLNK(st.st_mode)) j["target"] = target;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void ParseAttrs(const nlohmann::json& j, struct stat* st, std::string* target) {
  *st = {};
  st->st_mode = j.at("mode").get<mode_t>();
  st->st_uid = j.at("uid").get<uid_t>();
  st->st_gid = j.at("gid").get<gid_t>();
  st->st_size = j.at("size").get<off_t>();
  st->st_rdev = static_cast<dev_t>(j.at("rdev").get<uint64_t>());
  st->st_atim = Ts(j.at("atime_ns").get<int64_t>());
  st->st_mtim = Ts(j.at("mtime_ns").get<int64_t>());
  st->st_ctim = Ts(j.at("ctime_ns").get<int64_t>());
  if (j.contains("target")) *target = j.at("target").get<std::string>();
}

// Reads n bytes at off of fd into buf; a descriptor that cannot be read
// (O_PATH, O_WRONLY) is reopened for reading through /proc. Bytes past the
// end read as zeros. -errno on failure.
ssize_t ReadFully(int fd, UniqueFd* reopened, char* buf, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    int use = *reopened ? reopened->get() : fd;
    ssize_t r = pread(use, buf + done, n - done, static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EBADF && !*reopened) {
      *reopened = UniqueFd(open(ProcPath(fd).c_str(), O_RDONLY | O_CLOEXEC));
      if (!*reopened) return -errno;
      continue;
    }
    if (r < 0) return -errno;
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  std::memset(buf + done, 0, n - done);
  return static_cast<ssize_t>(n);
}

Status LstatAt(int dirfd, const char* name, struct stat* st, std::string* target) {
  int flags = AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH);
  if (fstatat(dirfd, name, st, flags) != 0) return PosixError("lstat at the mark", errno);
  if (S_ISLNK(st->st_mode)) {
    char buf[PATH_MAX + 1];
    ssize_t n = readlinkat(dirfd, name, buf, sizeof buf);
    if (n < 0) return PosixError("readlink at the mark", errno);
    target->assign(buf, static_cast<size_t>(std::min<ssize_t>(n, PATH_MAX)));
  }
  return Status::Ok();
}

// Copies the inode at dirfd/name (not followed) to dst_dir/name_out: the
// fallback of a hard link across filesystems. Regular files only carry bytes.
Status CopyInode(int dirfd, const char* name, const struct stat& st, int dst_dir,
                 const char* name_out) {
  if (!S_ISREG(st.st_mode)) return Status::Ok();  // attrs.json is the whole state
  int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
  UniqueFd src(name[0] ? openat(dirfd, name, flags)
                       : open(ProcPath(dirfd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!src) return PosixError("open for copy", errno);
  std::string tmp = std::string(name_out) + ".tmp";
  UniqueFd dst(openat(dst_dir, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!dst) return PosixError("create " + tmp, errno);
  std::vector<char> buf(kCopyChunk);
  while (true) {
    ssize_t n = read(src.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PosixError("read for copy", errno);
    if (n == 0) break;
    SCRIBEFS_RETURN_IF_ERROR(WriteAll(dst.get(), buf.data(), size_t(n), "write " + tmp));
  }
  if (renameat(dst_dir, tmp.c_str(), dst_dir, name_out) != 0) return PosixError("rename", errno);
  return Status::Ok();
}

}  // namespace

CowSpool::CowSpool(std::string dir, UniqueFd dir_fd, int backing_root_fd, uint64_t max_bytes)
    : dir_(std::move(dir)),
      dir_fd_(std::move(dir_fd)),
      backing_root_fd_(backing_root_fd),
      max_bytes_(max_bytes) {}

CowSpool::~CowSpool() = default;

Result<std::unique_ptr<CowSpool>> CowSpool::Open(std::string dir, int backing_root_fd,
                                                 uint64_t max_bytes) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return PosixError("mkdir " + dir, errno);
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return PosixError("open " + dir, errno);
  if (fchmod(fd.get(), 0700) != 0) return PosixError("chmod " + dir, errno);
  std::unique_ptr<CowSpool> spool(new CowSpool(dir, std::move(fd), backing_root_fd, max_bytes));
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = e.path().filename();
    Status s = e.is_directory() ? spool->Load(name) : Status::Error(EINVAL, "not a capture");
    if (!s.ok()) {
      // Debris of a Capture that did not finish (no capture.json): nothing
      // was preserved for it, nobody was told it exists.
      spdlog::warn("spool: removing {}: {}", name, s.message());
      std::filesystem::remove_all(e.path(), ec);
    }
  }
  if (ec) return Status::Error(ec.value(), "list " + dir + ": " + ec.message());
  spool->UpdateLive();
  return spool;
}

Status CowSpool::Load(const std::string& id) {
  auto c = std::make_shared<CaptureState>();
  c->dir_fd = UniqueFd(openat(dir_fd_.get(), id.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!c->dir_fd) return PosixError("open " + id, errno);
  auto text = ReadFileAt(c->dir_fd.get(), kCaptureFile);
  if (!text.ok()) return text.status();
  try {
    auto j = nlohmann::json::parse(*text);
    c->id = j.at("id").get<std::string>();
    c->seq = j.at("seq").get<int64_t>();
    for (const auto& p : j.at("paths")) {
      InodeKey k{p.at("dev").get<dev_t>(), p.at("ino").get<ino_t>()};
      c->paths[p.at("path").get<std::string>()] = k;
      if (k.dev || k.ino) c->inodes.emplace(k, nullptr);
    }
  } catch (const std::exception& e) {
    return Status::Error(EINVAL, std::string(kCaptureFile) + ": " + e.what());
  }
  if (c->id != id) return Status::Error(EINVAL, "capture.json names " + c->id);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/" + id, ec)) {
    std::string name = e.path().filename();
    InodeKey k;
    if (!ParseKeyName(name, &k) || !c->inodes.count(k)) {
      if (name != kCaptureFile) std::filesystem::remove_all(e.path(), ec);  // a .tmp
      continue;
    }
    auto st = std::make_unique<InodeState>();
    st->dir_fd =
        UniqueFd(openat(c->dir_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    auto attrs = st->dir_fd ? ReadFileAt(st->dir_fd.get(), "attrs.json")
                            : Result<std::string>(PosixError("open", errno));
    if (!attrs.ok()) {
      // Killed before its attributes were in place: the mutation that made
      // it had not happened yet; the inode is as at the mark.
      std::filesystem::remove_all(e.path(), ec);
      continue;
    }
    try {
      ParseAttrs(nlohmann::json::parse(*attrs), &st->attr, &st->target);
    } catch (const std::exception& ex) {
      return Status::Error(EINVAL, name + "/attrs.json: " + ex.what());
    }
    st->log_fd = UniqueFd(openat(st->dir_fd.get(), "ranges", O_RDWR | O_CLOEXEC));
    if (st->log_fd) {
      auto log = ReadFileAt(st->dir_fd.get(), "ranges");
      if (!log.ok()) return log.status();
      size_t whole = log->size() / 16 * 16;  // a torn tail record never counted
      for (size_t i = 0; i < whole; i += 16) {
        uint64_t rec[2];
        std::memcpy(rec, log->data() + i, 16);
        uint64_t before = st->ranges.total_bytes();
        st->ranges.Insert(rec[0], rec[1]);
        c->bytes += st->ranges.total_bytes() - before;
      }
      if (whole != log->size() && ftruncate(st->log_fd.get(), off_t(whole)) != 0)
        return PosixError("truncate ranges", errno);
      if (lseek(st->log_fd.get(), 0, SEEK_END) < 0) return PosixError("seek ranges", errno);
      st->data_fd = UniqueFd(openat(st->dir_fd.get(), "data", O_RDWR | O_CLOEXEC));
      if (!st->data_fd) return PosixError("open data", errno);
    }
    struct stat ls;
    if (fstatat(st->dir_fd.get(), "link", &ls, AT_SYMLINK_NOFOLLOW) == 0) {
      st->linked = true;
      // Held by the spool alone: DATADIR no longer has it.
      if (S_ISREG(ls.st_mode) && ls.st_nlink == 1) c->bytes += uint64_t(ls.st_size);
    }
    c->inodes[k] = std::move(st);
  }
  std::lock_guard lk(mu_);
  captures_[id] = std::move(c);
  return Status::Ok();
}

void CowSpool::UpdateLive() {
  int n = 0;
  for (const auto& [id, c] : captures_) n += !c->abandoned;
  live_.store(n, std::memory_order_release);
}

Status CowSpool::Capture(const CaptureSpec& spec) {
  if (!ValidId(spec.id)) return Status::Error(EINVAL, "capture id: " + spec.id);
  auto c = std::make_shared<CaptureState>();
  c->id = spec.id;
  c->seq = spec.seq;
  nlohmann::json paths = nlohmann::json::array();
  for (const FrozenPath& p : spec.paths) {
    c->paths[p.path] = p.key;
    if (p.key.dev || p.key.ino) c->inodes.emplace(p.key, nullptr);
    paths.push_back({{"path", p.path}, {"dev", uint64_t(p.key.dev)}, {"ino", uint64_t(p.key.ino)}});
  }
  std::string text = nlohmann::json{{"id", spec.id}, {"seq", spec.seq}, {"paths", paths}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard lk(mu_);
  if (captures_.count(spec.id)) return Status::Error(EEXIST, "capture " + spec.id + " exists");
  if (mkdirat(dir_fd_.get(), spec.id.c_str(), 0700) != 0)
    return PosixError("spool: mkdir " + spec.id, errno);
  auto undo = [&](Status s) {
    std::error_code ec;
    std::filesystem::remove_all(dir_ + "/" + spec.id, ec);
    return s.WithContext("spool: capture " + spec.id);
  };
  c->dir_fd = UniqueFd(openat(dir_fd_.get(), spec.id.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!c->dir_fd) return undo(PosixError("open", errno));
  Status s = WriteFileAtomic(c->dir_fd.get(), kCaptureFile, text, /*durable=*/false);
  if (!s.ok()) return undo(s);
  captures_[spec.id] = std::move(c);
  UpdateLive();
  return Status::Ok();
}

Status CowSpool::Persist(const std::string& id) {
  // The fsyncs run without the lock: the hooks of writers take it.
  UniqueFd dir;
  {
    std::lock_guard lk(mu_);
    auto it = captures_.find(id);
    if (it == captures_.end()) return Status::Error(ENOENT, "no capture " + id);
    const CaptureState& c = *it->second;
    if (c.abandoned) return Status::Error(ECANCELED, "capture " + id + " abandoned: " + c.why);
    dir = UniqueFd(fcntl(c.dir_fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!dir) return PosixError("spool: capture " + id, errno);
  }
  const std::string what = "spool: capture " + id + ": fsync ";
  UniqueFd f(openat(dir.get(), kCaptureFile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!f) return PosixError(what + kCaptureFile, errno);
  if (fsync(f.get()) != 0) return PosixError(what + kCaptureFile, errno);
  if (fsync(dir.get()) != 0) return PosixError(what + "its directory", errno);
  if (fsync(dir_fd_.get()) != 0) return PosixError(what + dir_, errno);
  return Status::Ok();
}

Status CowSpool::Release(const std::string& id) {
  std::lock_guard lk(mu_);
  auto it = captures_.find(id);
  if (it == captures_.end()) return Status::Error(ENOENT, "no capture " + id);
  CaptureState& c = *it->second;
  c.abandoned = true;  // an open FrozenFile stops reading
  c.why = "released";
  c.inodes.clear();
  c.dir_fd.Reset();
  captures_.erase(it);
  UpdateLive();
  std::error_code ec;
  std::filesystem::remove_all(dir_ + "/" + id, ec);
  if (ec) return Status::Error(ec.value(), "spool: remove " + id + ": " + ec.message());
  return Status::Ok();
}

std::vector<CaptureInfo> CowSpool::Captures() const {
  std::lock_guard lk(mu_);
  std::vector<CaptureInfo> out;
  for (const auto& [id, c] : captures_)
    out.push_back({id, c->seq, c->paths.size(), c->bytes, c->abandoned, c->why});
  return out;
}

void CowSpool::Abandon(CaptureState& c, const std::string& why) {
  // The writer goes on; only the checkpoint is lost. Its spool is freed now.
  spdlog::error("checkpoint capture {} abandoned: {}", c.id, why);
  c.abandoned = true;
  c.why = why;
  c.inodes.clear();
  c.dir_fd.Reset();
  c.bytes = 0;
  std::error_code ec;
  std::filesystem::remove_all(dir_ + "/" + c.id, ec);
  UpdateLive();
}

InodeState* CowSpool::First(CaptureState& c, InodeKey key, int dirfd, const char* name) {
  if (c.abandoned) return nullptr;
  auto it = c.inodes.find(key);
  if (it == c.inodes.end()) return nullptr;
  if (it->second) return it->second.get();
  // First mutation since the mark: nothing changed it yet.
  auto st = std::make_unique<InodeState>();
  Status s = LstatAt(dirfd, name, &st->attr, &st->target);
  std::string sub = KeyName(key);
  if (s.ok() && (st->attr.st_dev != key.dev || st->attr.st_ino != key.ino))
    s = Status::Error(ESTALE, "inode changed identity");
  if (s.ok() && mkdirat(c.dir_fd.get(), sub.c_str(), 0700) != 0 && errno != EEXIST)
    s = PosixError("mkdir", errno);
  if (s.ok()) {
    st->dir_fd = UniqueFd(openat(c.dir_fd.get(), sub.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!st->dir_fd) s = PosixError("open", errno);
  }
  if (s.ok())
    s = WriteFileAtomic(st->dir_fd.get(), "attrs.json", AttrsJson(st->attr, st->target), false);
  if (!s.ok()) {
    Abandon(c, "spool: " + sub + ": " + s.message());
    return nullptr;
  }
  it->second = std::move(st);
  return it->second.get();
}

bool CowSpool::Preserve(CaptureState& c, InodeState& st, int fd, uint64_t off, uint64_t end) {
  if (!S_ISREG(st.attr.st_mode)) return true;
  end = std::min<uint64_t>(end, uint64_t(st.attr.st_size));  // bytes past the mark size: new
  auto missing = st.ranges.Missing(off, end);
  if (missing.empty()) return true;
  auto fail = [&](const std::string& what, int err) {
    Abandon(c, "spool: " + what + ": " + strerror(err));
    return false;
  };
  if (!st.data_fd) {
    st.data_fd = UniqueFd(openat(st.dir_fd.get(), "data", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!st.data_fd) return fail("create data", errno);
    st.log_fd = UniqueFd(
        openat(st.dir_fd.get(), "ranges", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!st.log_fd) return fail("create ranges", errno);
  }
  std::vector<char> buf(kCopyChunk);
  UniqueFd reopened;
  for (auto [a, b] : missing) {
    if (c.bytes + (b - a) > max_bytes_) {
      Abandon(c, "spool would exceed --max-spool (" + std::to_string(max_bytes_) + " bytes)");
      return false;
    }
    for (uint64_t pos = a; pos < b;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kCopyChunk, b - pos));
      ssize_t r = ReadFully(fd, &reopened, buf.data(), n, pos);
      if (r < 0) return fail("read original bytes", int(-r));
      for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(st.data_fd.get(), buf.data() + done, n - done, off_t(pos + done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail("write data", w < 0 ? errno : EIO);
        done += size_t(w);
      }
      pos += n;
    }
    // The bytes are in `data`: now the log may say so.
    uint64_t rec[2] = {a, b};
    ssize_t w = write(st.log_fd.get(), rec, sizeof rec);
    if (w != ssize_t(sizeof rec)) return fail("append ranges", w < 0 ? errno : ENOSPC);
    st.ranges.Insert(a, b);
    c.bytes += b - a;
  }
  return true;
}

bool CowSpool::LinkInode(CaptureState& c, InodeState& st, int dirfd, const char* name, bool gone) {
  if (st.linked) return true;
  int flags = name[0] ? 0 : AT_EMPTY_PATH;  // never follows a symlink: links the link
  if (linkat(dirfd, name, st.dir_fd.get(), "link", flags) != 0 && errno != EEXIST) {
    if (errno != EXDEV) {
      Abandon(c, std::string("spool: link: ") + strerror(errno));
      return false;
    }
    // The spool is on another filesystem than DATADIR: copy.
    Status s = CopyInode(dirfd, name, st.attr, st.dir_fd.get(), "link");
    if (!s.ok()) {
      Abandon(c, "spool: copy of an unlinked file: " + s.message());
      return false;
    }
    gone = true;  // a copy always takes space of its own
  }
  st.linked = true;
  if (gone && S_ISREG(st.attr.st_mode)) {
    c.bytes += uint64_t(st.attr.st_size);
    if (c.bytes > max_bytes_) {
      Abandon(c, "spool would exceed --max-spool (" + std::to_string(max_bytes_) + " bytes)");
      return false;
    }
  }
  return true;
}

bool CowSpool::Watches(InodeKey key) const {
  if (!live()) return false;
  std::lock_guard lk(mu_);
  for (const auto& [id, c] : captures_)
    if (!c->abandoned && c->inodes.count(key)) return true;
  return false;
}

void CowSpool::BeforeData(InodeKey key, int fd, uint64_t off, uint64_t end) {
  if (!live()) return;
  std::lock_guard lk(mu_);
  for (auto& [id, c] : captures_)
    if (InodeState* st = First(*c, key, fd, "")) Preserve(*c, *st, fd, off, end);
}

void CowSpool::BeforeMetadata(InodeKey key, int fd) {
  if (!live()) return;
  std::lock_guard lk(mu_);
  for (auto& [id, c] : captures_) (void)First(*c, key, fd, "");
}

void CowSpool::BeforeRemoveName(InodeKey key, int dirfd, const std::string& name, bool gone) {
  if (!live()) return;
  std::lock_guard lk(mu_);
  for (auto& [id, c] : captures_) {
    InodeState* st = First(*c, key, dirfd, name.c_str());
    if (st && !S_ISDIR(st->attr.st_mode)) LinkInode(*c, *st, dirfd, name.c_str(), gone);
  }
}

void CowSpool::BeforeRenameDir(const std::string& rel_path) {
  if (!live()) return;
  std::string prefix = rel_path.empty() ? "" : rel_path + "/";
  std::lock_guard lk(mu_);
  for (auto& [id, c] : captures_) {
    for (auto it = c->paths.lower_bound(prefix);
         !c->abandoned && it != c->paths.end() && it->first.starts_with(prefix); ++it) {
      InodeKey key = it->second;
      auto in = c->inodes.find(key);
      if (in == c->inodes.end()) continue;  // absent at the mark
      if (in->second && (in->second->linked || S_ISDIR(in->second->attr.st_mode))) continue;
      // A frozen path that no longer leads to its inode moved before, and
      // was preserved when it did.
      auto fd = OpenBeneath(backing_root_fd_, it->first, O_PATH | O_NOFOLLOW);
      if (!fd.ok()) continue;
      struct stat now;
      if (fstat(fd->get(), &now) != 0 || now.st_dev != key.dev || now.st_ino != key.ino) continue;
      InodeState* st = First(*c, key, fd->get(), "");
      if (st && !S_ISDIR(st->attr.st_mode)) LinkInode(*c, *st, fd->get(), "", /*gone=*/false);
    }
  }
}

bool CowSpool::Freezes(const std::string& id, const std::string& path) const {
  std::lock_guard lk(mu_);
  auto cit = captures_.find(id);
  return cit != captures_.end() && cit->second->paths.count(path) > 0;
}

Result<FrozenFile> CowSpool::OpenAtMark(const std::string& id, const std::string& path) const {
  std::lock_guard lk(mu_);
  auto cit = captures_.find(id);
  if (cit == captures_.end()) return Status::Error(ENOENT, "no capture " + id);
  const CaptureState& c = *cit->second;
  if (c.abandoned) return Status::Error(ECANCELED, "capture " + id + " abandoned: " + c.why);
  auto pit = c.paths.find(path);
  if (pit == c.paths.end()) return Status::Error(ENOENT, path + ": not frozen in " + id);
  FrozenFile f;
  f.spool_ = this;
  f.capture_ = cit->second;
  f.key_ = pit->second;
  if (!f.key_.dev && !f.key_.ino) return f;  // absent at the mark
  const InodeState* st = c.inodes.at(f.key_).get();
  UniqueFd inode;  // O_PATH of the inode itself, wherever it is now
  if (st && st->linked) {
    inode = UniqueFd(openat(st->dir_fd.get(), "link", O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!inode) return PosixError(path + ": spool link", errno);
  } else {
    auto o = OpenBeneath(backing_root_fd_, path, O_PATH | O_NOFOLLOW);
    struct stat now;
    bool same = o.ok() && fstat(o->get(), &now) == 0 && now.st_dev == f.key_.dev &&
                now.st_ino == f.key_.ino;
    if (same) inode = std::move(o.value());
    // A directory's recorded attributes are its whole state at the mark.
    else if (!st || !S_ISDIR(st->attr.st_mode))
      return Status::Error(ESTALE, path + ": no longer leads to its inode at the mark");
  }
  if (st) {
    f.attr_ = st->attr;
    f.target_ = st->target;
  } else {
    SCRIBEFS_RETURN_IF_ERROR(LstatAt(inode.get(), "", &f.attr_, &f.target_));
  }
  mode_t t = f.attr_.st_mode & S_IFMT;
  f.kind_ = t == S_IFDIR   ? FrozenFile::Kind::kDirectory
            : t == S_IFLNK ? FrozenFile::Kind::kSymlink
            : t == S_IFREG ? FrozenFile::Kind::kRegular
                           : FrozenFile::Kind::kOther;
  if (f.kind_ == FrozenFile::Kind::kRegular && inode) {
    f.live_ = UniqueFd(open(ProcPath(inode.get()).c_str(), O_RDONLY | O_CLOEXEC));
    if (!f.live_) return PosixError(path + ": open", errno);
  }
  return f;
}

Result<size_t> FrozenFile::Pread(void* buf, size_t n, uint64_t off) const {
  if (kind_ != Kind::kRegular) return Status::Error(EINVAL, "not a regular file");
  if (off >= size()) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, size() - off));
  return spool_->ReadAtMark(*capture_, key_, live_.get(), buf, n, off);
}

Result<size_t> CowSpool::ReadAtMark(const CaptureState& c, InodeKey key, int live_fd, void* buf,
                                    size_t n, uint64_t off) const {
  // Under the lock no writer is between its hook and its write: a range not
  // preserved yet still holds its bytes at the mark.
  std::lock_guard lk(mu_);
  if (c.abandoned) return Status::Error(ECANCELED, "capture " + c.id + " abandoned: " + c.why);
  auto it = c.inodes.find(key);
  const InodeState* st = it == c.inodes.end() ? nullptr : it->second.get();
  char* out = static_cast<char*>(buf);
  PreservedRanges none;
  const PreservedRanges& have = st ? st->ranges : none;
  UniqueFd unused;
  for (auto [a, b] : have.Present(off, off + n)) {
    ssize_t r = ReadFully(st->data_fd.get(), &unused, out + (a - off), size_t(b - a), a);
    if (r < 0) return PosixError("spool: read data", int(-r));
  }
  for (auto [a, b] : have.Missing(off, off + n)) {
    ssize_t r = ReadFully(live_fd, &unused, out + (a - off), size_t(b - a), a);
    if (r < 0) return PosixError("read live bytes", int(-r));
  }
  return n;
}

}  // namespace scribefs
