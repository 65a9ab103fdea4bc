#include "history/prune.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <unordered_set>

#include "uploader/checkpoint.h"

namespace scribefs::history {
namespace {

// The start of a manifest holds its header fields ("name", "time_ns",
// "journal_seq") before "target" and the entries (object_layout.h keeps
// them in that order); a checkpoint name is [A-Za-z0-9._-], so a field name
// in quotes cannot appear inside it.
constexpr uint64_t kManifestHeadBytes = 4096;

int64_t ClockNs() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSecond + ts.tv_nsec;
}

// The non-negative integer after "name": in `text`.
std::optional<int64_t> NumberField(std::string_view text, std::string_view name) {
  const std::string needle = "\"" + std::string(name) + "\":";
  size_t at = text.find(needle);
  if (at == std::string_view::npos) return std::nullopt;
  at += needle.size();
  int64_t v = 0;
  size_t digits = 0;
  for (; at < text.size() && text[at] >= '0' && text[at] <= '9' && digits < 18; ++at, ++digits) {
    v = v * 10 + (text[at] - '0');
  }
  if (digits == 0) return std::nullopt;
  return v;
}

void MarkSegment(const Segment& s, std::unordered_set<std::string>* marked) {
  for (const Entry& e : s.entries) {
    for (const ChunkRef& c : e.state.chunks) marked->insert(c.sha256);
  }
}

StoreStatus CheckCancel(const PruneOptions& o) {
  if (o.cancel && o.cancel->load()) return Status::Error(ECANCELED, "prune cancelled");
  return StoreStatus();
}

// Every segment of the target, loaded.
struct Loaded {
  SegmentList list;
  std::vector<Segment> bases;   // as list.bases (by last_seq)
  std::vector<Segment> deltas;  // as list.deltas (by first_seq)
  std::set<std::string> keys;   // every segment key listed, covered ones too
};

StoreResult<Loaded> LoadAll(HistoryStore& history, const PruneOptions& options) {
  Loaded l;
  auto list = history.ListSegments();
  if (!list.ok()) return list.status();
  l.list = std::move(list).value();
  for (const auto* group : {&l.list.bases, &l.list.deltas, &l.list.covered}) {
    for (const SegmentRef& r : *group) l.keys.insert(r.key);
  }
  for (const SegmentRef& r : l.list.bases) {
    SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
    auto s = history.LoadSegment(r);
    if (!s.ok()) return s.status();
    l.bases.push_back(std::move(s).value());
  }
  for (const SegmentRef& r : l.list.deltas) {
    SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
    auto s = history.LoadSegment(r);
    if (!s.ok()) return s.status();
    l.deltas.push_back(std::move(s).value());
  }
  return l;
}

std::vector<const Segment*> Pointers(const std::vector<Segment>& v) {
  std::vector<const Segment*> out;
  for (const Segment& s : v) out.push_back(&s);
  return out;
}

// The bases of `points`, from a second walk of the timeline.
std::vector<Segment> MakeBases(const Loaded& l, const std::vector<StatePoint>& points) {
  std::vector<Segment> out;
  if (points.empty()) return out;
  std::set<uint64_t> wanted;
  for (const StatePoint& p : points) wanted.insert(p.seq);
  TimelineWalk walk;
  WalkTimeline(
      Pointers(l.bases), Pointers(l.deltas),
      [&](const StatePoint& p, const Tree& tree) {
        if (wanted.erase(p.seq)) out.push_back(MakeBase(tree, p.seq, p.time_ns));
      },
      &walk);
  return out;
}

// Marks the chunks of the segments listed now that the prune did not load
// (a concurrent writer appended or compacted since).
StoreStatus MarkNewSegments(HistoryStore& history, const std::set<std::string>& known,
                            std::unordered_set<std::string>* marked) {
  auto list = history.ListSegments();
  if (!list.ok()) return list.status();
  for (const auto* group : {&list->bases, &list->deltas, &list->covered}) {
    for (const SegmentRef& r : *group) {
      if (known.contains(r.key)) continue;
      auto s = history.LoadSegment(r);
      if (!s.ok() && s.status().not_found()) continue;  // compacted away meanwhile
      if (!s.ok()) return s.status();
      MarkSegment(*s, marked);
    }
  }
  return StoreStatus();
}

StoreStatus Sweep(HistoryStore& history, const std::unordered_set<std::string>& marked,
                  const PruneOptions& options, PruneReport* report) {
  std::vector<std::string> doomed;
  SCRIBEFS_RETURN_IF_STORE_ERROR(history.ListChunks([&](const ChunkInfo& c) {
    if (marked.contains(c.sha256)) {
      ++report->chunks_kept;
      report->chunk_bytes_kept += c.size;
    } else if (c.mtime > 0 && c.mtime * kNsPerSecond + options.grace_ns <= report->now_ns) {
      doomed.push_back(c.sha256);
      ++report->chunks_deleted;
      report->chunk_bytes_deleted += c.size;
    } else {  // maybe an upload whose segment is not written yet
      ++report->chunks_in_grace;
      report->chunk_bytes_in_grace += c.size;
    }
    return true;
  }));
  if (options.dry_run) return StoreStatus();
  return history.DeleteChunks(doomed);
}

}  // namespace

