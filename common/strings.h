// Small string helpers shared by the uploader (S3 headers, ETags) and the
// tools (time specs). ASCII only on purpose: HTTP header names, ETags and
// command-line keywords are ASCII, and the result must not depend on the
// process locale.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace scribefs {

// `s` with 'A'..'Z' turned into 'a'..'z'; every other byte unchanged.
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// `s` without one pair of surrounding double quotes (as S3 sends ETags);
// unchanged when it is not quoted at both ends.
inline std::string StripQuotes(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

// Edit distance for "did you mean" suggestions (a misspelled command, option
// or config key): insertions, deletions, substitutions, and a swap of two
// neighbours each count as one (optimal string alignment).
size_t EditDistance(std::string_view a, std::string_view b);

}  // namespace scribefs
