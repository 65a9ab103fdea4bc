// scribectl: the command-line client of scribefs. It reads the journal of a
// mount directly (read-only, safe while the daemon writes it) and talks to the
// daemon through its control socket (status, pause, resume, checkpoint,
// checkpoints, flush, retry, rescan). verify and restore read the target directly.
//
//   scribectl [-m DATADIR | --state-dir DIR] [--json] COMMAND [options]
//
// Exit codes (scripts may rely on them; README copies this list):
//   0  success
//   1  failure (unreadable journal, I/O or SQLite error, ...)
//   2  usage error: unknown command or option, bad option value
//   3  no scribefs state (journal) for that mount: not mounted, or wrong -m/--state-dir
//   4  the daemon is not running (commands that need the control socket)
//   5  a wait timed out (flush, checkpoint; a request the daemon did not answer)
//   6  verify: the target differs from the directory
//   7  restore: some keys were refused as unsafe (and nothing else failed)
// Errors are printed on stderr as "scribectl: <message>"; with --json as one
// JSON object per line ({"ok":false,"error","exit_code"}; notes {"note"}).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>
#include <algorithm>

#include "journal/record.h"
#include "tools/control_commands.h"
#include "tools/history_command.h"
#include "tools/cli_suggest.h"
#include "tools/completion.h"
#include "tools/ctl_common.h"
#include "tools/journal_command.h"
#include "tools/prune_command.h"
#include "tools/restore_command.h"
#include "tools/stats_command.h"
#include "tools/stop_command.h"
#include "tools/time_spec.h"
#include "tools/verify_command.h"

namespace scribefs::ctl {
namespace {

// The operation names, wrapped for --help.
std::string OpList() {
  std::string out;
  size_t line = 0;
  for (std::string_view op : AllOpNames()) {
    if (line + op.size() + 2 > 64) {
      out += "\n";
      line = 0;
    } else if (line > 0) {
      out += " ";
      ++line;
    }
    out += op;
    out += ",";
    line += op.size() + 1;
  }
  if (!out.empty()) out.back() = '.';
  return out;
}

CLI::Validator CheckedBy(std::string (*check)(const std::string&)) {
  return CLI::Validator([check](std::string& value) { return check(value); }, "");
}

const char* const kMainFooter = R"(
A mount is named by its data directory (-m) or its state directory
(--state-dir, or $SCRIBEFS_STATE_DIR when neither option is given).

Environment:
  SCRIBEFS_STATE_DIR   state directory to use when neither -m nor --state-dir is given
  SCRIBEFS_STATE_ROOT  where default state directories live (default /var/lib/scribefs
                       for root, else $XDG_STATE_HOME/scribefs or ~/.local/state/scribefs)

Exit status:
  0  success
  1  failure (unreadable journal, I/O or database error)
  2  usage error (unknown command or option, bad value)
  3  no scribefs state for that mount (not mounted, or wrong -m / --state-dir)
  4  the daemon is not running (commands that talk to it: status, pause,
     resume, checkpoint, checkpoints, flush, retry, rescan, set)
  5  a wait timed out (flush, checkpoint, rescan)
  6  verify found differences between the target and the directory
  7  restore: keys refused as unsafe (nothing else failed)

Run 'scribectl COMMAND --help' for the options of a command. The options
above may also be given after the command.)";

const char* const kJournalFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

Records are listed oldest first. Filters combine (all must match).

Table columns: SEQ (sequence number), TIME (local time of the change),
OP, STATE (upload state), PATH (relative to DATADIR; "A -> B" for rename
and link), DETAIL (byte ranges written as [OFFSET+LENGTH] or "N ranges,
SIZE", size=, mode= in octal, operation details, attempts=, and the error
of a failed upload).

With --json, each record is one JSON object on its own line (JSON Lines)
with the keys seq, time_ns, time (ISO 8601, UTC), op, path, new_path,
ranges ([[offset,length],...]), size, mode (st_mode as a number), uid,
gid, pid, flags, detail (an object when it holds JSON), state, attempts,
error, etag, sha256, version_id and state_ns. Every key is always
present; values that do not apply are null.

Examples:
  scribectl -m /data journal --since 10m
  scribectl -m /data log --state failed
  scribectl -m /data log --path 'docs/*.txt' --op write --limit 20
  scribectl -m /data log --target offsite --state pending
  scribectl -m /data --json log --since 2026-11-21T10:00:00Z | jq .path
  scribectl -m /data log -f)";

