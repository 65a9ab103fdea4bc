// `scribectl journal` (alias `log`): lists journal records, oldest first, as a
// table or as JSON Lines, optionally following new records as they commit.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "journal/reader.h"
#include "journal/record.h"
#include "journal/targets.h"
#include "tools/ctl_common.h"

namespace scribefs::ctl {

struct JournalOptions {
  std::optional<std::string> since;      // --since SEQ|TIME
  std::optional<std::string> until;      // --until SEQ|TIME
  std::optional<std::string> path_glob;  // --path GLOB
  std::optional<std::string> op;         // --op OP
  std::optional<std::string> state;      // --state STATE
  std::optional<int64_t> limit;          // --limit N: the last N matches
  bool follow = false;                   // --follow
  std::optional<std::string> target;     // --target NAME: that target's upload state
};

// With --follow and neither --limit nor --since: show this many records first
// (like tail -f and journalctl -f) rather than the whole journal.
inline constexpr int64_t kFollowDefaultLimit = 10;

// Validators for the command line: "" when valid, else the message.
std::string ValidateOpName(const std::string& op);
std::string ValidateStateName(const std::string& state);
std::string ValidateSeqOrTime(const std::string& text);

// The reader filter for the options; times are resolved against now_ns.
// EINVAL for a bad value. (--target is resolved by TargetIdByName.)
Result<JournalFilter> BuildJournalFilter(const JournalOptions& options, int64_t now_ns);

// The id of the target called `name` (or whose URL it is) among `targets`;
// EINVAL naming the targets there are when there is none.
Result<int64_t> TargetIdByName(const std::vector<TargetEntry>& targets, const std::string& name);

// The PATH column: "a/b", "a -> b" for rename/link, "." for DATADIR itself.
std::string DisplayPath(const Record& r);
// The DETAIL column: ranges, size, mode, op details, attempts, error.
std::string DescribeRecord(const Record& r);
// One record as a JSON object with every column (absent values are null).
nlohmann::ordered_json RecordToJson(const Record& r);

int RunJournal(const GlobalOptions& global, const JournalOptions& options);

}  // namespace scribefs::ctl
