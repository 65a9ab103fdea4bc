// What every scribectl command shares: exit codes, the global options, error
// printing, and finding and opening the journal of a mount.
#pragma once

#include <memory>
#include <string>

#include "common/state_dir.h"
#include "common/status.h"
#include "journal/reader.h"

namespace scribefs::ctl {

// Exit codes (documented in scribectl.cc and README; scripts rely on them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // anything else that went wrong
inline constexpr int kExitUsage = 2;     // bad command line
inline constexpr int kExitNoState = 3;   // no journal/state for that mount
inline constexpr int kExitNoDaemon = 4;  // reserved: the daemon is not running
inline constexpr int kExitTimeout = 5;   // reserved: a wait timed out
inline constexpr int kExitDifferences = 6;  // verify: the target differs from the directory
inline constexpr int kExitRefused = 7;      // restore: keys refused as unsafe (nothing else failed)

struct GlobalOptions {
  std::string datadir;    // -m DATADIR, as given
  std::string state_dir;  // --state-dir DIR, as given
  bool json = false;      // --json
};

// Where the state of a mount lives, and how we got there (for messages).
struct StateLocation {
  std::string datadir;  // canonical DATADIR when -m was used, else empty
  StatePaths paths;
  std::string source;  // "--state-dir", "-m", or "SCRIBEFS_STATE_DIR"
};

// --state-dir wins, then -m DATADIR (canonicalized, default state dir), then
// env_state_dir ($SCRIBEFS_STATE_DIR; may be null). EINVAL when none is given,
// the errno of realpath when DATADIR cannot be resolved. Does not touch the
// state directory itself.
Result<StateLocation> LocateState(const GlobalOptions& options, const char* env_state_dir);

// Prints "scribectl: <message>" on stderr and returns exit_code; with
// SetJsonErrors(true) (--json) the error is one JSON object on one line of
// stderr instead, JsonError(exit_code, message), so that a script reads
// stdout as the command's output only and stderr as the error, every time.
int Fail(int exit_code, const std::string& message);
void SetJsonErrors(bool on);
bool JsonErrors();
// A note for people on stderr ("scribectl: note: ..."); with --json the
// object {"note": MESSAGE} on one line, so that stderr stays JSON lines.
void Note(const std::string& message);
// {"ok":false,"error":MESSAGE,"exit_code":N}
std::string JsonError(int exit_code, const std::string& message);

// Locates and opens the journal (read-only). On failure prints a message that
// says what to do and returns nullptr with *exit_code set (kExitUsage,
// kExitNoState or kExitFailure).
std::unique_ptr<JournalReader> OpenJournalOrFail(const GlobalOptions& options,
                                                 StateLocation* location, int* exit_code);

// Flushes stdout; a write error (full disk, closed pipe) is a failure.
int FinishOutput();

}  // namespace scribefs::ctl