const char* const kStatsFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

Shows the number of records, the highest sequence number, the pending work
(records in state pending or uploading, the distinct files they touch, and
the sum of the last size the journal knows for each of those files), the age
of the oldest pending record, and a table of records by operation and state.

With --json, prints one JSON object with the keys journal, records,
max_seq, pending_records, pending_files, pending_bytes, oldest_pending_ns
(ns since the epoch, or null), oldest_pending_age_s (seconds, or null),
by_op ({op: records}), by_state ({state: records}, every state present),
by_op_state ({op: {state: records}}) and uploader (the uploader's counters as
the daemon last stored them: uploads, copies, deletes, partial_uploads,
skipped_unchanged, retries, retry_causes {server_error, throttled, network,
changed, other}, failures, bytes_sent, last_error, bwlimit_bps (the upload
limit then in force, 0 = none); null without a target).)";

const char* const kCommonOptions = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command. Exit codes:
0 ok, 1 failed, 2 usage, 3 no state for that mount, 4 scribefs not
running, 5 timed out.)";

const std::string kStatusFooter = std::string(kCommonOptions) + R"(

Asks the daemon (control socket) and reads the journal. When scribefs is
not running, shows what the journal knows and exits 4.

With --json, prints one object: running (bool), daemon (the daemon's
answer: pid, version, datadir, mountpoint, state_dir, mode, target,
journal_ok, pause {paused, seq, since_ns, until_ns, timeout_s, by,
held_ops, in_flight, held_total, last_resume}, max_pause_s, uploader
{queued_paths, in_flight, uploads, copies, deletes, partial_uploads,
retries, failures, bytes_sent, upload_rate_bps, last_error} or null; null
when not running) and journal {journal, records, max_seq, pending_records,
pending_files, pending_bytes, oldest_pending_ns, oldest_pending_age_s,
failed_records, targets [{name, url, pending_records, failed_records}]
(what each target the journal knows still lacks; with several, a record
is pending until every one has stored it), last_checkpoint {name, seq,
time_ns, paths, held_ms, manifest_key} or null}.)";

const std::string kPauseFooter = std::string(kCommonOptions) + R"(

First, for at most 250 ms and holding nothing yet, scribefs waits for a
moment with no mutating operation in flight. Then new mutating
operations of every kind (write, create, rename, unlink, chmod,
truncate, ...) wait; reads, stat and readdir continue (but a directory
in which a create/rename/unlink is waiting stays locked by the kernel
until the resume). Operations in flight finish, their byte
ranges are committed, a 'pause' record is made durable, and its
sequence number is printed. Pauses do not nest: pausing again while
paused fails (exit 1). The pause ends with 'scribectl resume', after
its timeout (a 'resume' record with reason "timeout"), or when scribefs
is stopped.

With --json: {ok, seq, since_ns, until_ns, timeout_s, writeback_ms,
quiet_ms, drain_ms, sync_ms, writeback_complete}.)";

const std::string kResumeFooter = std::string(kCommonOptions) + R"(

Appends a 'resume' record (reason "command") and lets the held operations
proceed. Fails (exit 1) when not paused, e.g. because the pause timed out.

With --json: {ok, seq, pause_seq, held_ms, held_ops}.)";

const std::string kCheckpointFooter = std::string(kCommonOptions) + R"(

Steps: --pre hook; pause (or use the pause in place, which then stays);
capture: mark the journal, freeze (copy-on-write) the paths whose state
at the mark is not stored yet, snapshot the objects table; resume; --post
hook. Writes are held from the pause to the resume ("held" in the
output), which does not grow with the data not yet uploaded. The
checkpoint is then "captured"; in the background it becomes "stored" once
everything up to the mark is in the target: the manifest
TARGET/.scribefs/checkpoints/NAME.json (every object: path, type, size,
mode, uid, gid, mtime_ns, etag, sha256, version_id) is stored and a
'checkpoint' record appended. --wait returns only then (exit 5 when
--timeout passes first: the checkpoint stays captured; exit 1 when it
failed). See 'scribectl checkpoints'. Without a copy-on-write spool the
uploads are awaited under the pause and the checkpoint returns stored.

