// The scribefs command line: every flag, its check and its help text
// (README, "Usage"; `scribefs --help`). A --config file sets the same keys.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/config.h"

namespace scribefs {

// Fills cfg from argv. An exit code when the process should end now (--help:
// kExitOk after printing it; a bad flag: kExitUsage after the message),
// nullopt to go on.
std::optional<int> ParseCommandLine(int argc, char** argv, Config& cfg);

// ---- the parts of ParseCommandLine, exposed for tests ----------------------

// Where `--config NAME` (a NAME without '/') looks for NAME.conf:
// $SCRIBEFS_CONFIG_DIR, or /etc/scribefs.
std::string ConfigDir();

// The name of `names` nearest to `key` when it is plausibly a typo of it,
// else "".
std::string NearestName(const std::string& key, const std::set<std::string>& names);

// The arguments (without argv[0]) as the parser takes them: each item of a
// -o list whose key is a long option name ('_' as '-') becomes --key[=value]
// (so that mount.fuse3 and fstab reach every option); the other items go on
// to FUSE as one -o list at the end. `--config NAME` (no '/', and no such
// file in the working directory) becomes the path of NAME.conf in ConfigDir(). EINVAL for a -o
// without a value.
Result<std::vector<std::string>> ExpandArgs(const std::vector<std::string>& args,
                                            const std::set<std::string>& names);

// "2s", "500ms", "1m", "1.5h", "3" (seconds) -> seconds; EINVAL otherwise
// (also for 0 and negative values: a bound must be positive).
Result<double> ParseDuration(const std::string& text);
// "8M", "512K", "1G", "1.5GiB", "4096" (bytes) -> bytes; binary units (K =
// 1024); EINVAL otherwise (also for 0).
Result<uint64_t> ParseSize(const std::string& text);
// --max-lag / --max-pending: parses them into cfg.max_lag_s and
// cfg.max_pending_bytes and checks that they fit the mount (a target, async
// mode). The message when not.
std::optional<std::string> CheckLagOptions(Config& cfg);
// --history / --history-interval: into cfg.history_on and
// cfg.history_interval_s; refused without a target. The message when not.
std::optional<std::string> CheckHistoryOptions(Config& cfg);

// Checks every key of the TOML/INI config file at path against `names`; an
// unknown key is EINVAL naming it and the nearest valid key. datadir and
// mountpoint (any case) are returned through the pointers.
Status CheckConfigFile(const std::string& path, const std::set<std::string>& names,
                       std::string* datadir, std::string* mountpoint);

}  // namespace scribefs
