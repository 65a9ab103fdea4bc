#include "tools/restore_command.h"

#include "tools/cli_suggest.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "common/mountinfo.h"
#include "common/unique_fd.h"
#include "tools/human.h"
#include "tools/restore.h"
#include "tools/restore_at.h"
#include "tools/time_spec.h"
#include "uploader/checkpoint.h"
#include "uploader/store_factory.h"

namespace scribefs::ctl {
namespace {

const char* const kRestoreFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

What is restored: without --checkpoint, every object the target holds now
(except its .scribefs/ prefix and excluded paths); with --checkpoint NAME,
exactly the paths of that checkpoint's manifest, each by its version id
when the bucket is versioned. Regular files, directories (also empty
ones), symlinks, FIFOs and sockets, with their mode and mtime. Directory
attributes are set after their contents. Nothing outside DIR is deleted
or changed; nothing in DIR that the target does not name is removed.

From history (--at TIME|SEQ): the tree exactly as it was stored at that
instant, from the target's history (.scribefs/chunks/ and timeline/; see
docs/history.md) rather than its current objects: content, modes, owners
(with --same-owner), mtimes, symlinks, empty directories, special files;
a path deleted before the instant is absent. A plain number is a journal
seq; otherwise a time: 2026-12-05T10:00:00 (local), ...Z or ...+01:00,
10m (ten minutes ago), @EPOCH, today, yesterday. Every chunk is checked
(size, SHA-256) before it is written: a damaged one fails its file, named.
The restore stops before writing anything when the target has no history,
the instant is before the first stored state (the covered range is
named), or a timeline segment is missing on the way (a hole) or does not
decode. With --checkpoint on a target whose history covers the
checkpoint's seq, the checkpoint is restored from the history (a note
says so); otherwise from its manifest. See also 'scribectl timeline' and
'scribectl history PATH'.

Trust: whoever can write the target chooses the metadata, so by default,
even as root, everything restored belongs to the user running the restore,
set-user-ID and set-group-ID bits are dropped (a directory keeps its
set-group-ID), and device nodes are left out (listed as LEFT OUT, counted,
exit status unchanged). --same-owner restores the stored uid/gid and those
bits; --special restores device nodes (both need root). Use them only for
a target you trust as much as root.

Safety: nothing is written outside DIR. Keys that are absolute, contain
an empty, "." or ".." component or a NUL byte, and keys below a symlink
(one in the target, or one already in DIR) are refused: they are named
in the output, counted, nothing is written for them, and the exit code
is 7. Each file is downloaded to a temporary name beside it
(.NAME.scribefs-restore-XXXXXX) and renamed into place only when it is
complete and verified, so an interrupted restore never leaves a partial
file under a real name (Ctrl-C also removes the temporary files).
DIR must not be the mount's DATADIR or mount point, lie inside one, or
contain one, while scribefs serves it (use --force to insist).

Resume: running the same command again skips every file that already has
the object's size and mtime and the content hash that is known: the
checkpoint's SHA-256; otherwise the ETag when it is an MD5 (single-part
uploads); multipart objects without a SHA-256 are compared by size and
mtime only. Symlinks with the same target, and existing directories and
special files, are kept too; their mode and mtime (and owner, with
--same-owner) are corrected.

Verification: every download is checked before it is renamed into place:
the checkpoint's SHA-256, or the MD5 of a single-part ETag. A checkpoint
entry without a version id whose object has since been overwritten (an
unversioned bucket) fails, named, and nothing is written for it.

Existing files: a path that exists in DIR is replaced by the target's
version unless it is already right (Resume). When DIR is not empty, the
restore first lists (on stderr) the existing paths it may replace.
--dry-run lists every path it would write ("create") or replace
("replace"; existing directories: "keep") and writes nothing (with --json:
{dry_run, target, checkpoint, history, to, create: [path], replace: [path],
keep: [path], refused: [{key, reason}], excluded}).

Exit status: 0 everything restored or already up to date; 1 some paths
failed (listed), or the restore could not run (target unreachable, no such
checkpoint); 2 usage error, or DIR is a live mount's (use --force);
3 no state for -m; 7 some keys were refused as unsafe and nothing else
failed; 130 interrupted.

