#include "uploader/reconciler.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/beneath.h"
#include "journal/sqlite_util.h"

namespace scribefs {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

const char* TypeOf(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "special";
}

// What the objects table says the target holds for one path (the columns
// the comparison needs).
struct Stored {
  std::string type;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
};

// Type, mode and owner, and for anything but a directory (whose mtime moves
// with every entry) size and mtime: rsync's quick check. Not the inode number
// (the uploader also compares it, for paths the journal names): a DATADIR
// copied to another filesystem would then be uploaded again in full. So, as
// with rsync, a file replaced by another of the same size and mtime while
// nobody watched is not noticed.
bool Same(const Stored& o, const struct stat& st) {
  return o.type == TypeOf(st.st_mode) && o.mode == st.st_mode && o.uid == st.st_uid &&
         o.gid == st.st_gid &&
         (S_ISDIR(st.st_mode) || (o.size == uint64_t(st.st_size) && o.mtime_ns == MtimeNs(st)));
}

Stored StoredRow(sqlite3_stmt* s, int first) {
  Stored o;
  const unsigned char* t = sqlite3_column_text(s, first);
  o.type = t ? reinterpret_cast<const char*>(t) : "";
  o.size = static_cast<uint64_t>(sqlite3_column_int64(s, first + 1));
  o.mtime_ns = sqlite3_column_int64(s, first + 2);
  o.mode = static_cast<uint32_t>(sqlite3_column_int64(s, first + 3));
  o.uid = static_cast<uint32_t>(sqlite3_column_int64(s, first + 4));
  o.gid = static_cast<uint32_t>(sqlite3_column_int64(s, first + 5));
  return o;
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
}

// The paths that journal records still to upload will store anyway (see the
// header for the rules).
class Coverage {
 public:
  void Add(Op op, const std::string& path, const std::string* new_path, int64_t flags) {
    if (op != Op::kLink) self_.insert(path);
    if (new_path) self_.insert(*new_path);
    // RENAME_EXCHANGE swaps two names; the uploader re-stores both, but does
    // not walk them as a rename target.
    if (op == Op::kRename && new_path && !(flags & 2)) subtree_.insert(*new_path);
  }
  // gone(dir): whether `dir` no longer exists locally (asked only for a
  // missing path's ancestors that a record names).
  bool Covers(const std::string& path, bool missing,
              const std::function<bool(const std::string&)>& gone) const {
    if (self_.count(path)) return true;
    for (size_t p = path.rfind('/'); p != std::string::npos && p > 0; p = path.rfind('/', p - 1)) {
      std::string dir = path.substr(0, p);
      if (subtree_.count(dir)) return true;
      // The uploader finds a named directory gone and deletes everything it
      // stored below it (e.g. the source of a rename still to upload).
      if (missing && self_.count(dir) && gone(dir)) return true;
    }
    return false;
  }