Hooks run with SCRIBEFS_CHECKPOINT=NAME, SCRIBEFS_HOOK=pre|post,
SCRIBEFS_STATE_DIR, SCRIBEFS_DATADIR (with -m) and, for --post,
SCRIBEFS_CHECKPOINT_RESULT=ok|failed; their output goes to stderr.
On a terminal, progress is shown while uploads are awaited. Ctrl-C
cancels the checkpoint (writes resume) and still runs --post.

With --json: {ok, name, state (captured|stored|failed), seq, frozen,
checkpoint_seq (stored), manifest_key, target, paths, time_ns, held_ms,
writeback_ms, quiet_ms, drain_ms, upload_wait_ms, manifest_ms,
manifest_bytes, stored_ns, pre_exit, post_exit, error}; with a capture also
frozen_before_ms (the frozen set's journal read, before the pause),
frozen_source (memory, or journal when too many changes came since) and
the steps under the hold: ranges_ms, pause_record_ms, frozen_ms,
capture_ms, snapshot_ms.)";

const std::string kCheckpointsFooter = std::string(kCommonOptions) + R"(

Lists every checkpoint with its state: captured (not yet stored),
stored, failed (with the reason), and whether the target holds its
manifest ("IN TARGET"). When scribefs is not running, lists the
journal's (stored) ones only and exits 4.

With --json: {checkpoints: [{name, state, seq (the mark), captured_ns,
stored_ns, held_ms, frozen, spool_bytes, error}], journal: [{name, seq,
time_ns, pause_seq, manifest_key, paths, held_ms, target}], target:
[{name, key, size, mtime}] or null, target_error}.)";

const std::string kFlushFooter = std::string(kCommonOptions) + R"(

Waits until every change journaled before the command is stored in the
target (files still open for writing are uploaded at once). Fails when
such a record failed to upload (see 'scribectl journal --state failed').
On a terminal, shows the pending count while it waits.

With --json: {ok, seq, waited_ms}.)";

const char* const kVerifyFooter = R"(
The global options -m DATADIR, --state-dir DIR and --json (see
'scribectl --help') may come before or after the command.

Compares every path of the directory (DATADIR of the mount, or --dir) with
the target (the mount's, as its daemon last noted it in the journal, or
--target): "missing" = a local path without an object, "extra" = an
object without a local path, "different" = both exist but differ:
type; regular files: size and content (SHA-256 of both; with --quick the
size and the mtime metadata instead, without reading content); symlinks:
the link target; directories: the "dir/" marker (so empty directories
count); fifos, sockets, devices: their empty object; for all: mode and
owner (x-amz-meta-mode/uid/gid), for files also mtime. Paths matched by
the excludes (the daemon's --exclude list from the journal, or the default
*.swp *.swx *~ .#*, plus --exclude) and the reserved .scribefs/ prefix
(checkpoint manifests) are ignored on both sides. Directories are named
with a trailing "/". Nothing is changed on either side.

Several targets: when the mount's journal knows several and no --target is
given, each is checked in turn with its own excludes ("== target NAME ==";
--json: {targets: [report + name + exit_code]}); the exit code is the first
failure's if any, else 6 if any target differs, else 0.

Run 'scribectl flush' first: in async mode, changes not yet uploaded are
reported as differences. A file that changes while verify runs may be
reported too. Reading DATADIR while it is mounted is fine (passthrough).

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
(AWS_SESSION_TOKEN), as for scribefs; they are never printed.

Exit codes: 0 identical; 6 differences found; 1 some path could not be
compared (or listing the target failed); 2 usage; 3 no state for that
mount (and no --target).

--history [--deep] checks the target's history instead of the directory:
every chunk (.scribefs/chunks/) referenced by a retained base or delta of
the timeline must exist with its size (one List of the chunks), and with
--deep its SHA-256 (every chunk is read). Missing, wrong-size and corrupt
chunks are listed with the paths and seqs that need them; exit 6 when there
are any, 1 when a segment or chunk could not be read. With --json: {ok,
target, deep, segments, entries, first_seq, last_seq, chunks, chunk_bytes,
bytes_hashed, problems: [{key, kind, detail, size, uses, used_by: [{path,
seq, segment}]}], errors: [{key, error}], seconds}.

With --json: {identical, checked, missing: [path], extra: [path],
different: [{path, reason}], errors: [{path, error}], seconds, quick,
path, bytes_compared, target, dir}.

Examples:
  scribectl -m /data flush && scribectl -m /data verify
  scribectl -m /data verify --quick --path docs
  scribectl verify --target s3://backup/data --endpoint http://rgw:7480 --dir /data
  scribectl -m /data --json verify | jq -r '.different[].path'
  scribectl -m /data verify --history --deep)";

