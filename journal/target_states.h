// The rule that ties a record's state to its state on each target (schema
// version 5, issue 16), as a decision without I/O.
//
// A record's own `state` is its state across every target: pending (or
// uploading) while a target has not finished it; once every target has,
// failed when one of them failed it, skipped when every one skipped it, and
// done otherwise. A target's state of the record is its row in
// target_records, or, without one, the record's own state. Rows exist only
// where a target's state differs from the record's: with one target there
// are none, and a record every target stored has none.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace scribefs {

// A record's state across targets from their states: pending while one is
// pending or uploading, failed when one failed, skipped when all skipped,
// else done. No targets: pending (nothing has stored it).
std::string CombinedState(const std::vector<std::string>& target_states);

// What one record's rows become after a change.
struct TargetStatesFold {
  std::string record_state;              // the record's own state now
  std::vector<int64_t> drop;             // targets whose row goes (it equals record_state)
  std::map<int64_t, std::string> write;  // targets whose row must say this state
};

// `record_state` is the record's own state, `rows` its rows (target ->
// state) after the change, `targets` every target there is. Rows of targets
// not in `targets` are dropped (a removed target); a target without a row
// whose state the new record state would change gets a row of its old state.
TargetStatesFold FoldTargetStates(const std::string& record_state,
                                  const std::map<int64_t, std::string>& rows,
                                  const std::vector<int64_t>& targets);

}  // namespace scribefs
