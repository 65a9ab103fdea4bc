#include "uploader/replicator.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <random>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/beneath.h"
#include "journal/reader.h"
#include "uploader/digest.h"
#include "uploader/stale_uploads.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

// Everything pending for one path.
struct Replicator::Work {
  std::vector<int64_t> seqs;
  std::vector<std::string> renamed_from;  // content may be copied from there
  std::set<std::string> waits_for;        // renamed-to paths: copy before deleting us
  RangeSet dirty{1024};
  bool content_changed = false;  // a write/create/truncate since the last upload
  bool whole = false;            // ranges do not describe the change: re-send everything
  bool open = false;             // written and not yet closed
  int64_t last_ns = 0;
  // Time of the newest record that creates the path (create, mkdir, mknod,
  // symlink, link or rename to it). Its record is committed before the
  // operation itself, so for a moment the path may not exist yet.
  int64_t created_ns = 0;
  bool in_flight = false;
  int attempts = 0;
  // A reconcile record (start-up scan, rescan, the check after a crash):
  // the target may hold what the journal never saw stored.
  bool reconcile = false;
  Clock::time_point sched{};
  bool scheduled = false;
};

struct Replicator::Snapshot {
  std::vector<std::string> renamed_from;
  std::vector<ByteRange> dirty;
  bool content_changed = false;
  bool whole = false;
  int64_t max_seq = 0;
  int64_t created_ns = 0;
  // Something may be stored under the path that the objects table does not
  // know: an earlier attempt failed (its answer may have been lost after the
  // server stored it), an earlier daemon had the path in hand when it died,
  // or a reconcile record (e.g. the check after a crash) names it.
  bool maybe_stored = false;
};

struct Replicator::PathOutcome {
  StoreStatus status;
  bool changed_during = false;  // local file changed while uploading: go again
  bool unstorable = false;      // no store can hold its key: skipped, not failed
  std::string etag, sha256, version_id;
  uint64_t bytes = 0;
};

namespace {

int64_t MtimeNs(const struct stat& st) {
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

Metadata MetaFor(const struct stat& st) {
  // s3fs-compatible: decimal st_mode (type bits included), uid, gid, mtime in
  // seconds; scribefs-mtime-ns keeps the exact time for restore.
  Metadata m;
  m["mode"] = std::to_string(st.st_mode);
  m["uid"] = std::to_string(st.st_uid);
  m["gid"] = std::to_string(st.st_gid);
  m["mtime"] = std::to_string(st.st_mtim.tv_sec);
  m["scribefs-mtime-ns"] = std::to_string(MtimeNs(st));
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) m["rdev"] = std::to_string(st.st_rdev);
  return m;
}

const char* TypeOf(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "special";
}

std::string KeyFor(const RemoteObject& o) { return o.type == "dir" ? o.path + "/" : o.path; }

Result<std::string> FileSha256(int fd, uint64_t size) {
  auto h = Hasher::Create(Hasher::Algorithm::kSha256);
  if (!h.ok()) return h.status();
  std::string buf(1 << 20, '\0');
  uint64_t off = 0;
  while (off < size) {
    ssize_t n = pread(fd, buf.data(), std::min<uint64_t>(buf.size(), size - off), off);
    if (n < 0) return PosixError("read", errno);
    if (n == 0) break;
    SCRIBEFS_RETURN_IF_ERROR(h->Update(std::string_view(buf.data(), n)));
    off += n;
  }
  auto d = h->Finish();
  if (!d.ok()) return d.status();
  return HexEncode(*d);
}

// Before a multipart upload is completed: the SHA-256 of the file's `size`
// bytes into *sha256, then `unchanged` (size and mtime as when the parts were
// read). An error when the file changed (unchanged() false: it notes that
// itself) or could not be read; the caller then aborts the upload.
Status CheckUnchangedBeforeComplete(int fd, uint64_t size, std::string* sha256,
                                    const std::function<bool()>& unchanged) {
  if (!unchanged()) return Status::Error(EAGAIN, "changed during the upload");
  auto sha = FileSha256(fd, size);
  if (!sha.ok()) return sha.status();
  if (!unchanged()) return Status::Error(EAGAIN, "changed during the upload");
  *sha256 = *sha;
  return Status::Ok();
}

// A store's answer that the key itself is unacceptable (S3 counts the
// target's prefix too).
bool IsUnstorable(const StoreStatus& s) {
  return !s.ok() && !s.retryable() && s.error_code() == "KeyTooLongError";
}

// The RetryCauses counter a retried attempt that ended with `s` counts in
// (ok: the file changed while it was stored).
uint64_t& RetryCauseCounter(ReplicatorStats::RetryCauses& c, const StoreStatus& s) {
  static const char* const kThrottling[] = {"SlowDown", "Throttling", "ThrottlingException",
                                            "RequestLimitExceeded", "TooManyRequests"};
  if (s.ok() || s.error_code() == "SourceChanged") return c.changed;
  const StoreErrorInfo& i = s.info();
  if (i.http_status == 503 || i.http_status == 429 ||
      std::find(std::begin(kThrottling), std::end(kThrottling), i.error_code) !=
          std::end(kThrottling))
    return c.throttled;
  if (i.http_status >= 500 || i.error_code == "InternalError") return c.server_error;
  if (i.http_status == 0 && i.error_code == "CurlError") return c.network;
  return c.other;
}

// Stores the uploader's counters (StatsJson) in the journal's meta table, for
// scribectl stats and tests.
Status WriteCounters(sqlite3* db, const std::string& counters) {
  auto m = Prepare(db, "INSERT OR REPLACE INTO meta(key,value) VALUES('uploader',?1)");
  if (!m.ok()) return m.status();
  sqlite3_bind_text(m->get(), 1, counters.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(m->get()) != SQLITE_DONE) return SqliteError("meta", db, 0);
  return Status::Ok();
}

std::string ErrorText(const StoreStatus& s) {
  std::string t = s.message();
  if (!s.error_code().empty() && t.find(s.error_code()) == std::string::npos)
    t = s.error_code() + ": " + t;
  return t;
}

}  // namespace

