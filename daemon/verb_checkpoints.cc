// The `checkpoints` verb: checkpoints in the journal and in the target.
#include <algorithm>
#include <map>

#include "daemon/verbs.h"
#include "uploader/checkpoint.h"

namespace scribefs::verbs {

json CheckpointsVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  json j;
  auto recs = CheckpointRecords(d.journal->path());
  if (!recs.ok()) return Error(recs.status());
  const std::string first = d.targets ? d.targets->name(0) : "";
  // The storer's checkpoints (captured, failed): their records, one per
  // target stored so far, are listed in "journal" but not as states.
  std::map<std::string, CheckpointState> in_storer;
  if (d.storer)
    for (CheckpointState& c : d.storer->List()) in_storer[c.name] = std::move(c);
  json journal = json::array();
  // Every checkpoint with its state (issue 12): the stored ones are the
  // journal's records, one per target (issue 16), merged by name.
  std::vector<CheckpointState> states;
  std::map<std::string, size_t> by_name;
  for (const Record& r : *recs) {
    json det = Detail(r);
    const std::string name = det.value("name", "");
    std::string target = CheckpointRecordTarget(det, first);
    json e = {{"name", name}, {"seq", r.seq}, {"time_ns", r.time_ns}, {"target_name", target}};
    for (const char* k : {"pause_seq", "manifest_key", "paths", "held_ms", "target"})
      if (det.contains(k)) e[k] = det[k];
    journal.push_back(std::move(e));
    if (in_storer.count(name)) continue;
    if (auto it = by_name.find(name); it != by_name.end()) {
      CheckpointState& c = states[it->second];
      c.stored_on.push_back(target);
      c.stored_ns = std::max(c.stored_ns, r.time_ns);
      continue;
    }
    CheckpointState c;
    c.name = name;
    c.state = "stored";
    c.seq = det.value("pause_seq", int64_t{0});
    c.captured_ns = det.value("captured_ns", r.time_ns);
    c.stored_ns = r.time_ns;
    c.held_ms = det.value("held_ms", 0.0);
    c.frozen = det.value("frozen", uint64_t{0});
    c.stored_on = {target};
    by_name[name] = states.size();
    states.push_back(std::move(c));
  }
  j["journal"] = std::move(journal);
  for (auto& [name, c] : in_storer) states.push_back(std::move(c));
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
  // What the first target holds ("target"); with several, each one's
  // ("targets": name -> the same list, or {"error": ...}).
  json per_target = json::object();
  for (size_t i = 0; d.targets && i < d.targets->size(); ++i) {
    auto stored = ListStoredCheckpoints(d.targets->replicator(i).store());
    json list = json::array();
    if (stored.ok()) {
      for (const auto& c : *stored)
        list.push_back({{"name", c.name}, {"key", c.key}, {"size", c.size}, {"mtime", c.mtime}});
    } else {
      list = {{"error", stored.status().message()}};
    }
    if (i == 0) {
      j["target"] = stored.ok() ? list : json(nullptr);
      if (!stored.ok()) j["target_error"] = stored.status().message();
    }
    per_target[d.targets->name(i)] = std::move(list);
  }
  if (d.targets && d.targets->size() > 1) j["targets"] = std::move(per_target);
  return j;
}

}  // namespace scribefs::verbs
