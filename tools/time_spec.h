// Times as scribectl reads them from the command line and prints them.
//
// A --since/--until bound is either a journal sequence number (a plain
// non-negative integer) or a point in time:
//   ISO 8601          2026-11-21T10:00:00, 2026-11-21T10:00:00.250Z,
//                     2026-11-21T10:00+01:00, 2026-11-21 10:00:00 (local time
//                     unless a zone is given), 2026-11-21 (local midnight)
//   relative          30s, 10m, 2h, 3d, 1w, 1.5h: that long before now
//   epoch seconds     @1795255200 or @1795255200.5
//   keywords          now, today, yesterday (local midnight)
// Pure functions: the current time is passed in. Thread-safe except that local
// time conversions read the process time zone (TZ).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace scribefs::ctl {

struct SeqOrTime {
  enum class Kind { kSeq, kTime };
  Kind kind = Kind::kSeq;
  int64_t value = 0;  // a sequence number, or ns since the epoch
};

// Parses a --since/--until argument. Errors are EINVAL with a message that
// names the accepted forms.
Result<SeqOrTime> ParseSeqOrTime(std::string_view text, int64_t now_ns);

// Parses a time only (every form above except a plain sequence number).
Result<int64_t> ParseTime(std::string_view text, int64_t now_ns);

// "2026-11-21 10:00:00.123" in local time (millisecond precision).
std::string FormatLocalTime(int64_t ns);

// "2026-11-21T09:00:00.123Z": ISO 8601 in UTC (millisecond precision).
std::string FormatUtcIso(int64_t ns);

// A short help text listing the accepted forms (for --help).
extern const char* const kTimeFormsHelp;

}  // namespace scribefs::ctl