const std::string kRetryFooter = std::string(kCommonOptions) + R"(

Puts every failed record back to pending; the uploader tries them again.

With --json: {ok, requeued}.)";

const std::string kRescanFooter = std::string(kCommonOptions) + R"(

Compares DATADIR with what the target holds (as the daemon does at every
start) and journals a 'reconcile' record for every path that is new,
changed (type, size, mtime, mode or owner) or missing, so that changes
made to DATADIR behind the mount's back (scribefs mounted on a separate
MOUNTPOINT, DATADIR written directly) are uploaded. Paths whose changes
are still waiting for their upload are left to those records ("already
pending"). The scan does not hold writes; the final check does, for a
moment ("writes held"). During a pause, that check waits for the resume.
Then 'scribectl flush' waits until the changes are stored.

With --json: {ok, scanned, new, changed, missing, pending, records,
seconds, hold_ms, waited_for_pause}.)";

const std::string kSetFooter = std::string(kCommonOptions) + R"(

Keys:
  bwlimit   the upload bandwidth limit (--bwlimit): a rate such as 5M, 512K
            or off (B K M G T = bytes, KiB, MiB, GiB, TiB per second), or a
            timetable "08:00,512K 19:00,10M 23:00,off" (days: Mon-08:00,1M).
            It replaces the --bwlimit rate or timetable until the daemon
            restarts; uploads in progress follow it within a second.

An unknown key or a bad value is exit 2; a daemon without --target refuses
bwlimit (exit 1).

With --json: {ok, key, value, bandwidth {limit_bps (null = off), schedule,
source (option, schedule or set), rate_bps}}.

Examples:
  scribectl -m /data set bwlimit 5M
  scribectl -m /data set bwlimit off
  scribectl -m /data set bwlimit "08:00,1M 19:00,off")";

// Every subcommand and the options it fills in.
struct Commands {
  JournalOptions jopts;
  PauseOptions popts;
  CheckpointOptions copts;
  FlushOptions fopts;
  VerifyOptions vopts;
  RestoreCommandOptions ropts;
  PruneCommandOptions pruneopts;
  RescanOptions scopts;
  CLI::App* journal = nullptr;
  CLI::App* stats = nullptr;
  CLI::App* status = nullptr;
  CLI::App* pause = nullptr;
  CLI::App* resume = nullptr;
  CLI::App* checkpoint = nullptr;
  CLI::App* checkpoints = nullptr;
  CLI::App* flush = nullptr;
  CLI::App* retry = nullptr;
  CLI::App* verify = nullptr;
  CLI::App* restore = nullptr;
  CLI::App* prune = nullptr;
  CLI::App* rescan = nullptr;
  CLI::App* completion = nullptr;
  std::string shell;
  StopOptions stopts;
  CLI::App* stop = nullptr;
  SetOptions setopts;
  CLI::App* set = nullptr;
  HistoryCommands history;  // history PATH, timeline (tools/history_command.h)
};

// -m, --state-dir, --json: accepted before or after the command.
void AddGlobalOptions(CLI::App& app, GlobalOptions& global) {
  app.add_option("-m,--mount", global.datadir,
                 "The data directory that scribefs serves (as given to the scribefs\n"
                 "daemon), or its mount point while mounted. Its state directory,\n"
                 "which holds the journal, is derived from the absolute path of DATADIR.")
      ->type_name("DATADIR");
  app.add_option("--state-dir", global.state_dir,
                 "Use the state directory DIR (the one holding journal.db) instead of\n"
                 "deriving it from -m. Overrides -m.")
      ->type_name("DIR");
  app.add_flag("--json", global.json,
               "Machine-readable output for scripts (see the help of each command).");
}

