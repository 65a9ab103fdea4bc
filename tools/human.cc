#include "tools/human.h"

#include <cstdio>

namespace scribefs::ctl {

std::string FormatBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < sizeof kUnits / sizeof kUnits[0]) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string FormatDuration(double seconds) {
  if (!(seconds > 0)) seconds = 0;  // also maps NaN to 0
  double v = seconds;
  const char* unit = "s";
  if (seconds >= 86400) {
    v = seconds / 86400;
    unit = "d";
  } else if (seconds >= 3600) {
    v = seconds / 3600;
    unit = "h";
  } else if (seconds >= 60) {
    v = seconds / 60;
    unit = "min";
  }
  char buf[48];
  snprintf(buf, sizeof buf, "%.1f %s", v, unit);
  return buf;
}

std::string EscapeControl(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c != 0x7f) {
      out += ch;
      continue;
    }
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default: {
        char buf[8];
        snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    }
  }
  return out;
}

}  // namespace scribefs::ctl