With --json: {ok, target, checkpoint, history, to, restored, skipped,
excluded, bytes, failed: [{path, error}], refused: [{key, reason}],
left_out: [{path, reason}], seconds}; history is null, or {at, seq,
time_ns, time}: the instant asked for and the last stored change restored.

Examples:
  scribectl -m /srv/data restore --to /srv/restored
  scribectl -m /srv/data restore --to /tmp/r --checkpoint nightly-1
  scribectl -m /srv/data restore --to /srv/data.old --dry-run
  scribectl restore --target s3://backups/srv --endpoint http://rgw:7480 \
      --to /srv/data.new --path projects/alpha
  scribectl --json restore --target file:///mnt/usb/replica --to /srv/data
  scribectl -m /srv/data restore --at 10m --to /tmp/before
  scribectl -m /srv/data restore --at 2026-12-05T09:30:00 --to /tmp/r \
      --path docs/report.odt
  scribectl restore --target s3://backups/srv --at 41230 --to /srv/data.new)";

// The absolute, canonical form of `path`, which may not exist yet: its
// deepest existing ancestor resolved with realpath, the rest appended.
Result<std::string> CanonicalFuture(const std::string& path) {
  std::string abs = path;
  if (abs.empty()) return Status::Error(EINVAL, "empty path");
  if (abs[0] != '/') {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) return PosixError("getcwd", errno);
    abs = std::string(cwd) + "/" + abs;
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= abs.size()) {
    size_t end = abs.find('/', start);
    if (end == std::string::npos) end = abs.size();
    std::string part = abs.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  // Find the deepest existing prefix.
  for (size_t n = parts.size() + 1; n-- > 0;) {
    std::string prefix = "/";
    for (size_t i = 0; i < n; ++i) prefix += (i ? "/" : "") + parts[i];
    char real[PATH_MAX];
    if (realpath(prefix.c_str(), real)) {
      std::string out = real;
      for (size_t i = n; i < parts.size(); ++i) out += (out == "/" ? "" : "/") + parts[i];
      return out;
    }
    if (errno != ENOENT && errno != ENOTDIR) return PosixError(prefix, errno);
  }
  return Status::Error(ENOENT, "cannot resolve " + path);
}

bool SameOrBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// Why restoring into dest would write into a live scribefs DATADIR or
// mount, or "" when it would not.
std::string LiveMountConflict(const std::string& dest, const std::string& journal_datadir) {
  std::vector<std::pair<std::string, std::string>> guarded;  // path, what it is
  for (const MountEntry& m : ScribefsMounts(ReadMountInfo())) {
    guarded.emplace_back(m.mountpoint, "the mount point of a running scribefs");
    if (!m.source.empty() && m.source[0] == '/') {
      guarded.emplace_back(m.source, "the DATADIR of a running scribefs");
    }
  }
  if (!journal_datadir.empty()) guarded.emplace_back(journal_datadir, "the mount's DATADIR");
  for (const auto& [path, what] : guarded) {
    char real[PATH_MAX];
    std::string p = realpath(path.c_str(), real) ? std::string(real) : path;
    if (SameOrBelow(dest, p)) {
      return dest + (dest == p ? " is " : " is inside ") + p + ", " + what;
    }
    if (SameOrBelow(p, dest)) return dest + " contains " + p + ", " + what;
  }
  return "";
}

Status MakeDirs(const std::string& path) {
  std::string cur;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    cur = path.substr(0, end);
    if (!cur.empty() && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      return PosixError("mkdir " + cur, errno);
    }
    start = end + 1;
  }
  return Status::Ok();
}

std::string Rate(double bytes, double seconds) {
  if (!(seconds > 0)) return "-";
  char buf[48];
  snprintf(buf, sizeof buf, "%.1f MB/s", bytes / seconds / 1e6);
  return buf;
}

std::string ProgressLine(const RestoreProgress& p, double seconds) {
  char buf[256];
  uint64_t done = p.done_bytes.load();
  snprintf(buf, sizeof buf, "restore: %llu/%llu paths, %s of %s, %s",
           static_cast<unsigned long long>(p.done_paths.load()),
           static_cast<unsigned long long>(p.total_paths.load()), FormatBytes(done).c_str(),
           FormatBytes(p.total_bytes.load()).c_str(),
           Rate(static_cast<double>(done), seconds).c_str());
  return buf;
}