 private:
  std::unordered_set<std::string> self_;
  std::unordered_set<std::string> subtree_;
};

// Loads the records not yet uploaded (the partial index records_unfinished
// serves exactly this WHERE). Failed records do not count: they are not
// retried until `scribectl retry`, so a path that also changed behind the
// mount is reported.
Status LoadCoverage(sqlite3* db, Coverage* cov) {
  auto st = Prepare(db,
                    "SELECT op, path, new_path, flags, state FROM records "
                    "WHERE state IN ('pending','uploading','failed')");
  if (!st.ok()) return st.status();
  int rc;
  while ((rc = sqlite3_step(st->get())) == SQLITE_ROW) {
    std::string state = ColumnText(st->get(), 4);
    if (state == kStateFailed) continue;
    auto op = ParseOp(ColumnText(st->get(), 0));
    if (!op) continue;
    std::string path = ColumnText(st->get(), 1);
    std::optional<std::string> np;
    if (sqlite3_column_type(st->get(), 2) != SQLITE_NULL) np = ColumnText(st->get(), 2);
    cov->Add(*op, path, np ? &*np : nullptr, sqlite3_column_int64(st->get(), 3));
  }
  if (rc != SQLITE_DONE) return SqliteError("reconcile: reading pending records", db, rc);
  return Status::Ok();
}

// A read transaction on a connection of its own: everything read inside it
// is one consistent state of the journal (WAL snapshot).
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db) : db_(db) {}
  Status Begin() {
    SCRIBEFS_RETURN_IF_ERROR(Exec(db_, "BEGIN"));
    open_ = true;
    return Status::Ok();
  }
  ~ReadTxn() {
    if (open_) (void)Exec(db_, "COMMIT");
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

Result<SqliteDb> OpenReadOnly(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteError("reconcile: opening " + path, raw, rc);
  sqlite3_busy_timeout(raw, 10000);
  return db;
}

enum class Reason { kNew, kChanged, kMissing };

const char* ReasonName(Reason r) {
  switch (r) {
    case Reason::kNew:
      return "new";
    case Reason::kChanged:
      return "changed";
    case Reason::kMissing:
      return "missing";
  }
  return "?";
}

struct Candidate {
  std::string path;
  Reason reason;
  struct stat st;  // when not missing
};

// Where the local entry at `path` is now (nullopt: not there).
Result<std::optional<struct stat>> StatNow(int root_fd, const std::string& path) {
  auto fd = OpenBeneath(root_fd, path, O_PATH | O_NOFOLLOW);
  if (!fd.ok()) {
    int e = fd.status().code();
    if (e == ENOENT || e == ENOTDIR) return std::optional<struct stat>();
    return fd.status();
  }
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return PosixError("reconcile: stat " + path, errno);
  return std::optional<struct stat>(st);
}

}  // namespace

