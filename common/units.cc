#include "common/units.h"

#include <exception>

#include "common/strings.h"

namespace scribefs {

std::optional<double> ParseScaled(const std::string& text, std::span<const UnitScale> units,
                                  bool ignore_case) {
  // std::stod alone would take leading blanks, a sign, hex and "inf".
  if (text.empty() || !((text[0] >= '0' && text[0] <= '9') || text[0] == '.')) return std::nullopt;
  size_t used = 0;
  double v;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  if (ignore_case) unit = AsciiLower(unit);
  for (const UnitScale& u : units) {
    if (ignore_case ? unit == AsciiLower(std::string(u.name)) : unit == u.name) return v * u.scale;
  }
  return std::nullopt;
}

}  // namespace scribefs
