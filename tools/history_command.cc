#include "tools/history_command.h"

#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "history/history_store.h"
#include "tools/human.h"
#include "tools/restore_at.h"
#include "tools/time_spec.h"
#include "uploader/checkpoint.h"
#include "uploader/digest.h"
#include "uploader/object_layout.h"

namespace scribefs::ctl {
namespace {

using Json = nlohmann::ordered_json;

const char* const kHistoryFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

Lists every stored version of PATH (relative to DATADIR), oldest first,
from the target's history alone (-m only says which target; --target
works without any local state): when it was stored (local time), the
journal seq, the change (put, delete, rename, base), the type, size and
permission bits, and the content: the SHA-256 of a file stored as one
chunk (files up to one part, 8 MiB by default), the number of chunks of a
larger one, the target of a symlink. A version with nothing in the
columns is the path's absence (deleted, or renamed away: CONTENT then
says where to). A path is its name: a file renamed away continues under
its new name ('scribectl history NEWNAME'). Any version can be brought
back with 'scribectl restore --at SEQ --path PATH --to DIR'.

With --json: {target, path, holes: ["seqs A..B"], versions: [{seq,
time_ns, time (ISO 8601 UTC), op, detail, present, type, size, mode,
uid, gid, mtime_ns, sha256, chunks, link_target}]} (fields that do not
apply are null).

Exit status: 0 ok; 1 no history in the target, no version of PATH, or the
target could not be read; 2 usage; 3 no state for -m.

Examples:
  scribectl -m /srv/data history docs/report.odt
  scribectl --json history --target s3://backups/srv docs/report.odt)";

const char* const kTimelineFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

Shows what 'scribectl restore --at' can restore from the target's history:
the covered range (times in local time, and journal seqs), the number of
stored changes, the base snapshots (seq and time; a restore replays from
the newest base before its instant), the timeline segments per level
(level 0 is written by the replicator, higher levels by compaction), the
checkpoints in the target (with their seq, and whether the history covers
it: then 'restore --checkpoint' uses the history), and the storage used
under .scribefs/ by chunks (file content, stored once per distinct
content) and by segments. Reads every segment's header (one ranged
request each) and lists the chunks.

With --json: {target, first_seq, last_seq, first_time_ns, first_time,
last_time_ns, last_time, entries, bases: [{seq, time_ns, time, entries}],
levels: [{level, segments, entries, bytes}], leftover_segments,
checkpoints: [{name, seq, time_ns, time, in_history}], usage:
{chunk_objects, chunk_bytes, segment_objects, segment_bytes}} (times are
ISO 8601 UTC).

Exit status: 0 ok; 1 no history in the target, or it could not be read;
2 usage; 3 no state for -m.

Examples:
  scribectl -m /srv/data timeline
  scribectl --json timeline --target file:///mnt/usb/replica)";

