// `scribectl stats`: what the journal holds, by operation and upload state,
// and how much work is pending.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "journal/reader.h"
#include "tools/ctl_common.h"

namespace scribefs::ctl {

// The --json object. by_state always has the five states (0 when none);
// by_op and by_op_state list only what occurs. Ages are relative to now_ns.
nlohmann::ordered_json StatsToJson(const JournalStats& stats, const std::string& journal,
                                   int64_t now_ns);

int RunStats(const GlobalOptions& global);

}  // namespace scribefs::ctl