// Commands that read the journal: journal (log), stats.
void AddJournalCommands(CLI::App& app, Commands& c) {
  c.journal =
      app.add_subcommand("journal", "List journal records: every change and its upload state.");
  c.journal->alias("log");
  c.journal
      ->add_option("--since", c.jopts.since,
                   std::string("Only records at or after this point. ") + kTimeFormsHelp + ".")
      ->type_name("SEQ|TIME")
      ->check(CheckedBy(ValidateSeqOrTime));
  c.journal
      ->add_option("--until", c.jopts.until,
                   "Only records at or before this point (same forms as --since).")
      ->type_name("SEQ|TIME")
      ->check(CheckedBy(ValidateSeqOrTime));
  c.journal
      ->add_option("--path", c.jopts.path_glob,
                   "Only records whose path or new path matches GLOB (SQLite GLOB:\n"
                   "* and ? match any characters including '/', [abc] a set; case\n"
                   "sensitive). Paths are relative to DATADIR; a leading '/' is\n"
                   "ignored, so 'docs/*' and '/docs/*' both match everything under docs.")
      ->type_name("GLOB");
  c.journal->add_option("--op", c.jopts.op, "Only records of this operation, one of:\n" + OpList())
      ->type_name("OP")
      ->check(CheckedBy(ValidateOpName));
  c.journal
      ->add_option("--state", c.jopts.state,
                   "Only records in this upload state: pending (not yet uploaded),\n"
                   "uploading, done, failed (see the error; 'scribectl retry' requeues),\n"
                   "or skipped (the local operation failed; nothing to upload).")
      ->type_name("STATE")
      ->check(CheckedBy(ValidateStateName));
  c.journal
      ->add_option("--target", c.jopts.target,
                   "Show the upload state (state, attempts, error) as this target has\n"
                   "it, by name (or URL), and --state filters on it: with several\n"
                   "targets a record is done only when every one has stored it.")
      ->type_name("NAME");
  c.journal
      ->add_option("-n,--limit", c.jopts.limit,
                   "Show only the last N matching records (still oldest first).\n"
                   "Default: all, or the last 10 with --follow and no --since.")
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& v) { return v.starts_with('-') ? "N must not be negative" : ""; }, ""));
  c.journal->add_flag("-f,--follow", c.jopts.follow,
                    "After listing, keep printing new records as they are committed\n"
                    "(polls every 200 ms) until interrupted (Ctrl-C or SIGTERM; exit 0).\n"
                    "Cannot be combined with --until.");
  c.journal->footer(kJournalFooter);

  c.stats = app.add_subcommand(
      "stats", "Summarize the journal: records by operation and state, pending work.");
  c.stats->footer(kStatsFooter);
}

// Commands that talk to the daemon (control socket).
void AddControlCommands(CLI::App& app, Commands& c) {
  c.status = app.add_subcommand(
      "status", "Show the mount: running, mode, target, pause, pending work, last checkpoint.");
  c.status->footer(kStatusFooter);

  c.pause = app.add_subcommand(
      "pause", "Hold every new mutating operation (reads continue) until 'resume' or the timeout.");
  c.pause->add_option("-t,--timeout", c.popts.timeout_s,
                    "Resume by itself after S seconds (default 60; at most the daemon's\n"
                    "--max-pause, default 3600).")
      ->type_name("S")
      ->check(PositiveSeconds());
  c.pause->add_flag("--sync", c.popts.sync,
                  "Also make DATADIR's data durable (syncfs) before the pause is\n"
                  "reported, e.g. before a block-level snapshot of the backing disk.");
  c.pause->footer(kPauseFooter);

  c.resume = app.add_subcommand("resume", "End the pause: held operations proceed.");
  c.resume->footer(kResumeFooter);

  c.checkpoint = app.add_subcommand(
      "checkpoint", "Take a named, consistent checkpoint: pause, upload, store a manifest, resume.");
  c.checkpoint->add_option("NAME", c.copts.name,
                         "1-100 characters from A-Z a-z 0-9 . _ -, not starting with '.';\n"
                         "names are never reused.")
      ->required();
  c.checkpoint
      ->add_option("-t,--timeout", c.copts.timeout_s,
                   "Give up (and resume) if the checkpoint is not captured S seconds\n"
                   "after writes were paused (default 60); with --wait, also the bound\n"
                   "of the wait until stored (the checkpoint then stays captured and\n"
                   "is stored in the background). Exit code 5.")
      ->type_name("S")
      ->check(PositiveSeconds());
  c.checkpoint->add_flag("--wait", c.copts.wait,
                         "Return when the checkpoint is stored in the target, not when it\n"
                         "is captured (--post then runs after it is stored).");
  c.checkpoint
      ->add_option("--pre", c.copts.pre,
                   "Run CMD (sh -c) before pausing, e.g. to make a database flush;\n"
                   "if it fails, no checkpoint is taken (exit 1).")
      ->type_name("CMD");
  c.checkpoint
      ->add_option("--post", c.copts.post,
                   "Run CMD (sh -c) after the checkpoint, whether it succeeded or not\n"
                   "(and after a failed --pre), e.g. to let the application go on.")
      ->type_name("CMD");
  c.checkpoint->footer(kCheckpointFooter);

  c.checkpoints = app.add_subcommand(
      "checkpoints", "List checkpoints: those the journal recorded and those in the target.");
  c.checkpoints->footer(kCheckpointsFooter);

  c.flush = app.add_subcommand(
      "flush", "Wait until every change made so far is stored in the target.");
  c.flush->add_option("-t,--timeout", c.fopts.timeout_s,
                    "Give up after S seconds (exit 5). Default: wait as long as it takes.")
      ->type_name("S")
      ->check(PositiveSeconds());
  c.flush->footer(kFlushFooter);

  c.retry = app.add_subcommand("retry", "Requeue every failed upload.");
  c.retry->footer(kRetryFooter);

  c.set = app.add_subcommand("set", "Change a setting of the running daemon until it restarts.");
  c.set->add_option("KEY", c.setopts.key, "bwlimit")->required();
  c.set->add_option("VALUE", c.setopts.value, "The new value (see below)")->required();
  c.set->footer(kSetFooter);
}

