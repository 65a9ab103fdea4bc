#include "history/history_store.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <tuple>

#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs::history {
namespace {

// Enough of a segment to hold its header line: a zstd frame header (at most
// 18 bytes) and the first block (at most 128 KiB + 3 bytes compressed).
constexpr uint64_t kHeaderReadBytes = 256 << 10;

StoreStatus Corrupt(const std::string& message) { return Status::Error(EIO, message); }

// The wall clock, as the target's Last-Modified counts.
int64_t RealTimeNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Reads exactly `len` bytes at `off`; EAGAIN when the file got shorter.
// (A file range, or a source: a frozen file at a checkpoint mark.)
StoreStatus ReadFully(const Payload& content, uint64_t off, uint64_t len, std::string* out) {
  out->resize(len);
  for (uint64_t done = 0; done < len;) {
    auto n = content.ReadAt(out->data() + done, len - done, off + done);
    if (!n.ok()) return n.status().WithContext("read for chunking");
    if (*n == 0) return StoreStatus(Status::Error(EAGAIN, "the file shrank while it was chunked"));
    done += *n;
  }
  return StoreStatus();
}

Status WriteFully(int fd, uint64_t off, std::string_view data) {
  for (size_t done = 0; done < data.size();) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PosixError("write restored file", errno);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Moves each delta whose seq range lies within one of a higher level from
// `deltas` to `covered`.
void SplitCovered(std::vector<SegmentRef>& deltas, std::vector<SegmentRef>* covered) {
  // Per level: (first_seq, the greatest last_seq among segments starting at or before it).
  std::vector<std::vector<std::pair<uint64_t, uint64_t>>> reach(kMaxLevel + 1);
  for (const SegmentRef& r : deltas) reach[r.id.level].emplace_back(r.id.first_seq, r.id.last_seq);
  for (auto& level : reach) {
    std::sort(level.begin(), level.end());
    for (size_t i = 1; i < level.size(); ++i) {
      level[i].second = std::max(level[i].second, level[i - 1].second);
    }
  }
  auto is_covered = [&](const SegmentRef& r) {
    for (int l = r.id.level + 1; l <= kMaxLevel; ++l) {
      const auto& v = reach[l];
      auto it = std::upper_bound(v.begin(), v.end(), std::make_pair(r.id.first_seq, UINT64_MAX));
      if (it != v.begin() && std::prev(it)->second >= r.id.last_seq) return true;
    }
    return false;
  };
  std::vector<SegmentRef> kept;
  for (SegmentRef& r : deltas) (is_covered(r) ? *covered : kept).push_back(std::move(r));
  deltas = std::move(kept);
}

}  // namespace

HistoryStore::HistoryStore(ObjectStore& store, HistoryOptions options)
    : store_(store), options_(options) {}

bool ChunkNeedsRefresh(int64_t last_modified_s, int64_t now_ns, int64_t grace_ns) {
  if (last_modified_s <= 0) return true;  // unknown age: as if old
  const int64_t age_ns = now_ns - last_modified_s * 1'000'000'000;
  // Last-Modified is truncated to the second: an object stored 0.9 s ago may
  // look 1.9 s old, never younger than it is.
  return age_ns > grace_ns / 2;
}

std::chrono::nanoseconds KnownChunkTtl(int64_t grace_ns) {
  return std::chrono::nanoseconds(std::max<int64_t>(grace_ns, 0) / 4);
}

bool KnownChunks::Contains(const std::string& sha256, Clock::time_point now) const {
  std::lock_guard lk(mu_);
  auto it = expires_.find(sha256);
  return it != expires_.end() && now < it->second;
}

void KnownChunks::Insert(const std::string& sha256, Clock::time_point now) {
  const Clock::time_point expires =
      ttl_ >= Clock::time_point::max() - now ? Clock::time_point::max() : now + ttl_;
  std::lock_guard lk(mu_);
  expires_[sha256] = expires;
  // Now and then, drop what expired (the set would otherwise only grow).
  if (++inserts_ % 4096 == 0)
    std::erase_if(expires_, [&](const auto& e) { return e.second <= now; });
}

void KnownChunks::Clear() {
  std::lock_guard lk(mu_);
  expires_.clear();
}

size_t KnownChunks::size() const {
  std::lock_guard lk(mu_);
  return expires_.size();
}

StoreResult<HistoryStore::ChunkCheck> HistoryStore::CheckChunk(const std::string& sha256,
                                                               uint64_t size) {
  auto head = store_.Head(ChunkKey(sha256));
  if (head.ok()) {
    if (head->size != size) return ChunkCheck::kMissing;  // a damaged chunk: store it again
    return ChunkNeedsRefresh(head->mtime, RealTimeNs(), options_.prune_grace_ns)
               ? ChunkCheck::kStale
               : ChunkCheck::kStored;
  }
  if (head.status().not_found()) return ChunkCheck::kMissing;
  return head.status().WithContext("chunk " + ChunkKey(sha256));
}

namespace {
bool KnownContains(const std::set<std::string>& s, const std::string& k) { return s.contains(k); }
void KnownInsert(std::set<std::string>& s, const std::string& k) { s.insert(k); }
bool KnownContains(const KnownChunks& s, const std::string& k) { return s.Contains(k); }
void KnownInsert(KnownChunks& s, const std::string& k) { s.Insert(k); }
}  // namespace

StoreResult<std::vector<ChunkRef>> HistoryStore::PutChunks(int fd, uint64_t size,
                                                           std::set<std::string>* known) {
  return PutChunksImpl(Payload::FromFile(fd, 0, size), known);
}

StoreResult<std::vector<ChunkRef>> HistoryStore::PutChunks(int fd, uint64_t size,
                                                           KnownChunks* known) {
  return PutChunksImpl(Payload::FromFile(fd, 0, size), known);
}

StoreResult<std::vector<ChunkRef>> HistoryStore::PutChunks(const Payload& content,
                                                           KnownChunks* known) {
  return PutChunksImpl(content, known);
}

template <typename Known>
StoreResult<std::vector<ChunkRef>> HistoryStore::PutChunksImpl(const Payload& content,
                                                               Known* known) {
  const uint64_t size = content.size();
  std::vector<ChunkRef> chunks;
  std::string buf;
  for (uint64_t off = 0; off < size; off += options_.part_size) {
    const uint64_t len = std::min(options_.part_size, size - off);
    // The bytes hashed are the bytes stored: read once, hash, send from memory.
    SCRIBEFS_RETURN_IF_STORE_ERROR(ReadFully(content, off, len, &buf));
    auto digest = Sha256(buf);
    if (!digest.ok()) return digest.status();
    ChunkRef ref{HexEncode(*digest), len};
    ChunkCheck check = ChunkCheck::kStored;
    if (!known || !KnownContains(*known, ref.sha256)) {
      auto st = CheckChunk(ref.sha256, len);
      if (!st.ok()) return st.status();
      check = *st;
    }
    if (check == ChunkCheck::kStored) {
      ++counters_.chunks_already_stored;
    } else {
      // Missing, or stored long ago: the same bytes again make it young, so
      // that a prune does not delete it before the entry that references it
      // is in a segment.
      const std::string key = ChunkKey(ref.sha256);
      auto put = store_.Put(key, Payload::FromMemory(buf), {});
      if (!put.ok()) return put.status().WithContext("chunk " + key);
      ++(check == ChunkCheck::kStale ? counters_.chunks_refreshed : counters_.chunks_uploaded);
      counters_.chunk_bytes_uploaded += len;
    }
    if (known) KnownInsert(*known, ref.sha256);
    chunks.push_back(std::move(ref));
  }
  return chunks;
}

StoreResult<SegmentRef> HistoryStore::AppendSegment(const Segment& segment) {
  auto bytes = EncodeSegment(segment);
  if (!bytes.ok()) return bytes.status();
  SegmentRef ref{segment.header.id(), SegmentKey(segment.header.id()), bytes->size()};
  auto existing = store_.Get(ref.key);
  if (existing.ok()) {
    if (existing->body == *bytes) return ref;  // a retry of a write that landed
    return StoreStatus(
        Status::Error(EEXIST, "segment " + ref.key + " exists with other content (two writers?)"));
  }
  if (!existing.status().not_found()) return existing.status().WithContext("segment " + ref.key);
  auto put = store_.Put(ref.key, Payload::FromMemory(*bytes), {});
  if (!put.ok()) return put.status().WithContext("segment " + ref.key);
  ++counters_.segments_written;
  counters_.segment_bytes_written += bytes->size();
  return ref;
}

StoreResult<SegmentList> HistoryStore::ListSegments() {
  SegmentList list;
  std::vector<SegmentRef> deltas;
  ListOptions lo;
  lo.prefix = std::string(kTimelineKeyPrefix);
  StoreStatus st = store_.List(lo, [&](const ListEntry& e) {
    if (e.is_prefix) return true;
    auto id = ParseSegmentKey(e.key);
    if (!id.ok()) return true;  // not a segment of ours
    SegmentRef ref{*id, e.key, e.size};
    (id->kind == SegmentKind::kBase ? list.bases : deltas).push_back(std::move(ref));
    return true;
  });
  if (!st.ok()) return st.WithContext("list timeline");
  auto by_seq = [](const SegmentRef& a, const SegmentRef& b) {
    return std::tie(a.id.first_seq, a.id.last_seq, a.id.level) <
           std::tie(b.id.first_seq, b.id.last_seq, b.id.level);
  };
  std::sort(list.bases.begin(), list.bases.end(), [](const SegmentRef& a, const SegmentRef& b) {
    return std::tie(a.id.last_seq, a.id.first_seq) < std::tie(b.id.last_seq, b.id.first_seq);
  });
  SplitCovered(deltas, &list.covered);
  list.deltas = std::move(deltas);
  std::sort(list.deltas.begin(), list.deltas.end(), by_seq);
  return list;
}

StoreResult<Segment> HistoryStore::LoadSegment(const SegmentRef& ref) {
  if (ref.size > options_.max_segment_object) {
    return Corrupt("segment " + ref.key + ": " + std::to_string(ref.size) +
                   " bytes, more than the limit of " + std::to_string(options_.max_segment_object));
  }
  auto got = store_.Get(ref.key);
  if (!got.ok()) return got.status().WithContext("segment " + ref.key);
  if (got->body.size() > options_.max_segment_object) {
    return Corrupt("segment " + ref.key + ": larger than the limit");
  }
  auto segment = DecodeSegment(got->body, ref.key, options_.limits);
  if (!segment.ok()) return segment.status();
  if (!(segment->header.id() == ref.id)) {
    return StoreStatus(
        Status::Error(EINVAL, "segment " + ref.key + ": its header does not match its key"));
  }
  return std::move(segment).value();
}

StoreResult<SegmentHeader> HistoryStore::LoadSegmentHeader(const SegmentRef& ref) {
  const uint64_t n = std::min(ref.size, kHeaderReadBytes);
  if (n == 0) return Corrupt("segment " + ref.key + ": empty");
  auto got = store_.Get(ref.key, ByteRange{0, n});
  if (!got.ok()) return got.status().WithContext("segment " + ref.key);
  auto header = DecodeSegmentHeader(got->body, ref.key, options_.limits);
  if (!header.ok()) return header.status();
  return std::move(header).value();
}

StoreResult<std::optional<SegmentRef>> HistoryStore::ChooseBase(const SegmentList& list,
                                                                const Instant& at) {
  for (auto it = list.bases.rbegin(); it != list.bases.rend(); ++it) {
    if (at.kind == Instant::Kind::kLatest) return std::optional<SegmentRef>(*it);
    if (at.kind == Instant::Kind::kSeq) {
      if (it->id.last_seq <= at.seq) return std::optional<SegmentRef>(*it);
      continue;
    }
    // A time: the base's header says when its instant was (a ranged read).
    auto header = LoadSegmentHeader(*it);
    if (!header.ok()) return header.status();
    if (header->last_time_ns <= at.time_ns) return std::optional<SegmentRef>(*it);
  }
  return std::optional<SegmentRef>();
}

StoreResult<std::vector<Segment>> HistoryStore::LoadTimeline(const Instant& at) {
  std::vector<Segment> out;
  StoreStatus s = ForEachTimelineSegment(
      at, [&] { out.clear(); }, [&](Segment&& segment) { out.push_back(std::move(segment)); });
  if (!s.ok()) return s;
  return out;
}

StoreStatus HistoryStore::ForEachTimelineSegment(const Instant& at,
                                                 const std::function<void()>& restart,
                                                 const std::function<void(Segment&&)>& visit) {
  // Compaction and prune write what replaces a segment before deleting it,
  // so a new List finds the replacement. A List that runs while they do may
  // also miss both the replacement (written after the listing passed its
  // place) and the inputs (deleted before it reached them): a hole that the
  // next List does not have (ENODATA; a real hole or a pruned instant is
  // listed again a few times, which costs a few LISTs).
  for (int attempt = 1;; ++attempt) {
    restart();
    StoreStatus s = VisitTimelineOnce(at, visit);
    if (s.ok() || attempt == 5) return s;
    if (!s.not_found() && s.code() != ENODATA) return s;
  }
}

StoreStatus HistoryStore::VisitTimelineOnce(const Instant& at,
                                            const std::function<void(Segment&&)>& visit) {
  auto list = ListSegments();
  if (!list.ok()) return list.status();
  auto base = ChooseBase(*list, at);
  if (!base.ok()) return base.status();
  // An instant before the oldest base, when no delta reaches back before it:
  // what came before was pruned (or was never stored), and an empty tree
  // would be a wrong answer, not "no history".
  if (!*base && !list->bases.empty()) {
    const SegmentRef& oldest = list->bases.front();
    if (list->deltas.empty() || list->deltas.front().id.first_seq > oldest.id.last_seq) {
      return StoreStatus(Status::Error(
          ENODATA, "no history before seq " + std::to_string(oldest.id.last_seq) +
                       " (the oldest base, " + oldest.key + "): pruned or never stored"));
    }
  }
  if (*base) {
    auto segment = LoadSegment(**base);
    if (!segment.ok()) return segment.status();
    visit(std::move(segment).value());
  }
  // The next seq the timeline must account for (none before the first segment).
  std::optional<uint64_t> next;
  if (*base) next = (*base)->id.last_seq + 1;
  for (const SegmentRef& ref : list->deltas) {
    if (*base && ref.id.last_seq <= (*base)->id.last_seq) continue;  // in the base
    // A hole the instant reaches into fails, also when it ends before the
    // next segment: the tree at a seq inside it is unknown, and the tree
    // before the hole would be a wrong answer.
    const bool reaches = at.kind != Instant::Kind::kSeq || at.seq >= next.value_or(0);
    if (next && ref.id.first_seq > *next && reaches) {
      return StoreStatus(Status::Error(
          ENODATA, "timeline hole: no segment holds seqs " + std::to_string(*next) + ".." +
                       std::to_string(ref.id.first_seq - 1) + " (before " + ref.key + ")"));
    }
    if (at.kind == Instant::Kind::kSeq && ref.id.first_seq > at.seq) break;
    next = std::max(next.value_or(0), ref.id.last_seq + 1);
    auto segment = LoadSegment(ref);
    if (!segment.ok()) return segment.status();
    const bool past = at.kind == Instant::Kind::kTime && segment->header.count > 0 &&
                      segment->header.last_time_ns > at.time_ns;
    visit(std::move(segment).value());
    if (past) break;  // it holds the first entry after the instant
  }
  return StoreStatus();
}

StoreStatus HistoryStore::RestoreFile(const PathState& state, int fd) {
  if (state.type != kTypeFile) {
    return Status::Error(EINVAL, "RestoreFile: a " + state.type + " has no content");
  }
  uint64_t off = 0;
  for (const ChunkRef& c : state.chunks) {
    const std::string key = ChunkKey(c.sha256);
    auto got = store_.Get(key);
    if (!got.ok()) return got.status().WithContext("chunk " + key);
    if (got->body.size() != c.size) {
      return Corrupt("chunk " + key + " is damaged: " + std::to_string(got->body.size()) +
                     " bytes, expected " + std::to_string(c.size));
    }
    auto digest = Sha256(got->body);
    if (!digest.ok()) return digest.status();
    if (HexEncode(*digest) != c.sha256) {
      return Corrupt("chunk " + key + " is damaged: its content has SHA-256 " + HexEncode(*digest));
    }
    SCRIBEFS_RETURN_IF_ERROR(WriteFully(fd, off, got->body));
    off += c.size;
  }
  if (ftruncate(fd, static_cast<off_t>(state.size)) != 0) {
    return PosixError("truncate restored file", errno);
  }
  return StoreStatus();
}

StoreStatus HistoryStore::FlushGroup(std::vector<Segment>& group, std::vector<std::string>& keys,
                                     int level, const CompactOptions& options,
                                     CompactResult* result) {
  if (group.size() >= 2) {
    auto ref = AppendSegment(MergeSegments(group, level + 1));
    if (!ref.ok()) return ref.status().WithContext("compact level " + std::to_string(level));
    ++result->segments_written;
    // Only after the merged segment is stored: a crash before these deletes
    // leaves both, and ListSegments hides the inputs.
    if (options.delete_inputs) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(store_.DeleteMany(keys));
      result->segments_deleted += keys.size();
    }
  }
  group.clear();
  keys.clear();
  return StoreStatus();
}

