// The `flush` verb: waits until everything journaled so far is stored.
#include "daemon/verbs.h"
#include "journal/reader.h"

namespace scribefs::verbs {

json FlushVerb(const ControlDeps& d, const json& req, const ControlRequest& ctx) {
  if (!d.targets) return Error("no_target", "no --target: nothing is uploaded");
  auto t = Seconds(req, "timeout_s", 60, 7 * 86400);
  if (!t.ok()) return Error(t.status());
  auto start = Clock::now();
  // Byte ranges still in memory belong to what must be uploaded.
  Status s = d.fs->FlushAllRanges();
  if (!s.ok()) return Error(s);
  auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(*t));
  // After an unclean stop, what the earlier daemon left in the target is
  // part of "everything so far" (uploader/orphan_sweep.h).
  for (OrphanSweep* sweep : d.sweeps) {
    s = sweep->Wait(deadline, [&] { return ctx.Cancelled(); });
    if (!s.ok()) return Error(s);
  }
  auto reader = JournalReader::Open(d.journal->path());
  if (!reader.ok()) return Error(reader.status());
  auto max = reader.value()->MaxSeq();
  if (!max.ok()) return Error(max.status());
  // Every target's (uploader/target_set.h); an error names the target.
  s = d.targets->WaitUploadedThrough(*max, deadline, [&] { return ctx.Cancelled(); });
  if (!s.ok()) return Error(s);
  // And every captured checkpoint is stored (or failed): "everything so far"
  // includes their manifests (issue 12).
  if (d.storer) {
    s = d.storer->WaitAll(deadline, [&] { return ctx.Cancelled(); });
    if (!s.ok()) return Error(s.WithContext("flush: waiting for captured checkpoints"));
  }
  return json{{"seq", *max}, {"waited_ms", MsSince(start)}};
}

}  // namespace scribefs::verbs
