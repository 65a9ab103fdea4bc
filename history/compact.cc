#include "history/compact.h"

#include <algorithm>
#include <cerrno>

namespace scribefs::history {

CompactionPlan PlanCompaction(const SegmentList& list, const CompactionPolicy& policy) {
  CompactionPlan plan;
  plan.leftovers = list.covered;
  const std::vector<SegmentRef>& d = list.deltas;  // by first_seq
  for (size_t i = 0; i < d.size();) {
    // A run: consecutive deltas of one level, each starting right after the
    // previous one. A seq gap (a prune deleted what was between) ends it: a
    // merged delta would claim the missing seqs and hide the hole.
    size_t j = i + 1;
    while (j < d.size() && d[j].id.level == d[i].id.level &&
           d[j].id.first_seq == d[j - 1].id.last_seq + 1) {
      ++j;
    }
    const int level = d[i].id.level;
    const size_t fanout = static_cast<size_t>(level) < policy.fanout.size()
                              ? policy.fanout[static_cast<size_t>(level)]
                              : 0;
    if (level < kMaxLevel && fanout >= 2) {
      // Complete groups only, oldest first: the newest deltas wait until
      // enough follow them, so each level's segments span a similar time.
      for (size_t g = i; g + fanout <= j; g += fanout) {
        CompactionGroup group{level, {}};
        group.inputs.assign(d.begin() + static_cast<ptrdiff_t>(g),
                            d.begin() + static_cast<ptrdiff_t>(g + fanout));
        plan.groups.push_back(std::move(group));
      }
    }
    i = j;
  }
  return plan;
}

std::vector<size_t> SplitByEntries(const std::vector<uint64_t>& counts, uint64_t max_entries) {
  std::vector<size_t> starts;
  uint64_t in_run = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (starts.empty() || in_run + counts[i] > max_entries) {
      // A new run (the first one, or this input would overflow the current).
      if (starts.empty() || in_run > 0) {
        starts.push_back(i);
        in_run = 0;
      }
    }
    in_run += counts[i];
  }
  return starts;
}

namespace {

// Loads the group's inputs, writes them merged (several segments when they
// hold more than max_entries), then deletes the inputs.
StoreStatus CompactGroup(HistoryStore& history, const CompactionGroup& group,
                         const CompactionOptions& options, CompactionReport* report) {
  std::vector<Segment> loaded;
  std::vector<uint64_t> counts;
  for (const SegmentRef& ref : group.inputs) {
    auto segment = history.LoadSegment(ref);
    if (!segment.ok()) return segment.status();
    ++report->segments_read;
    counts.push_back(segment->header.count);
    loaded.push_back(std::move(segment).value());
  }
  std::vector<size_t> starts = SplitByEntries(counts, options.policy.max_entries);
  starts.push_back(loaded.size());
  for (size_t r = 0; r + 1 < starts.size(); ++r) {
    std::vector<Segment> run(std::make_move_iterator(loaded.begin() + starts[r]),
                             std::make_move_iterator(loaded.begin() + starts[r + 1]));
    auto ref = history.AppendSegment(MergeSegments(run, group.level + 1));
    if (!ref.ok()) return ref.status().WithContext("compact level " + std::to_string(group.level));
    ++report->segments_written;
  }
  // Only now that every merged segment is stored: a crash before the deletes
  // leaves both, and ListSegments hides the inputs (covered by a higher level).
  if (!options.delete_inputs) return StoreStatus();
  SCRIBEFS_RETURN_IF_STORE_ERROR(history.DeleteSegments(group.inputs));
  report->segments_deleted += group.inputs.size();
  return StoreStatus();
}

}  // namespace

