// The scribefs command line: every flag, its check and its help text
// (README, "Usage"; `scribefs --help`). A --config file sets the same keys.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <utility>
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

// A [target NAME] section of a --config file as written: each key (spelled
// with '_', as `ca-file` and `ca_file` are the same key) with its values, in
// file order. ResolveTargets checks the values.
struct TargetSection {
  std::string file;
  std::string name;
  std::vector<std::pair<std::string, std::vector<std::string>>> items;
};

// Checks every key of the TOML/INI config file at path against `names`; an
// unknown key is EINVAL naming it and the nearest valid key. datadir and
// mountpoint (any case) are returned through the pointers. Each [target NAME]
// section is appended to *sections (when given) after checking its keys
// against TargetSectionKeys(): its values are checked by ResolveTargets.
Status CheckConfigFile(const std::string& path, const std::set<std::string>& names,
                       std::string* datadir, std::string* mountpoint,
                       std::vector<TargetSection>* sections = nullptr);

// ---- several targets (issue 16) -------------------------------------------

// The keys of a [target NAME] section: url (required), endpoint, region,
// ca_file, mode, exclude, no_default_excludes, delete, part_size, workers.
const std::set<std::string>& TargetSectionKeys();

// A target name: [A-Za-z0-9._-]{1,64}, and not "." or ".." (a name may
// become a file name in the state directory).
bool IsValidTargetName(const std::string& name);

// The name of a --target URL's target: the last '/'-separated component of
// what follows "SCHEME://", trailing '/' ignored. So s3://BUCKET -> BUCKET,
// s3://BUCKET/a/b -> b, file:///mnt/usb/data -> data. Bytes outside
// [A-Za-z0-9._-] become '-', at most 64 are kept; "target" when nothing
// usable is left (file:///).
std::string DefaultTargetName(const std::string& url);

// Fills cfg.targets from the --target URLs (the command line's, or the config
// file's top-level `target` keys) and the [target NAME] sections, in that
// order. Each starts from the global replication options of cfg; a section's
// keys override them (`exclude` replaces the global list; `exclude = []`
// empties it). URL targets are named by DefaultTargetName, with -2, -3, ...
// on a collision. EINVAL for a bad value, a section without url, a bad or
// repeated name, or two targets with the same url (a trailing '/' aside).
// With exactly one target, also copies it into cfg.target, cfg.endpoint, ...
Status ResolveTargets(Config& cfg, const std::vector<std::string>& urls,
                      const std::vector<TargetSection>& sections);

// cfg as one target sees it: the single-target fields (target, endpoint,
// mode, excludes, ...) are t's. The daemon starts each target's uploader
// from its view.
Config ForTarget(const Config& cfg, const TargetConfig& t);

}  // namespace scribefs