// Commands that read the target: verify and restore; and rescan.
void AddTargetCommands(CLI::App& app, Commands& c) {
  c.verify = app.add_subcommand(
      "verify", "Compare the target with the directory: missing, extra and different paths.");
  c.verify->add_flag("--quick", c.vopts.quick,
                   "Compare files by size and mtime metadata only (no content download).");
  c.verify
      ->add_option("--path", c.vopts.path,
                   "Only this path (a file, or a directory and everything below it),\n"
                   "relative to the directory; a leading '/' is ignored.")
      ->type_name("PATH");
  c.verify
      ->add_option("--dir", c.vopts.dir,
                   "Compare with DIR instead of the mount's DATADIR (needed when only\n"
                   "--target is given).")
      ->type_name("DIR");
  c.verify->add_option("-j,--workers", c.vopts.workers, "Parallel requests to the target (default 8).")
      ->type_name("N")
      ->check(IntegerFromTo(1, 64));
  c.verify
      ->add_option("-n,--limit", c.vopts.limit,
                   "List at most N paths of each kind (default 20; 0 = all). --json\n"
                   "always lists all.")
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& v) { return v.starts_with('-') ? "N must not be negative" : ""; }, ""));
  // Issue 11, item 6.
  c.verify->add_flag("--history", c.vopts.history,
                     "Check the target's history instead: every chunk its timeline\n"
                     "references exists with its size.");
  c.verify->add_flag("--deep", c.vopts.deep,
                     "With --history: also read every chunk and check its SHA-256.");
  AddTargetOptions(c.verify, &c.vopts.target);
  c.verify->footer(kVerifyFooter);
  c.restore = AddRestoreCommand(&app, &c.ropts);
  AddHistoryCommands(&app, &c.history);
  c.prune = AddPruneCommand(&app, &c.pruneopts);
  c.rescan = app.add_subcommand(
      "rescan", "Find changes made to DATADIR behind the mount and upload them.");
  c.rescan->add_option("-t,--timeout", c.scopts.timeout_s,
                     "Give up after S seconds (exit 5). Default: wait as long as it takes.")
      ->type_name("S")
      ->check(PositiveSeconds());
  c.rescan->footer(kRescanFooter);
}

// `stop` (tools/stop_command.h).
void AddStopCommand(CLI::App& app, Commands& c) {
  c.stop = app.add_subcommand(
      "stop", "Stop the mount cleanly: unmount, let pending uploads finish (--stop-timeout).");
  c.stop->add_flag("--wait", c.stopts.wait, "Return once the daemon has exited.");
  c.stop
      ->add_option("-t,--timeout", c.stopts.timeout_s,
                   "With --wait: give up after S seconds (exit 5).")
      ->type_name("S")
      ->check(CLI::PositiveNumber);
}


