// The scribefs command line: every flag, its check and its help text
// (README, "Usage"; `scribefs --help`). A --config file sets the same keys.
#pragma once

#include <optional>

#include "daemon/config.h"

namespace scribefs {

// Fills cfg from argv. An exit code when the process should end now (--help:
// kExitOk after printing it; a bad flag: kExitUsage after the message),
// nullopt to go on.
std::optional<int> ParseCommandLine(int argc, char** argv, Config& cfg);

}  // namespace scribefs