StoreResult<CompactResult> HistoryStore::Compact(int level, const CompactOptions& options) {
  if (level < 0 || level >= kMaxLevel) {
    return StoreStatus(Status::Error(EINVAL, "compact: no level above " + std::to_string(level)));
  }
  auto list = ListSegments();
  if (!list.ok()) return list.status();
  CompactResult result;
  std::vector<Segment> group;
  std::vector<std::string> keys;
  uint64_t entries = 0;
  for (const SegmentRef& ref : list->deltas) {
    if (ref.id.level != level) {  // a run ends where another level comes between
      SCRIBEFS_RETURN_IF_STORE_ERROR(FlushGroup(group, keys, level, options, &result));
      entries = 0;
      continue;
    }
    // A run also ends at a seq gap (a prune deleted what was between): a
    // merged segment would claim the missing seqs and hide the hole.
    if (!group.empty() && ref.id.first_seq > group.back().header.last_seq + 1) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(FlushGroup(group, keys, level, options, &result));
      entries = 0;
    }
    auto segment = LoadSegment(ref);
    if (!segment.ok()) return segment.status();
    ++result.segments_read;
    if (!group.empty() && entries + segment->header.count > options.max_entries) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(FlushGroup(group, keys, level, options, &result));
      entries = 0;
    }
    entries += segment->header.count;
    group.push_back(std::move(segment).value());
    keys.push_back(ref.key);
  }
  SCRIBEFS_RETURN_IF_STORE_ERROR(FlushGroup(group, keys, level, options, &result));
  if (options.delete_inputs) {
    std::vector<std::string> leftovers;
    for (const SegmentRef& ref : list->covered) {
      if (ref.id.level == level) leftovers.push_back(ref.key);
    }
    if (!leftovers.empty()) {
      SCRIBEFS_RETURN_IF_STORE_ERROR(store_.DeleteMany(leftovers));
      result.segments_deleted += leftovers.size();
    }
  }
  return result;
}

