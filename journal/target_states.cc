#include "journal/target_states.h"

#include <algorithm>

#include "journal/record.h"

namespace scribefs {

std::string CombinedState(const std::vector<std::string>& target_states) {
  if (target_states.empty()) return std::string(kStatePending);
  bool failed = false, all_skipped = true;
  for (const std::string& s : target_states) {
    if (s == kStatePending || s == kStateUploading) return std::string(kStatePending);
    failed |= s == kStateFailed;
    all_skipped &= s == kStateSkipped;
  }
  if (failed) return std::string(kStateFailed);
  return std::string(all_skipped ? kStateSkipped : kStateDone);
}

TargetStatesFold FoldTargetStates(const std::string& record_state,
                                  const std::map<int64_t, std::string>& rows,
                                  const std::vector<int64_t>& targets) {
  TargetStatesFold out;
  // Without targets nothing stores the record: it keeps its state (a
  // journal-only mount leaves records pending).
  if (targets.empty()) {
    out.record_state = record_state;
  } else {
    std::vector<std::string> states;
    for (int64_t t : targets) {
      auto it = rows.find(t);
      states.push_back(it != rows.end() ? it->second : record_state);
    }
    out.record_state = CombinedState(states);
  }
  for (const auto& [t, state] : rows) {
    bool live = std::find(targets.begin(), targets.end(), t) != targets.end();
    if (!live || state == out.record_state) out.drop.push_back(t);
  }
  // A target without a row had the old record state; it keeps it.
  if (out.record_state != record_state)
    for (int64_t t : targets)
      if (!rows.count(t)) out.write[t] = record_state;
  return out;
}

}  // namespace scribefs