StoreResult<CompactionReport> RunCompaction(HistoryStore& history,
                                            const CompactionOptions& options) {
  CompactionReport report;
  auto cancelled = [&] { return options.cancel && options.cancel->load(); };
  // Each pass can complete a group of the next level; there are kMaxLevel of them.
  for (int pass = 0; pass <= kMaxLevel + 1; ++pass) {
    auto list = history.ListSegments();
    if (!list.ok()) return list.status();
    if (pass == 0) report.deltas_before = list->deltas.size();
    report.deltas_after = list->deltas.size();
    CompactionPlan plan = PlanCompaction(*list, options.policy);
    if (options.delete_inputs && !plan.leftovers.empty()) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(history.DeleteSegments(plan.leftovers));
      report.segments_deleted += plan.leftovers.size();
      report.leftovers_deleted += plan.leftovers.size();
    }
    if (plan.groups.empty()) break;
    ++report.passes;
    for (const CompactionGroup& group : plan.groups) {
      if (cancelled()) return StoreStatus(Status::Error(ECANCELED, "compaction cancelled"));
      SCRIBEFS_RETURN_IF_STORE_ERROR(CompactGroup(history, group, options, &report));
    }
  }
  return report;
}

bool BaseDue(const BaseFacts& facts, const BasePolicy& policy) {
  if (facts.entries_since == 0) return false;  // the newest base already holds the tree
  if (policy.every_entries > 0 && facts.entries_since >= policy.every_entries) return true;
  if (policy.interval_ns <= 0) return false;
  const int64_t since = facts.newest_base ? facts.newest_base->time_ns : facts.first_time_ns;
  return facts.latest_time_ns - since >= policy.interval_ns;
}

BaseFacts FactsOf(const std::vector<Segment>& segments) {
  BaseFacts f;
  bool any_entry = false;
  for (const Segment& s : segments) {
    if (s.header.kind == SegmentKind::kBase) {
      f.newest_base = StatePoint{s.header.last_seq, s.header.last_time_ns};
      f.latest_seq = std::max(f.latest_seq, s.header.last_seq);
      f.latest_time_ns = std::max(f.latest_time_ns, s.header.last_time_ns);
      continue;
    }
    f.latest_seq = std::max(f.latest_seq, s.header.last_seq);
    for (const Entry& e : s.entries) {
      if (f.newest_base && e.seq <= f.newest_base->seq) continue;  // in the base
      ++f.entries_since;
      f.first_time_ns = any_entry ? std::min(f.first_time_ns, e.time_ns) : e.time_ns;
      f.latest_time_ns = std::max(f.latest_time_ns, e.time_ns);
      any_entry = true;
    }
  }
  return f;
}

StoreResult<BaseReport> WriteBaseIfDue(HistoryStore& history, const BasePolicy& policy) {
  BaseReport report;
  if (policy.interval_ns <= 0 && policy.every_entries == 0) return report;
  // Cheap first: nothing stored after the newest base, nothing to decide.
  auto list = history.ListSegments();
  if (!list.ok()) return list.status();
  const uint64_t base_seq = list->bases.empty() ? 0 : list->bases.back().id.last_seq;
  if (list->deltas.empty() || list->deltas.back().id.last_seq <= base_seq) return report;
  // By time only: two headers can tell that no base is due without loading
  // the segments since the newest base (up to an interval's worth, every
  // compact interval). Conservative: anything unclear loads and decides.
  if (policy.every_entries == 0) {
    auto newest = history.LoadSegmentHeader(list->deltas.back());
    if (!newest.ok()) return newest.status().WithContext("base");
    ++report.headers_read;
    // Since the newest base's instant, or the oldest delta's first entry.
    const SegmentRef& from = list->bases.empty() ? list->deltas.front() : list->bases.back();
    auto since = history.LoadSegmentHeader(from);
    if (!since.ok()) return since.status().WithContext("base");
    ++report.headers_read;
    const bool known = newest->count > 0 && (!list->bases.empty() || since->count > 0);
    const int64_t start = list->bases.empty() ? since->first_time_ns : since->last_time_ns;
    if (known && newest->last_time_ns - start < policy.interval_ns) return report;
  }
  auto segments = history.LoadTimeline(Instant::Latest());
  if (!segments.ok()) return segments.status().WithContext("base");
  report.segments_read = segments->size();
  const BaseFacts facts = FactsOf(*segments);
  if (!BaseDue(facts, policy)) return report;
  const Tree tree = Replay(*segments, Instant::Latest());
  auto ref = history.AppendSegment(MakeBase(tree, facts.latest_seq, facts.latest_time_ns));
  if (!ref.ok()) return ref.status().WithContext("base");
  report.written = *ref;
  return report;
}

}  // namespace scribefs::history
