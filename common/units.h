// Numbers with a unit suffix ("30s", "1.5h", "8MiB"): the parsing that every
// option of that shape shares. Which units an option takes, what range its
// value may have and how a mistake is worded stay with the option.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace scribefs {

struct UnitScale {
  std::string_view name;  // "" for a bare number
  double scale;           // what one of the unit is worth
};

// `text` = a decimal number (starting with a digit or '.': no sign, space,
// "inf" or "nan") directly followed by one of `units` (compared exactly, or
// ignoring ASCII case). Returns number * scale, or nullopt when `text` has
// another shape or unit.
std::optional<double> ParseScaled(const std::string& text, std::span<const UnitScale> units,
                                  bool ignore_case = false);

}  // namespace scribefs
