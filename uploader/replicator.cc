#include "uploader/replicator.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "common/beneath.h"
#include "common/thread_priority.h"
#include "journal/reader.h"
#include "journal/upload_state.h"
#include "uploader/digest.h"
#include "uploader/local_open.h"
#include "uploader/object_layout.h"
#include "uploader/plan_executor.h"
#include "uploader/stale_uploads.h"
#include "uploader/upload_plan.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

// Everything pending for one path.
// A rename record a Work covers (history emits it as a rename entry).
struct RenameNote {
  int64_t seq = 0;
  int64_t time_ns = 0;
  std::string from, to;
  bool exchange = false;
};

struct Replicator::Work {
  std::vector<int64_t> seqs;
  std::vector<RenameNote> renames;
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
  int64_t in_flight_mark = 0;  // the pass in flight stores the state at this mark
  // A live pass in flight: its lowest seq. If a capture froze the path at a
  // mark at or above it meanwhile, the pass will count as changed and a pass
  // at that mark follows: the path is due there already (DueMark).
  int64_t in_flight_live_lowest = 0;
  int attempts = 0;
  // A reconcile record (start-up scan, rescan, the check after a crash):
  // the target may hold what the journal never saw stored.
  bool reconcile = false;
  Clock::time_point sched{};
  bool scheduled = false;
};

struct Replicator::Snapshot {
  std::vector<std::string> renamed_from;
  std::vector<RenameNote> renames;
  int64_t time_ns = 0;  // of the newest record
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
  // A pass at a checkpoint's mark: the capture, and what reads it.
  std::string mark_id;
  std::shared_ptr<const MarkedStates> marked;
};