// Runs the restore. Ctrl-C / SIGTERM / SIGHUP remove the temporary files,
// then exit (128+signal). On a terminal, draws the progress line.
Result<RestoreSummary> RunInterruptible(Restorer& restorer) {
  // The signals are taken by a monitor thread (which also draws the progress
  // line); every other thread has them blocked.
  sigset_t signals, old_mask;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, &old_mask);
  std::atomic<bool> finished{false};
  const bool tty = isatty(STDERR_FILENO) == 1;
  const auto start = std::chrono::steady_clock::now();
  std::thread monitor([&] {
    bool shown = false;
    while (!finished) {
      struct timespec wait = {0, 250'000'000};
      int sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig > 0) {
        restorer.AbandonTempFiles();
        const RestoreProgress& p = restorer.progress();
        std::string msg = "interrupted after " + std::to_string(p.done_paths.load()) + " of " +
                          std::to_string(p.total_paths.load()) +
                          " paths; temporary files removed. Run the same command again to resume.";
        if (shown) fprintf(stderr, "\r\033[K");
        Fail(128 + sig, msg);
        fflush(stderr);
        _exit(128 + sig);
      }
      if (tty && !finished) {
        double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        fprintf(stderr, "\r\033[K%s", ProgressLine(restorer.progress(), secs).c_str());
        fflush(stderr);
        shown = true;
      }
    }
    if (shown) {
      fprintf(stderr, "\r\033[K");
      fflush(stderr);
    }
  });
  auto result = restorer.Run();
  finished = true;
  monitor.join();
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  return result;
}

// True when the directory has no entry (or cannot be read: then the restore
// reports the problem itself).
bool DirectoryEmpty(int dir_fd) {
  UniqueFd dup(fcntl(dir_fd, F_DUPFD_CLOEXEC, 0));
  DIR* d = dup ? fdopendir(dup.get()) : nullptr;
  if (!d) return true;
  dup.Release();  // the DIR owns it now
  bool empty = true;
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  closedir(d);
  return empty;
}

// The "history" field of the JSON output: null, or what was replayed.
nlohmann::ordered_json HistoryJson(const RestoreCommandOptions& o, const HistoryRestore* hist) {
  if (!hist) return nullptr;
  nlohmann::ordered_json j;
  j["at"] = o.at.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.at);
  j["seq"] = hist->seq;
  j["time_ns"] = hist->time_ns;
  j["time"] = FormatUtcIso(hist->time_ns);
  return j;
}

// " (checkpoint NAME)", " (at seq N, stored TIME)": what the summary restored.
std::string WhatRestored(const RestoreCommandOptions& o, const HistoryRestore* hist) {
  std::string what;
  if (!o.checkpoint.empty()) what += "checkpoint " + o.checkpoint;
  if (hist) {
    what += (what.empty() ? "" : ", ") + std::string("history at seq ") +
            std::to_string(hist->seq) + ", stored " + FormatLocalTime(hist->time_ns);
  }
  return what.empty() ? "" : " (" + what + ")";
}

