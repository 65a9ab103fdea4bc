// The `stop` verb: ends the mount as an unmount or SIGTERM does.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "daemon/verbs.h"

namespace scribefs::verbs {

json StopVerb(const ControlDeps& d, const json&, const ControlRequest& ctx) {
  // d.stop takes the one shutdown path there is, SIGTERM's (daemon.cc): the
  // FUSE session ends, pending ranges are committed, the mount goes, and the
  // uploads drain for up to --stop-timeout. The answer is still written: the
  // server answers every request it dispatched before it stops.
  if (!d.stop) return Error("unsupported", "this daemon cannot be stopped through its socket");
  std::string by = "scribectl";
  if (ctx.peer_pid() > 0) by += " (pid " + std::to_string(ctx.peer_pid()) + ")";
  if (!d.stop()) return Error("starting", "the mount is not serving yet; try again in a moment");
  spdlog::info("stop requested by {}", by);
  return json{{"pid", getpid()}, {"mountpoint", d.info.mountpoint}, {"by", by}};
}

}  // namespace scribefs::verbs
