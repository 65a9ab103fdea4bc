// Targets: the journal's `targets` table (schema version 5, issue 16), whose
// only owner this is: the targets a daemon stores to, each with an id that
// keys what it holds (the objects table, journal/remote_index.h) and its own
// state of records (target_records, journal/target_states.h).
//
// At start the daemon makes the table name exactly the targets it is
// configured with (Sync): a target keeps its id, and so what it holds and
// what is pending for it, while its name and URL stay (or one of them
// changes: a renamed target, or a name given to a URL that had none); a
// target whose name now names another URL, or one no longer configured, is
// removed with all its state, and a new one starts empty: what is pending
// when it is added is pending for it too, what every target had stored is
// done for it (the start-up reconciliation compares DATADIR with what it
// holds, nothing yet, and so fills it), and a record every target had failed
// counts as failed for it too until `scribectl retry`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace scribefs {

class Journal;
class JournalReader;

// The id of a journal's first target: the target of a journal written
// before targets had ids, and of the first one ever registered.
inline constexpr int64_t kFirstTarget = 1;

struct TargetSpec {
  std::string name;
  std::string url;
  // A JSON object: what scribectl needs to reach the target without being
  // told again (endpoint, region, CA file, excludes, delete policy). Never
  // credentials: those stay in the environment.
  std::string settings = "{}";
};

struct TargetEntry {
  int64_t id = 0;
  std::string name;
  std::string url;
  int64_t added_ns = 0;
  std::string settings = "{}";
};

// How the configured targets map onto the table (a decision, no I/O).
struct TargetPlan {
  struct Keep {
    int64_t id;
    TargetSpec spec;  // as configured: a rename when the name differs
  };
  std::vector<Keep> keep;
  std::vector<TargetSpec> add;
  std::vector<int64_t> remove;
};

// Matches each configured target to an existing one by name and URL, else by
// URL alone (a rename), else it is new; existing ones left unmatched go.
TargetPlan PlanTargets(const std::vector<TargetEntry>& existing,
                       const std::vector<TargetSpec>& configured);

struct TargetSync {
  std::vector<TargetEntry> targets;  // in the configured order
  std::vector<TargetEntry> added;    // new: they start empty
  std::vector<TargetEntry> removed;  // their state is forgotten
};

class Targets {
 public:
  static Result<std::vector<TargetEntry>> List(JournalReader& reader);
  // Applies PlanTargets in one transaction of the journal writer: removes
  // first (their objects, their rows, folding the records they held back),
  // then renames (and notes every kept target's settings), then adds.
  static Result<TargetSync> Sync(Journal& journal, const std::vector<TargetSpec>& configured);
};

}  // namespace scribefs
