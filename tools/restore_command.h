// `scribectl restore --to DIR [--checkpoint NAME | --at TIME|SEQ] [--path PREFIX]`: copies
// the target of a mount (or any target given with --target) back into a
// local directory, without the daemon. The engine is tools/restore.h; this
// file is the command line: options, the destination's safety checks
// (never the live DATADIR or mount point unless --force), progress on a
// terminal, Ctrl-C, the summary and the exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tools/ctl_common.h"
#include "tools/target_access.h"

namespace scribefs::ctl {

struct RestoreCommandOptions {
  std::string to;          // --to DIR (required)
  std::string checkpoint;  // --checkpoint NAME
  std::string at;          // --at TIME|SEQ: from the target's history (tools/restore_at.h)
  std::string path;        // --path PREFIX
  int workers = 8;
  bool force = false;
  bool same_owner = false;  // --same-owner
  bool special = false;     // --special
  bool dry_run = false;     // --dry-run: list what would be written/replaced, write nothing
  TargetFlags target;
};

// Adds the `restore` subcommand (options, --help text) to app.
CLI::App* AddRestoreCommand(CLI::App* app, RestoreCommandOptions* options);

// Runs it; returns the exit code (0 ok, 1 failed, 2 usage or unsafe
// destination, 3 no state for -m, 7 keys refused, 128+signal interrupted).
int RunRestore(const GlobalOptions& global, const RestoreCommandOptions& options);

}  // namespace scribefs::ctl