// --dry-run: what a restore would create, replace and keep.
int PrintPlan(const GlobalOptions& global, const RestoreCommandOptions& o, const std::string& url,
              const std::string& dest, const RestorePlan& plan, const HistoryRestore* hist) {
  std::vector<std::string> create, replace, keep;
  for (const RestorePlanEntry& e : plan.entries)
    (!e.exists ? create : e.directory ? keep : replace).push_back(e.path);
  if (global.json) {
    nlohmann::ordered_json j;
    j["dry_run"] = true;
    j["target"] = url;
    j["checkpoint"] = o.checkpoint.empty() ? nlohmann::ordered_json(nullptr)
                                           : nlohmann::ordered_json(o.checkpoint);
    j["history"] = HistoryJson(o, hist);
    j["to"] = dest;
    j["create"] = create;
    j["replace"] = replace;
    j["keep"] = keep;
    j["refused"] = nlohmann::ordered_json::array();
    for (const auto& r : plan.refused) j["refused"].push_back({{"key", r.key}, {"reason", r.reason}});
    j["excluded"] = plan.excluded;
    printf("%s\n", j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    for (const auto& p : create) printf("create   %s\n", EscapeControl(p).c_str());
    for (const auto& p : replace) printf("replace  %s\n", EscapeControl(p).c_str());
    for (const auto& p : keep) printf("keep     %s/\n", EscapeControl(p).c_str());
    for (const auto& r : plan.refused)
      printf("REFUSED  \"%s\": %s\n", EscapeControl(r.key).c_str(), EscapeControl(r.reason).c_str());
    printf("dry run: %zu to create, %zu to replace (unless already identical), %zu directories "
           "kept in %s; nothing written\n",
           create.size(), replace.size(), keep.size(), EscapeControl(dest).c_str());
  }
  if (int out = FinishOutput(); out != kExitOk) return out;
  if (!o.path.empty() && plan.entries.empty() && plan.refused.empty())
    return Fail(kExitFailure, "nothing matched --path " + EscapeControl(o.path) + " in " +
                                  (o.checkpoint.empty() ? "the target" : "checkpoint " + o.checkpoint));
  return kExitOk;
}

// Before a restore into a directory that is not empty: the existing paths
// it may replace, on stderr (a second listing of the target; only then).
void WarnReplacing(const ResolvedTarget& target, int root_fd, const RestoreOptions& ro) {
  Restorer planner(target.store.get(), root_fd, &target.filter, ro);
  auto plan = planner.Plan();
  if (!plan.ok()) return;  // the restore itself reports the error
  std::vector<std::string> replace;
  for (const RestorePlanEntry& e : plan->entries)
    if (e.exists && !e.directory) replace.push_back(e.path);
  if (replace.empty()) return;
  std::string list;
  for (size_t i = 0; i < replace.size() && i < 10; ++i) list += "\n  " + EscapeControl(replace[i]);
  if (replace.size() > 10) list += "\n  ... (--dry-run lists all)";
  Note("the destination is not empty: " + std::to_string(replace.size()) +
       " existing path(s) are replaced where they differ from the target:" + list);
}

// The summary: one JSON object with --json, else lines for people.
void PrintSummary(const GlobalOptions& global, const RestoreCommandOptions& o,
                  const std::string& url, const std::string& dest, const RestoreSummary& s,
                  int code, const HistoryRestore* hist) {
  if (global.json) {
    nlohmann::ordered_json j;
    j["ok"] = code == kExitOk;
    j["target"] = url;
    j["checkpoint"] = o.checkpoint.empty() ? nlohmann::ordered_json(nullptr)
                                           : nlohmann::ordered_json(o.checkpoint);
    j["history"] = HistoryJson(o, hist);
    j["to"] = dest;
    j["restored"] = s.restored;
    j["skipped"] = s.skipped;
    j["excluded"] = s.excluded;
    j["bytes"] = s.bytes;
    j["failed"] = nlohmann::ordered_json::array();
    for (const auto& f : s.failed) j["failed"].push_back({{"path", f.path}, {"error", f.error}});
    j["refused"] = nlohmann::ordered_json::array();
    for (const auto& r : s.refused) j["refused"].push_back({{"key", r.key}, {"reason", r.reason}});
    j["left_out"] = nlohmann::ordered_json::array();
    for (const auto& l : s.left_out) {
      j["left_out"].push_back({{"path", l.path}, {"reason", l.error}});
    }
    j["seconds"] = std::round(s.seconds * 1000) / 1000;
    printf("%s\n",
           j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  } else {
    printf(
        "Restored %s%s into %s in %s: %llu restored, %llu already up to date, %llu failed, "
        "%llu refused",
        url.c_str(), WhatRestored(o, hist).c_str(), dest.c_str(), FormatDuration(s.seconds).c_str(),
        static_cast<unsigned long long>(s.restored), static_cast<unsigned long long>(s.skipped),
        static_cast<unsigned long long>(s.failed.size()),
        static_cast<unsigned long long>(s.refused.size()));
    if (s.excluded) printf(", %llu excluded", static_cast<unsigned long long>(s.excluded));
    if (!s.left_out.empty()) {
      printf(", %llu left out", static_cast<unsigned long long>(s.left_out.size()));
    }
    printf(".\nDownloaded %s (%s, %.0f paths/s).\n", FormatBytes(s.bytes).c_str(),
           Rate(static_cast<double>(s.bytes), s.seconds).c_str(),
           s.seconds > 0 ? static_cast<double>(s.restored) / s.seconds : 0.0);
    for (const auto& f : s.failed) {
      printf("FAILED   %s: %s\n", EscapeControl(f.path).c_str(), EscapeControl(f.error).c_str());
    }
    for (const auto& r : s.refused) {
      printf("REFUSED  \"%s\": %s\n", EscapeControl(r.key).c_str(),
             EscapeControl(r.reason).c_str());
    }
    for (const auto& l : s.left_out) {
      printf("LEFT OUT %s: %s\n", EscapeControl(l.path).c_str(), EscapeControl(l.error).c_str());
    }
  }
}

// The history tree to restore: --at's, or a checkpoint's when the target's
// history covers its seq (its mirror objects may have changed since; the
// history has every stored state). nullptr: restore the objects or the
// manifest. On an error, *exit_code is set.
std::unique_ptr<HistoryRestore> LoadHistoryFor(const ResolvedTarget& target,
                                               const std::optional<history::Instant>& at,
                                               const std::string& checkpoint, int* exit_code) {
  if (at) {
    auto h = LoadHistoryRestore(*target.store, *at);
    if (!h.ok()) {
      *exit_code = Fail(kExitFailure, "restore --at: " + h.status().message());
      return nullptr;
    }
    const HistoryRestore& r = **h;
    if (at->kind == history::Instant::Kind::kSeq && at->seq > r.coverage.last_seq) {
      Note("the history ends at seq " + std::to_string(r.coverage.last_seq) + " (stored " +
           FormatLocalTime(r.coverage.last_time_ns) + "): restoring that state");
    } else if (at->kind == history::Instant::Kind::kTime && at->time_ns > r.coverage.last_time_ns) {
      Note("the history ends at " + FormatLocalTime(r.coverage.last_time_ns) + " (seq " +
           std::to_string(r.coverage.last_seq) + "): restoring that state");
    }
    return std::move(h).value();
  }
  if (checkpoint.empty()) return nullptr;
  auto h = CheckpointFromHistory(*target.store, checkpoint);
  if (!h.ok()) {
    *exit_code =
        Fail(kExitFailure, "restore --checkpoint " + checkpoint + ": " + h.status().message());
    return nullptr;
  }
  if (*h) {
    Note("checkpoint \"" + checkpoint + "\" is restored from the target's history (seq " +
         std::to_string((*h)->seq) + ")");
  }
  return std::move(h).value();
}

}  // namespace

CLI::App* AddRestoreCommand(CLI::App* app, RestoreCommandOptions* o) {
  CLI::App* cmd = app->add_subcommand(
      "restore", "Copy the target (or a checkpoint) back into a local directory.");
  cmd->add_option("--to", o->to,
                  "Restore into DIR (created if missing). Must not be the live\n"
                  "DATADIR or mount point (see --force).")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--checkpoint", o->checkpoint,
                  "Restore the state of checkpoint NAME (its manifest) instead of\n"
                  "the target's current objects.")
      ->type_name("NAME");
  cmd->add_option("--at", o->at,
                  "Restore the tree as it was stored at TIME or SEQ, from the\n"
                  "target's history (see below); not with --checkpoint.")
      ->type_name("TIME|SEQ");
  cmd->add_option("--path", o->path,
                  "Restore only PREFIX and what is below it (a path relative to\n"
                  "DATADIR: 'docs' is docs and docs/..., not docsx).")
      ->type_name("PREFIX");
  cmd->add_option("-j,--workers", o->workers, "Parallel downloads (default 8).")
      ->type_name("N")
      ->check(IntegerFromTo(1, 256));
  cmd->add_flag("--same-owner", o->same_owner,
                "Give each path its stored owner and group, and keep set-user-ID\n"
                "and set-group-ID bits (needs root; trust the target first).");
  cmd->add_flag("--special", o->special,
                "Also restore device nodes, with their stored device numbers\n"
                "(needs root; trust the target first).");
  cmd->add_flag("--force", o->force,
                "Restore even into a running scribefs mount, its DATADIR, or a\n"
                "directory containing one (every write is then journaled and\n"
                "uploaded again).");
  cmd->add_flag("--dry-run", o->dry_run,
                "List what would be created and replaced in DIR; write nothing.");
  AddTargetOptions(cmd, &o->target);
  cmd->footer(kRestoreFooter);
  return cmd;
}

