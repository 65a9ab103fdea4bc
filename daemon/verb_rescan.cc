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
  bool waited_for_pause = false;
  ReconcileOptions o;
  o.scan = "rescan";
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
  // Each target compared with the tree in turn (as at start): a difference
  // found against one is journaled for every target.
  const size_t n = d.targets ? d.targets->size() : 1;
  ReconcileReport all;
  json per_target = json::array();
  for (size_t i = 0; i < n; ++i) {
    Replicator* rp = d.targets ? &d.targets->replicator(i) : d.replicator;
    const std::string name = d.targets ? d.targets->name(i) : "";
    o.target = rp->target();
    o.excluded = [rp](const std::string& p) { return rp->IsExcluded(p); };
    auto rep = ReconcileTree(d.journal, d.datadir_fd, o);
    if (!rep.ok()) {
      Status s = rep.status();
      if (s.code() == ECANCELED && Clock::now() > deadline && !ctx.Cancelled())
        s = Status::Error(ETIMEDOUT, "rescan timed out");
      if (n > 1) s = s.WithContext("target " + name);
      spdlog::warn("rescan failed: {}", s.message());
      return Error(s.WithContext("rescan"));
    }
    spdlog::info(
        "rescan{}: {} entries in {:.3f} s: {} new, {} changed, {} missing, {} left to pending "
        "records; writes held {:.1f} ms",
        n > 1 ? " of " + name : "", rep->scanned, rep->seconds, rep->new_paths, rep->changed,
        rep->missing, rep->pending, rep->hold_ms);
    all.scanned = std::max(all.scanned, rep->scanned);
    all.new_paths += rep->new_paths;
    all.changed += rep->changed;
    all.missing += rep->missing;
    all.pending = std::max(all.pending, rep->pending);
    all.seconds += rep->seconds;
    all.hold_ms += rep->hold_ms;
    per_target.push_back({{"name", name},
                          {"new", rep->new_paths},
                          {"changed", rep->changed},
                          {"missing", rep->missing}});
  }
  json out = {{"scanned", all.scanned},
              {"new", all.new_paths},
              {"changed", all.changed},
              {"missing", all.missing},
              {"pending", all.pending},
              {"records", all.new_paths + all.changed + all.missing},
              {"seconds", std::round(all.seconds * 1000) / 1000},
              {"hold_ms", Tenths(all.hold_ms)},
              {"waited_for_pause", waited_for_pause}};
  if (n > 1) out["targets"] = std::move(per_target);
  return out;
}

}  // namespace scribefs::verbs