namespace {

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
    : journal_(journal), root_(std::move(root)), store_(std::move(store)), options_(options) {
  if (options_.history) {
    HistoryRecorderOptions ho;
    ho.target = options_.target;
    ho.interval = options_.history_interval;
    ho.max_entries = options_.history_max_entries;
    ho.part_size = options_.part_size;
    ho.prune_grace_ns = options_.history_prune_grace_ns;
    ho.nice = options_.nice;
    ho.retried = [this](const StoreStatus& s) {
      CountRetry("(history)", s);
      // Noted now: after the last upload no record's update carries them.
      NoteCounters();
    };
    ho.counters_changed = [this] { NoteCounters(); };
    // Records requeued at load (done above the last stored segment): read
    // the journal again from the start, as RetryFailed does.
    history_ = std::make_unique<HistoryRecorder>(journal_, store_.get(), ho, [this] {
      std::lock_guard lk(mu_);
      cursor_ = 0;
      notified_ = true;
      notify_cv_.notify_one();
    });
  }
}

Replicator::~Replicator() { Stop(std::chrono::milliseconds(0)); }

Status Replicator::Start() {
  // Uploads an earlier daemon had in flight did not finish: do them again.
  SCRIBEFS_RETURN_IF_ERROR(UploadStateStore(journal_, options_.target).ResetUploading());
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
  threads_.emplace_back([this] {
    SetThisThreadNice(options_.nice);
    DispatchLoop();
  });
  for (int i = 0; i < options_.workers; ++i)
    threads_.emplace_back([this, i] {
      SetThisThreadNice(options_.nice);
      WorkerLoop(i);
    });
  if (history_) history_->Start();
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
  // Uploads still waiting for the bandwidth limit give up (they stay pending).
  if (options_.bandwidth) options_.bandwidth->Cancel();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // After the workers: what they settled goes into history's last segment,
  // which the limiter must let through again (it was cancelled for the
  // workers above; without this the last segment never went out at a stop).
  if (options_.bandwidth) options_.bandwidth->Resume();
  if (history_) history_->Stop();
  done_cv_.notify_all();
}

void Replicator::Notify() {
  std::lock_guard lk(mu_);
  notified_ = true;
  notify_cv_.notify_one();
}

Replicator::Work& Replicator::WorkFor(const std::string& path) {
  auto& w = work_[path];
  if (!w) {
    w = std::make_unique<Work>();
    backlog_peak_ = std::max(backlog_peak_, work_.size());
  }
  return *w;
}

void Replicator::Schedule(const std::string& path, Work& w) {
  Clock::time_point when = Clock::now();
  // (A pass at a checkpoint's mark stores a state that no writer changes.)
  if (w.open && !options_.sync_mode && drain_depth_ == 0 && !MarkFor(path, w)) {
    // Still being written: wait for the close, or upload what is there after a while.
    auto age = std::chrono::nanoseconds(NowNs() - w.last_ns);
    auto delay = std::chrono::duration_cast<Clock::duration>(options_.open_file_delay) -
                 std::chrono::duration_cast<Clock::duration>(age);
    if (delay > Clock::duration::zero()) when += delay;
  }
  if (w.attempts > 0) {
    // Exponential backoff with jitter, capped.
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    // Backoffs are milliseconds, far below 2^53: exact as a double.
    double base = static_cast<double>(options_.initial_backoff.count()) *
                  std::pow(2.0, std::min(w.attempts - 1, 16));
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
    if (!marks_seen_.empty() && r.seq <= marks_seen_.back().seq) UpdateMarkDue(path);
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
      movers_.insert(*r.new_path);
      movers_.insert(r.path);
      RenameNote note{r.seq, r.time_ns, r.path, *r.new_path, exchange};
      dst.renames.push_back(note);
      src.renames.push_back(std::move(note));
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

bool Replicator::AtMarkDue(const std::string& path) {
  auto it = work_.find(path);
  return it != work_.end() && MarkFor(path, *it->second).has_value();
}

bool Replicator::BelowAMover(const std::string& path) {
  if (movers_.empty()) return false;
  for (size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
       slash = path.rfind('/', slash - 1)) {
    // A pass at a checkpoint's mark goes first: the state it stores is older
    // than the directory's move (or the mover's pass waits for it below).
    if (movers_.count(path.substr(0, slash))) return !AtMarkDue(path);
  }
  return false;
}

bool Replicator::MoverWithPassesBelow(const std::string& path) {
  if (!movers_.count(path)) return false;
  const std::string below = path + "/";
  auto it = in_flight_paths_.lower_bound(below);
  if (it != in_flight_paths_.end() && it->compare(0, below.size(), below) == 0) return true;
  if (!marked_ || !marked_->AnyLive()) return false;
  for (auto w = work_.lower_bound(below);
       w != work_.end() && w->first.compare(0, below.size(), below) == 0; ++w)
    if (MarkFor(w->first, *w->second)) return true;
  return false;
}

void Replicator::NoLongerAMover(const std::string& path) {
  if (!movers_.erase(path)) return;
  const std::string below = path + "/";
  for (auto it = parked_.lower_bound(below);
       it != parked_.end() && it->compare(0, below.size(), below) == 0;) {
    auto w = work_.find(*it);
    if (w != work_.end() && !w->second->in_flight && !w->second->scheduled)
      Schedule(*it, *w->second);
    it = parked_.erase(it);
  }
}

void Replicator::CleanStaleUploads() {
  // A few attempts only: a target that is down must not hold back the
  // uploads for long (they retry on their own); what is left is tried again
  // at the next start.
  auto backoff = options_.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    auto r = AbortStaleUploads(*store_, journal_->path(), options_.target);
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
    RefreshMarks();  // also when no worker looks: a capture released or abandoned
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
    f.target = options_.target;
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
      Status s = UploadStateStore(journal_, options_.target).MarkExcluded(excluded);
      lk.lock();
      if (s.ok()) NoteFinished(excluded, 0);
    }
  }
}

std::optional<MarkedCapture> Replicator::FirstMarkFreezing(const std::string& path,
                                                           int64_t lowest) {
  if (!marked_ || lowest <= 0 || !marked_->AnyLive()) return std::nullopt;
  for (MarkedCapture& c : marked_->LiveCaptures())
    if (lowest <= c.seq && marked_->Frozen(c.id, path)) return std::move(c);
  return std::nullopt;
}

namespace {
int64_t Lowest(const std::vector<int64_t>& seqs) {
  return seqs.empty() ? 0 : *std::min_element(seqs.begin(), seqs.end());
}
}  // namespace

std::optional<MarkedCapture> Replicator::MarkFor(const std::string& path, const Work& w) {
  return FirstMarkFreezing(path, Lowest(w.seqs));
}

bool Replicator::FrozenAtAMark(const std::string& path, const std::vector<int64_t>& seqs) {
  return FirstMarkFreezing(path, Lowest(seqs)).has_value();
}

void Replicator::RefreshMarks() {
  std::vector<MarkedCapture> live;
  if (marked_ && marked_->AnyLive()) live = marked_->LiveCaptures();
  if (live != marks_seen_) {
    marks_seen_ = std::move(live);
    at_mark_due_.clear();
    due_per_mark_.clear();
    if (!marks_seen_.empty()) {
      for (const auto& [p, w] : work_)
        if (int64_t due = DueMark(p, *w)) SetDue(p, due);
    }
    // A held path may be due at a new mark now (its records held for an
    // earlier one are up to this one): every held path is looked at again,
    // or nothing would schedule it while the passes it waits for wait for
    // it (CheckpointLoad, a checkpoint every second).
    ReleaseHeld();
    return;
  }
  if (at_mark_due_.empty()) ReleaseHeld();
}

void Replicator::UpdateMarkDue(const std::string& path) {
  auto it = work_.find(path);
  int64_t due = 0;
  if (it != work_.end()) {
    Work& w = *it->second;
    if (!w.in_flight) w.in_flight_mark = w.in_flight_live_lowest = 0;
    due = DueMark(path, w);
  }
  const int64_t smallest = due_per_mark_.empty() ? 0 : due_per_mark_.begin()->first;
  SetDue(path, due);
  // The passes held for the smallest mark may go once it has none due.
  if (smallest && (due_per_mark_.empty() || due_per_mark_.begin()->first != smallest))
    ReleaseHeld();
}

int64_t Replicator::DueMark(const std::string& path, const Work& w) {
  int64_t due = 0;
  auto lower = [&](int64_t m) {
    if (m && (!due || m < due)) due = m;
  };
  if (std::optional<MarkedCapture> m = MarkFor(path, w)) lower(m->seq);
  lower(w.in_flight_mark);
  if (std::optional<MarkedCapture> m = FirstMarkFreezing(path, w.in_flight_live_lowest))
    lower(m->seq);
  return due;
}

void Replicator::SetDue(const std::string& path, int64_t mark) {
  auto it = at_mark_due_.find(path);
  if (it != at_mark_due_.end()) {
    if (it->second == mark) return;
    auto n = due_per_mark_.find(it->second);
    if (--n->second == 0) due_per_mark_.erase(n);
    at_mark_due_.erase(it);
  }
  if (!mark) return;
  at_mark_due_.emplace(path, mark);
  due_per_mark_[mark]++;
}

void Replicator::ReleaseHeld() {
  for (const std::string& p : held_) {
    auto it = work_.find(p);
    if (it != work_.end() && !it->second->in_flight && !it->second->scheduled)
      Schedule(p, *it->second);
  }
  held_.clear();
}

bool Replicator::HeldForMarks(const std::string& path, const Work& w) {
  RefreshMarks();
  if (at_mark_due_.empty()) return false;
  // Only records at or below the smallest mark with passes due go on: the
  // passes at that mark (and, if the checkpoint froze less than it should, a
  // live pass: a live state is better than none). A pass at a later mark
  // waits like a live one: history takes entries in the order they arrive,
  // and an entry of a later mark arriving first would push the earlier
  // mark's entries above their mark (CheckpointLoad, a checkpoint every
  // second). A capture whose passes are all done but which is not released
  // yet (its checkpoint is being stored) holds nothing back: journal records
  // are read in order, so no pass at its mark can become due any more.
  if (!w.seqs.empty() &&
      *std::min_element(w.seqs.begin(), w.seqs.end()) <= due_per_mark_.begin()->first)
    return false;
  held_.insert(path);
  return true;
}

// Takes what is pending for w's path for one pass: its records (into seqs)
// and what the pass needs to know about them. Requires mu_.
Replicator::Snapshot Replicator::TakeWork(const std::string& path, Work& w,
                                          std::vector<int64_t>& seqs) {
  Snapshot snap;
  if (std::optional<MarkedCapture> mark = MarkFor(path, w)) {
    // The state at the mark, for the records up to it. The rest of the Work
    // (later records, their renames, the dirty ranges of all) stays for the
    // live pass that follows: what it describes covers every change since.
    snap.mark_id = mark->id;
    snap.marked = marked_;
    w.in_flight_mark = mark->seq;
    // Sent from the capture. The dirty ranges of every pending record (up to
    // the mark and after it) are a superset of where the state at the mark
    // differs from what is stored, so the parts outside them are copied
    // server-side, as for a live pass; the live pass that follows gets the
    // same ranges. A frozen 4 GiB file is not re-sent whole per checkpoint.
    snap.content_changed = true;
    snap.whole = w.whole;
    snap.dirty = w.dirty.ToVector();
    std::vector<int64_t> later;
    for (int64_t seq : w.seqs) (seq <= mark->seq ? seqs : later).push_back(seq);
    w.seqs = std::move(later);
    std::vector<RenameNote> kept;
    for (RenameNote& r : w.renames) {
      if (r.seq > mark->seq) {
        kept.push_back(std::move(r));
        continue;
      }
      // A directory renamed here: its children go with it (live: they are
      // not frozen unless records named them).
      if (r.to == path && !r.exchange) snap.renamed_from.push_back(r.from);
      snap.renames.push_back(std::move(r));
    }
    w.renames = std::move(kept);
    snap.max_seq = *std::max_element(seqs.begin(), seqs.end());
    snap.time_ns = w.seqs.empty() ? w.last_ns : 0;  // 0: looked up (RecordTimeNs)
    snap.maybe_stored =
        w.attempts > 0 || w.reconcile || *std::min_element(seqs.begin(), seqs.end()) <= boot_seq_;
    if (w.seqs.empty()) {  // nothing after the mark: the Work is done
      w.renamed_from.clear();
      w.dirty.Take();
      w.content_changed = w.whole = w.reconcile = false;
      w.created_ns = 0;
    }
    return snap;
  }
  w.in_flight_live_lowest = Lowest(w.seqs);
  snap.renamed_from = std::move(w.renamed_from);
  snap.renames = std::exchange(w.renames, {});
  snap.time_ns = w.last_ns;
  snap.dirty = w.dirty.Take();
  snap.content_changed = w.content_changed;
  snap.whole = w.whole;
  snap.created_ns = w.created_ns;
  w.created_ns = 0;
  seqs = std::move(w.seqs);
  snap.max_seq = seqs.empty() ? 0 : *std::max_element(seqs.begin(), seqs.end());
  snap.maybe_stored = w.attempts > 0 || w.reconcile ||
                      (!seqs.empty() && *std::min_element(seqs.begin(), seqs.end()) <= boot_seq_);
  w.reconcile = false;
  w.renamed_from.clear();
  w.seqs.clear();
  w.content_changed = w.whole = false;
  return snap;
}

// A pass that did not store its state (an error, or the file changed while it
// was read): its records go back to w, to be retried, or are finished as
// unstorable or failed. Called and returns with lk (mu_) held.
void Replicator::Requeue(std::unique_lock<std::mutex>& lk, Work& w, const std::string& path,
                         const Snapshot& snap, const std::vector<int64_t>& seqs,
                         const PathOutcome& out) {
  bool retry = !out.status.ok() ? out.status.retryable() : true;
  // Put everything back in front of what arrived meanwhile.
  w.seqs.insert(w.seqs.begin(), seqs.begin(), seqs.end());
  for (auto& f : snap.renamed_from) w.renamed_from.push_back(f);
  w.renames.insert(w.renames.begin(), snap.renames.begin(), snap.renames.end());
  w.content_changed |= snap.content_changed;
  w.created_ns = std::max(w.created_ns, snap.created_ns);
  w.whole = true;  // the ranges were consumed; send it all next time
  if (retry) {
    w.attempts++;
    stats_.retries++;  // (as CountRetry, under the lock we hold)
    RetryCauseCounter(stats_.retry_causes, out.status)++;
    if (!out.status.ok()) {
      stats_.last_error = path + ": " + ErrorText(out.status);
      if (stats_.failing_since_ns == 0) stats_.failing_since_ns = NowNs();
      if (w.attempts == 1 || w.attempts % 10 == 0)
        spdlog::warn("uploader: {} (attempt {}, retrying)", stats_.last_error, w.attempts);
      std::string err = ErrorText(out.status);
      int attempts = w.attempts;
      std::vector<int64_t> s2 = w.seqs;
      lk.unlock();
      // The counters go with the attempts, so that an outage shows in
      // `scribectl stats` while it lasts.
      std::lock_guard note_lk(note_mu_);
      std::string counters = StatsJson();
      (void)UploadStateStore(journal_, options_.target).RecordAttempt(s2, attempts, err, counters);
      lk.lock();
    }
    return;
  }
  // Not to be tried again: skipped (unstorable) or failed; Finish marks
  // every record the path holds.
  stats_.last_error = path + ": " + ErrorText(out.status);
  if (out.unstorable) {
    stats_.unstorable++;
    spdlog::warn("uploader: {} (skipped: the target cannot hold this path)", stats_.last_error);
  } else {
    stats_.failures++;
    spdlog::error("uploader: {} (failed; `scribectl retry` requeues)", stats_.last_error);
  }
  std::vector<int64_t> ended = std::exchange(w.seqs, {});
  lk.unlock();
  Finish(ended, out, path);
  lk.lock();
}

void Replicator::WorkerLoop(int id) {
  auto index = RemoteIndex::Open(journal_->path(), options_.target);
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
    if (BelowAMover(path)) {
      parked_.insert(path);  // until that directory's pass is done (NoLongerAMover)
      continue;
    }
    if (HeldForMarks(path, w)) continue;  // until the passes at a mark are done
    // (A pass at a mark copies nothing and deletes only what was gone at the
    // mark, when the renamed-to name's state there comes from the capture.)
    if (blocked && at_mark_due_.count(path)) blocked = false;
    if (blocked || MoverWithPassesBelow(path)) {
      w.sched = Clock::now() + std::chrono::milliseconds(20);
      w.scheduled = true;
      schedule_.insert({w.sched, path});
      continue;
    }
    std::vector<int64_t> seqs;
    Snapshot snap = TakeWork(path, w, seqs);
    w.in_flight = true;
    in_flight_++;
    in_flight_paths_.insert(path);
    lk.unlock();

    // A path no store can hold (a key over 1,024 bytes: any user can make
    // one) would fail for good and block every flush and checkpoint: it is
    // skipped instead, with the reason, and counted.
    Status key_ok = ValidateKey(path, "path");
    if (!snap.mark_id.empty() && snap.time_ns == 0)  // at a mark: its newest record's time
      snap.time_ns = RecordTimeNs(snap.max_seq, NowNs());
    PathOutcome out;
    std::vector<HistoryEffect> effects;
    if (key_ok.ok()) {
      out = Reconcile(*index.value(), path, snap, effects);
    } else {
      out.status = StoreStatus(key_ok.WithContext("cannot be stored"));
    }
    out.unstorable = !key_ok.ok() || IsUnstorable(out.status);

    lk.lock();
    CountOutcome(out);
    in_flight_--;
    in_flight_paths_.erase(path);
    w.in_flight = false;
    // A live pass taken before a capture froze this path read it after the
    // capture began, maybe after the mark: its records up to the mark need
    // the state at the mark, so it counts as changed (the next is at the mark).
    if (snap.mark_id.empty() && out.status.ok() && !out.changed_during && FrozenAtAMark(path, seqs))
      out.changed_during = true;
    if (out.status.ok() && !out.changed_during) {
      w.attempts = 0;
      lk.unlock();
      Finish(seqs, out, path, std::move(effects));
      lk.lock();
    } else {
      Requeue(lk, w, path, snap, seqs, out);
    }
    UpdateMarkDue(path);
    auto again = work_.find(path);
    if (again != work_.end()) {
      Work& w2 = *again->second;
      if (w2.renames.empty() && !w2.in_flight) NoLongerAMover(path);
      if (w2.seqs.empty() && !w2.in_flight) {
        if (w2.scheduled) schedule_.erase({w2.sched, path});
        work_.erase(again);
      } else if (!w2.in_flight) {
        Schedule(path, w2);
      }
    }
    done_cv_.notify_all();
    GiveBackAfterABacklog(lk);
  }
}

