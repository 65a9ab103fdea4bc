// The `checkpoints` verb: checkpoints in the journal and in the target.
#include <algorithm>

#include "daemon/verbs.h"
#include "uploader/checkpoint.h"

namespace scribefs::verbs {

json CheckpointsVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  json journal = json::array();
  // Every checkpoint with its state (issue 12): the stored ones are the
  // journal's records; captured and failed ones are the storer's.
  std::vector<CheckpointState> states;
  for (const Record& r : *recs) {
    json det = Detail(r);
    json e = {{"name", det.value("name", "")}, {"seq", r.seq}, {"time_ns", r.time_ns}};
    for (const char* k : {"pause_seq", "manifest_key", "paths", "held_ms", "target"})
      if (det.contains(k)) e[k] = det[k];
    journal.push_back(std::move(e));
    CheckpointState c;
    c.name = det.value("name", "");
    c.state = "stored";
    c.seq = det.value("pause_seq", int64_t{0});
    c.captured_ns = det.value("captured_ns", r.time_ns);
    c.stored_ns = r.time_ns;
    c.held_ms = det.value("held_ms", 0.0);
    c.frozen = det.value("frozen", uint64_t{0});
    states.push_back(std::move(c));
  }
  j["journal"] = std::move(journal);
  if (d.storer)
    for (CheckpointState& c : d.storer->List()) states.push_back(std::move(c));
  std::stable_sort(
      states.begin(), states.end(),
      [](const CheckpointState& a, const CheckpointState& b) { return a.seq < b.seq; });
  json all = json::array();
  for (const CheckpointState& c : states) all.push_back(CheckpointStateJson(c));
  j["checkpoints"] = std::move(all);
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
