#include "history/retention.h"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <map>
#include <set>

#include "common/units.h"
namespace scribefs::history {
namespace {

struct Unit {
  const char* name;
  int64_t ns;
};
constexpr Unit kUnits[] = {{"w", 7 * 24 * 3600 * kNsPerSecond},
                           {"d", 24 * 3600 * kNsPerSecond},
                           {"h", 3600 * kNsPerSecond},
                           {"min", 60 * kNsPerSecond},
                           {"m", 60 * kNsPerSecond},
                           {"s", kNsPerSecond},
                           {"ms", 1'000'000},
                           {"", kNsPerSecond}};

// Local calendar hour and day: restic's buckets (a person thinks of "the
// state at the end of Tuesday" in their own time zone).
struct Buckets {
  int64_t hour = 0, day = 0;
};
Buckets BucketsOf(int64_t time_ns) {
  time_t t = static_cast<time_t>(time_ns / kNsPerSecond - (time_ns % kNsPerSecond < 0 ? 1 : 0));
  struct tm tm {};
  localtime_r(&t, &tm);
  const int64_t day = static_cast<int64_t>(tm.tm_year) * 400 + tm.tm_yday;
  return {day * 24 + tm.tm_hour, day};
}

// Index of the last state with seq <= `seq`, or nullopt.
std::optional<size_t> StateAtOrBefore(const std::vector<StatePoint>& states, uint64_t seq) {
  auto it = std::upper_bound(states.begin(), states.end(), seq,
                             [](uint64_t s, const StatePoint& p) { return s < p.seq; });
  if (it == states.begin()) return std::nullopt;
  return static_cast<size_t>(it - states.begin()) - 1;
}

}  // namespace

Result<int64_t> ParseRetentionDuration(const std::string& text) {
  static const std::vector<UnitScale> kScales = [] {
    std::vector<UnitScale> v;
    for (const Unit& u : kUnits) v.push_back({u.name, static_cast<double>(u.ns)});
    return v;
  }();
  auto ns = ParseScaled(text, kScales);
  if (!ns || !std::isfinite(*ns) || *ns < 0 || *ns > 9.2e18)
    return Status::Error(EINVAL,
                         "'" + text + "' is not a duration (e.g. 7d, 12h, 30m, 90s, 2w, 0)");
  return static_cast<int64_t>(std::llround(*ns));
}

std::string FormatRetentionDuration(int64_t ns) {
  if (ns == 0) return "0";
  for (const Unit& u : kUnits) {
    if (*u.name && std::string_view(u.name) != "min" && ns % u.ns == 0) {
      return std::to_string(ns / u.ns) + u.name;
    }
  }
  return std::to_string(ns) + "ns";
}

RetentionDecision DecideRetention(const std::vector<StatePoint>& states,
                                  const std::vector<CheckpointPoint>& checkpoints,
                                  const RetentionPolicy& policy, int64_t now_ns) {
  RetentionDecision d;
  d.cutoff_ns = now_ns - policy.retention_ns;
  // The window's start: the last state before the first one stored after the
  // cutoff (a restore at the cutoff gives exactly that state; see replay.h).
  auto first_after = std::find_if(states.begin(), states.end(),
                                  [&](const StatePoint& p) { return p.time_ns > d.cutoff_ns; });
  if (first_after == states.begin()) return d;  // every state is within the window
  d.window_start = *std::prev(first_after);
  const uint64_t ws = d.window_start->seq;

  std::map<uint64_t, KeptPoint> kept;
  auto keep = [&](const StatePoint& p, std::string reason) {
    KeptPoint& k = kept[p.seq];
    k.state = p;
    if (std::find(k.reasons.begin(), k.reasons.end(), reason) == k.reasons.end()) {
      k.reasons.push_back(std::move(reason));
    }
  };
  keep(*d.window_start, "window start");

  // restic's rule: newest first, the first state met in each bucket is the
  // last state of that bucket; count buckets until N. Buckets within the
  // window count too (their states are kept anyway).
  auto by_bucket = [&](int n, bool daily, const char* reason) {
    if (n <= 0) return;
    int count = 0;
    std::optional<int64_t> last;
    for (auto it = states.rbegin(); it != states.rend(); ++it) {
      const Buckets b = BucketsOf(it->time_ns);
      const int64_t key = daily ? b.day : b.hour;
      if (last && *last == key) continue;
      last = key;
      if (++count > n) break;
      if (it->seq <= ws) keep(*it, reason);
    }
  };
  by_bucket(policy.keep_hourly, false, "hourly");
  by_bucket(policy.keep_daily, true, "daily");

  if (policy.keep_checkpoints > 0) {
    std::vector<const CheckpointPoint*> newest;
    for (const CheckpointPoint& c : checkpoints) newest.push_back(&c);
    std::sort(newest.begin(), newest.end(), [](const CheckpointPoint* a, const CheckpointPoint* b) {
      return std::tie(a->seq, a->time_ns, a->name) > std::tie(b->seq, b->time_ns, b->name);
    });
    if (newest.size() > static_cast<size_t>(policy.keep_checkpoints)) {
      newest.resize(static_cast<size_t>(policy.keep_checkpoints));
    }
    for (const CheckpointPoint* c : newest) {
      auto i = StateAtOrBefore(states, c->seq);
      if (!i) {
        d.checkpoints_without_state.push_back(c->name);
      } else if (states[*i].seq <= ws) {
        keep(states[*i], "checkpoint " + c->name);
      }
    }
  }
  for (auto& [seq, k] : kept) d.older.push_back(std::move(k));
  return d;
}

void WalkTimeline(const std::vector<const Segment*>& bases,
                  const std::vector<const Segment*>& deltas,
                  const std::function<void(const StatePoint&, const Tree&)>& on_state,
                  TimelineWalk* walk) {
  Replayer r;
  bool started = false;          // anything applied
  bool valid = false;            // the tree is the true tree at r.applied_seq()
  std::optional<uint64_t> next;  // the next seq the timeline must account for
  std::vector<size_t> pending;   // states whose next entry is not seen yet
  auto visit = [&](const StatePoint& p) {
    walk->states.push_back(p);
    walk->next_entry.emplace_back();
    pending.push_back(walk->states.size() - 1);
    on_state(p, r.tree());
  };
  size_t bi = 0;
  // Applies the bases with last_seq < limit that move the timeline forward.
  auto apply_bases_before = [&](uint64_t limit) {
    for (; bi < bases.size() && bases[bi]->header.last_seq < limit; ++bi) {
      const Segment& b = *bases[bi];
      if (started && b.header.last_seq <= r.applied_seq()) continue;  // behind the replay
      // A base past what the timeline accounts for follows a (possible)
      // hole: the states before it do not end where it starts.
      if (!next || b.header.last_seq >= *next) pending.clear();
      r.ApplyBase(b);
      started = valid = true;
      next = std::max(next.value_or(0), b.header.last_seq + 1);
      visit({b.header.last_seq, b.header.last_time_ns});
    }
  };
  for (const Segment* d : deltas) {
    apply_bases_before(d->header.first_seq);
    if (next && d->header.first_seq > *next) {  // a hole: unreachable until a base
      valid = false;
      pending.clear();
    } else if (!next) {
      valid = true;  // the start of history: replay from the empty tree
    }
    for (const Entry& e : d->entries) {
      apply_bases_before(e.seq);
      if (!valid || !r.Apply(e)) continue;
      started = true;
      for (size_t i : pending) walk->next_entry[i] = e;
      pending.clear();
      visit({e.seq, e.time_ns});
    }
    next = std::max(next.value_or(0), d->header.last_seq + 1);
  }
  apply_bases_before(UINT64_MAX);
}

PrunePlan PlanPrune(const SegmentList& list, const RetentionDecision& decision,
                    const TimelineWalk& walk) {
  PrunePlan plan;
  if (!decision.window_start) return plan;
  const uint64_t ws = decision.window_start->seq;
  std::set<uint64_t> base_seqs, kept_seqs;
  for (const SegmentRef& b : list.bases) base_seqs.insert(b.id.last_seq);
  std::set<std::string> sentinel_keys;
  for (const KeptPoint& k : decision.older) {
    kept_seqs.insert(k.state.seq);
    if (!base_seqs.contains(k.state.seq)) plan.bases_to_write.push_back(k.state);
    if (k.state.seq >= ws) continue;  // the deltas after the window's start stay
    auto it = std::lower_bound(walk.states.begin(), walk.states.end(), k.state.seq,
                               [](const StatePoint& p, uint64_t s) { return p.seq < s; });
    if (it == walk.states.end() || it->seq != k.state.seq) continue;
    const auto& next = walk.next_entry[static_cast<size_t>(it - walk.states.begin())];
    if (!next || next->seq > ws) continue;
    Segment s = MakeDelta({*next}, 0, k.state.seq + 1, next->seq);
    sentinel_keys.insert(SegmentKey(s.header.id()));
    plan.sentinels.push_back(std::move(s));
  }
  for (const auto* group : {&list.deltas, &list.covered}) {
    for (const SegmentRef& d : *group) {
      if (d.id.last_seq <= ws && !sentinel_keys.contains(d.key)) {
        plan.segments_to_delete.push_back(d);
      }
    }
  }
  for (const SegmentRef& b : list.bases) {
    if (b.id.last_seq < ws && !kept_seqs.contains(b.id.last_seq)) {
      plan.segments_to_delete.push_back(b);
    }
  }
  return plan;
}

}  // namespace scribefs::history