void Replicator::GiveBackAfterABacklog(std::unique_lock<std::mutex>& lk) {
  if (!work_.empty() || in_flight_ > 0 || backlog_peak_ < kTrimAfterBacklog) return;
  backlog_peak_ = 0;
  lk.unlock();
  // The backlog's state, a few hundred bytes per path, was freed in small
  // blocks that malloc keeps for reuse: give the pages back, or a daemon that
  // once queued a million paths keeps their memory for good.
  malloc_trim(0);
  lk.lock();
}

void Replicator::CountOutcome(const PathOutcome& out) {
  stats_.uploads += out.uploads;
  stats_.copies += out.copies;
  stats_.deletes += out.deletes;
  stats_.partial_uploads += out.partial_uploads;
  stats_.skipped_unchanged += out.skipped_unchanged;
}

void Replicator::CountRetry(const std::string& path, const StoreStatus& status) {
  std::lock_guard lk(mu_);
  stats_.retries++;
  RetryCauseCounter(stats_.retry_causes, status)++;
  if (!status.ok()) {
    stats_.last_error = path + ": " + ErrorText(status);
    if (stats_.failing_since_ns == 0) stats_.failing_since_ns = NowNs();
  }
}

bool Replicator::RequestRetryWait(const std::string& path, int attempt, const StoreStatus& status) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  CountRetry(path, status);
  double ms = static_cast<double>(options_.initial_backoff.count()) * std::pow(2.0, attempt - 1) *
              std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  std::unique_lock lk(mu_);
  return !stop_cv_.wait_for(lk, std::chrono::milliseconds(int64_t(ms)), [&] { return stop_; });
}

