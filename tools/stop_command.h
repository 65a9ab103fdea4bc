// `scribectl stop [--wait]`: ends a mount cleanly through the daemon's
// control socket (the `stop` verb, daemon/verb_stop.cc): the daemon unmounts
// and drains its uploads as on `fusermount3 -u`.
#pragma once

#include <optional>

#include "tools/ctl_common.h"

namespace scribefs::ctl {

struct StopOptions {
  bool wait = false;                // return once the daemon has exited
  std::optional<double> timeout_s;  // with wait; none: as long as it takes
};

int RunStop(const GlobalOptions& global, const StopOptions& options);

}  // namespace scribefs::ctl