std::string Octal(uint32_t mode) {
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

// The SHA-256 of a file's whole content, when its chunks say it: one chunk
// is that, no chunk is an empty file; "" otherwise.
std::string WholeSha256(const history::PathState& s) {
  if (s.type != kTypeFile) return "";
  if (s.chunks.size() == 1) return s.chunks[0].sha256;
  if (s.chunks.empty()) return HexEncode(Sha256("").value());
  return "";
}

struct OpOfVersion {
  std::string op;
  std::string detail;  // where a rename went or came from, what deleted it
};

// Which change made `v`: the entry with its seq (a base when none).
OpOfVersion OpOf(const std::map<uint64_t, const history::Entry*>& by_seq, const history::Version& v,
                 const std::string& path) {
  auto it = by_seq.find(v.seq);
  if (it == by_seq.end()) return {"base", "state of a base snapshot"};
  const history::Entry& e = *it->second;
  OpOfVersion out{std::string(history::EntryOpName(e.op)), ""};
  auto rest = [&](const std::string& from) { return path.substr(from.size()); };
  if (e.op == history::EntryOp::kRename) {
    const bool arrived = path == e.new_path || path.starts_with(e.new_path + "/");
    if (arrived && v.state) {
      out.detail = "from " + e.path + rest(e.new_path);
    } else if (!arrived) {
      out.detail = "to " + e.new_path + rest(e.path);
    } else {
      out.detail = "replaced by the rename of " + e.path;
    }
  } else if (e.path != path) {
    out.detail = (e.op == history::EntryOp::kDelete ? "with " : "replaced by a put of ") + e.path;
  }
  return out;
}

Json VersionJson(const history::Version& v, const OpOfVersion& op) {
  Json j;
  j["seq"] = v.seq;
  j["time_ns"] = v.time_ns;
  j["time"] = FormatUtcIso(v.time_ns);
  j["op"] = op.op;
  j["detail"] = op.detail.empty() ? Json(nullptr) : Json(op.detail);
  j["present"] = v.state.has_value();
  const history::PathState* s = v.state ? &*v.state : nullptr;
  j["type"] = s ? Json(s->type) : Json(nullptr);
  j["size"] = s ? Json(s->size) : Json(nullptr);
  j["mode"] = s ? Json(s->mode) : Json(nullptr);
  j["uid"] = s ? Json(s->uid) : Json(nullptr);
  j["gid"] = s ? Json(s->gid) : Json(nullptr);
  j["mtime_ns"] = s ? Json(s->mtime_ns) : Json(nullptr);
  const std::string sha = s ? WholeSha256(*s) : "";
  j["sha256"] = sha.empty() ? Json(nullptr) : Json(sha);
  j["chunks"] = s && s->type == kTypeFile ? Json(s->chunks.size()) : Json(nullptr);
  j["link_target"] = s && s->type == kTypeSymlink ? Json(s->target) : Json(nullptr);
  return j;
}

std::string ContentColumn(const history::PathState& s) {
  if (s.type == kTypeSymlink) return "-> " + EscapeControl(s.target);
  if (s.type != kTypeFile) return "";
  if (std::string sha = WholeSha256(s); !sha.empty()) return "sha256 " + sha;
  return std::to_string(s.chunks.size()) + " chunks";
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

// The segments of the target (ENOENT-like failure when there are none).
std::optional<history::SegmentList> ListOrFail(ObjectStore& store, int* code) {
  history::HistoryStore hs(store);
  auto list = hs.ListSegments();
  if (!list.ok()) {
    *code = Fail(kExitFailure, "listing the history: " + list.status().message());
    return std::nullopt;
  }
  if (list->bases.empty() && list->deltas.empty()) {
    *code = Fail(kExitFailure, kNoHistoryMessage);
    return std::nullopt;
  }
  return std::move(list).value();
}

int RunHistory(const GlobalOptions& global, const HistoryCommands& c) {
  std::string path = c.path;
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (Status s = history::ValidatePath(path); !s.ok()) {
    return Fail(kExitUsage, "PATH \"" + EscapeControl(c.path) + "\": " + s.message());
  }
  int code = kExitOk;
  auto target = ResolveTargetOrFail(global, c.history_target, &code);
  if (!target) return code;
  auto list = ListOrFail(*target->store, &code);
  if (!list) return code;
  std::vector<std::string> holes;
  auto segments = LoadAllSegments(*target->store, *list, &holes);
  if (!segments.ok()) return Fail(kExitFailure, segments.status().message());
  std::map<uint64_t, const history::Entry*> by_seq;
  for (const history::Segment& s : *segments)
    if (s.header.kind == history::SegmentKind::kDelta)
      for (const history::Entry& e : s.entries) by_seq[e.seq] = &e;
  const std::vector<history::Version> versions = history::HistoryOf(*segments, path);
  for (const std::string& h : holes) Note("timeline hole: no segment holds " + h);
  if (global.json) {
    Json j;
    j["target"] = target->url;
    j["path"] = path;
    j["holes"] = holes;
    j["versions"] = Json::array();
    for (const auto& v : versions) j["versions"].push_back(VersionJson(v, OpOf(by_seq, v, path)));
    printf("%s\n", Dump(j).c_str());
  } else {
    printf("History of %s in %s\n", EscapeControl(path).c_str(), target->url.c_str());
    printf("%-23s  %10s  %-6s  %-7s  %9s  %-4s  %s\n", "TIME", "SEQ", "OP", "TYPE", "SIZE", "MODE",
           "CONTENT");
    for (const auto& v : versions) {
      const OpOfVersion op = OpOf(by_seq, v, path);
      const history::PathState* s = v.state ? &*v.state : nullptr;
      std::string content = s ? ContentColumn(*s) : "";
      if (!op.detail.empty()) content += (content.empty() ? "" : "  ") + EscapeControl(op.detail);
      printf("%-23s  %10llu  %-6s  %-7s  %9s  %-4s  %s\n", FormatLocalTime(v.time_ns).c_str(),
             static_cast<unsigned long long>(v.seq), op.op.c_str(), s ? s->type.c_str() : "-",
             s ? FormatBytes(s->size).c_str() : "-", s ? Octal(s->mode).c_str() : "-",
             content.c_str());
    }
  }
  if (int out = FinishOutput(); out != kExitOk) return out;
  if (versions.empty()) {
    return Fail(kExitFailure, "the history holds no version of " + EscapeControl(path));
  }
  return kExitOk;
}

struct LevelStats {
  uint64_t segments = 0, entries = 0, bytes = 0;
};

struct TimelineFacts {
  HistoryCoverage coverage;
  uint64_t entries = 0;
  std::vector<std::pair<history::SegmentRef, history::SegmentHeader>> bases;
  std::map<int, LevelStats> levels;
  std::vector<std::pair<StoredCheckpoint, std::optional<CheckpointHeader>>> checkpoints;
  history::HistoryUsage usage;
};

// Everything timeline shows, read from the target.
StoreResult<TimelineFacts> ReadTimeline(ObjectStore& store, const history::SegmentList& list) {
  TimelineFacts f;
  auto coverage = ReadCoverage(store, list);
  if (!coverage.ok()) return coverage.status();
  f.coverage = *coverage;
  for (const history::SegmentRef& ref : list.deltas) {
    auto h = ReadSegmentHeader(store, ref);
    if (!h.ok()) return h.status();
    LevelStats& l = f.levels[ref.id.level];
    l.segments++;
    l.entries += h->count;
    l.bytes += ref.size;
    f.entries += h->count;
  }
  for (const history::SegmentRef& ref : list.bases) {
    auto h = ReadSegmentHeader(store, ref);
    if (!h.ok()) return h.status();
    f.bases.emplace_back(ref, *h);
  }
  auto checkpoints = ListStoredCheckpoints(store);
  if (!checkpoints.ok()) return checkpoints.status();
  for (const StoredCheckpoint& cp : *checkpoints) {
    auto h = ReadCheckpointHeader(store, cp.name);
    f.checkpoints.emplace_back(cp, h.ok() ? std::optional<CheckpointHeader>(*h) : std::nullopt);
  }
  history::HistoryStore hs(store);
  auto usage = hs.Usage();
  if (!usage.ok()) return usage.status();
  f.usage = *usage;
  return f;
}

bool InHistory(const HistoryCoverage& c, const std::optional<CheckpointHeader>& h) {
  return h && h->seq >= c.first_seq && h->seq <= c.last_seq;
}

void PrintTimelineJson(const std::string& url, const TimelineFacts& f, uint64_t leftovers) {
  Json j;
  j["target"] = url;
  j["first_seq"] = f.coverage.first_seq;
  j["last_seq"] = f.coverage.last_seq;
  j["first_time_ns"] = f.coverage.first_time_ns;
  j["first_time"] = FormatUtcIso(f.coverage.first_time_ns);
  j["last_time_ns"] = f.coverage.last_time_ns;
  j["last_time"] = FormatUtcIso(f.coverage.last_time_ns);
  j["entries"] = f.entries;
  j["bases"] = Json::array();
  for (const auto& [ref, h] : f.bases) {
    j["bases"].push_back({{"seq", h.last_seq},
                          {"time_ns", h.last_time_ns},
                          {"time", FormatUtcIso(h.last_time_ns)},
                          {"entries", h.count}});
  }
  j["levels"] = Json::array();
  for (const auto& [level, l] : f.levels) {
    j["levels"].push_back(
        {{"level", level}, {"segments", l.segments}, {"entries", l.entries}, {"bytes", l.bytes}});
  }
  j["leftover_segments"] = leftovers;
  j["checkpoints"] = Json::array();
  for (const auto& [cp, h] : f.checkpoints) {
    j["checkpoints"].push_back({{"name", cp.name},
                                {"seq", h ? Json(h->seq) : Json(nullptr)},
                                {"time_ns", h ? Json(h->time_ns) : Json(nullptr)},
                                {"time", h ? Json(FormatUtcIso(h->time_ns)) : Json(nullptr)},
                                {"in_history", InHistory(f.coverage, h)}});
  }
  j["usage"] = {{"chunk_objects", f.usage.chunk_objects},
                {"chunk_bytes", f.usage.chunk_bytes},
                {"segment_objects", f.usage.segment_objects},
                {"segment_bytes", f.usage.segment_bytes}};
  printf("%s\n", Dump(j).c_str());
}

void PrintTimelineText(const std::string& url, const TimelineFacts& f, uint64_t leftovers) {
  const HistoryCoverage& c = f.coverage;
  printf("Target:       %s\n", url.c_str());
  printf("Restorable:   %s .. %s (local time)\n", FormatLocalTime(c.first_time_ns).c_str(),
         FormatLocalTime(c.last_time_ns).c_str());
  printf("Seqs:         %llu .. %llu\n", static_cast<unsigned long long>(c.first_seq),
         static_cast<unsigned long long>(c.last_seq));
  printf("Changes:      %llu stored\n", static_cast<unsigned long long>(f.entries));
  printf("Bases:        %s\n", f.bases.empty() ? "none" : "");
  for (const auto& [ref, h] : f.bases) {
    printf("  seq %llu  %s  %llu paths\n", static_cast<unsigned long long>(h.last_seq),
           FormatLocalTime(h.last_time_ns).c_str(), static_cast<unsigned long long>(h.count));
  }
  printf("Segments:\n");
  for (const auto& [level, l] : f.levels) {
    printf("  level %d: %llu segments, %llu changes, %s\n", level,
           static_cast<unsigned long long>(l.segments), static_cast<unsigned long long>(l.entries),
           FormatBytes(l.bytes).c_str());
  }
  if (leftovers) {
    printf("  %llu left over by compaction (covered by a higher level)\n",
           static_cast<unsigned long long>(leftovers));
  }
  printf("Checkpoints:  %s\n", f.checkpoints.empty() ? "none in the target" : "");
  for (const auto& [cp, h] : f.checkpoints) {
    if (!h) {
      printf("  %s  (manifest unreadable)\n", cp.name.c_str());
      continue;
    }
    printf("  %s  seq %llu  %s  %s\n", cp.name.c_str(), static_cast<unsigned long long>(h->seq),
           FormatLocalTime(h->time_ns).c_str(),
           InHistory(c, h) ? "in the history" : "manifest only (outside the history)");
  }
  printf("Storage:      chunks %llu objects, %s; segments %llu objects, %s; total %s\n",
         static_cast<unsigned long long>(f.usage.chunk_objects),
         FormatBytes(f.usage.chunk_bytes).c_str(),
         static_cast<unsigned long long>(f.usage.segment_objects),
         FormatBytes(f.usage.segment_bytes).c_str(),
         FormatBytes(f.usage.chunk_bytes + f.usage.segment_bytes).c_str());
}

int RunTimeline(const GlobalOptions& global, const HistoryCommands& c) {
  int code = kExitOk;
  auto target = ResolveTargetOrFail(global, c.timeline_target, &code);
  if (!target) return code;
  auto list = ListOrFail(*target->store, &code);
  if (!list) return code;
  auto facts = ReadTimeline(*target->store, *list);
  if (!facts.ok()) return Fail(kExitFailure, "timeline: " + facts.status().message());
  if (global.json) {
    PrintTimelineJson(target->url, *facts, list->covered.size());
  } else {
    PrintTimelineText(target->url, *facts, list->covered.size());
  }
  return FinishOutput();
}

}  // namespace

void AddHistoryCommands(CLI::App* app, HistoryCommands* c) {
  c->history = app->add_subcommand(
      "history", "List the stored versions of one path (from the target's history).");
  c->history->add_option("PATH", c->path, "A path relative to DATADIR (a file or directory).")
      ->required();
  AddTargetOptions(c->history, &c->history_target);
  c->history->footer(kHistoryFooter);
  c->timeline = app->add_subcommand(
      "timeline", "Show what the target's history can restore: range, bases, checkpoints, size.");
  AddTargetOptions(c->timeline, &c->timeline_target);
  c->timeline->footer(kTimelineFooter);
}

std::optional<int> RunHistoryCommands(const GlobalOptions& global, const HistoryCommands& c) {
  if (c.history && c.history->parsed()) return RunHistory(global, c);
  if (c.timeline && c.timeline->parsed()) return RunTimeline(global, c);
  return std::nullopt;
}

}  // namespace scribefs::ctl