// Marks the seqs this path held as finished (done, or failed with out's
// error). A rename's seq is held by both its paths and finishes with the last.
void Replicator::Finish(const std::vector<int64_t>& seqs, const PathOutcome& out,
                        const std::string& path, std::vector<HistoryEffect> effects) {
  // History's entries before the records are done: its watermark passes a
  // done record only with the record's entry buffered.
  if (history_ && !effects.empty()) history_->Add(std::move(effects));
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
  Status s;
  {
    std::lock_guard note_lk(note_mu_);
    std::string counters = StatsJson();
    UploadStateStore state(journal_, options_.target);
    s = ok ? state.MarkUploaded(complete, {out.etag, out.sha256, out.version_id}, counters)
        : out.unstorable ? state.MarkUnstorable(complete, err, counters)
                         : state.MarkFailed(complete, err, counters);
  }
  if (!s.ok()) spdlog::error("uploader: journal update failed: {}", s.message());
  std::lock_guard lk(mu_);
  // A path stored (a request the target answered) ends an outage; one failed
  // for good (4xx) starts one if none is going on (see ReplicatorStats::
  // failing_since_ns). A path found unchanged asked the target nothing.
  if (ok && out.uploads + out.copies + out.deletes > 0)
    stats_.failing_since_ns = 0;
  else if (!ok && !out.unstorable && stats_.failing_since_ns == 0)
    stats_.failing_since_ns = NowNs();
  NoteFinished(complete, ok || out.unstorable ? 0 : EIO);
}