Result<ReconcileReport> ReconcileTree(Journal* journal, int root_fd,
                                      const ReconcileOptions& options) {
  auto t0 = Clock::now();
  ReconcileReport rep;
  auto excluded = [&](const std::string& p) { return options.excluded && options.excluded(p); };
  auto db = OpenReadOnly(journal->path());
  if (!db.ok()) return db.status();

  // 1. What the target holds, and what is still to upload, as of one moment.
  std::unordered_map<std::string, Stored> known;
  Coverage coverage;
  {
    ReadTxn txn(db->get());
    SCRIBEFS_RETURN_IF_ERROR(txn.Begin());
    auto st = Prepare(db->get(), "SELECT path, type, size, mtime_ns, mode, uid, gid FROM objects");
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = sqlite3_step(st->get())) == SQLITE_ROW)
      known.emplace(ColumnText(st->get(), 0), StoredRow(st->get(), 1));
    if (rc != SQLITE_DONE) return SqliteError("reconcile: reading objects", db->get(), rc);
    if (!options.quiesce) SCRIBEFS_RETURN_IF_ERROR(LoadCoverage(db->get(), &coverage));
  }

  // 2. Walk the tree: depth-first over directory descriptors, never
  // following symlinks. Every difference is a candidate.
  std::vector<Candidate> candidates;
  struct Dir {
    std::string path;
    UniqueFd fd;
  };
  std::vector<Dir> stack;
  {
    auto root = OpenBeneath(root_fd, "", O_RDONLY | O_DIRECTORY);
    if (!root.ok()) return root.status();
    stack.push_back({"", std::move(root.value())});
  }
  std::string path;
  while (!stack.empty()) {
    Dir dir = std::move(stack.back());
    stack.pop_back();
    // fdopendir takes the descriptor; fstatat/openat below use the same one
    // through dirfd().
    DIR* d = fdopendir(dir.fd.get());
    if (!d) return PosixError("reconcile: " + (dir.path.empty() ? "DATADIR" : dir.path), errno);
    dir.fd.Release();
    int dfd = dirfd(d);
    while (struct dirent* e = readdir(d)) {
      const char* name = e->d_name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      path.assign(dir.path);
      if (!path.empty()) path.push_back('/');
      path.append(name);
      if (excluded(path)) continue;
      struct stat st;
      if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
      if ((++rep.scanned & 4095) == 0 && options.cancelled && options.cancelled()) {
        closedir(d);
        return Status::Error(ECANCELED, "reconcile: cancelled");
      }
      auto it = known.find(path);
      if (it == known.end()) {
        candidates.push_back({path, Reason::kNew, st});
      } else {
        if (!Same(it->second, st)) candidates.push_back({path, Reason::kChanged, st});
        known.erase(it);
      }
      if (S_ISDIR(st.st_mode)) {
        int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) stack.push_back({path, UniqueFd(cfd)});
      }
    }
    closedir(d);
  }
  // What the target holds but DATADIR no longer has (keys below a vanished
  // directory are removed with it: report only the topmost).
  for (const auto& [p, o] : known) {
    bool parent_missing = false;
    for (size_t s = p.rfind('/'); s != std::string::npos && s > 0; s = p.rfind('/', s - 1)) {
      if (known.count(p.substr(0, s))) {
        parent_missing = true;
        break;
      }
    }
    if (parent_missing || excluded(p)) continue;
    candidates.push_back({p, Reason::kMissing, {}});
  }
  known.clear();

  // 3. Keep what no record still to upload covers; on a live mount, only
  // what still differs now (see ReconcileOptions::quiesce).
  std::vector<Candidate> report;
  auto gone = [&](const std::string& dir) {
    auto st = StatNow(root_fd, dir);
    return st.ok() && !st->has_value();  // an error counts as there: report
  };
  auto check_live = [&]() -> Status {
    ReadTxn txn(db->get());
    SCRIBEFS_RETURN_IF_ERROR(txn.Begin());
    Coverage now;
    SCRIBEFS_RETURN_IF_ERROR(LoadCoverage(db->get(), &now));
    auto get = Prepare(db->get(),
                       "SELECT type, size, mtime_ns, mode, uid, gid FROM objects WHERE path=?1");
    if (!get.ok()) return get.status();
    for (Candidate& c : candidates) {
      if (now.Covers(c.path, c.reason == Reason::kMissing, gone)) {
        rep.pending++;
        continue;
      }
      auto local = StatNow(root_fd, c.path);
      if (!local.ok()) return local.status();
      std::optional<Stored> stored;
      {
        StmtResetter reset(get->get());
        sqlite3_bind_text(get->get(), 1, c.path.data(), static_cast<int>(c.path.size()),
                          SQLITE_STATIC);
        int rc = sqlite3_step(get->get());
        if (rc == SQLITE_ROW)
          stored = StoredRow(get->get(), 0);
        else if (rc != SQLITE_DONE)
          return SqliteError("reconcile: reading objects", db->get(), rc);
      }
      if (!*local && !stored) continue;                        // gone, and never stored
      if (*local && stored && Same(*stored, **local)) continue;  // stored as it is
      c.reason = !*local ? Reason::kMissing : (!stored ? Reason::kNew : Reason::kChanged);
      if (*local) c.st = **local;
      report.push_back(std::move(c));
    }
    return Status::Ok();
  };
  if (options.quiesce) {
    auto h = Clock::now();
    SCRIBEFS_RETURN_IF_ERROR(options.quiesce(check_live));
    rep.hold_ms = std::chrono::duration<double, std::milli>(Clock::now() - h).count();
  } else {
    for (Candidate& c : candidates) {
      if (coverage.Covers(c.path, c.reason == Reason::kMissing, gone))
        rep.pending++;
      else
        report.push_back(std::move(c));
    }
  }
  candidates.clear();

  // 4. Journal them.
  std::vector<Record> batch;
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    Status s = journal->Commit(batch);
    batch.clear();
    return s;
  };
  for (const Candidate& c : report) {
    switch (c.reason) {
      case Reason::kNew:
        rep.new_paths++;
        break;
      case Reason::kChanged:
        rep.changed++;
        break;
      case Reason::kMissing:
        rep.missing++;
        break;
    }
    Record r;
    r.op = Op::kReconcile;
    r.path = c.path;
    if (c.reason != Reason::kMissing) {
      r.mode = c.st.st_mode;
      if (S_ISREG(c.st.st_mode)) r.size = c.st.st_size;
    }
    r.detail = nlohmann::json{{"reason", ReasonName(c.reason)}, {"scan", options.scan}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    batch.push_back(std::move(r));
    if (batch.size() >= 2000) SCRIBEFS_RETURN_IF_ERROR(flush());
  }
  SCRIBEFS_RETURN_IF_ERROR(flush());
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rep;
}

}  // namespace scribefs