StoreStatus HistoryStore::ListChunks(const std::function<bool(const ChunkInfo&)>& fn) {
  ListOptions lo;
  lo.prefix = std::string(kChunkKeyPrefix);
  StoreStatus st = store_.List(lo, [&](const ListEntry& e) {
    if (e.is_prefix) return true;
    auto sha = ParseChunkKey(e.key);
    if (!sha.ok()) return true;  // not a chunk of ours
    return fn(ChunkInfo{std::move(sha).value(), e.size, e.mtime});
  });
  return st.ok() ? st : st.WithContext("list chunks");
}

StoreStatus HistoryStore::DeleteChunks(const std::vector<std::string>& sha256s) {
  std::vector<std::string> keys;
  keys.reserve(sha256s.size());
  for (const std::string& s : sha256s) {
    if (!IsSha256Hex(s)) return Status::Error(EINVAL, "not a chunk name: " + s);
    keys.push_back(ChunkKey(s));
  }
  if (keys.empty()) return StoreStatus();
  StoreStatus st = store_.DeleteMany(keys);
  return st.ok() ? st : st.WithContext("delete chunks");
}

StoreStatus HistoryStore::DeleteSegments(const std::vector<SegmentRef>& refs) {
  std::vector<std::string> keys;
  keys.reserve(refs.size());
  for (const SegmentRef& r : refs) keys.push_back(SegmentKey(r.id));
  if (keys.empty()) return StoreStatus();
  StoreStatus st = store_.DeleteMany(keys);
  return st.ok() ? st : st.WithContext("delete segments");
}

