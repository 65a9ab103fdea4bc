#include "tools/prune_command.h"

#include <sys/stat.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "history/compact.h"
#include "history/prune.h"
#include "tools/human.h"
#include "tools/time_spec.h"
#include "uploader/store_factory.h"

namespace scribefs::ctl {
namespace {

using Json = nlohmann::ordered_json;

const char* const kPruneFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

What is kept:
  - every state stored within --retention of now (any instant in the
    window can be restored with 'restore --at');
  - older, the states --keep-hourly, --keep-daily and --keep-checkpoints
    choose (restic's rules: the last state of each of the last N hours or
    local calendar days that have one; the state of each of the N newest
    checkpoints), and the state at the window's start.
Each kept older point is written as a base segment (the whole tree at that
instant) before anything is deleted; then the timeline segments no kept
point needs are deleted, and the chunks that no remaining segment references
and that are older than --prune-grace. Instants between kept older points
fail to restore with "timeline hole" rather than give a wrong tree.

Safe to interrupt (Ctrl-C, kill -9, a crash): every retained point stays
restorable, and the next prune finishes the job. Safe while the daemon
uploads: a chunk stored for a change not yet in a timeline segment is
younger than the grace period (keep --prune-grace well above the time a
segment takes to be written; the default, 1h, is).

With --json, prints one object: dry_run, target, now_ns, policy
{retention_s, keep_hourly, keep_daily, keep_checkpoints, grace_s},
cutoff_ns, window_start ({seq, time_ns} or null), points ([{seq,
time_ns, time, reasons}]: the kept points at or before the window's
start), states, checkpoints, bases_written ([keys]), sentinels_written,
segments_deleted ([keys]), segment_bytes_deleted, segments_kept,
segment_bytes_kept, chunks_deleted, chunk_bytes_deleted, chunks_kept,
chunk_bytes_kept, chunks_in_grace, chunk_bytes_in_grace.

With --compact, first merges the timeline's small segments into larger ones
in levels (what the daemon does every --compact-interval: 12 level-0
segments make one of level 1, 60 of those one of level 2, 24 of those one
of level 3) and writes a base (the whole tree at the newest stored change)
when the newest one is older than --base-interval, so that a restore reads a
few segments. The merged segment is written before its inputs are deleted:
interrupted, the next run finishes the job. --json adds compaction
{segments_before, segments_after, segments_read, segments_written,
segments_deleted, leftovers_deleted, base_written (key or null)}; with
--dry-run, compaction {groups, segments} (what would be merged).

Exit status: 0 done (or nothing to do), 1 failed (nothing retained was
harmed; run it again), 2 usage, 3 no scribefs state for -m.

Examples:
  scribectl -m /data prune --dry-run
  scribectl -m /data prune --retention 2d --keep-daily 30 --keep-checkpoints 10
  scribectl prune --target s3://bucket/backup --endpoint https://s3.example --retention 7d)";

Json ToJson(const history::PruneReport& r, const history::PruneOptions& o,
            const std::string& target) {
  Json j;
  j["dry_run"] = r.dry_run;
  j["target"] = target;
  j["now_ns"] = r.now_ns;
  j["policy"] = {{"retention_s", static_cast<double>(o.policy.retention_ns) / 1e9},
                 {"keep_hourly", o.policy.keep_hourly},
                 {"keep_daily", o.policy.keep_daily},
                 {"keep_checkpoints", o.policy.keep_checkpoints},
                 {"grace_s", static_cast<double>(o.grace_ns) / 1e9}};
  j["cutoff_ns"] = r.decision.cutoff_ns;
  j["window_start"] = r.decision.window_start ? Json{{"seq", r.decision.window_start->seq},
                                                     {"time_ns", r.decision.window_start->time_ns}}
                                              : Json(nullptr);
  Json points = Json::array();
  for (const history::KeptPoint& k : r.decision.older) {
    points.push_back({{"seq", k.state.seq},
                      {"time_ns", k.state.time_ns},
                      {"time", FormatUtcIso(k.state.time_ns)},
                      {"reasons", k.reasons}});
  }
  j["points"] = std::move(points);
  j["states"] = r.states;
  j["checkpoints"] = r.checkpoints;
  Json bases = Json::array();
  for (const history::SegmentRef& b : r.bases_written) bases.push_back(b.key);
  j["bases_written"] = std::move(bases);
  j["sentinels_written"] = r.sentinels_written;
  Json deleted = Json::array();
  for (const history::SegmentRef& s : r.segments_deleted) deleted.push_back(s.key);
  j["segments_deleted"] = std::move(deleted);
  j["segment_bytes_deleted"] = r.segment_bytes_deleted;
  j["segments_kept"] = r.segments_kept;
  j["segment_bytes_kept"] = r.segment_bytes_kept;
  j["chunks_deleted"] = r.chunks_deleted;
  j["chunk_bytes_deleted"] = r.chunk_bytes_deleted;
  j["chunks_kept"] = r.chunks_kept;
  j["chunk_bytes_kept"] = r.chunk_bytes_kept;
  j["chunks_in_grace"] = r.chunks_in_grace;
  j["chunk_bytes_in_grace"] = r.chunk_bytes_in_grace;
  return j;
}

void PrintHuman(const history::PruneReport& r, const history::PruneOptions& o,
                const std::string& target) {
  printf("Target:    %s\n", EscapeControl(target).c_str());
  printf("Policy:    retention %s, keep hourly %d, daily %d, checkpoints %d; grace %s\n",
         history::FormatRetentionDuration(o.policy.retention_ns).c_str(), o.policy.keep_hourly,
         o.policy.keep_daily, o.policy.keep_checkpoints,
         history::FormatRetentionDuration(o.grace_ns).c_str());
  printf("Window:    every state since %s is kept\n",
         FormatLocalTime(r.decision.cutoff_ns).c_str());
  if (!r.decision.window_start) {
    printf("           (%llu stored states, none older: no segment to delete)\n",
           static_cast<unsigned long long>(r.states));
  } else {
    printf("Kept older points (%zu):\n", r.decision.older.size());
    printf("  %-12s %-23s %s\n", "SEQ", "TIME", "WHY");
    for (const history::KeptPoint& k : r.decision.older) {
      std::string why;
      for (const std::string& s : k.reasons) why += (why.empty() ? "" : ", ") + s;
      printf("  %-12llu %-23s %s\n", static_cast<unsigned long long>(k.state.seq),
             FormatLocalTime(k.state.time_ns).c_str(), EscapeControl(why).c_str());
    }
  }
  for (const std::string& name : r.decision.checkpoints_without_state) {
    printf("Note:      checkpoint %s is older than the history: no state to keep for it\n",
           EscapeControl(name).c_str());
  }
  const char* verb = r.dry_run ? "Would delete:" : "Deleted:   ";
  printf("%s %zu segments (%s), %llu chunks (%s)%s\n", verb, r.segments_deleted.size(),
         FormatBytes(r.segment_bytes_deleted).c_str(),
         static_cast<unsigned long long>(r.chunks_deleted),
         FormatBytes(r.chunk_bytes_deleted).c_str(),
         r.bases_written.empty() ? ""
                                 : (std::string(r.dry_run ? "; would write " : "; wrote ") +
                                    std::to_string(r.bases_written.size()) + " bases")
                                       .c_str());
  printf("Kept:      %llu segments (%s), %llu chunks (%s)\n",
         static_cast<unsigned long long>(r.segments_kept + r.bases_written.size()),
         FormatBytes(r.segment_bytes_kept).c_str(), static_cast<unsigned long long>(r.chunks_kept),
         FormatBytes(r.chunk_bytes_kept).c_str());
  if (r.chunks_in_grace > 0) {
    printf(
        "Pending:   %llu unreferenced chunks (%s) younger than the grace period: left for "
        "a later prune\n",
        static_cast<unsigned long long>(r.chunks_in_grace),
        FormatBytes(r.chunk_bytes_in_grace).c_str());
  }
}

// A count N >= 0 (a named validator would print its name after N in --help).
const CLI::Validator kCount(
    [](std::string& v) {
      return !v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 9
                 ? std::string()
                 : "N must be a whole number >= 0";
    },
    "");

// Compaction and the base before the prune (history/compact.h); with
// --dry-run only the plan. What it did goes to *out (the JSON fields).
Status CompactFirst(ObjectStore& store, const PruneCommandOptions& o, int64_t base_ns, Json* out) {
  history::HistoryStore hs(store);
  if (o.dry_run) {
    auto list = hs.ListSegments();
    if (!list.ok()) return list.status().status();
    history::CompactionPlan plan = history::PlanCompaction(*list, history::CompactionPolicy{});
    uint64_t inputs = 0;
    for (const auto& g : plan.groups) inputs += g.inputs.size();
    *out = {{"groups", plan.groups.size()}, {"segments", inputs}};
    return Status::Ok();
  }
  auto c = history::RunCompaction(hs);
  if (!c.ok()) return c.status().status();
  auto b = history::WriteBaseIfDue(hs, history::BasePolicy{.interval_ns = base_ns});
  if (!b.ok()) return b.status().status();
  *out = {{"segments_before", c->deltas_before},
          {"segments_after", c->deltas_after},
          {"segments_read", c->segments_read},
          {"segments_written", c->segments_written},
          {"segments_deleted", c->segments_deleted},
          {"leftovers_deleted", c->leftovers_deleted},
          {"base_written", b->written ? Json(b->written->key) : Json(nullptr)}};
  return Status::Ok();
}

void PrintCompaction(const Json& c, bool dry_run) {
  if (dry_run) {
    printf("Compact:   would merge %llu segments into %llu\n",
           static_cast<unsigned long long>(c.value("segments", 0ull)),
           static_cast<unsigned long long>(c.value("groups", 0ull)));
    return;
  }
  printf("Compacted: %llu -> %llu timeline segments (wrote %llu, deleted %llu)%s\n",
         static_cast<unsigned long long>(c.value("segments_before", 0ull)),
         static_cast<unsigned long long>(c.value("segments_after", 0ull)),
         static_cast<unsigned long long>(c.value("segments_written", 0ull)),
         static_cast<unsigned long long>(c.value("segments_deleted", 0ull)),
         c["base_written"].is_string()
             ? ("; wrote base " + c["base_written"].get<std::string>()).c_str()
             : "");
}

}  // namespace

CLI::App* AddPruneCommand(CLI::App* app, PruneCommandOptions* o) {
  CLI::App* cmd = app->add_subcommand(
      "prune", "Delete the target's history that the retention policy no longer needs.");
  cmd->add_option("--retention", o->retention,
                  "Keep every state stored within D of now (default 7d). D: a number\n"
                  "with s, m, h, d or w (90s, 30m, 12h, 7d, 2w); 0 keeps only the\n"
                  "latest state and the points below.")
      ->type_name("D");
  cmd->add_option("--keep-hourly", o->keep_hourly,
                  "Also keep the last state of each of the last N hours that have\n"
                  "one (default 0).")
      ->type_name("N")
      ->check(kCount);
  cmd->add_option("--keep-daily", o->keep_daily,
                  "Also keep the last state of each of the last N days (local time)\n"
                  "that have one (default 0).")
      ->type_name("N")
      ->check(kCount);
  cmd->add_option("--keep-checkpoints", o->keep_checkpoints,
                  "Also keep the state of each of the N newest checkpoints (default 0).")
      ->type_name("N")
      ->check(kCount);
  cmd->add_option("--prune-grace", o->grace,
                  "Delete an unreferenced chunk only when it is older than D (default\n"
                  "1h): it may belong to an upload whose timeline segment is not\n"
                  "written yet.")
      ->type_name("D");
  cmd->add_flag("--dry-run", o->dry_run,
                "Report what would be written and deleted; change nothing.");
  cmd->add_flag("--compact", o->compact,
                "First compact the timeline's small segments in levels and write a\n"
                "base if one is due (see below).");
  cmd->add_option("--base-interval", o->base_interval,
                  "With --compact: write a base when the newest one is older than D\n"
                  "(default 1h; off: never).")
      ->type_name("D");
  AddTargetOptions(cmd, &o->target);
  cmd->footer(kPruneFooter);
  return cmd;
}

int RunPrune(const GlobalOptions& global, const PruneCommandOptions& o) {
  history::PruneOptions po;
  auto retention = history::ParseRetentionDuration(o.retention);
  if (!retention.ok()) return Fail(kExitUsage, "--retention: " + retention.status().message());
  auto grace = history::ParseRetentionDuration(o.grace);
  if (!grace.ok()) return Fail(kExitUsage, "--prune-grace: " + grace.status().message());
  po.policy.retention_ns = *retention;
  po.policy.keep_hourly = o.keep_hourly;
  po.policy.keep_daily = o.keep_daily;
  po.policy.keep_checkpoints = o.keep_checkpoints;
  po.grace_ns = *grace;
  po.dry_run = o.dry_run;
  int64_t base_ns = 0;
  if (o.base_interval != "off" && o.base_interval != "0") {
    auto base = history::ParseRetentionDuration(o.base_interval);
    if (!base.ok()) return Fail(kExitUsage, "--base-interval: " + base.status().message());
    base_ns = *base;
  }
  // A file:// target that does not exist would be created empty by the store.
  if (!o.target.target.empty()) {
    auto url = ParseTargetUrl(o.target.target);
    if (url.ok() && url->kind == TargetUrl::Kind::kFile) {
      struct stat st;
      if (stat(url->path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return Fail(kExitFailure, "target " + o.target.target + ": no such directory");
      }
    }
  }
  int exit_code = kExitOk;
  auto target = ResolveTargetOrFail(global, o.target, &exit_code);
  if (!target) return exit_code;
  Json compaction;
  if (o.compact) {
    auto c = CompactFirst(*target->store, o, base_ns, &compaction);
    if (!c.ok()) {
      return Fail(kExitFailure, "compact: " + c.message() + " (nothing was lost; run it again)");
    }
  }
  auto report = history::Prune(*target->store, po);
  if (!report.ok()) {
    return Fail(kExitFailure,
                report.status().message() + " (nothing retained was harmed; run prune again)");
  }
  if (global.json) {
    Json j = ToJson(*report, po, target->url);
    if (o.compact) j["compaction"] = compaction;
    printf("%s\n", j.dump().c_str());
  } else {
    if (o.compact) PrintCompaction(compaction, o.dry_run);
    PrintHuman(*report, po, target->url);
  }
  return FinishOutput();
}

}  // namespace scribefs::ctl