StoreResult<std::vector<CheckpointPoint>> ListCheckpointPoints(ObjectStore& store) {
  auto stored = ListStoredCheckpoints(store);
  if (!stored.ok()) return stored.status().WithContext("list checkpoints");
  std::vector<CheckpointPoint> out;
  for (const StoredCheckpoint& c : *stored) {
    if (c.size == 0) continue;
    auto head = store.Get(c.key, ByteRange{0, std::min<uint64_t>(c.size, kManifestHeadBytes)});
    if (!head.ok() && head.status().not_found()) continue;  // deleted meanwhile
    if (!head.ok()) return head.status().WithContext("checkpoint " + c.name);
    auto seq = NumberField(head->body, "journal_seq");
    auto time = NumberField(head->body, "time_ns");
    if (!seq || !time) {
      return StoreStatus(
          Status::Error(EINVAL, "checkpoint " + c.name + ": the manifest " + c.key +
                                    " does not start with its journal_seq and time_ns"));
    }
    out.push_back({c.name, static_cast<uint64_t>(*seq), *time});
  }
  return out;
}

StoreResult<PruneReport> Prune(ObjectStore& store, const PruneOptions& options) {
  HistoryStore history(store, options.history);
  PruneReport report;
  report.dry_run = options.dry_run;
  report.now_ns = options.now_ns.value_or(ClockNs());

  // 1. What the target holds.
  auto loaded = LoadAll(history, options);
  if (!loaded.ok()) return loaded.status().WithContext("prune");
  Loaded& l = *loaded;
  std::vector<CheckpointPoint> checkpoints;
  if (options.policy.keep_checkpoints > 0) {
    auto cps = ListCheckpointPoints(store);
    if (!cps.ok()) return cps.status().WithContext("prune");
    checkpoints = std::move(cps).value();
  }
  report.checkpoints = checkpoints.size();

  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
  // 2. Decide.
  TimelineWalk walk;
  WalkTimeline(
      Pointers(l.bases), Pointers(l.deltas), [](const StatePoint&, const Tree&) {}, &walk);
  report.states = walk.states.size();
  report.decision = DecideRetention(walk.states, checkpoints, options.policy, report.now_ns);
  PrunePlan plan = PlanPrune(l.list, report.decision, walk);
  std::vector<Segment> new_bases = MakeBases(l, plan.bases_to_write);
  std::set<std::string> deleted;
  for (const SegmentRef& r : plan.segments_to_delete) {
    deleted.insert(r.key);
    report.segment_bytes_deleted += r.size;
  }
  report.segments_deleted = plan.segments_to_delete;

  // 3. Write the bases and sentinels before deleting anything.
  std::set<std::string> known = l.keys;
  for (const auto* group : {&new_bases, &plan.sentinels}) {
    for (const Segment& s : *group) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
      SegmentRef ref{s.header.id(), SegmentKey(s.header.id()), 0};
      if (!options.dry_run) {
        auto written = history.AppendSegment(s);
        if (!written.ok()) return written.status().WithContext("prune: write");
        ref = *written;
      }
      known.insert(ref.key);
      if (s.header.kind == SegmentKind::kBase) {
        report.bases_written.push_back(ref);
      } else if (!l.keys.contains(ref.key)) {
        ++report.sentinels_written;
      }
    }
  }

  // 4. Delete what no kept point needs.
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
  if (!options.dry_run) {
    SCRIBEFS_RETURN_IF_STORE_ERROR(
        history.DeleteSegments(plan.segments_to_delete).WithContext("prune"));
  }

  // 5. Mark: every retained segment, and what appeared since.
  std::unordered_set<std::string> marked;
  for (size_t i = 0; i < l.bases.size(); ++i) {
    if (!deleted.contains(l.list.bases[i].key)) MarkSegment(l.bases[i], &marked);
  }
  for (size_t i = 0; i < l.deltas.size(); ++i) {
    if (!deleted.contains(l.list.deltas[i].key)) MarkSegment(l.deltas[i], &marked);
  }
  for (const Segment& s : new_bases) MarkSegment(s, &marked);
  for (const Segment& s : plan.sentinels) MarkSegment(s, &marked);
  for (const auto* group : {&l.list.bases, &l.list.deltas, &l.list.covered}) {
    for (const SegmentRef& r : *group) {
      if (deleted.contains(r.key)) continue;
      ++report.segments_kept;
      report.segment_bytes_kept += r.size;
    }
  }
  SCRIBEFS_RETURN_IF_STORE_ERROR(MarkNewSegments(history, known, &marked).WithContext("prune"));

  // 6. Sweep.
  SCRIBEFS_RETURN_IF_STORE_ERROR(CheckCancel(options));
  SCRIBEFS_RETURN_IF_STORE_ERROR(Sweep(history, marked, options, &report).WithContext("prune"));
  return report;
}

}  // namespace scribefs::history