StoreResult<HistoryUsage> HistoryStore::Usage() {
  HistoryUsage usage;
  ListOptions lo;
  lo.prefix = std::string(kChunkKeyPrefix);
  SCRIBEFS_RETURN_IF_STORE_ERROR(store_.List(lo, [&](const ListEntry& e) {
    if (!e.is_prefix && ParseChunkKey(e.key).ok()) {
      ++usage.chunk_objects;
      usage.chunk_bytes += e.size;
    }
    return true;
  }));
  lo.prefix = std::string(kTimelineKeyPrefix);
  SCRIBEFS_RETURN_IF_STORE_ERROR(store_.List(lo, [&](const ListEntry& e) {
    if (!e.is_prefix && ParseSegmentKey(e.key).ok()) {
      ++usage.segment_objects;
      usage.segment_bytes += e.size;
    }
    return true;
  }));
  return usage;
}

Segment MergeSegments(const std::vector<Segment>& run, int level) {
  std::vector<Entry> entries;
  for (const Segment& s : run) {
    for (const Entry& e : s.entries) {
      // Overlapping inputs (never written by scribefs) keep the first copy.
      if (entries.empty() || e.seq > entries.back().seq) entries.push_back(e);
    }
  }
  uint64_t first = run.empty() ? 0 : run.front().header.first_seq;
  uint64_t last = run.empty() ? 0 : run.back().header.last_seq;
  for (const Segment& s : run) {
    first = std::min(first, s.header.first_seq);
    last = std::max(last, s.header.last_seq);
  }
  return MakeDelta(std::move(entries), level, first, last);
}

}  // namespace scribefs::history