void Replicator::NoteFinished(const std::vector<int64_t>& seqs, int err) {
  if (options_.sync_mode) {
    auto now = Clock::now();
    for (int64_t seq : seqs) {
      finished_[seq] = err;
      finished_order_.push_back({now, seq});
    }
    // Waiters look within seconds; keep two minutes.
    while (!finished_order_.empty() &&
           now - finished_order_.front().first > std::chrono::minutes(2)) {
      finished_.erase(finished_order_.front().second);
      finished_order_.pop_front();
    }
  }
  done_cv_.notify_all();  // WaitUploadedThrough and WaitIdle wait here too
}

Status Replicator::WaitUploaded(int64_t seq, Clock::time_point deadline) {
  if (!options_.sync_mode) return WaitUploadedThrough(seq, deadline, {});
  Notify();
  std::unique_lock lk(mu_);
  bool got = done_cv_.wait_until(lk, deadline, [&] { return finished_.count(seq) || stop_; });
  if (!got)
    return Status::Error(ETIMEDOUT, "upload of record " + std::to_string(seq) + " timed out");
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
  SCRIBEFS_RETURN_IF_ERROR(UploadStateStore(journal_, options_.target).RequeueFailed());
  std::lock_guard lk(mu_);
  cursor_ = 0;  // re-read: the requeued records are below the cursor
  notified_ = true;
  notify_cv_.notify_one();
  return Status::Ok();
}