std::map<std::string, uint64_t> RetryCauseCounts(const ReplicatorStats::RetryCauses& c) {
  return {{"server_error", c.server_error},
          {"throttled", c.throttled},
          {"network", c.network},
          {"changed", c.changed},
          {"other", c.other}};
}

Result<std::unique_ptr<Replicator>> Replicator::Create(Journal* journal, int root_fd,
                                                       std::unique_ptr<ObjectStore> store,
                                                       ReplicatorOptions options) {
  UniqueFd root(fcntl(root_fd, F_DUPFD_CLOEXEC, 3));
  if (!root) return PosixError("dup DATADIR", errno);
  if (options.workers < 1) options.workers = 1;
  return std::unique_ptr<Replicator>(
      new Replicator(journal, std::move(root), std::move(store), std::move(options)));
}

Replicator::Replicator(Journal* journal, UniqueFd root, std::unique_ptr<ObjectStore> store,
                       ReplicatorOptions options)
    : journal_(journal), root_(std::move(root)), store_(std::move(store)), options_(options) {}

Replicator::~Replicator() { Stop(std::chrono::milliseconds(0)); }

Status Replicator::Start() {
  // Uploads an earlier daemon had in flight did not finish: do them again.
  SCRIBEFS_RETURN_IF_ERROR(journal_->Apply([](sqlite3* db) {
    return Exec(db, "UPDATE records SET state='pending' WHERE state='uploading'");
  }));
  // Records an earlier daemon left pending may under-describe their files:
  // byte ranges still in its memory when it died were never committed.
  {
    auto reader = JournalReader::Open(journal_->path());
    if (!reader.ok()) return reader.status();
    auto max = reader.value()->MaxSeq();
    if (!max.ok()) return max.status();
    std::lock_guard lk(mu_);
    boot_seq_ = *max;
  }
  threads_.emplace_back([this] { DispatchLoop(); });
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this, i] { WorkerLoop(i); });
  return Status::Ok();
}

void Replicator::Stop(std::chrono::milliseconds grace) {
  {
    std::unique_lock lk(mu_);
    if (threads_.empty()) return;
    // Let in-flight uploads finish (up to grace); nothing new starts.
    stop_ = true;
    work_cv_.notify_all();
    stop_cv_.notify_all();
    notify_cv_.notify_all();
    done_cv_.wait_for(lk, grace, [&] { return in_flight_ == 0; });
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  done_cv_.notify_all();
}

void Replicator::Notify() {
  std::lock_guard lk(mu_);
  notified_ = true;
  notify_cv_.notify_one();
}

Replicator::Work& Replicator::WorkFor(const std::string& path) {
  auto& w = work_[path];
  if (!w) w = std::make_unique<Work>();
  return *w;
}

void Replicator::Schedule(const std::string& path, Work& w) {
  Clock::time_point when = Clock::now();
  if (w.open && !options_.sync_mode && drain_depth_ == 0) {
    // Still being written: wait for the close, or upload what is there after a while.
    auto age = std::chrono::nanoseconds(NowNs() - w.last_ns);
    auto delay = std::chrono::duration_cast<Clock::duration>(options_.open_file_delay) -
                 std::chrono::duration_cast<Clock::duration>(age);
    if (delay > Clock::duration::zero()) when += delay;
  }
  if (w.attempts > 0) {
    // Exponential backoff with jitter, capped.
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    double base = options_.initial_backoff.count() * std::pow(2.0, std::min(w.attempts - 1, 16));
    base = std::min(base, double(options_.max_backoff.count()));
    double jittered = base * std::uniform_real_distribution<double>(0.5, 1.0)(rng);
    when = std::max(when, Clock::now() + std::chrono::milliseconds(int64_t(jittered)));
  }
  if (w.scheduled) schedule_.erase({w.sched, path});
  w.sched = when;
  w.scheduled = true;
  schedule_.insert({when, path});
  work_cv_.notify_one();
}

void Replicator::RescheduleOpenFiles() {
  for (auto& [path, w] : work_)
    if (w->open && !w->in_flight) Schedule(path, *w);
}

void Replicator::Ingest(const Record& r) {
  if (seq_refs_.count(r.seq)) return;  // already queued (re-read after RetryFailed)
  auto add = [&](const std::string& path) -> Work& {
    Work& w = WorkFor(path);
    w.seqs.push_back(r.seq);
    w.last_ns = r.time_ns;
    if (r.op == Op::kReconcile) w.reconcile = true;
    seq_refs_[r.seq]++;
    return w;
  };
  switch (r.op) {
    case Op::kPause:
    case Op::kResume:
    case Op::kCheckpoint:
      return;
    case Op::kRename: {
      if (!r.new_path) return;
      bool exchange = r.flags && (*r.flags & 2 /* RENAME_EXCHANGE */);
      Work& dst = add(*r.new_path);
      dst.open = false;
      dst.created_ns = r.time_ns;
      Work& src = add(r.path);
      src.open = false;
      src.created_ns = 0;  // gone on purpose
      if (exchange) {
        dst.content_changed = src.content_changed = true;
      } else {
        dst.renamed_from.push_back(r.path);
        src.waits_for.insert(*r.new_path);
      }
      Schedule(*r.new_path, dst);
      Schedule(r.path, src);
      return;
    }
    case Op::kLink: {
      if (!r.new_path) return;
      Work& dst = add(*r.new_path);
      dst.created_ns = r.time_ns;
      dst.renamed_from.push_back(r.path);  // same content: copy server-side
      Schedule(*r.new_path, dst);
      return;
    }
    default:
      break;
  }
  Work& w = add(r.path);
  // An earlier daemon's records: the files it had open were closed when it
  // ended (or died), so nothing waits for a close; and byte ranges still in
  // its memory were never committed, so its writes count as whole-file.
  const bool earlier = r.seq <= boot_seq_;
  switch (r.op) {
    case Op::kWrite:
      w.content_changed = true;
      w.open = !earlier;
      if (r.ranges.empty() || earlier) w.whole = true;
      for (const auto& br : r.ranges) w.dirty.Add(br.offset, br.length);
      break;
    case Op::kCreate:
      w.content_changed = w.whole = true;
      w.open = !earlier;
      w.created_ns = r.time_ns;
      break;
    case Op::kMkdir:
    case Op::kMknod:
    case Op::kSymlink:
      w.created_ns = r.time_ns;
      break;
    case Op::kTruncate:
      w.content_changed = w.whole = true;
      if (r.flags && !earlier) w.open = true;  // open(O_TRUNC): a close follows
      break;
    case Op::kClose:
    case Op::kFsync:
      w.open = false;
      break;
    case Op::kUnlink:
    case Op::kRmdir:
      w.open = false;
      w.created_ns = 0;  // gone on purpose
      break;
    case Op::kReconcile:
      w.content_changed = w.whole = true;
      break;
    default:  // mkdir, mknod, symlink, setattr, xattrs
      break;
  }
  if (!w.in_flight) Schedule(r.path, w);
}

bool Replicator::WaitsOn(const std::string& from, const std::string& target) {
  std::vector<std::string> stack = {from};
  std::set<std::string> seen;
  while (!stack.empty()) {
    std::string p = std::move(stack.back());
    stack.pop_back();
    if (!seen.insert(p).second) continue;
    auto it = work_.find(p);
    if (it == work_.end()) continue;
    for (const auto& d : it->second->waits_for) {
      if (d == target) return true;
      stack.push_back(d);
    }
  }
  return false;
}

void Replicator::CleanStaleUploads() {
  // A few attempts only: a target that is down must not hold back the
  // uploads for long (they retry on their own); what is left is tried again
  // at the next start.
  auto backoff = options_.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    auto r = AbortStaleUploads(*store_, journal_->path());
    if (r.ok()) {
      if (r->listed > 0)
        spdlog::info(
            "uploader: stale multipart uploads: {} aborted (left unfinished by an earlier daemon), "
            "{} not this mount's left alone{}",
            r->aborted, r->foreign,
            r->failed ? fmt::format(", {} could not be aborted ({})", r->failed, r->last_error)
                      : std::string());
      return;
    }
    if (!r.status().retryable() || attempt >= 5) {
      spdlog::warn("uploader: stale multipart uploads not cleaned up (next start tries again): {}",
                   ErrorText(r.status()));
      return;
    }
    std::unique_lock lk(mu_);
    if (notify_cv_.wait_for(lk, backoff, [&] { return stop_; })) return;
    backoff *= 2;
  }
}

