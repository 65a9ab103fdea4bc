// The daemon's start-up checks, run before anything changes on disk (the
// command line) or before the mount (state directory, lock, stale mount).
// Each failure is a StartError with the exit code README documents.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/unique_fd.h"
#include "daemon/config.h"
#include "journal/run_marker.h"

namespace scribefs {

// Canonical form of a path that may not exist yet: realpath of the longest
// existing ancestor plus the rest, lexically normalized.
std::string CanonicalMaybeMissing(const std::string& path);

// A scribefs mount at exactly `path`, per /proc/self/mountinfo.
bool IsScribefsMount(const std::string& path);

// The fsname a mount of DATADIR shows as its source in /proc/self/mountinfo:
// DATADIR itself, unchanged (the FUSE option string escapes what it must), so
// that `scribectl -m MOUNTPOINT` finds the DATADIR even with spaces or commas.
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

// Refuses a file:// target (any of cfg.targets, or cfg.target) inside
// DATADIR, MOUNTPOINT or the state directory, and --endpoint without a
// target (cfg canonical).
std::optional<StartError> CheckTargetPlacement(const Config& cfg);

// Takes the state directory's lock (flock on lock_path, held through `lock`
// for the daemon's lifetime) and writes the daemon's pid into it. When
// another daemon holds it: busy if DATADIR is still mounted, else (that
// daemon is stopping) waits up to --stop-timeout + 10 s for it, saying so once.
std::optional<StartError> LockStateDir(const Config& cfg, const std::string& lock_path,
                                       UniqueFd& lock);

// The temporary manifest files the checkpoint verb writes in the state
// directory (daemon/checkpoint.cc): "." kCheckpointTempStem NAME ".XXXXXX".
inline constexpr std::string_view kCheckpointTempStem = "checkpoint-";
// True for a file name of that form (the decision, without I/O).
bool IsCheckpointTempName(std::string_view name);

// Removes (and logs) the temporary manifest files a daemon killed while it
// wrote one left in the state directory: regular files only, nothing else.
// Call only while holding the state directory's lock, so that no running
// daemon's file is removed. Returns how many it removed.
int RemoveStaleCheckpointTemps(const std::string& dir);

// ---- how the previous run ended (README, "What survives a crash or power loss")

// How the daemon before this one stopped, from the run marker it left.
enum class PreviousStop {
  kUnknown,         // no marker: a new journal, or one of a version without markers
  kClean,           // stopped cleanly: every record it committed is on disk
  kCrashSameBoot,   // died alone (kill -9, OOM): the page cache kept the order
  kCrashOtherBoot,  // unclean stop on an earlier boot: power loss or kernel crash
};
const char* PreviousStopName(PreviousStop p);

// Files changed up to this long before the previous run started are compared
// by content too: slack for a clock that was stepped during that run.
inline constexpr int64_t kContentCheckSlackNs = int64_t{300} * 1000000000;

struct StartCheckPlan {
  PreviousStop previous = PreviousStop::kUnknown;
  // When set, the start-up reconciliation also compares the SHA-256 of every
  // regular file whose ctime is at or after this time with what the target
  // holds (a record the data outlived may be lost). Unset: size and mtime only.
  std::optional<int64_t> content_since_ns;
};

// The decision, without I/O: an unclean stop on another boot (or no marker
// at all) needs the content check, for the files the previous run may have
// changed (ctime from its start, less kContentCheckSlackNs; every file when
// unknown); a clean stop or a crash on this boot keeps the quick check.
StartCheckPlan DecideStartCheck(const std::optional<RunMarker>& previous,
                                const std::string& boot_id_now);

// The running kernel's boot id: /proc/sys/kernel/random/boot_id, or the file
// named by $SCRIBEFS_BOOT_ID_FILE (for tests, which fake a reboot with it),
// without surrounding white space.
Result<std::string> CurrentBootId();

}  // namespace scribefs
