// The daemon's start-up checks, run before anything changes on disk (the
// command line) or before the mount (state directory, lock, stale mount).
// Each failure is a StartError with the exit code README documents.
#pragma once

#include <optional>
#include <string>

#include "common/unique_fd.h"
#include "daemon/config.h"

namespace scribefs {

// Canonical form of a path that may not exist yet: realpath of the longest
// existing ancestor plus the rest, lexically normalized.
std::string CanonicalMaybeMissing(const std::string& path);

// A scribefs mount at exactly `path`, per /proc/self/mountinfo.
bool IsScribefsMount(const std::string& path);

// The fsname a mount of DATADIR shows as its source in /proc/self/mountinfo.
std::string FsName(const std::string& datadir);
// A scribefs mount of datadir anywhere, per /proc/self/mountinfo.
bool DatadirMounted(const std::string& datadir);

// Detaches the mount a daemon killed with SIGKILL left at `path`, if any.
void ClearStaleMount(const std::string& path);

// Creates the state directory (owner-only) and checks that it is usable.
std::optional<StartError> PrepareStateDir(const std::string& dir);

// Checks DATADIR, MOUNTPOINT and the state directory of the command line and
// makes them canonical (the state directory defaults from DATADIR); they must
// not contain each other. Also checks that /dev/fuse is usable.
std::optional<StartError> CheckCommandLine(Config& cfg);

// Refuses a file:// target inside DATADIR, MOUNTPOINT or the state
// directory, and --endpoint without --target (cfg canonical).
std::optional<StartError> CheckTargetPlacement(const Config& cfg);

// Takes the state directory's lock (flock on lock_path, held through `lock`
// for the daemon's lifetime) and writes the daemon's pid into it. When
// another daemon holds it: busy if DATADIR is still mounted, else (that
// daemon is stopping) waits up to --stop-timeout + 10 s for it, saying so once.
std::optional<StartError> LockStateDir(const Config& cfg, const std::string& lock_path,
                                       UniqueFd& lock);

}  // namespace scribefs
