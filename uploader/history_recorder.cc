#include "uploader/history_recorder.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>

#include "common/thread_priority.h"
#include "journal/reader.h"
#include "journal/trim.h"
#include "journal/upload_state.h"

namespace scribefs {

using Clock = std::chrono::steady_clock;

std::vector<uint64_t> AssignSeqs(const std::vector<uint64_t>& preferred, uint64_t lo, uint64_t hi,
                                 const std::vector<uint64_t>& floors) {
  const size_t n = preferred.size();
  std::vector<uint64_t> a(n);
  if (n == 0) return a;
  // Backwards: as close to (and never above) the seq each stands for.
  a[n - 1] = std::min(preferred[n - 1], hi);
  for (size_t i = n - 1; i-- > 0;) a[i] = std::min(preferred[i], a[i + 1] > 0 ? a[i + 1] - 1 : 0);
  // Forwards: not below the segment nor an entry's floor, strictly
  // increasing (pushing some above hi when there are more entries than seqs).
  uint64_t prev = lo > 0 ? lo - 1 : 0;
  for (size_t i = 0; i < n; ++i) {
    a[i] = std::max(a[i], prev + 1);
    if (i < floors.size()) a[i] = std::max(a[i], floors[i] + 1);
    prev = a[i];
  }
  return a;
}

MarkedOrder OrderAtMarks(const std::vector<uint64_t>& preferred, const std::set<uint64_t>& marks) {
  MarkedOrder out;
  const size_t n = preferred.size();
  // An entry's bucket: the first mark at or above its seq (none: after all).
  std::vector<uint64_t> bucket(n, UINT64_MAX);
  for (size_t i = 0; i < n; ++i) {
    auto m = marks.lower_bound(preferred[i]);
    if (m != marks.end()) bucket[i] = *m;
  }
  out.order.resize(n);
  for (size_t i = 0; i < n; ++i) out.order[i] = i;
  std::stable_sort(out.order.begin(), out.order.end(),
                   [&](size_t x, size_t y) { return bucket[x] < bucket[y]; });
  out.floors.reserve(n);
  for (size_t i : out.order) {
    auto m = marks.lower_bound(preferred[i]);  // the first mark >= its seq
    out.floors.push_back(m == marks.begin() ? 0 : *std::prev(m));
  }
  return out;
}

namespace {

// Whether the tree holds `path` or anything below it.
bool HoldsSubtree(const history::DigestTree& tree, const std::string& path) {
  return tree.Contains(path) || tree.HoldsBelow(path);
}

history::HistoryOptions HistoryOptionsFor(const HistoryRecorderOptions& options) {
  history::HistoryOptions o;
  o.part_size = options.part_size;  // chunk i = part i+1 of the mirror object
  o.prune_grace_ns = options.prune_grace_ns;
  return o;
}

}  // namespace

bool EntryChangesTree(const history::DigestTree& tree, const history::Entry& entry) {
  switch (entry.op) {
    case history::EntryOp::kPut: {
      std::optional<history::StateDigest> held = tree.Find(entry.path);
      return !held || !(*held == history::DigestOf(entry.state));
    }
    case history::EntryOp::kDelete:
      return HoldsSubtree(tree, entry.path);
    case history::EntryOp::kRename:
      return HoldsSubtree(tree, entry.path) || HoldsSubtree(tree, entry.new_path);
  }
  return true;
}

HistoryRecorder::HistoryRecorder(Journal* journal, ObjectStore* store,
                                 HistoryRecorderOptions options, std::function<void()> requeued)
    : journal_(journal),
      store_(store),
      options_(options),
      requeued_(std::move(requeued)),
      known_(history::KnownChunkTtl(options.prune_grace_ns)),
      writer_(std::make_unique<history::HistoryStore>(*store, HistoryOptionsFor(options))) {}

HistoryRecorder::~HistoryRecorder() { Stop(); }

void HistoryRecorder::Start() {
  std::lock_guard lk(mu_);
  if (thread_.joinable()) return;
  last_close_ = Clock::now();
  thread_ = std::thread([this] {
    SetThisThreadNice(options_.nice);
    Loop();
  });
}

void HistoryRecorder::Stop() {
  {
    std::lock_guard lk(mu_);
    if (!thread_.joinable()) return;
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  bool loaded;
  {
    std::lock_guard lk(mu_);
    loaded = loaded_;
  }
  // What is settled now goes into one last segment (one try: the target may
  // be down; the next start stores those paths again).
  if (loaded) {
    StoreStatus s = CloseSegment(Attempt::kLast);
    if (!s.ok()) spdlog::warn("history: last segment not stored: {}", s.message());
  }
}

std::vector<std::string> PathsToSweep(const history::DigestTree& tree, const std::string& dir,
                                      const std::set<std::string>& kept) {
  std::vector<std::string> out;
  tree.ForEachBelow(dir, [&](std::string_view p, const history::StateDigest&) {
    if (kept.count(std::string(p))) return true;
    if (!out.empty() && p.size() > out.back().size() && p.starts_with(out.back()) &&
        p[out.back().size()] == '/')
      return true;  // below a path already swept
    out.emplace_back(p);
    return true;
  });
  return out;
}

void HistoryRecorder::SetMarks(std::function<std::vector<int64_t>()> live_marks) {
  std::lock_guard lk(mu_);
  live_marks_ = std::move(live_marks);
}

std::vector<int64_t> HistoryRecorder::LiveMarks() {
  std::function<std::vector<int64_t>()> marks;
  {
    std::lock_guard lk(mu_);
    marks = live_marks_;
  }
  return marks ? marks() : std::vector<int64_t>{};  // outside mu_: it takes the spool's lock
}

void HistoryRecorder::NoteMarks(const std::vector<int64_t>& live) {
  for (int64_t m : live)
    if (m > 0) marks_.insert(uint64_t(m));
}

void HistoryRecorder::Add(std::vector<HistoryEffect> effects) {
  // The marks live when the entry arrives: its capture may be released (its
  // checkpoint stored) before the segment is built.
  std::vector<int64_t> live = LiveMarks();
  std::lock_guard lk(mu_);
  NoteMarks(live);
  for (auto& e : effects) buffer_.push_back(std::move(e));
  if (buffer_.size() + carried_.size() >= options_.max_entries) cv_.notify_all();
}

StoreResult<std::vector<history::ChunkRef>> HistoryRecorder::PutChunks(const Payload& content) {
  // One HistoryStore per call (it is thread-compatible), sharing the set of
  // chunks known stored.
  history::HistoryStore hs(*store_, HistoryOptionsFor(options_));
  auto r = hs.PutChunks(content, &known_);
  const history::HistoryCounters& c = hs.counters();
  chunks_uploaded_ += c.chunks_uploaded;
  chunk_bytes_uploaded_ += c.chunk_bytes_uploaded;
  chunks_already_stored_ += c.chunks_already_stored;
  chunks_refreshed_ += c.chunks_refreshed;
  return r;
}

void HistoryRecorder::ForgetKnownChunks() { known_.Clear(); }

Status HistoryRecorder::StoreThrough(int64_t seq, Clock::time_point deadline) {
  const std::string what = "history up to journal seq " + std::to_string(seq) + " not stored: ";
  // Requires mu_. An empty history begins at first_seq_: records below it
  // were done before it began and have no entries by design, so they need
  // no segment (one that a daemon killed before its first segment left
  // behind would otherwise never be "stored").
  auto stored = [&] {
    return loaded_ && (stored_through_ >= uint64_t(seq) ||
                       (stored_through_ == 0 && uint64_t(seq) < first_seq_));
  };
  bool asked_load = false;
  uint64_t failures_before = 0;
  while (true) {
    Status last = Status::Ok();
    bool loaded;
    {
      std::unique_lock lk(mu_);
      if (stored()) break;
      loaded = loaded_;
      // The loader waits out a backoff: an operator's flush tries at once
      // (once per flush: the loader backs off again after it).
      if (!loaded && !asked_load) {
        load_now_ = asked_load = true;
        failures_before = load_failures_;
        cv_.notify_all();
      }
      // The load asked for failed for good: waiting will not help.
      if (!loaded && asked_load && load_failures_ > failures_before && !load_error_.ok())
        return Status::Error(load_error_.code(), what + load_error_.message());
    }
    if (loaded) {
      StoreStatus s = CloseSegment();
      if (!s.ok() && !s.retryable()) return Status::Error(s.code(), what + s.message());
      last = s.status();
    }
    {
      std::unique_lock lk(mu_);
      if (stored()) break;
      if (Clock::now() >= deadline) {
        std::string why = !last.ok()                   ? last.message()
                          : !stats_.last_error.empty() ? stats_.last_error
                          : !loaded_                   ? "the target's history is not loaded yet"
                                                       : "records not settled";
        return Status::Error(ETIMEDOUT, "history up to journal seq " + std::to_string(seq) +
                                            " not stored yet: " + why);
      }
      cv_.wait_until(lk, std::min(deadline, Clock::now() + std::chrono::milliseconds(50)));
    }
  }
  NoteStored();
  return Status::Ok();
}

void HistoryRecorder::NoteStored() {
  if (retries_unnoted_.exchange(false) && options_.counters_changed) options_.counters_changed();
}

void HistoryRecorder::NoteFailure(const StoreStatus& s, Attempt attempt) {
  const bool permanent = !s.retryable();
  {
    std::lock_guard lk(mu_);
    stats_.last_error = s.message();
    if (permanent && attempt == Attempt::kRetried) {
      stats_.last_error += " (not retryable: tried again in " +
                           std::to_string(kPermanentErrorBackoff.count()) + " min or at a flush)";
      retry_after_ = Clock::now() + kPermanentErrorBackoff;
    }
  }
  if (permanent || attempt != Attempt::kRetried) return;
  retries_unnoted_ = true;
  if (options_.retried) options_.retried(s);
}

HistoryStats HistoryRecorder::stats() {
  std::lock_guard lk(mu_);
  HistoryStats s = stats_;
  s.loaded = loaded_;
  s.stored_through_seq = stored_through_;
  s.buffered_entries = buffer_.size() + carried_.size();
  s.chunks_uploaded = chunks_uploaded_;
  s.chunk_bytes_uploaded = chunk_bytes_uploaded_;
  s.chunks_already_stored = chunks_already_stored_;
  s.chunks_refreshed = chunks_refreshed_;
  return s;
}

void HistoryRecorder::Loop() {
  constexpr auto kFirstBackoff = std::chrono::milliseconds(500);
  auto backoff = std::chrono::milliseconds(kFirstBackoff);
  std::unique_lock lk(mu_);
  while (!stop_) {
    if (!loaded_) {
      load_now_ = false;
      lk.unlock();
      StoreStatus s = Load();
      lk.lock();
      if (!s.ok()) {
        if (s.retryable()) {
          spdlog::warn("history: cannot load the target's timeline (retrying): {}", s.message());
        } else {
          spdlog::error(
              "history: cannot load the target's timeline: {} (not retryable: tried "
              "again in {} min or at a flush)",
              s.message(), kPermanentErrorBackoff.count());
        }
        const auto wait = s.retryable() ? Clock::duration(backoff) : retry_after_ - Clock::now();
        cv_.wait_for(lk, wait, [&] { return stop_ || load_now_; });
        if (s.retryable()) backoff = std::min(backoff * 2, std::chrono::milliseconds(30000));
        continue;
      }
      backoff = kFirstBackoff;
      stats_.last_error.clear();
    }
    cv_.wait_for(lk, std::chrono::milliseconds(200),
                 [&] { return stop_ || buffer_.size() + carried_.size() >= options_.max_entries; });
    if (stop_) break;
    bool due = buffer_.size() + carried_.size() >= options_.max_entries ||
               Clock::now() - last_close_ >= options_.interval;
    if (!due || Clock::now() < retry_after_) continue;
    last_close_ = Clock::now();
    lk.unlock();
    StoreStatus s = CloseSegment();
    lk.lock();
    if (!s.ok()) spdlog::warn("history: segment not stored: {}", stats_.last_error);
  }
}

StoreStatus HistoryRecorder::Load() {
  std::lock_guard close_lk(close_mu_);
  StoreStatus s = LoadLocked();
  if (!s.ok()) {
    NoteFailure(s, Attempt::kRetried);
    std::lock_guard lk(mu_);
    ++load_failures_;
    load_error_ = s.retryable() ? Status::Ok() : s.status();
  }
  return s;
}

StoreStatus HistoryRecorder::LoadLocked() {
  auto list = writer_->ListSegments();
  if (!list.ok()) return list.status();
  uint64_t last = 0;
  for (const auto& b : list->bases) last = std::max(last, b.id.last_seq);
  for (const auto& d : list->deltas) last = std::max(last, d.id.last_seq);
  // One decoded segment at a time (a base holds every stored path).
  history::DigestReplayer tree;
  int64_t last_time = 0;
  StoreStatus loaded = writer_->ForEachTimelineSegment(
      history::Instant::Latest(),
      [&] {
        tree = {};
        last_time = 0;
      },
      [&](history::Segment&& seg) {
        if (seg.header.kind == history::SegmentKind::kBase) {
          tree.ApplyBase(seg);
        } else {
          for (const history::Entry& e : seg.entries) tree.Apply(e);
        }
        last_time = std::max(last_time, seg.header.last_time_ns);
      });
  if (!loaded.ok()) return loaded;
  tree.Compact();
  uint64_t first = 1;
  if (last == 0) {
    // An empty history starts with what is not stored yet.
    auto reader = JournalReader::Open(journal_->path());
    if (!reader.ok()) return reader.status();
    auto max = reader.value()->MaxSeq();
    if (!max.ok()) return max.status();
    auto unfinished = reader.value()->FirstUnfinishedSeq(options_.target);
    if (!unfinished.ok()) return unfinished.status();
    first = uint64_t(unfinished->value_or(*max + 1));
    if (first == 0) first = 1;
  } else {
    // Records done above the last stored segment have entries nowhere.
    SCRIBEFS_RETURN_IF_ERROR(
        UploadStateStore(journal_, options_.target).RequeueDoneAfter(int64_t(last)));
  }
  {
    std::lock_guard lk(mu_);
    tree_seq_ = tree.applied_seq();
    tree_ = std::move(tree);
    stored_through_ = last;
    first_seq_ = first;
    last_time_ns_ = std::max(last_time_ns_, last_time);
    loaded_ = true;
    retry_after_ = {};
  }
  cv_.notify_all();
  // The decoded segments are freed; give their pages back (glibc keeps them
  // otherwise, and a base holds every stored path).
  malloc_trim(0);
  spdlog::info("history: timeline loaded, stored through journal seq {}", last);
  if (last > 0 && requeued_) requeued_();
  return Status::Ok();
}

Result<int64_t> HistoryRecorder::Watermark() {
  auto reader = JournalReader::Open(journal_->path());
  if (!reader.ok()) return reader.status();
  // The maximum first: a record committed after it is above it either way.
  auto max = reader.value()->MaxSeq();
  if (!max.ok()) return max.status();
  auto unfinished = reader.value()->FirstUnfinishedSeq(options_.target);
  if (!unfinished.ok()) return unfinished.status();
  if (unfinished->has_value()) return std::min(*max, **unfinished - 1);
  return *max;
}

StoreStatus HistoryRecorder::CloseSegment(Attempt attempt) {
  std::lock_guard close_lk(close_mu_);
  StoreStatus s = CloseSegmentLocked();
  if (!s.ok()) NoteFailure(s, attempt);
  return s;
}

StoreStatus HistoryRecorder::CloseSegmentLocked() {
  if (!unwritten_) {
    auto w = Watermark();
    if (!w.ok()) return w.status();
    std::vector<int64_t> live = LiveMarks();
    std::lock_guard lk(mu_);
    NoteMarks(live);
    if (!loaded_) return Status::Error(EAGAIN, "the target's history is not loaded yet");
    const uint64_t lo = stored_through_ > 0 ? stored_through_ + 1 : first_seq_;
    if (*w < 0 || uint64_t(*w) < lo) return Status::Ok();  // nothing settled since
    unwritten_ = BuildSegment(lo, uint64_t(*w));
  }
  // The same segment until it is stored: a later one with more entries
  // would overlap it if this one landed and its answer was lost.
  auto ref = writer_->AppendSegment(*unwritten_);
  if (!ref.ok()) return ref.status().WithContext("history segment");
  const uint64_t through = unwritten_->header.last_seq;
  const size_t count = unwritten_->entries.size();
  unwritten_.reset();
  Status meta = NoteHistoryStoredThrough(*journal_, options_.target, int64_t(through));
  {
    std::lock_guard lk(mu_);
    stored_through_ = through;
    stats_.segments_written++;
    stats_.last_error.clear();
    retry_after_ = {};
  }
  cv_.notify_all();
  spdlog::debug("history: segment through journal seq {} stored ({} entries)", through, count);
  return meta;
}

std::optional<history::Segment> HistoryRecorder::BuildSegment(uint64_t lo, uint64_t w) {
  // Decide, in arrival order, which entries change the history.
  std::vector<history::Entry> decided = std::move(carried_);
  carried_.clear();
  auto decide = [&](history::Entry entry) {
    history::Entry applied = entry;
    applied.seq = ++tree_seq_;
    tree_.Apply(applied);
    decided.push_back(std::move(entry));
  };
  for (HistoryEffect& e : buffer_) {
    if (e.rename_seq != 0 && !renames_seen_.insert(e.rename_seq).second) continue;
    const bool changes = EntryChangesTree(tree_.tree(), e.entry);
    if (e.subtree) {
      // After the put (or with the unchanged directory), before the
      // children's puts that follow it in the buffer.
      history::Entry put = e.entry;
      if (changes) decide(std::move(put));
      for (const std::string& gone : PathsToSweep(tree_.tree(), e.entry.path, *e.subtree)) {
        history::Entry del;
        del.seq = e.entry.seq;
        del.time_ns = e.entry.time_ns;
        del.op = history::EntryOp::kDelete;
        del.path = gone;
        decide(std::move(del));
      }
      continue;
    }
    if (changes) decide(std::move(e.entry));
  }
  buffer_.clear();
  // Every record <= w is settled, so both halves of its renames were seen.
  renames_seen_.erase(renames_seen_.begin(), renames_seen_.upper_bound(int64_t(w)));

  // An entry of a record above w (stored before its record was marked
  // done) waits for a later segment: squeezed into this one it would stand
  // for an earlier seq than its own, before the state at a checkpoint's
  // mark that a later pass may still store at its (lower) seq.
  auto split = std::stable_partition(decided.begin(), decided.end(),
                                     [&](const history::Entry& e) { return e.seq <= w; });
  std::vector<history::Entry> later(std::make_move_iterator(split),
                                    std::make_move_iterator(decided.end()));
  decided.erase(split, decided.end());
  // Marks below the segment order nothing any more: every seq it assigns
  // is above them.
  marks_.erase(marks_.begin(), marks_.lower_bound(lo));
  std::vector<uint64_t> preferred;
  preferred.reserve(decided.size());
  for (const auto& e : decided) preferred.push_back(e.seq);
  MarkedOrder at_marks = OrderAtMarks(preferred, marks_);
  {
    std::vector<history::Entry> ordered;
    ordered.reserve(decided.size());
    for (size_t i : at_marks.order) {
      preferred[ordered.size()] = decided[i].seq;
      ordered.push_back(std::move(decided[i]));
    }
    decided = std::move(ordered);
  }
  std::vector<uint64_t> seqs = AssignSeqs(preferred, lo, w, at_marks.floors);
  std::vector<history::Entry> entries;
  size_t i = 0;
  for (; i < decided.size() && seqs[i] <= w; ++i) {
    history::Entry e = std::move(decided[i]);
    e.seq = seqs[i];
    // Entry times never step back, so that a time instant is a prefix.
    e.time_ns = std::max(e.time_ns, last_time_ns_);
    last_time_ns_ = e.time_ns;
    entries.push_back(std::move(e));
  }
  for (; i < decided.size(); ++i) carried_.push_back(std::move(decided[i]));
  for (auto& e : later) carried_.push_back(std::move(e));
  return history::MakeDelta(std::move(entries), 0, lo, w);
}

}  // namespace scribefs
