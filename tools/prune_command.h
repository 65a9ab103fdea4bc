// `scribectl prune [--dry-run] [--retention D] [--keep-hourly N]
// [--keep-daily N] [--keep-checkpoints N] [--prune-grace D]`: deletes the
// history (timeline segments and chunks, history/prune.h) that the retention
// policy no longer needs, in the target of a mount (-m) or any target
// (--target), without the daemon. Prints what it deleted (or would delete)
// and the older points it kept.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tools/ctl_common.h"
#include "tools/target_access.h"

namespace scribefs::ctl {

struct PruneCommandOptions {
  std::string retention = "7d";
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_checkpoints = 0;
  std::string grace = "1h";
  bool dry_run = false;
  // Also compact the timeline in levels and write a base if the newest is
  // older than base_interval ("off": none), before the prune.
  bool compact = false;
  std::string base_interval = "1h";
  TargetFlags target;
};

// Adds the `prune` subcommand (options, --help text) to app.
CLI::App* AddPruneCommand(CLI::App* app, PruneCommandOptions* options);

// Runs it; returns the exit code (0 ok, 1 failed, 2 usage, 3 no state for -m).
int RunPrune(const GlobalOptions& global, const PruneCommandOptions& options);

}  // namespace scribefs::ctl
