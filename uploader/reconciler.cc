#include "uploader/reconciler.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/beneath.h"
#include "journal/reader.h"
#include "journal/remote_index.h"
#include "journal/upload_state.h"
#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs {
namespace {

using Clock = std::chrono::steady_clock;

// What the objects table says the target holds for one path (the columns
// the comparison needs).
// One row of the objects table as the comparison needs it. Held for every
// stored path at once (a million at a million files), so it keeps only that:
// the type as a view of ObjectTypeOf's names, the SHA-256 only when content
// is to be compared.
struct Stored {
  std::string_view type;  // ObjectTypeOf's name; empty: a type we do not know
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  std::string sha256;  // hex, "" when not known or not wanted
};

// The name ObjectTypeOf gives for t, as a view that outlives the row.
std::string_view KnownType(const std::string& t) {
  for (mode_t m : {S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK})
    if (ObjectTypeOf(m) == t) return ObjectTypeOf(m);
  return {};
}

// Type, mode and owner, and for anything but a directory (whose mtime moves
// with every entry) size and mtime: rsync's quick check. Not the inode number
// (the uploader also compares it, for paths the journal names): a DATADIR
// copied to another filesystem would then be uploaded again in full. So, as
// with rsync, a file replaced by another of the same size and mtime while
// nobody watched is not noticed.
bool Same(const Stored& o, const struct stat& st) {
  return !o.type.empty() && o.type == ObjectTypeOf(st.st_mode) && o.mode == st.st_mode &&
         o.uid == st.st_uid && o.gid == st.st_gid &&
         (S_ISDIR(st.st_mode) || (o.size == uint64_t(st.st_size) && o.mtime_ns == MtimeNs(st)));
}

Stored StoredOf(const RemoteObject& r, bool with_sha256) {
  Stored o;
  o.type = KnownType(r.type);
  o.size = r.size;
  o.mtime_ns = r.mtime_ns;
  o.mode = r.mode;
  o.uid = r.uid;
  o.gid = r.gid;
  if (with_sha256) o.sha256 = r.sha256;
  return o;
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

// Loads the records not yet uploaded. Failed records do not count: they are
// not retried until `scribectl retry`, so a path that also changed behind
// the mount is reported.
Status LoadCoverage(JournalReader& reader, int64_t target, Coverage* cov) {
  // This target's: a record it has finished covers nothing here, whatever
  // another target still has to do with it.
  auto recs = reader.Unfinished(target);
  if (!recs.ok()) return recs.status().WithContext("reconcile: reading pending records");
  for (const UnfinishedRecord& r : *recs) {
    if (r.state == kStateFailed) continue;
    cov->Add(r.op, r.path, r.new_path ? &*r.new_path : nullptr, r.flags);
  }
  return Status::Ok();
}

// The journal as reconciliation reads it: records and the objects table on
// one read-only connection, so that a snapshot covers both.
struct JournalView {
  std::unique_ptr<JournalReader> reader;
  std::unique_ptr<RemoteIndex> index;
  int64_t target = kFirstTarget;
};

Result<JournalView> OpenView(const std::string& path, int64_t target) {
  auto reader = JournalReader::Open(path);
  if (!reader.ok()) return reader.status().WithContext("reconcile");
  JournalView v;
  v.reader = std::move(reader.value());
  v.index = RemoteIndex::Over(*v.reader, target);
  v.target = target;
  return v;
}

enum class Reason { kNew, kChanged, kMissing, kContent };

const char* ReasonName(Reason r) {
  switch (r) {
    case Reason::kNew:
      return "new";
    case Reason::kChanged:
      return "changed";
    case Reason::kMissing:
      return "missing";
    case Reason::kContent:
      return "content";
  }
  return "?";
}

struct Candidate {
  std::string path;
  Reason reason;
  struct stat st;      // when not missing
  std::string sha256;  // kContent candidates: what the target holds
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

int64_t CtimeNs(const struct stat& st) {
  return int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
}

// Whether the regular file at `path` still holds the content whose SHA-256
// the target has (c.sha256; "" = unknown, so: no). Opened without following
// symlinks and without blocking (a FIFO put in its place meanwhile), and
// checked to be the file the walk saw.
Result<bool> SameContent(int root_fd, const Candidate& c) {
  if (c.sha256.empty()) return false;
  auto fd = OpenBeneath(root_fd, c.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (!fd.ok()) {
    int e = fd.status().code();
    if (e == ENOENT || e == ENOTDIR || e == ELOOP) return false;  // replaced: store it again
    return fd.status().WithContext("reconcile: " + c.path);
  }
  struct stat st;
  if (fstat(fd->get(), &st) != 0) return PosixError("reconcile: stat " + c.path, errno);
  if (!S_ISREG(st.st_mode) || st.st_ino != c.st.st_ino || st.st_size != c.st.st_size) return false;
  auto sha = FileSha256Hex(fd->get(), static_cast<uint64_t>(st.st_size));
  if (!sha.ok()) return sha.status().WithContext("reconcile: hashing " + c.path);
  return *sha == c.sha256;
}

// 2b. The content check (ReconcileOptions::content_since_ns): keeps the
// kContent candidates whose content is not what the target holds.
Status CheckContent(int root_fd, std::vector<Candidate>* candidates, ReconcileReport* rep) {
  std::vector<Candidate> kept;
  kept.reserve(candidates->size());
  for (Candidate& c : *candidates) {
    if (c.reason == Reason::kContent) {
      rep->hashed++;
      auto same = SameContent(root_fd, c);
      if (!same.ok()) return same.status();
      if (*same) continue;
    }
    kept.push_back(std::move(c));
  }
  *candidates = std::move(kept);
  return Status::Ok();
}

using Known = std::unordered_map<std::string, Stored>;
using Excluded = std::function<bool(const std::string&)>;

// 1. What the target holds, and (at start-up) what is still to upload, as of
// one moment. Row by row: the rows are never all held as RemoteObjects too
// (that doubled the peak memory of a start-up at a million files).
Status LoadKnown(JournalView& view, Coverage* coverage, bool with_sha256, Known* known) {
  auto snap = view.reader->BeginSnapshot();
  if (!snap.ok()) return snap.status();
  Status read = view.index->ForEach(
      [&](const RemoteObject& o) {
        known->emplace(o.path, StoredOf(o, with_sha256));
        return Status::Ok();
      },
      /*skip_root=*/false);
  if (!read.ok()) return read.WithContext("reconcile: reading objects");
  if (coverage) SCRIBEFS_RETURN_IF_ERROR(LoadCoverage(*view.reader, view.target, coverage));
  return Status::Ok();
}

// 2. Walks the tree: depth-first over directory descriptors, never following
// symlinks. Every difference from `known` is a candidate; what is left in
// `known` afterwards is not in DATADIR any more.
Status WalkTree(int root_fd, const ReconcileOptions& options, const Excluded& excluded,
                ReconcileReport* rep, Known* known, std::vector<Candidate>* candidates) {
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
      if ((++rep->scanned & 4095) == 0 && options.cancelled && options.cancelled()) {
        closedir(d);
        return Status::Error(ECANCELED, "reconcile: cancelled");
      }
      auto it = known->find(path);
      if (it == known->end()) {
        candidates->push_back({path, Reason::kNew, st, {}});
      } else {
        if (!Same(it->second, st))
          candidates->push_back({path, Reason::kChanged, st, {}});
        else if (options.content_since_ns && !options.quiesce && S_ISREG(st.st_mode) &&
                 CtimeNs(st) >= *options.content_since_ns)
          candidates->push_back({path, Reason::kContent, st, it->second.sha256});
        known->erase(it);
      }
      if (S_ISDIR(st.st_mode)) {
        int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) stack.push_back({path, UniqueFd(cfd)});
      }
    }
    closedir(d);
  }
  return Status::Ok();
}

// What the target holds but DATADIR no longer has (keys below a vanished
// directory are removed with it: report only the topmost).
void AddMissing(const Known& known, const Excluded& excluded,
                std::vector<Candidate>* candidates) {
  for (const auto& [p, o] : known) {
    bool parent_missing = false;
    for (size_t s = p.rfind('/'); s != std::string::npos && s > 0; s = p.rfind('/', s - 1)) {
      if (known.count(p.substr(0, s))) {
        parent_missing = true;
        break;
      }
    }
    if (parent_missing || excluded(p)) continue;
    candidates->push_back({p, Reason::kMissing, {}, {}});
  }
}

using Gone = std::function<bool(const std::string&)>;

// 3, on a live mount: keeps the candidates that still differ from the
// objects table as it is now and that no record still to upload covers
// (see ReconcileOptions::quiesce). Runs inside quiesce.
Status CheckLive(JournalView& view, int root_fd, const Gone& gone,
                 std::vector<Candidate>& candidates, ReconcileReport* rep,
                 std::vector<Candidate>* report) {
  auto snap = view.reader->BeginSnapshot();
  if (!snap.ok()) return snap.status();
  Coverage now;
  SCRIBEFS_RETURN_IF_ERROR(LoadCoverage(*view.reader, view.target, &now));
  for (Candidate& c : candidates) {
    if (now.Covers(c.path, c.reason == Reason::kMissing, gone)) {
      rep->pending++;
      continue;
    }
    auto local = StatNow(root_fd, c.path);
    if (!local.ok()) return local.status();
    auto row = view.index->Get(c.path);
    if (!row.ok()) return row.status().WithContext("reconcile: reading objects");
    std::optional<Stored> stored;
    if (*row) stored = StoredOf(**row, /*with_sha256=*/false);
    if (!*local && !stored) continue;                          // gone, and never stored
    if (*local && stored && Same(*stored, **local)) continue;  // stored as it is
    c.reason = !*local ? Reason::kMissing : (!stored ? Reason::kNew : Reason::kChanged);
    if (*local) c.st = **local;
    report->push_back(std::move(c));
  }
  return Status::Ok();
}

// 4. Journals a reconcile record for each reported path.
Status JournalReport(Journal* journal, const std::vector<Candidate>& report,
                     const ReconcileOptions& options, ReconcileReport* rep) {
  const std::string& scan = options.scan;
  std::vector<Record> batch;
  auto flush = [&]() -> Status {
    if (batch.empty()) return Status::Ok();
    Status s = journal->Commit(batch);
    std::vector<int64_t> seqs;
    for (const Record& r : batch) seqs.push_back(r.seq);
    batch.clear();
    SCRIBEFS_RETURN_IF_ERROR(s);
    for (int64_t other : options.held_by)
      SCRIBEFS_RETURN_IF_ERROR(
          UploadStateStore(journal, other)
              .MarkHeld(seqs, "held already (reconciliation of another target)"));
    return Status::Ok();
  };
  for (const Candidate& c : report) {
    switch (c.reason) {
      case Reason::kNew:
        rep->new_paths++;
        break;
      case Reason::kChanged:
        rep->changed++;
        break;
      case Reason::kContent:
        rep->changed++;
        rep->content++;
        break;
      case Reason::kMissing:
        rep->missing++;
        break;
    }
    Record r;
    r.op = Op::kReconcile;
    r.path = c.path;
    if (c.reason != Reason::kMissing) {
      r.mode = c.st.st_mode;
      if (S_ISREG(c.st.st_mode)) r.size = c.st.st_size;
    }
    r.detail = nlohmann::json{{"reason", ReasonName(c.reason)}, {"scan", scan}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
    batch.push_back(std::move(r));
    if (batch.size() >= 2000) SCRIBEFS_RETURN_IF_ERROR(flush());
  }
  return flush();
}

}  // namespace

Result<ReconcileReport> ReconcileTree(Journal* journal, int root_fd,
                                      const ReconcileOptions& options) {
  auto t0 = Clock::now();
  ReconcileReport rep;
  Excluded excluded = [&](const std::string& p) {
    return options.excluded && options.excluded(p);
  };
  auto view = OpenView(journal->path(), options.target);
  if (!view.ok()) return view.status();

  Known known;
  Coverage coverage;
  bool compare_content = options.content_since_ns && !options.quiesce;
  SCRIBEFS_RETURN_IF_ERROR(
      LoadKnown(*view, options.quiesce ? nullptr : &coverage, compare_content, &known));
  std::vector<Candidate> candidates;
  SCRIBEFS_RETURN_IF_ERROR(WalkTree(root_fd, options, excluded, &rep, &known, &candidates));
  AddMissing(known, excluded, &candidates);
  Known().swap(known);  // its buckets too
  if (options.content_since_ns && !options.quiesce)
    SCRIBEFS_RETURN_IF_ERROR(CheckContent(root_fd, &candidates, &rep));

  // 3. Keep what no record still to upload covers; on a live mount, only
  // what still differs now (see ReconcileOptions::quiesce).
  std::vector<Candidate> report;
  Gone gone = [&](const std::string& dir) {
    auto st = StatNow(root_fd, dir);
    return st.ok() && !st->has_value();  // an error counts as there: report
  };
  if (options.quiesce) {
    auto h = Clock::now();
    SCRIBEFS_RETURN_IF_ERROR(options.quiesce(
        [&] { return CheckLive(*view, root_fd, gone, candidates, &rep, &report); }));
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

  SCRIBEFS_RETURN_IF_ERROR(JournalReport(journal, report, options, &rep));
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  // The table of every stored path was freed above, in small blocks that
  // malloc keeps for reuse: give them back, or a daemon that reconciled a
  // million paths at start keeps their memory for good.
  malloc_trim(0);
  return rep;
}

}  // namespace scribefs
