// The `rescan` verb: reconciliation on the live mount.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <thread>

#include "daemon/verbs.h"
#include "uploader/reconciler.h"

namespace scribefs::verbs {

// Reconciliation on the live mount: what changed in DATADIR behind the
// mount's back (with a MOUNTPOINT, DATADIR stays reachable) is journaled as
// `reconcile` records and uploaded. The tree walk holds nothing; the final
// check of each difference runs with the mutation gate closed for a moment
// (PauseController::Hold): see ReconcileOptions::quiesce for why that, plus
// the journal order, neither reports what the mount itself did nor loses
// anything. During a pause that final check waits for the resume: a pause
// promises that the journal does not change.
json RescanVerb(const ControlDeps& d, VerbLocks& shared, const json& req,
                const ControlRequest& ctx) {
  auto t = Seconds(req, "timeout_s", 7 * 86400, 7 * 86400);
  if (!t.ok()) return Error(t.status());
  if (!d.replicator)
    return Error("no_target", "no --target: rescan compares DATADIR with what the target holds");
  std::unique_lock one(shared.rescan_mu, std::try_to_lock);
  if (!one.owns_lock()) return Error("busy", "another rescan is running");
  auto start = Clock::now();
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  Replicator* rp = d.replicator;
  bool waited_for_pause = false;
  ReconcileOptions o;
  o.scan = "rescan";
  o.target = rp->target();
  o.excluded = [rp](const std::string& p) { return rp->IsExcluded(p); };
  o.cancelled = [&] { return ctx.Cancelled() || Clock::now() > deadline; };
  o.quiesce = [&](const std::function<Status()>& check) -> Status {
    for (;;) {
      // Mutations in flight get at most 10 s to finish: the gate holds every
      // new one while it waits.
      auto drain = std::min(deadline, Clock::now() + std::chrono::seconds(10));
      auto h = d.pauser->Hold(drain, check);
      if (h.ok() || h.status().code() != EBUSY) return h.status();
      if (!waited_for_pause) spdlog::info("rescan: waiting for the pause to end");
      waited_for_pause = true;
      if (ctx.Cancelled()) return Status::Error(ECANCELED, "rescan cancelled");
      if (Clock::now() > deadline)
        return Status::Error(ETIMEDOUT, "rescan timed out waiting for the pause to end");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  auto rep = ReconcileTree(d.journal, d.datadir_fd, o);
  if (!rep.ok()) {
    Status s = rep.status();
    if (s.code() == ECANCELED && Clock::now() > deadline && !ctx.Cancelled())
      s = Status::Error(ETIMEDOUT, "rescan timed out");
    spdlog::warn("rescan failed: {}", s.message());
    return Error(s.WithContext("rescan"));
  }
  spdlog::info(
      "rescan: {} entries in {:.3f} s: {} new, {} changed, {} missing, {} left to pending "
      "records; writes held {:.1f} ms",
      rep->scanned, rep->seconds, rep->new_paths, rep->changed, rep->missing, rep->pending,
      rep->hold_ms);
  return json{{"scanned", rep->scanned},
              {"new", rep->new_paths},
              {"changed", rep->changed},
              {"missing", rep->missing},
              {"pending", rep->pending},
              {"records", rep->new_paths + rep->changed + rep->missing},
              {"seconds", std::round(rep->seconds * 1000) / 1000},
              {"hold_ms", Tenths(rep->hold_ms)},
              {"waited_for_pause", waited_for_pause}};
}

}  // namespace scribefs::verbs