// Hidden: `scribectl completion bash` prints the bash completion script
// (installed as /usr/share/bash-completion/completions/scribectl).
void AddCompletionCommand(CLI::App& app, Commands& c) {
  c.completion = app.add_subcommand("completion", "Print the bash completion script.");
  c.completion->group("");  // hidden from --help and from the completion itself
  c.completion->add_option("SHELL", c.shell, "bash")->required()->check(CLI::IsMember({"bash"}));
}

// Every command name and alias, hidden ones included.
std::vector<std::string> CommandNames(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
    out.push_back(s->get_name());
    for (const std::string& a : s->get_aliases()) out.push_back(a);
  }
  return out;
}

int Dispatch(const GlobalOptions& global, Commands& c, const CLI::App& app) {
  if (c.completion->parsed()) {
    fputs(BashCompletion(app).c_str(), stdout);
    return FinishOutput();
  }
  if (c.journal->parsed()) return RunJournal(global, c.jopts);
  if (c.stats->parsed()) return RunStats(global);
  if (c.status->parsed()) return RunStatus(global);
  if (c.pause->parsed()) return RunPause(global, c.popts);
  if (c.resume->parsed()) return RunResume(global);
  if (c.checkpoint->parsed()) return RunCheckpoint(global, c.copts);
  if (c.checkpoints->parsed()) return RunCheckpoints(global);
  if (c.flush->parsed()) return RunFlush(global, c.fopts);
  if (c.retry->parsed()) return RunRetry(global);
  if (c.verify->parsed()) return RunVerify(global, c.vopts);
  if (c.restore->parsed()) return RunRestore(global, c.ropts);
  if (auto code = RunHistoryCommands(global, c.history)) return *code;
  if (c.prune->parsed()) return RunPrune(global, c.pruneopts);
  if (c.rescan->parsed()) return RunRescan(global, c.scopts);
  if (c.stop->parsed()) return RunStop(global, c.stopts);
  if (c.set->parsed()) return RunSet(global, c.setopts);
  return Fail(kExitUsage, "no command given; run 'scribectl --help'");
}

int Main(int argc, char** argv) {
  GlobalOptions global;
  Commands c;

  CLI::App app(
      "scribectl: inspect and control a scribefs mount.\n"
      "Reads the journal of the mount read-only; safe while scribefs runs.",
      "scribectl");
  app.set_version_flag("--version", std::string("scribectl ") + SCRIBEFS_VERSION,
                       "Print the version and exit.");
  app.require_subcommand(1);
  app.fallthrough();  // global options are accepted after the command too
  app.get_formatter()->column_width(28);
  app.option_defaults()->always_capture_default(false);

  AddGlobalOptions(app, global);
  AddJournalCommands(app, c);
  AddControlCommands(app, c);
  AddStopCommand(app, c);
  AddTargetCommands(app, c);
  AddCompletionCommand(app, c);

  app.footer(kMainFooter);
  // With --json every error is one JSON object on stderr (ctl_common.h),
  // usage errors too; --json may come anywhere, so look before parsing.
  std::vector<std::string> args(argv + 1, argv + argc);
  bool json_errors = std::find(args.begin(), args.end(), "--json") != args.end();
  SetJsonErrors(json_errors);
  app.failure_message([json_errors](const CLI::App* a, const CLI::Error& e) {
    std::string where = "scribectl";
    for (const CLI::App* sub : a->get_subcommands()) where += " " + sub->get_name();
    std::string msg = std::string(e.what()) + "; run '" + where + " --help' for usage";
    if (json_errors) return JsonError(kExitUsage, msg) + "\n";
    return "scribectl: " + std::string(e.what()) + "\nRun '" + where + " --help' for usage.\n";
  });
  if (auto unknown = UnknownCommandMessage(args, CommandNames(app), {"-m", "--mount", "--state-dir"}))
    return Fail(kExitUsage, *unknown);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  return Dispatch(global, c, app);
}

}  // namespace
}  // namespace scribefs::ctl

int main(int argc, char** argv) {
  try {
    return scribefs::ctl::Main(argc, argv);
  } catch (const std::exception& e) {
    return scribefs::ctl::Fail(scribefs::ctl::kExitFailure, e.what());
  } catch (...) {
    return scribefs::ctl::Fail(scribefs::ctl::kExitFailure, "unexpected error");
  }
}
