#include "tools/restore_at.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "tools/time_spec.h"
#include "uploader/checkpoint.h"

namespace scribefs::ctl {

const char* const kNoHistoryMessage =
    "this target has no history: written by a scribefs without history, or --history off";

namespace {

// A segment header line is short; a ranged read of this much holds it.
constexpr uint64_t kHeaderReadBytes = 256 << 10;
// The header of a checkpoint manifest (everything before its entries).
constexpr uint64_t kManifestHeaderReadBytes = 64 << 10;

// The last change (or base) Replay applies for `at`: the same rules as
// history::Replay. False when it applies nothing.
bool LastCovered(const std::vector<history::Segment>& segments, const history::Instant& at,
                 uint64_t* seq, int64_t* time_ns) {
  bool any = false;
  for (const history::Segment& s : segments) {
    if (s.header.kind == history::SegmentKind::kBase) {
      if (!at.Covers(s.header.last_seq, s.header.last_time_ns)) break;
      any = true;
      *seq = s.header.last_seq;
      *time_ns = s.header.last_time_ns;
      continue;
    }
    for (const history::Entry& e : s.entries) {
      if (!at.Covers(e.seq, e.time_ns)) return any;
      if (any && e.seq <= *seq) continue;  // already in a base or an earlier segment
      any = true;
      *seq = e.seq;
      *time_ns = e.time_ns;
    }
  }
  return any;
}

}  // namespace

StoreResult<history::SegmentHeader> ReadSegmentHeader(ObjectStore& store,
                                                      const history::SegmentRef& ref) {
  const uint64_t n = std::min(ref.size, kHeaderReadBytes);
  if (n == 0) return StoreStatus(Status::Error(EINVAL, "segment " + ref.key + ": empty"));
  auto got = store.Get(ref.key, ByteRange{0, n});
  if (!got.ok()) return got.status().WithContext("segment " + ref.key);
  auto header = history::DecodeSegmentHeader(got->body, ref.key);
  if (!header.ok()) return StoreStatus(header.status());
  if (header->id() != ref.id) {
    return StoreStatus(
        Status::Error(EINVAL, "segment " + ref.key + ": its header does not agree with its key"));
  }
  return *header;
}

StoreResult<HistoryCoverage> ReadCoverage(ObjectStore& store, const history::SegmentList& list) {
  HistoryCoverage c;
  if (list.bases.empty() && list.deltas.empty()) return c;
  c.any = true;
  // The oldest restorable state: the first delta's start, or an older base
  // (the deltas before it were pruned).
  const history::SegmentRef* first = nullptr;
  if (!list.deltas.empty()) first = &list.deltas.front();
  if (!list.bases.empty() && (!first || list.bases.front().id.last_seq < first->id.first_seq)) {
    first = &list.bases.front();
  }
  auto h = ReadSegmentHeader(store, *first);
  if (!h.ok()) return h.status();
  const bool base = first->id.kind == history::SegmentKind::kBase;
  c.first_seq = base ? h->last_seq : h->first_seq;
  c.first_time_ns = base ? h->last_time_ns : h->first_time_ns;
  const history::SegmentRef* last = nullptr;
  if (!list.deltas.empty()) last = &list.deltas.back();
  if (!list.bases.empty() && (!last || list.bases.back().id.last_seq > last->id.last_seq)) {
    last = &list.bases.back();
  }
  if (last != first) {
    h = ReadSegmentHeader(store, *last);
    if (!h.ok()) return h.status();
  }
  c.last_seq = h->last_seq;
  c.last_time_ns = h->last_time_ns;
  return c;
}

std::string DescribeCoverage(const HistoryCoverage& c) {
  if (!c.any) return "nothing";
  return "seqs " + std::to_string(c.first_seq) + ".." + std::to_string(c.last_seq) + ", " +
         FormatLocalTime(c.first_time_ns) + " .. " + FormatLocalTime(c.last_time_ns) +
         " (local time)";
}

Result<history::Instant> ParseAt(std::string_view text, int64_t now_ns) {
  auto parsed = ParseSeqOrTime(text, now_ns);
  if (!parsed.ok()) return parsed.status();
  if (parsed->kind == SeqOrTime::Kind::kSeq) {
    return history::Instant::AtSeq(static_cast<uint64_t>(parsed->value));
  }
  return history::Instant::AtTime(parsed->value);
}

std::string DescribeInstant(const history::Instant& at) {
  switch (at.kind) {
    case history::Instant::Kind::kSeq:
      return "seq " + std::to_string(at.seq);
    case history::Instant::Kind::kTime:
      return FormatLocalTime(at.time_ns) + " (local time)";
    case history::Instant::Kind::kLatest:
      break;
  }
  return "the latest state";
}

Result<std::unique_ptr<HistoryRestore>> LoadHistoryRestore(ObjectStore& store,
                                                           const history::Instant& at) {
  history::HistoryStore hs(store);
  auto list = hs.ListSegments();
  if (!list.ok()) return list.status().status().WithContext("listing the history");
  if (list->bases.empty() && list->deltas.empty()) return Status::Error(ENOENT, kNoHistoryMessage);
  auto coverage = ReadCoverage(store, *list);
  if (!coverage.ok()) return coverage.status().status();
  auto segments = hs.LoadTimeline(at);
  if (!segments.ok()) return segments.status().status();
  auto out = std::make_unique<HistoryRestore>();
  out->coverage = *coverage;
  if (!LastCovered(*segments, at, &out->seq, &out->time_ns)) {
    return Status::Error(ERANGE, DescribeInstant(at) +
                                     " is before the first stored state: the history covers " +
                                     DescribeCoverage(*coverage));
  }
  out->tree = history::Replay(*segments, at);
  out->source.tree = &out->tree;
  // One HistoryStore per call: an instance is used by one thread; the
  // ObjectStore is shared (it is thread-safe, as the Restorer's workers need).
  ObjectStore* s = &store;
  out->source.write_content = [s](const history::PathState& state, int fd) {
    history::HistoryStore reader(*s);
    return reader.RestoreFile(state, fd);
  };
  return out;
}

StoreResult<std::vector<history::Segment>> LoadAllSegments(ObjectStore& store,
                                                           const history::SegmentList& list,
                                                           std::vector<std::string>* holes) {
  // The refs in order: before each delta that does not follow the previous
  // one, the base that bridges the gap (its state is the tree at its
  // last_seq; the replayer skips the entries it already holds).
  std::vector<const history::SegmentRef*> order;
  std::optional<uint64_t> next;  // the first seq not yet accounted for
  auto bridge = [&](uint64_t upto) -> const history::SegmentRef* {
    const history::SegmentRef* best = nullptr;  // the newest base ending before `upto`
    for (const history::SegmentRef& b : list.bases)
      if (b.id.last_seq < upto && (!next || b.id.last_seq + 1 >= *next)) best = &b;
    return best;
  };
  for (const history::SegmentRef& d : list.deltas) {
    if (!next || d.id.first_seq > *next) {
      if (const history::SegmentRef* b = bridge(d.id.first_seq);
          b && b->id.last_seq + 1 >= d.id.first_seq) {
        order.push_back(b);
      } else if (next) {
        holes->push_back("seqs " + std::to_string(*next) + ".." +
                         std::to_string(d.id.first_seq - 1));
      }
    }
    order.push_back(&d);
    next = std::max(next.value_or(0), d.id.last_seq + 1);
  }
  // A base newer than every delta (their later deltas compacted away).
  if (!list.bases.empty() && (!next || list.bases.back().id.last_seq >= *next)) {
    order.push_back(&list.bases.back());
  }
  history::HistoryStore hs(store);
  std::vector<history::Segment> out;
  for (const history::SegmentRef* ref : order) {
    auto segment = hs.LoadSegment(*ref);
    if (!segment.ok()) return segment.status();
    out.push_back(std::move(segment).value());
  }
  return out;
}

StoreResult<CheckpointHeader> ReadCheckpointHeader(ObjectStore& store, const std::string& name) {
  const std::string key = CheckpointManifestKey(name);
  auto head = store.Head(key);
  if (!head.ok()) return head.status().WithContext("checkpoint \"" + name + "\"");
  const uint64_t n = std::min(head->size, kManifestHeaderReadBytes);
  if (n == 0) return StoreStatus(Status::Error(EINVAL, key + ": empty"));
  auto got = store.Get(key, ByteRange{0, n});
  if (!got.ok()) return got.status().WithContext("checkpoint \"" + name + "\"");
  // The manifest writes its header fields before "entries" (object_layout.cc
  // HeaderJson): that prefix, closed, is a JSON object of its own.
  constexpr std::string_view kEntries = "\"entries\":[";
  size_t at = got->body.find(kEntries);
  if (at == std::string::npos) {
    return StoreStatus(Status::Error(EINVAL, key + ": no header before its entries"));
  }
  auto j = nlohmann::json::parse(got->body.substr(0, at + kEntries.size()) + "]}", nullptr,
                                 /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("journal_seq") ||
      !j["journal_seq"].is_number_unsigned() || !j.contains("time_ns") ||
      !j["time_ns"].is_number_integer()) {
    return StoreStatus(Status::Error(EINVAL, key + ": unreadable header"));
  }
  CheckpointHeader h;
  h.seq = j["journal_seq"].get<uint64_t>();
  h.time_ns = j["time_ns"].get<int64_t>();
  return h;
}

Result<std::unique_ptr<HistoryRestore>> CheckpointFromHistory(ObjectStore& store,
                                                              const std::string& name) {
  history::HistoryStore hs(store);
  auto list = hs.ListSegments();
  if (!list.ok()) return list.status().status().WithContext("listing the history");
  if (list->bases.empty() && list->deltas.empty()) return std::unique_ptr<HistoryRestore>();
  auto header = ReadCheckpointHeader(store, name);
  // No manifest (or an unreadable one): the manifest path says what is wrong.
  if (!header.ok()) return std::unique_ptr<HistoryRestore>();
  auto coverage = ReadCoverage(store, *list);
  if (!coverage.ok()) return coverage.status().status();
  if (header->seq < coverage->first_seq || header->seq > coverage->last_seq) {
    return std::unique_ptr<HistoryRestore>();
  }
  return LoadHistoryRestore(store, history::Instant::AtSeq(header->seq));
}

}  // namespace scribefs::ctl
