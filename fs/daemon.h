// The scribefs daemon: parses the command line, checks it, mounts, serves.
#pragma once

namespace scribefs {

// Exit codes of the scribefs command (README, "Exit codes").
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // runtime failure (mount, journal, I/O)
inline constexpr int kExitUsage = 2;     // bad command line or bad DATADIR/state dir
inline constexpr int kExitBusy = 3;      // another daemon already serves this DATADIR/state dir

int DaemonMain(int argc, char** argv);

}  // namespace scribefs
