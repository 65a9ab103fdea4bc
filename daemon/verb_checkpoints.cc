// The `checkpoints` verb: checkpoints in the journal and in the target.
#include "daemon/verbs.h"
#include "uploader/checkpoint.h"

namespace scribefs::verbs {

json CheckpointsVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  json journal = json::array();
  for (const Record& r : *recs) {
    json det = Detail(r);
    json e = {{"name", det.value("name", "")}, {"seq", r.seq}, {"time_ns", r.time_ns}};
    for (const char* k : {"pause_seq", "manifest_key", "paths", "held_ms", "target"})
      if (det.contains(k)) e[k] = det[k];
    journal.push_back(std::move(e));
  }
  j["journal"] = std::move(journal);
  if (!d.replicator) {
    j["target"] = nullptr;
    j["target_error"] = "no --target";
    return j;
  }
  auto stored = ListStoredCheckpoints(d.replicator->store());
  if (!stored.ok()) {
    j["target"] = nullptr;
    j["target_error"] = stored.status().message();
    return j;
  }
  json target = json::array();
  for (const auto& c : *stored)
    target.push_back({{"name", c.name}, {"key", c.key}, {"size", c.size}, {"mtime", c.mtime}});
  j["target"] = std::move(target);
  return j;
}

}  // namespace scribefs::verbs