void Replicator::DispatchLoop() {
  auto reader = JournalReader::Open(journal_->path());
  if (!reader.ok()) {
    spdlog::error("uploader: cannot read the journal: {}", reader.status().message());
    return;
  }
  // Before anything is uploaded, so that no upload of this daemon can be
  // mistaken for a stale one (uploader/stale_uploads.h).
  CleanStaleUploads();
  std::unique_lock lk(mu_);
  while (!stop_) {
    notify_cv_.wait_for(lk, std::chrono::milliseconds(500), [&] { return notified_ || stop_; });
    if (stop_) break;
    notified_ = false;
    int64_t from = cursor_ + 1;
    // Never past a record whose operation has not happened yet: reconciling
    // its path now would see the state before it (Journal::AppliedThrough).
    int64_t until = journal_->AppliedThrough();
    if (until < from) continue;
    lk.unlock();
    JournalFilter f;
    f.since_seq = from;
    f.until_seq = until;
    f.limit = 20000;
    auto recs = reader.value()->Query(f);
    std::vector<int64_t> excluded;
    lk.lock();
    if (!recs.ok()) {
      spdlog::warn("uploader: journal read failed: {}", recs.status().message());
      continue;
    }
    for (const Record& r : *recs) {
      cursor_ = std::max(cursor_, r.seq);
      if (r.state != kStatePending && r.state != kStateUploading) continue;
      bool ex = IsExcluded(r.path) && (!r.new_path || IsExcluded(*r.new_path));
      if (ex && r.op != Op::kRename) {
        excluded.push_back(r.seq);
        continue;
      }
      Ingest(r);
    }
    if (recs->size() == 20000) notified_ = true;  // more to read
    if (!excluded.empty()) {
      lk.unlock();
      Status s = journal_->Apply([&](sqlite3* db) -> Status {
        auto st = Prepare(db,
                          "UPDATE records SET state='skipped', error='excluded (--exclude)', "
                          "state_ns=?2 WHERE seq=?1");
        if (!st.ok()) return st.status();
        for (int64_t seq : excluded) {
          StmtResetter reset(st->get());
          sqlite3_bind_int64(st->get(), 1, seq);
          sqlite3_bind_int64(st->get(), 2, NowNs());
          if (sqlite3_step(st->get()) != SQLITE_DONE) return SqliteError("update", db, 0);
        }
        return Status::Ok();
      });
      lk.lock();
      if (s.ok()) {
        for (int64_t seq : excluded) {
          finished_[seq] = 0;
          finished_order_.push_back({Clock::now(), seq});
        }
        done_cv_.notify_all();
      }
    }
  }
}

