// `scribectl history PATH` (the stored versions of one path) and `scribectl
// timeline` (what the target's history can restore: range, bases, segments,
// checkpoints, storage). Both read the target only (-m names the mount whose
// target it is, or --target gives it), never the journal's records, so they
// work on a machine that never saw the mount.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "tools/ctl_common.h"
#include "tools/target_access.h"

namespace scribefs::ctl {

struct HistoryCommands {
  CLI::App* history = nullptr;
  CLI::App* timeline = nullptr;
  std::string path;  // history PATH
  TargetFlags history_target;
  TargetFlags timeline_target;
};

// Adds `history` and `timeline` (options, --help text) to app.
void AddHistoryCommands(CLI::App* app, HistoryCommands* c);

// Runs the one that was parsed; nullopt when neither was. Exit codes: 0 ok;
// 1 failed (no history, unreadable segment, no version of PATH); 2 usage;
// 3 no state for -m.
std::optional<int> RunHistoryCommands(const GlobalOptions& global, const HistoryCommands& c);

}  // namespace scribefs::ctl
