// scribectl commands that talk to the daemon through its control socket:
// status, pause, resume, checkpoint, checkpoints, flush, retry, rescan. Each prints a
// human summary, or with --json one JSON object on stdout (errors still go to
// stderr as "scribectl: ..."), and returns an exit code (tools/ctl_common.h).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "tools/ctl_common.h"

namespace scribefs::ctl {

struct PauseOptions {
  double timeout_s = 60;
  bool sync = false;
};

struct CheckpointOptions {
  std::string name;
  double timeout_s = 60;
  bool wait = false;  // until stored, not only captured
  std::optional<std::string> pre, post;  // hook commands (sh -c)
};

struct FlushOptions {
  std::optional<double> timeout_s;  // none: wait as long as it takes
};

int RunStatus(const GlobalOptions& global);
// The daemon's bounded-lag figures (its status's "lag" object) in one line,
// as `status` and `stats` print them.
std::string LagLine(const nlohmann::json& lag);
// The daemon's history figures (its status's "history" object) in one line;
// `last_seq`: the journal's last record (how far history is behind).
std::string HistoryLine(const nlohmann::json& history, int64_t last_seq);
int RunPause(const GlobalOptions& global, const PauseOptions& options);
int RunResume(const GlobalOptions& global);
int RunCheckpoint(const GlobalOptions& global, const CheckpointOptions& options);
int RunCheckpoints(const GlobalOptions& global);
int RunFlush(const GlobalOptions& global, const FlushOptions& options);
int RunRetry(const GlobalOptions& global);

struct RescanOptions {
  std::optional<double> timeout_s;  // none: wait as long as it takes
};
int RunRescan(const GlobalOptions& global, const RescanOptions& options);

// `set KEY VALUE`: the daemon's `set` verb (daemon/verb_set.cc), until restart.
inline constexpr const char* kSettableKeys[] = {"bwlimit"};
struct SetOptions {
  std::string key, value;
};
int RunSet(const GlobalOptions& global, const SetOptions& options);

}  // namespace scribefs::ctl