int64_t Replicator::RecordTimeNs(int64_t seq, int64_t fallback) {
  auto reader = JournalReader::Open(journal_->path());
  if (!reader.ok()) return fallback;
  JournalFilter f;
  f.since_seq = f.until_seq = seq;
  f.limit = 1;
  auto recs = reader.value()->Query(f);
  return recs.ok() && !recs->empty() ? recs->front().time_ns : fallback;
}

void Replicator::SetMarkedStates(std::shared_ptr<const MarkedStates> marked) {
  if (history_ && marked) {
    history_->SetMarks([marked] {
      std::vector<int64_t> seqs;
      if (marked->AnyLive())
        for (const MarkedCapture& c : marked->LiveCaptures()) seqs.push_back(c.seq);
      return seqs;
    });
  }
  std::lock_guard lk(mu_);
  marked_ = std::move(marked);
}

void Replicator::NoteCounters() {
  std::lock_guard note_lk(note_mu_);
  (void)UploadStateStore(journal_, options_.target).RecordAttempt({}, 0, "", StatsJson());
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
  // The upload limit in force when noted (0: none), for `scribectl stats`.
  if (options_.bandwidth) j["bwlimit_bps"] = options_.bandwidth->state().limit;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<HistoryStats> Replicator::history_stats() {
  if (!history_) return std::nullopt;
  return history_->stats();
}

void Replicator::ForgetKnownChunks() {
  if (history_) history_->ForgetKnownChunks();
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
//
// Gathers what PlanUpload decides on (the local state, the index rows), and
// has a PlanExecutor perform the plan.

namespace {
bool StoresChildren(const UploadPlan& plan) {
  for (const auto& step : plan.steps)
    if (std::holds_alternative<plan::CopyRenamedChildren>(step)) return true;
  return false;
}
}  // namespace

PathOutcome Replicator::Reconcile(RemoteIndex& index, const std::string& path, const Snapshot& snap,
                                  std::vector<HistoryEffect>& effects) {
  PathOutcome out;
  if (IsReservedPath(path)) return out;  // never touch scribefs's own keys (a rename may lead here)
  PathChange change;
  change.renamed_from = snap.renamed_from;
  change.dirty = snap.dirty;
  change.content_changed = snap.content_changed;
  change.whole = snap.whole;
  change.max_seq = snap.max_seq;
  change.maybe_stored = snap.maybe_stored;
  PlanOptions popt;
  popt.delete_remote = options_.delete_remote;
  popt.part_size = options_.part_size;

  RemoteState remote;
  LocalState local;
  UniqueFd file;
  std::shared_ptr<const PayloadSource> content;  // at a mark: the file's bytes there
  if (auto ended = LookAtPath(index, path, snap, local, remote, file, content)) return *ended;
  const bool at_mark = !snap.mark_id.empty();
  UploadPlan plan = PlanUpload(path, local, remote, change, popt);
  // History: this path's entries come before those of what is below it
  // (a renamed directory's children, reconciled by the executor).
  const size_t own = effects.size();
  if (history_) PlanEntries(path, snap, local.exists, local.st, local.link_target, effects);
  const bool own_file = effects.size() > own && effects.back().entry.op == history::EntryOp::kPut &&
                        effects.back().entry.state.type == kTypeFile;
  const bool own_added = effects.size() > own;
  const size_t own_index = effects.size() - 1;
  PlanExecutor::Env env;
  env.store = store_.get();
  env.root_fd = root_.get();
  env.part_parallelism = options_.part_parallelism;
  env.at_mark = at_mark;
  env.marked_content = content.get();
  env.retry_wait = [&](int attempt, const StoreStatus& status) {
    return RequestRetryWait(path, attempt, status);
  };
  env.record = [&](const RemoteObject& o) {
    return RemoteIndex::Store(*journal_, options_.target, o);
  };
  env.erase = [&](const std::vector<std::string>& paths) {
    return RemoteIndex::Forget(*journal_, options_.target, paths);
  };
  env.reconcile_child = [&](const std::string& child, const std::string& from) {
    if (IsExcluded(child)) return PathOutcome();
    Snapshot cs;
    cs.renamed_from = {from};
    cs.max_seq = snap.max_seq;
    cs.time_ns = snap.time_ns;
    return Reconcile(index, child, cs, effects);
  };
  out = PlanExecutor(std::move(env)).Execute(path, plan, file.get(), local.link_target);
  if (own_file && out.status.ok() && !out.changed_during) {
    const uint64_t size = uint64_t(local.file_st.st_size);
    StoreChunks(at_mark ? Payload::FromSource(content.get(), 0, size)
                        : Payload::FromFile(file.get(), 0, size),
                at_mark, local.file_st, effects[own_index], out);
  }
  if (own_added && effects[own_index].entry.op == history::EntryOp::kPut &&
      effects[own_index].entry.state.type == kTypeDir && StoresChildren(plan)) {
    // Everything below was stored by this pass (PlanExecutor::DoChildren).
    auto kept = std::make_shared<std::set<std::string>>();
    for (size_t i = own_index + 1; i < effects.size(); ++i)
      if (effects[i].entry.op == history::EntryOp::kPut) kept->insert(effects[i].entry.path);
    effects[own_index].subtree = std::move(kept);
  }
  return out;
}

std::optional<PathOutcome> Replicator::LookAtPath(RemoteIndex& index, const std::string& path,
                                                  const Snapshot& snap, LocalState& local,
                                                  RemoteState& remote, UniqueFd& file,
                                                  std::shared_ptr<const PayloadSource>& content) {
  auto fail_local = [](const Status& s) {
    PathOutcome out;
    out.status = StoreStatus(s);
    return out;
  };
  auto go_again = [] {
    PathOutcome out;
    out.changed_during = true;
    return out;
  };
  auto row = index.Get(path);
  if (!row.ok()) return fail_local(row.status());
  remote.current = std::move(row.value());

  // What is there now, or what was there at the mark?
  std::optional<MarkedState> marked;
  Result<UniqueFd> fd = Status::Error(ENOENT, "not looked at");
  int err = 0;
  if (!snap.mark_id.empty()) {
    auto m = snap.marked->Open(snap.mark_id, path);
    if (!m.ok()) {
      bool live = false;
      for (const MarkedCapture& c : snap.marked->LiveCaptures()) live |= c.id == snap.mark_id;
      // Abandoned (or released) since the pass was taken: the next one is
      // live. A live capture that cannot say the state fails the records
      // (the checkpoint then fails visibly rather than store another state).
      if (!live) return go_again();
      return fail_local(m.status().WithContext("state at the mark of checkpoint " + snap.mark_id));
    }
    marked = std::move(m.value());
    local.st = marked->attr;
    if (marked->kind == MarkedState::Kind::kAbsent) err = ENOENT;
  } else {
    fd = OpenBeneath(root_.get(), path, O_PATH | O_NOFOLLOW);
    if (!fd.ok() || fstat(fd->get(), &local.st) != 0) err = fd.ok() ? errno : fd.status().code();
  }
  if (err != 0) {
    if (err != ENOENT && err != ENOTDIR) return fail_local(PosixError(path, err));
    // Gone. (Never "not there yet": the uploader reads no record whose
    // operation has not happened, see Journal::AppliedThrough.)
    if (options_.delete_remote) {
      auto rows = index.Subtree(path);
      if (!rows.ok()) return fail_local(rows.status());
      remote.subtree = std::move(rows.value());
    }
    return std::nullopt;
  }
  local.exists = true;
  const std::string_view type = ObjectTypeOf(local.st.st_mode);
  if (remote.current && remote.current->type != type && options_.delete_remote) {
    auto rows = index.Subtree(path);
    if (rows.ok()) remote.subtree = std::move(rows.value());
  }
  if (S_ISLNK(local.st.st_mode)) {
    if (marked) {
      local.link_target = marked->target;
      return std::nullopt;
    }
    char target[PATH_MAX + 1];
    ssize_t n = readlinkat(fd->get(), "", target, sizeof target - 1);
    if (n < 0) return fail_local(PosixError(path, errno));
    local.link_target.assign(target, n);
  } else if (S_ISREG(local.st.st_mode)) {
    if (marked) {  // read from the capture; never copied from another name
      local.file_st = marked->attr;
      content = marked->content;
      if (!content) return fail_local(Status::Error(EIO, path + ": no content at the mark"));
      return std::nullopt;
    }
    // Never a plain open: the path may be a FIFO by now (see local_open.h).
    auto f = OpenLocalForRead(root_.get(), path, &local.st);
    if (!f.ok()) {
      // Vanished or replaced between two looks: the record of that unlink
      // or rename follows, and its pass looks again.
      if (f.status().code() == ENOENT || f.status().code() == ESTALE) return go_again();
      return fail_local(f.status());
    }
    file = std::move(f->fd);
    local.file_st = f->st;
    for (const auto& from : snap.renamed_from) {
      auto src = index.Get(from);
      remote.sources.push_back(src.ok() ? std::move(src.value()) : std::nullopt);
    }
  }
  return std::nullopt;
}

void Replicator::PlanEntries(const std::string& path, const Snapshot& snap, bool exists,
                             const struct stat& st, const std::string& link_target,
                             std::vector<HistoryEffect>& effects) {
  auto storable = [&](const std::string& p) {
    return !IsExcluded(p) && history::ValidatePath(p).ok();
  };
  // A rename is history's when both names are (--delete keep leaves the
  // old name stored: then only the new name's put).
  for (const RenameNote& r : snap.renames) {
    if (!options_.delete_remote || !storable(r.from) || !storable(r.to)) continue;
    HistoryEffect e;
    e.entry.seq = uint64_t(r.seq);
    e.entry.time_ns = std::max<int64_t>(r.time_ns, 0);
    e.entry.op = history::EntryOp::kRename;
    e.entry.path = r.from;
    e.entry.new_path = r.to;
    e.entry.exchange = r.exchange;
    e.rename_seq = r.seq;
    effects.push_back(std::move(e));
  }
  if (!storable(path) || snap.max_seq <= 0) return;
  HistoryEffect e;
  e.entry.seq = uint64_t(snap.max_seq);
  e.entry.time_ns = std::max<int64_t>(snap.time_ns, 0);
  e.entry.path = path;
  if (!exists) {
    if (!options_.delete_remote) return;  // the target keeps it
    e.entry.op = history::EntryOp::kDelete;
    effects.push_back(std::move(e));
    return;
  }
  history::PathState& s = e.entry.state;
  s.type = std::string(ObjectTypeOf(st.st_mode));
  s.mode = st.st_mode;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  s.mtime_ns = MtimeNs(st);
  if (S_ISLNK(st.st_mode)) {
    if (link_target.empty() || link_target.size() > history::kMaxSymlinkTarget) return;
    s.target = link_target;
    s.size = link_target.size();
  } else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    s.rdev = st.st_rdev;
  }
  effects.push_back(std::move(e));
}

void Replicator::StoreChunks(const Payload& content, bool at_mark, const struct stat& file_st,
                             HistoryEffect& effect, PathOutcome& out) {
  const std::string& path = effect.entry.path;
  // The content as the mirror upload read it: the same descriptor, then the
  // same check that it did not change (a file written meanwhile goes again).
  const uint64_t size = uint64_t(file_st.st_size);
  // Each try skips the chunks stored by the last (they are known): as
  // PlanExecutor's requests, a few tries before the path goes back whole.
  // (The file shrank while read: EAGAIN with no store error code; a
  // throttled request is EAGAIN too, with its code, and a retry of its own.)
  // (A source that is gone, the capture abandoned, counts as changed too.)
  auto shrank = [](const StoreStatus& s) {
    return (s.code() == EAGAIN && s.error_code().empty()) || s.error_code() == "SourceChanged";
  };
  auto chunks = history_->PutChunks(content);
  for (int attempt = 1;
       attempt < 4 && !chunks.ok() && chunks.status().retryable() && !shrank(chunks.status());
       ++attempt) {
    if (!RequestRetryWait(path, attempt, chunks.status())) break;
    chunks = history_->PutChunks(content);
  }
  if (!chunks.ok()) {
    if (shrank(chunks.status()))
      out.changed_during = true;  // the path goes again, counted as changed
    else
      out.status = chunks.status();
    return;
  }
  struct stat now;
  if (!at_mark && (fstat(content.fd(), &now) != 0 || now.st_size != file_st.st_size ||
                   MtimeNs(now) != MtimeNs(file_st))) {
    out.changed_during = true;
    return;
  }
  history::PathState& s = effect.entry.state;
  s.size = size;
  s.mtime_ns = MtimeNs(file_st);
  s.mode = file_st.st_mode;
  s.uid = file_st.st_uid;
  s.gid = file_st.st_gid;
  s.chunks = std::move(*chunks);
}

}  // namespace scribefs
