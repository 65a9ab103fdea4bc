// scribectl: the command-line client of scribefs. It reads the journal of a
// mount directly (read-only, safe while the daemon writes it); later commands
// talk to the daemon through its control socket.
//
//   scribectl [-m DATADIR | --state-dir DIR] [--json] COMMAND [options]
//
// Exit codes (scripts may rely on them; README copies this list):
//   0  success
//   1  failure (unreadable journal, I/O or SQLite error, ...)
//   2  usage error: unknown command or option, bad option value
//   3  no scribefs state (journal) for that mount: not mounted, or wrong -m/--state-dir
//   4  reserved: the daemon is not running (commands that need the control socket)
//   5  reserved: a wait timed out
// Errors are printed on stderr as "scribectl: <message>".
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "journal/record.h"
#include "tools/ctl_common.h"
#include "tools/journal_command.h"
#include "tools/stats_command.h"
#include "tools/time_spec.h"

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
  4  the daemon is not running (reserved for commands that talk to it)
  5  a wait timed out (reserved)

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
by_op ({op: records}), by_state ({state: records}, every state present)
and by_op_state ({op: {state: records}}).)";

int Main(int argc, char** argv) {
  GlobalOptions global;
  JournalOptions jopts;

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

  app.add_option("-m,--mount", global.datadir,
                 "The data directory that scribefs serves (as given to the scribefs\n"
                 "daemon). Its state directory, which holds the journal, is derived\n"
                 "from the absolute path of DATADIR.")
      ->type_name("DATADIR");
  app.add_option("--state-dir", global.state_dir,
                 "Use the state directory DIR (the one holding journal.db) instead of\n"
                 "deriving it from -m. Overrides -m.")
      ->type_name("DIR");
  app.add_flag("--json", global.json,
               "Machine-readable output for scripts (see the help of each command).");

  CLI::App* journal =
      app.add_subcommand("journal", "List journal records: every change and its upload state.");
  journal->alias("log");
  journal
      ->add_option("--since", jopts.since,
                   std::string("Only records at or after this point. ") + kTimeFormsHelp + ".")
      ->type_name("SEQ|TIME")
      ->check(CheckedBy(ValidateSeqOrTime));
  journal
      ->add_option("--until", jopts.until,
                   "Only records at or before this point (same forms as --since).")
      ->type_name("SEQ|TIME")
      ->check(CheckedBy(ValidateSeqOrTime));
  journal
      ->add_option("--path", jopts.path_glob,
                   "Only records whose path or new path matches GLOB (SQLite GLOB:\n"
                   "* and ? match any characters including '/', [abc] a set; case\n"
                   "sensitive). Paths are relative to DATADIR; a leading '/' is\n"
                   "ignored, so 'docs/*' and '/docs/*' both match everything under docs.")
      ->type_name("GLOB");
  journal->add_option("--op", jopts.op, "Only records of this operation, one of:\n" + OpList())
      ->type_name("OP")
      ->check(CheckedBy(ValidateOpName));
  journal
      ->add_option("--state", jopts.state,
                   "Only records in this upload state: pending (not yet uploaded),\n"
                   "uploading, done, failed (see the error; 'scribectl retry' requeues),\n"
                   "or skipped (the local operation failed; nothing to upload).")
      ->type_name("STATE")
      ->check(CheckedBy(ValidateStateName));
  journal
      ->add_option("-n,--limit", jopts.limit,
                   "Show only the last N matching records (still oldest first).\n"
                   "Default: all, or the last 10 with --follow and no --since.")
      ->type_name("N")
      ->check(CLI::Validator(
          [](std::string& v) { return v.starts_with('-') ? "N must not be negative" : ""; }, ""));
  journal->add_flag("-f,--follow", jopts.follow,
                    "After listing, keep printing new records as they are committed\n"
                    "(polls every 200 ms) until interrupted (Ctrl-C or SIGTERM; exit 0).\n"
                    "Cannot be combined with --until.");
  journal->footer(kJournalFooter);

  CLI::App* stats = app.add_subcommand(
      "stats", "Summarize the journal: records by operation and state, pending work.");
  stats->footer(kStatsFooter);

  app.footer(kMainFooter);
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    std::string where = "scribectl";
    for (const CLI::App* sub : a->get_subcommands()) where += " " + sub->get_name();
    return "scribectl: " + std::string(e.what()) + "\nRun '" + where + " --help' for usage.\n";
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  if (journal->parsed()) return RunJournal(global, jopts);
  if (stats->parsed()) return RunStats(global);
  return Fail(kExitUsage, "no command given; run 'scribectl --help'");
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
