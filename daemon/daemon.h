// The scribefs daemon (executable main: daemon/main.cc). DaemonMain parses the
// command line (options.h), checks it (startup_checks.h), goes to the
// background unless -f (daemonize.h), and serves: it wires the journal, the
// uploader, the Filesystem, the control plane (control_plane.h) and the FUSE
// session together, and shuts them down in order (daemon.cc).
#pragma once

namespace scribefs {

// Exit codes of the scribefs command (README, "Exit codes").
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;   // runtime failure (mount, journal, I/O)
inline constexpr int kExitUsage = 2;     // bad command line or bad DATADIR/state dir
inline constexpr int kExitBusy = 3;      // another daemon already serves this DATADIR/state dir

int DaemonMain(int argc, char** argv);

}  // namespace scribefs