void Replicator::WorkerLoop(int id) {
  auto index = RemoteIndex::Open(journal_->path());
  if (!index.ok()) {
    spdlog::error("uploader: {}", index.status().message());
    return;
  }
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (schedule_.empty()) {
      work_cv_.wait(lk);
      continue;
    }
    auto it = schedule_.begin();
    if (it->first > Clock::now()) {
      work_cv_.wait_until(lk, it->first);
      continue;
    }
    std::string path = it->second;
    schedule_.erase(it);
    auto wit = work_.find(path);
    if (wit == work_.end()) continue;
    Work& w = *wit->second;
    w.scheduled = false;
    if (w.in_flight) continue;  // rescheduled when the worker finishes
    // A renamed-from path waits until its content was copied to the new name,
    // unless that name waits for this one in turn (a -> b then b -> a): the
    // cycle would never clear, so this path goes first (a copy that then
    // finds its source gone uploads instead).
    bool blocked = false;
    for (auto d = w.waits_for.begin(); d != w.waits_for.end();) {
      if (!work_.count(*d)) {
        d = w.waits_for.erase(d);
        continue;
      }
      if (!WaitsOn(*d, path)) blocked = true;
      ++d;
    }
    if (blocked) {
      w.sched = Clock::now() + std::chrono::milliseconds(20);
      w.scheduled = true;
      schedule_.insert({w.sched, path});
      continue;
    }
    // Take the work.
    Snapshot snap;
    snap.renamed_from = std::move(w.renamed_from);
    snap.dirty = w.dirty.Take();
    snap.content_changed = w.content_changed;
    snap.whole = w.whole;
    snap.created_ns = w.created_ns;
    w.created_ns = 0;
    std::vector<int64_t> seqs = std::move(w.seqs);
    snap.max_seq = seqs.empty() ? 0 : *std::max_element(seqs.begin(), seqs.end());
    snap.maybe_stored = w.attempts > 0 || w.reconcile ||
                        (!seqs.empty() &&
                         *std::min_element(seqs.begin(), seqs.end()) <= boot_seq_);
    w.reconcile = false;
    w.renamed_from.clear();
    w.seqs.clear();
    w.content_changed = w.whole = false;
    w.in_flight = true;
    in_flight_++;
    lk.unlock();

    // A path no store can hold (a key over 1,024 bytes: any user can make
    // one) would fail for good and block every flush and checkpoint: it is
    // skipped instead, with the reason, and counted.
    Status key_ok = ValidateKey(path, "path");
    PathOutcome out;
    if (key_ok.ok()) {
      out = Reconcile(*index.value(), path, snap);
    } else {
      out.status = StoreStatus(key_ok.WithContext("cannot be stored"));
    }
    out.unstorable = !key_ok.ok() || IsUnstorable(out.status);

    lk.lock();
    in_flight_--;
    w.in_flight = false;
    if (out.status.ok() && !out.changed_during) {
      w.attempts = 0;
      lk.unlock();
      Finish(seqs, out, path);
      lk.lock();
    } else {
      bool retry = !out.status.ok() ? out.status.retryable() : true;
      // Put everything back in front of what arrived meanwhile.
      w.seqs.insert(w.seqs.begin(), seqs.begin(), seqs.end());
      for (auto& f : snap.renamed_from) w.renamed_from.push_back(f);
      w.content_changed |= snap.content_changed;
      w.created_ns = std::max(w.created_ns, snap.created_ns);
      w.whole = true;  // the ranges were consumed; send it all next time
      if (retry) {
        w.attempts++;
        stats_.retries++;  // (as CountRetry, under the lock we hold)
        RetryCauseCounter(stats_.retry_causes, out.status)++;
        if (!out.status.ok()) {
          stats_.last_error = path + ": " + ErrorText(out.status);
          if (w.attempts == 1 || w.attempts % 10 == 0)
            spdlog::warn("uploader: {} (attempt {}, retrying)", stats_.last_error, w.attempts);
          std::string err = ErrorText(out.status);
          int attempts = w.attempts;
          std::vector<int64_t> s2 = w.seqs;
          lk.unlock();
          // The counters go with the attempts, so that an outage shows in
          // `scribectl stats` while it lasts.
          std::string counters = StatsJson();
          (void)journal_->Apply([&](sqlite3* db) -> Status {
            auto st = Prepare(db, "UPDATE records SET attempts=?2, error=?3 WHERE seq=?1");
            if (!st.ok()) return st.status();
            for (int64_t seq : s2) {
              StmtResetter reset(st->get());
              sqlite3_bind_int64(st->get(), 1, seq);
              sqlite3_bind_int64(st->get(), 2, attempts);
              sqlite3_bind_text(st->get(), 3, err.c_str(), -1, SQLITE_TRANSIENT);
              if (sqlite3_step(st->get()) != SQLITE_DONE) return SqliteError("update", db, 0);
            }
            return WriteCounters(db, counters);
          });
          lk.lock();
        }
      } else if (out.unstorable) {
        stats_.unstorable++;
        stats_.last_error = path + ": " + ErrorText(out.status);
        spdlog::warn("uploader: {} (skipped: the target cannot hold this path)",
                     stats_.last_error);
        std::vector<int64_t> skipped = std::move(w.seqs);
        w.seqs.clear();
        lk.unlock();
        Finish(skipped, out, path);
        lk.lock();
      } else {
        stats_.failures++;
        stats_.last_error = path + ": " + ErrorText(out.status);
        spdlog::error("uploader: {} (failed; `scribectl retry` requeues)", stats_.last_error);
        std::vector<int64_t> failed = std::move(w.seqs);
        w.seqs.clear();
        lk.unlock();
        Finish(failed, out, path);
        lk.lock();
      }
    }
    auto again = work_.find(path);
    if (again != work_.end()) {
      Work& w2 = *again->second;
      if (w2.seqs.empty() && !w2.in_flight) {
        if (w2.scheduled) schedule_.erase({w2.sched, path});
        work_.erase(again);
      } else if (!w2.in_flight) {
        Schedule(path, w2);
      }
    }
    done_cv_.notify_all();
  }
}

void Replicator::CountRetry(const std::string& path, const StoreStatus& status) {
  std::lock_guard lk(mu_);
  stats_.retries++;
  RetryCauseCounter(stats_.retry_causes, status)++;
  if (!status.ok()) stats_.last_error = path + ": " + ErrorText(status);
}

