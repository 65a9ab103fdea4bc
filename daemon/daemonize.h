// Running the daemon in the background (without -f).
#pragma once

#include <functional>

#include "daemon/config.h"

namespace scribefs {

// True when stderr is the systemd journal's stream ($JOURNAL_STREAM names its
// device and inode, systemd.exec(5)): logs then go there, also in the
// background.
bool StderrIsJournal();

// Called once start-up is over: nullptr when the mount serves, else the error
// that ended start-up.
using ReadyFn = std::function<void(const StartError*)>;

// Forks. The child (a new session, working directory /) runs child(ready)
// and exits with its result; its `ready` tells the parent, through a pipe,
// whether the mount came up, and then detaches the child from the terminal
// (stdin, stdout and stderr become /dev/null; stderr stays when it is the
// journal's stream). The parent waits for that
// report, prints the error if there was one (else mounted_line on stdout),
// and returns the exit code to exit with (README, "Exit codes"). Threads must
// start only in the child.
int RunInBackground(const Config& cfg, const std::string& mounted_line,
                    const std::function<int(const ReadyFn&)>& child);

}  // namespace scribefs
