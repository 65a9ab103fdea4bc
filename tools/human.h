// Small formatting helpers for tables meant for people. Pure functions,
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace scribefs::ctl {

// "512 B", "12.0 KiB", "3.4 GiB" (binary units, one decimal above bytes).
std::string FormatBytes(uint64_t bytes);

// "0.4 s", "3.2 s", "5.0 min", "2.1 h", "3.0 d" (negative counts as 0).
std::string FormatDuration(double seconds);

// Makes text safe to print on a terminal: control characters become \n, \t,
// \r or \xNN; everything else (including UTF-8) is kept.
std::string EscapeControl(std::string_view text);

}  // namespace scribefs::ctl