namespace {
const StoreStatus& StatusOf(const StoreStatus& s) { return s; }
template <typename T>
const StoreStatus& StatusOf(const StoreResult<T>& r) {
  return r.status();
}
}  // namespace

template <typename Op>
auto Replicator::WithRequestRetries(const std::string& path, Op op) -> decltype(op()) {
  constexpr int kRequestTries = 4;
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  auto r = op();
  for (int attempt = 1; attempt < kRequestTries && StatusOf(r).retryable() &&
                        StatusOf(r).error_code() != "SourceChanged";
       ++attempt) {
    CountRetry(path, StatusOf(r));
    double ms = options_.initial_backoff.count() * std::pow(2.0, attempt - 1) *
                std::uniform_real_distribution<double>(0.5, 1.0)(rng);
    {
      std::unique_lock lk(mu_);
      if (stop_cv_.wait_for(lk, std::chrono::milliseconds(int64_t(ms)), [&] { return stop_; }))
        break;
    }
    r = op();
  }
  return r;
}

// Marks the seqs this path held as finished (done, or failed with out's
// error). A rename's seq is held by both its paths and finishes with the last.
void Replicator::Finish(const std::vector<int64_t>& seqs, const PathOutcome& out,
                        const std::string& path) {
  std::vector<int64_t> complete;
  {
    std::lock_guard lk(mu_);
    for (int64_t seq : seqs) {
      auto it = seq_refs_.find(seq);
      if (it == seq_refs_.end() || --it->second <= 0) {
        if (it != seq_refs_.end()) seq_refs_.erase(it);
        complete.push_back(seq);
      }
    }
  }
  if (complete.empty()) return;
  bool ok = out.status.ok();
  std::string err = ok ? "" : ErrorText(out.status);
  std::string counters = StatsJson();
  Status s = journal_->Apply([&](sqlite3* db) -> Status {
    auto st = Prepare(db,
                      ok ? "UPDATE records SET state='done', state_ns=?2, error=NULL, etag=?3, "
                           "sha256=?4, version_id=?5 WHERE seq=?1"
                      : out.unstorable
                          ? "UPDATE records SET state='skipped', state_ns=?2, error=?3 WHERE seq=?1"
                          : "UPDATE records SET state='failed', state_ns=?2, error=?3, "
                            "attempts=attempts+1 WHERE seq=?1");
    if (!st.ok()) return st.status();
    for (int64_t seq : complete) {
      StmtResetter reset(st->get());
      sqlite3_bind_int64(st->get(), 1, seq);
      sqlite3_bind_int64(st->get(), 2, NowNs());
      if (ok) {
        if (!out.etag.empty()) sqlite3_bind_text(st->get(), 3, out.etag.c_str(), -1, SQLITE_TRANSIENT);
        if (!out.sha256.empty())
          sqlite3_bind_text(st->get(), 4, out.sha256.c_str(), -1, SQLITE_TRANSIENT);
        if (!out.version_id.empty())
          sqlite3_bind_text(st->get(), 5, out.version_id.c_str(), -1, SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_text(st->get(), 3, err.c_str(), -1, SQLITE_TRANSIENT);
      }
      if (sqlite3_step(st->get()) != SQLITE_DONE) return SqliteError("update", db, 0);
    }
    return WriteCounters(db, counters);
  });
  if (!s.ok()) spdlog::error("uploader: journal update failed: {}", s.message());
  std::lock_guard lk(mu_);
  auto now = Clock::now();
  for (int64_t seq : complete) {
    finished_[seq] = ok || out.unstorable ? 0 : EIO;
    finished_order_.push_back({now, seq});
  }
  // Waiters look within seconds; keep two minutes.
  while (!finished_order_.empty() && now - finished_order_.front().first > std::chrono::minutes(2)) {
    finished_.erase(finished_order_.front().second);
    finished_order_.pop_front();
  }
  done_cv_.notify_all();
}

Status Replicator::WaitUploaded(int64_t seq, Clock::time_point deadline) {
  Notify();
  std::unique_lock lk(mu_);
  bool got = done_cv_.wait_until(lk, deadline, [&] { return finished_.count(seq) || stop_; });
  if (!got) return Status::Error(ETIMEDOUT, "upload of record " + std::to_string(seq) + " timed out");
  if (stop_ && !finished_.count(seq)) return Status::Error(EIO, "uploader stopped");
  int err = finished_[seq];
  if (err) return Status::Error(err, "upload of record " + std::to_string(seq) + " failed");
  return Status::Ok();
}

Status Replicator::WaitIdle(Clock::time_point deadline) {
  // Idle = everything committed so far was read, and nothing is queued or in flight.
  int64_t target = 0;
  {
    auto reader = JournalReader::Open(journal_->path());
    if (!reader.ok()) return reader.status();
    auto m = reader.value()->MaxSeq();
    if (!m.ok()) return m.status();
    target = *m;
  }
  Notify();
  std::unique_lock lk(mu_);
  bool idle = done_cv_.wait_until(lk, deadline, [&] {
    if (cursor_ < target) {
      notified_ = true;
      notify_cv_.notify_one();
    }
    return stop_ || (cursor_ >= target && work_.empty() && in_flight_ == 0);
  });
  if (!idle) return Status::Error(ETIMEDOUT, "flush timed out");
  if (stop_) return Status::Error(EIO, "uploader stopped");
  return Status::Ok();
}

Status Replicator::RetryFailed() {
  SCRIBEFS_RETURN_IF_ERROR(journal_->Apply([](sqlite3* db) {
    return Exec(db, "UPDATE records SET state='pending', attempts=0 WHERE state='failed'");
  }));
  std::lock_guard lk(mu_);
  cursor_ = 0;  // re-read: the requeued records are below the cursor
  notified_ = true;
  notify_cv_.notify_one();
  return Status::Ok();
}

std::string Replicator::StatsJson() {
  ReplicatorStats st = stats();
  nlohmann::json j = {{"target", store_->Describe()},
                      {"uploads", st.uploads},
                      {"copies", st.copies},
                      {"deletes", st.deletes},
                      {"partial_uploads", st.partial_uploads},
                      {"skipped_unchanged", st.skipped_unchanged},
                      {"retries", st.retries},
                      {"retry_causes", RetryCauseCounts(st.retry_causes)},
                      {"failures", st.failures},
                      {"unstorable", st.unstorable},
                      {"bytes_sent", st.bytes_sent},
                      {"last_error", st.last_error},
                      {"updated_ns", NowNs()}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ReplicatorStats Replicator::stats() {
  std::lock_guard lk(mu_);
  ReplicatorStats s = stats_;
  s.queued_paths = work_.size();
  s.in_flight = in_flight_;
  s.bytes_sent = store_->stats().bytes_sent;
  return s;
}

// ---- reconciling one path ---------------------------------------------------

Replicator::PathOutcome Replicator::Reconcile(RemoteIndex& index, const std::string& path,
                                              const Snapshot& snap) {
  PathOutcome out;
  if (IsReservedPath(path)) return out;  // never touch scribefs's own keys (a rename may lead here)
  auto fail_local = [&](const Status& s) {
    out.status = StoreStatus(s);
    return out;
  };
  auto row = index.Get(path);
  if (!row.ok()) return fail_local(row.status());

  // What is there now?
  auto fd = OpenBeneath(root_.get(), path, O_PATH | O_NOFOLLOW);
  struct stat st;
  if (!fd.ok() || fstat(fd->get(), &st) != 0) {
    int err = fd.ok() ? errno : fd.status().code();
    if (err != ENOENT && err != ENOTDIR) return fail_local(PosixError(path, err));
    // (Never "not there yet": the uploader reads no record whose operation
    // has not happened, see Journal::AppliedThrough.)
    // Gone: delete what we stored under it (and below it, for a directory).
    if (!options_.delete_remote) return out;
    auto rows = index.Subtree(path);
    if (!rows.ok()) return fail_local(rows.status());
    std::vector<std::string> keys;
    for (const auto& r : *rows) keys.push_back(KeyFor(r));
    if (rows->empty()) {
      // Nothing recorded: usually nothing stored either (a file created and
      // deleted before its upload), and no request is needed. But an upload
      // whose answer was lost (a timeout after the server stored it), or one
      // that an earlier daemon finished just before it was killed, before it
      // could record it, did store something. Deleting a key that does not
      // exist succeeds, so then delete both names the path could have had
      // (file, directory marker) in one request.
      if (!snap.maybe_stored) return out;
      keys = {path, path + "/"};
    } else if (rows->front().path == path && rows->front().type == "dir") {
      // A directory: objects below it that were stored but not recorded (a
      // crash in the middle of copying a renamed directory) go too.
      std::set<std::string> known(keys.begin(), keys.end());
      ListOptions lo;
      lo.prefix = path + "/";
      StoreStatus listed = store_->List(lo, [&](const ListEntry& e) {
        if (!known.count(e.key)) keys.push_back(e.key);
        return true;
      });
      if (!listed.ok()) {
        out.status = listed;
        return out;
      }
    }
    out.status = WithRequestRetries(path, [&] { return store_->DeleteMany(keys); });
    if (!out.status.ok()) return out;
    Status s = journal_->Apply([&](sqlite3* db) -> Status {
      for (const auto& r : *rows) SCRIBEFS_RETURN_IF_ERROR(RemoteIndex::Erase(db, r.path));
      return Status::Ok();
    });
    if (!s.ok()) return fail_local(s);
    std::lock_guard lk(mu_);
    stats_.deletes += rows->size();
    return out;
  }

  RemoteObject obj;
  obj.path = path;
  obj.type = TypeOf(st.st_mode);
  obj.mtime_ns = MtimeNs(st);
  obj.mode = st.st_mode;
  obj.uid = st.st_uid;
  obj.gid = st.st_gid;
  obj.ino = st.st_ino;
  obj.seq = snap.max_seq;
  Metadata meta = MetaFor(st);
  const std::optional<RemoteObject>& old = row.value();
  // A different kind of object used to live here: remove it first.
  if (old && old->type != obj.type && options_.delete_remote) {
    auto rows = index.Subtree(path);
    if (rows.ok()) {
      std::vector<std::string> keys;
      for (const auto& r : *rows) keys.push_back(KeyFor(r));
      out.status = WithRequestRetries(path, [&] { return store_->DeleteMany(keys); });
      if (!out.status.ok()) return out;
      (void)journal_->Apply([&](sqlite3* db) -> Status {
        for (const auto& r : *rows) SCRIBEFS_RETURN_IF_ERROR(RemoteIndex::Erase(db, r.path));
        return Status::Ok();
      });
    }
  }
  bool same_meta = old && old->type == obj.type && old->mode == obj.mode && old->uid == obj.uid &&
                   old->gid == obj.gid;

  // Records what was stored. Then: is it still there under this name? The
  // path, or a directory above it, may have been renamed or removed during
  // the upload, and that record's own upload may have run already (a
  // directory's removal deletes what is stored below it, which did not yet
  // include this). Then go again: the next attempt finds the path gone and
  // deletes what was just stored, instead of leaving it in the target.
  auto record = [&](const RemoteObject& o) -> bool {
    Status s = journal_->Apply([&](sqlite3* db) { return RemoteIndex::Upsert(db, o); });
    if (!s.ok()) {
      out.status = StoreStatus(s);
      return false;
    }
    auto again = OpenBeneath(root_.get(), path, O_PATH | O_NOFOLLOW);
    struct stat now;
    if (!again.ok() || fstat(again->get(), &now) != 0 || now.st_ino != o.ino)
      out.changed_during = true;
    return true;
  };

  if (S_ISDIR(st.st_mode)) {
    // Directory marker; a directory's mtime changes with every entry, so
    // only mode and owner count.
    if (!same_meta) {
      auto put = WithRequestRetries(
          path, [&] { return store_->Put(path + "/", Payload::FromMemory(""), meta); });
      if (!put.ok()) {
        out.status = put.status();
        return out;
      }
      obj.etag = put->etag;
      obj.version_id = put->version_id;
      obj.sha256 = put->sha256_hex;
      obj.uploaded_ns = NowNs();
      if (!record(obj)) return out;
      std::lock_guard lk(mu_);
      stats_.uploads++;
    }
    if (snap.renamed_from.empty()) return out;
    // A directory moved here: everything below it is new under this name.
    // Walk it, copying what the old name already stored.
    std::vector<std::pair<std::string, std::string>> stack = {{path, snap.renamed_from.back()}};
    while (!stack.empty()) {
      auto [dir, from] = stack.back();
      stack.pop_back();
      auto dfd = OpenBeneath(root_.get(), dir, O_RDONLY | O_DIRECTORY);
      if (!dfd.ok()) continue;  // changed meanwhile: its own records cover it
      DIR* d = fdopendir(dfd->get());
      if (!d) continue;
      dfd->Release();
      std::vector<std::string> names;
      while (struct dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      closedir(d);
      for (const auto& n : names) {
        std::string child = dir + "/" + n, child_from = from + "/" + n;
        if (IsExcluded(child)) continue;
        Snapshot cs;
        cs.renamed_from = {child_from};
        cs.max_seq = snap.max_seq;
        PathOutcome co = Reconcile(index, child, cs);
        if (!co.status.ok() || co.changed_during) return co;
        // Reconcile recursed into child directories through renamed_from.
      }
    }
    return out;
  }

  if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX + 1];
    ssize_t n = readlinkat(fd->get(), "", target, sizeof target - 1);
    if (n < 0) return fail_local(PosixError(path, errno));
    obj.size = n;
    if (same_meta && old->size == obj.size && old->mtime_ns == obj.mtime_ns && old->ino == obj.ino)
      return out;
    auto put = WithRequestRetries(path, [&] {
      return store_->Put(path, Payload::FromMemory(std::string_view(target, n)), meta);
    });
    if (!put.ok()) {
      out.status = put.status();
      return out;
    }
    obj.etag = out.etag = put->etag;
    obj.sha256 = out.sha256 = put->sha256_hex;
    obj.version_id = out.version_id = put->version_id;
    obj.uploaded_ns = NowNs();
    record(obj);
    std::lock_guard lk(mu_);
    stats_.uploads++;
    return out;
  }

  if (!S_ISREG(st.st_mode)) {  // FIFO, socket, device: an empty object with its mode
    if (same_meta) return out;
    auto put =
        WithRequestRetries(path, [&] { return store_->Put(path, Payload::FromMemory(""), meta); });
    if (!put.ok()) {
      out.status = put.status();
      return out;
    }
    obj.etag = put->etag;
    obj.uploaded_ns = NowNs();
    record(obj);
    return out;
  }

  // A regular file.
  auto file = OpenBeneath(root_.get(), path, O_RDONLY | O_NOFOLLOW);
  if (!file.ok()) {
    if (file.status().code() == ENOENT) {
      out.changed_during = true;  // vanished between two looks: the unlink's record follows
      return out;
    }
    return fail_local(file.status());
  }
  if (fstat(file->get(), &st) != 0) return fail_local(PosixError(path, errno));
  obj.size = st.st_size;
  obj.mtime_ns = MtimeNs(st);
  obj.mode = st.st_mode;
  meta = MetaFor(st);
  same_meta = old && old->type == "file" && old->mode == obj.mode && old->uid == obj.uid &&
              old->gid == obj.gid;
  // The same file as stored: size, mtime and inode. The inode tells apart
  // another file renamed over this name with the same size and mtime (two
  // files written within one clock tick).
  bool same_content = old && old->type == "file" && old->size == obj.size &&
                      old->mtime_ns == obj.mtime_ns && old->ino == obj.ino &&
                      !snap.content_changed;
  auto after = [&]() -> bool {
    struct stat st2;
    if (fstat(file->get(), &st2) != 0 || st2.st_size != st.st_size || MtimeNs(st2) != obj.mtime_ns) {
      out.changed_during = true;
      return false;
    }
    return true;
  };

  if (same_content) {
    if (same_meta) {
      std::lock_guard lk(mu_);
      stats_.skipped_unchanged++;
      return out;
    }
    // Only mode/owner changed: rewrite the metadata in place.
    CopyOptions co;
    co.metadata = meta;
    co.if_match = old->etag;
    auto c = WithRequestRetries(path, [&] { return store_->Copy(path, path, co); });
    if (c.ok()) {
      obj.etag = out.etag = c->etag.empty() ? old->etag : c->etag;
      obj.sha256 = out.sha256 = old->sha256;
      obj.version_id = out.version_id = c->version_id;
      obj.part_size = old->part_size;
      obj.uploaded_ns = NowNs();
      record(obj);
      return out;
    }
    // Fall through to a full upload.
  }

  // Renamed or linked here with its content unchanged: copy server-side.
  constexpr uint64_t kMaxCopy = 5ull << 30;
  for (auto it = snap.renamed_from.rbegin(); it != snap.renamed_from.rend(); ++it) {
    auto src = index.Get(*it);
    if (!src.ok() || !*src) continue;
    const RemoteObject& s = **src;
    if (s.type != "file" || s.size != obj.size || s.mtime_ns != obj.mtime_ns || s.ino != obj.ino ||
        obj.size > kMaxCopy || snap.content_changed)
      continue;
    CopyOptions co;
    co.metadata = meta;
    co.if_match = s.etag;
    auto c = WithRequestRetries(path, [&] { return store_->Copy(s.path, path, co); });
    if (!c.ok()) {
      if (c.status().retryable()) {
        out.status = c.status();
        return out;
      }
      break;  // source gone or changed: upload instead
    }
    obj.etag = out.etag = c->etag;
    obj.sha256 = out.sha256 = s.sha256;
    obj.version_id = out.version_id = c->version_id;
    obj.part_size = s.part_size;
    obj.uploaded_ns = NowNs();
    // Stored either way: recorded, so that a later delete or rename finds it.
    bool unchanged = after();
    record(obj);
    if (!unchanged) return out;
    std::lock_guard lk(mu_);
    stats_.copies++;
    return out;
  }

  uint64_t ps = options_.part_size;
  if (obj.size <= ps) {
    auto put = WithRequestRetries(
        path, [&] { return store_->Put(path, Payload::FromFile(file->get(), 0, obj.size), meta); });
    if (!put.ok()) {
      if (put.status().error_code() == "SourceChanged") {
        out.changed_during = true;
        return out;
      }
      out.status = put.status();
      return out;
    }
    obj.etag = out.etag = put->etag;
    obj.sha256 = out.sha256 = put->sha256_hex;
    obj.version_id = out.version_id = put->version_id;
    obj.uploaded_ns = NowNs();
    // Stored either way: recorded, so that a later delete or rename finds it
    // (the file changing meanwhile only means it goes up again).
    bool unchanged = after();
    record(obj);
    if (!unchanged) return out;
    std::lock_guard lk(mu_);
    stats_.uploads++;
    return out;
  }

  // Multipart. Part size grows if the file would need more than 10,000 parts.
  uint64_t nparts = (obj.size + ps - 1) / ps;
  if (nparts > uint64_t(kMaxParts)) {
    ps = ((obj.size + kMaxParts - 1) / kMaxParts + (1 << 20) - 1) & ~uint64_t((1 << 20) - 1);
    nparts = (obj.size + ps - 1) / ps;
  }
  // Re-send only parts the journal saw change, if the stored object is the
  // one we recorded and was cut the same way.
  bool partial = old && old->type == "file" && old->part_size == ps && !snap.whole &&
                 !old->etag.empty() && old->size > 0;
  if (partial) {
    auto head = WithRequestRetries(path, [&] { return store_->Head(path); });
    if (!head.ok() || head->etag != old->etag) partial = false;
  }
  auto part_dirty = [&](uint64_t off, uint64_t len) {
    if (!partial || off + len > old->size) return true;
    for (const auto& r : snap.dirty)
      if (r.offset < off + len && off < r.end()) return true;
    return false;
  };
  auto upload_id =
      WithRequestRetries(path, [&] { return store_->CreateMultipartUpload(path, meta); });
  if (!upload_id.ok()) {
    out.status = upload_id.status();
    return out;
  }
  std::vector<CompletedPart> done(nparts);
  std::vector<StoreStatus> errors(nparts);
  std::atomic<uint64_t> next{0};
  std::atomic<bool> copied_any{false};
  auto run = [&] {
    for (uint64_t i; (i = next.fetch_add(1)) < nparts;) {
      uint64_t off = i * ps, len = std::min(ps, obj.size - off);
      int pn = static_cast<int>(i + 1);
      if (part_dirty(off, len)) {
        auto r = WithRequestRetries(path, [&] {
          return store_->UploadPart(path, *upload_id, pn, Payload::FromFile(file->get(), off, len));
        });
        if (r.ok()) done[i] = {pn, r->etag};
        else errors[i] = r.status();
      } else {
        auto r = WithRequestRetries(path, [&] {
          return store_->UploadPartCopy(path, *upload_id, pn, path, ByteRange{off, len}, old->etag);
        });
        if (r.ok()) {
          done[i] = {pn, r->etag};
          copied_any = true;
        } else {
          errors[i] = r.status();
        }
      }
      if (!errors[i].ok()) return;
    }
  };
  {
    std::vector<std::future<void>> fs;
    int par = std::max(1, std::min<int>(options_.part_parallelism, int(nparts)));
    for (int t = 0; t < par; ++t) fs.push_back(std::async(std::launch::async, run));
    for (auto& f : fs) f.get();
  }
  for (uint64_t i = 0; i < nparts; ++i) {
    if (!errors[i].ok()) {
      (void)WithRequestRetries(path,
                               [&] { return store_->AbortMultipartUpload(path, *upload_id); });
      if (errors[i].precondition_failed() || errors[i].error_code() == "SourceChanged") {
        out.changed_during = true;  // next attempt sends everything (whole)
        return out;
      }
      out.status = errors[i];
      return out;
    }
  }
  // Completing makes the object (a version, in a versioned bucket): parts of
  // a file that changed while they went up must not become one, torn.
  if (Status torn = CheckUnchangedBeforeComplete(file->get(), obj.size, &obj.sha256, after);
      !torn.ok()) {
    (void)WithRequestRetries(path, [&] { return store_->AbortMultipartUpload(path, *upload_id); });
    if (out.changed_during) return out;
    return fail_local(torn);
  }
  out.sha256 = obj.sha256;
  auto complete = store_->CompleteMultipartUpload(path, *upload_id, done);
  if (!complete.ok()) {
    (void)WithRequestRetries(path, [&] { return store_->AbortMultipartUpload(path, *upload_id); });
    out.status = complete.status();
    return out;
  }
  obj.etag = out.etag = complete->etag;
  obj.version_id = out.version_id = complete->version_id;
  obj.part_size = ps;
  obj.uploaded_ns = NowNs();
  bool unchanged = after();
  // Stored either way: recorded, so that a later delete or rename finds it.
  record(obj);
  if (!unchanged) return out;
  std::lock_guard lk(mu_);
  stats_.uploads++;
  if (copied_any) stats_.partial_uploads++;
  return out;
}

}  // namespace scribefs
