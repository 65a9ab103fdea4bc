// The `pause` and `resume` verbs (pause points: fs/pause_controller.h).
#include <cmath>

#include "daemon/verbs.h"

namespace scribefs::verbs {

json PauseVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx) {
  auto t = Seconds(req, "timeout_s", d.info.default_pause_s, d.pauser->max_pause_s());
  if (!t.ok()) return Error(t.status());
  std::string by = "scribectl";
  if (ctx.peer_pid() > 0) by += " (pid " + std::to_string(ctx.peer_pid()) + ")";
  auto sync = req.find("sync");
  if (sync != req.end() && !sync->is_boolean())
    return Error("invalid", "sync must be true or false");
  bool do_sync = sync != req.end() && sync->get<bool>();
  auto p = d.pauser->Pause(*t, by, do_sync);
  if (!p.ok()) return Error(p.status(), p.status().code() == EBUSY ? "paused" : "");
  return json{{"seq", p->seq},
              {"since_ns", p->since_ns},
              {"until_ns", p->until_ns},
              {"timeout_s", p->timeout_s},
              {"writeback_ms", Tenths(p->writeback_ms)},
              {"quiet_ms", Tenths(p->quiet_ms)},
              {"drain_ms", Tenths(p->drain_ms)},
              {"sync_ms", do_sync ? json(Tenths(p->sync_ms)) : json(nullptr)},
              {"writeback_complete", p->writeback_complete}};
}

json ResumeVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  auto r = d.pauser->Resume("command");
  if (!r.ok()) return Error(r.status(), r.status().code() == ENOENT ? "not_paused" : "");
  return json{{"seq", r->seq},
              {"pause_seq", r->pause_seq},
              {"held_ms", Tenths(r->held_ms)},
              {"held_ops", r->held_ops}};
}

}  // namespace scribefs::verbs