int RunRestore(const GlobalOptions& global, const RestoreCommandOptions& o) {
  // --path and --checkpoint.
  std::string prefix = o.path;
  while (!prefix.empty() && prefix.front() == '/') prefix.erase(0, 1);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (!prefix.empty()) {
    if (std::string why = UnsafeKeyReason(prefix); !why.empty()) {
      return Fail(kExitUsage, "--path \"" + EscapeControl(o.path) + "\": " + why);
    }
  }
  if (!o.checkpoint.empty()) {
    if (Status s = ValidateCheckpointName(o.checkpoint); !s.ok()) {
      return Fail(kExitUsage, "--checkpoint: " + s.message());
    }
  }
  std::optional<history::Instant> at;
  if (!o.at.empty()) {
    if (!o.checkpoint.empty()) return Fail(kExitUsage, "give --at or --checkpoint, not both");
    const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto parsed = ParseAt(o.at, now);
    if (!parsed.ok()) return Fail(kExitUsage, "--at: " + parsed.status().message());
    at = *parsed;
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

  // The destination.
  auto dest = CanonicalFuture(o.to);
  if (!dest.ok()) return Fail(kExitUsage, "--to " + o.to + ": " + dest.status().message());
  if (!o.force) {
    if (std::string why = LiveMountConflict(*dest, target->datadir); !why.empty()) {
      return Fail(kExitUsage, "refusing to restore into " + *dest + ": " + why +
                                  ". Restore elsewhere and move the files, or give --force.");
    }
  }
  RestoreOptions ro;
  ro.checkpoint = o.checkpoint;
  ro.path = prefix;
  ro.workers = o.workers;
  ro.same_owner = o.same_owner;
  ro.special = o.special;
  auto hist = LoadHistoryFor(*target, at, o.checkpoint, &exit_code);
  if (exit_code != kExitOk) return exit_code;
  if (hist) ro.history = &hist->source;
  if (o.dry_run) {
    UniqueFd existing(open(dest->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));  // may be absent
    Restorer planner(target->store.get(), existing.get(), &target->filter, ro);
    auto plan = planner.Plan();
    if (!plan.ok()) return Fail(kExitFailure, "restore --dry-run: " + plan.status().message());
    return PrintPlan(global, o, target->url, *dest, *plan, hist.get());
  }
  if (Status s = MakeDirs(*dest); !s.ok()) return Fail(kExitFailure, s.message());
  UniqueFd root(open(dest->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Fail(kExitFailure, *dest + ": " + strerror(errno));
  if (!DirectoryEmpty(root.get())) WarnReplacing(*target, root.get(), ro);

  Restorer restorer(target->store.get(), root.get(), &target->filter, ro);

  auto result = RunInterruptible(restorer);
  if (!result.ok()) return Fail(kExitFailure, "restore: " + result.status().message());
  const RestoreSummary& s = *result;
  int code = !s.failed.empty() ? kExitFailure : !s.refused.empty() ? kExitRefused : kExitOk;

  if (!o.checkpoint.empty() && !s.manifest_target.empty() && s.manifest_target != target->url) {
    Note("checkpoint \"" + o.checkpoint + "\" was taken for " + s.manifest_target +
         "; restored from " + target->url);
  }
  PrintSummary(global, o, target->url, *dest, s, code, hist.get());
  int out = FinishOutput();
  if (out != kExitOk) return out;
  if (!prefix.empty() && s.restored + s.skipped + s.excluded + s.failed.size() +
                                 s.refused.size() + s.left_out.size() ==
                             0)
    return Fail(kExitFailure, "nothing matched --path " + EscapeControl(o.path) + " in " +
                                  (o.checkpoint.empty() ? "the target" : "checkpoint " + o.checkpoint) +
                                  "; nothing was restored");
  if (code == kExitFailure) {
    Fail(code, std::to_string(s.failed.size()) + " path(s) could not be restored (listed above)");
  } else if (code == kExitRefused) {
    Fail(code, std::to_string(s.refused.size()) +
                   " key(s) refused as unsafe; nothing was written for them (listed above)");
  }
  return code;
}

}  // namespace scribefs::ctl
