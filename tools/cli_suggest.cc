// Friendlier command-line errors for scribectl (tools/cli_suggest.h).
#include "tools/cli_suggest.h"

#include "common/strings.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace scribefs::ctl {

std::optional<std::string> Nearest(const std::string& word,
                                   const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  const size_t max_distance = std::max<size_t>(1, word.size() / 3);
  // Nearest first; between equals, the one of the same length ("stauts" is
  // a swap in "status" more likely than an extra letter in "stats").
  auto rank = [&](const std::string& c) {
    size_t len_diff = c.size() > word.size() ? c.size() - word.size() : word.size() - c.size();
    return std::make_pair(EditDistance(word, c), len_diff);
  };
  for (const std::string& c : candidates) {
    if (EditDistance(word, c) <= max_distance && (!best || rank(c) < rank(*best))) best = c;
  }
  if (best || word.size() < 2) return best;
  for (const std::string& c : candidates)
    if (c.rfind(word, 0) == 0) return c;  // "chec" -> "checkpoint" (the first, in order)
  return std::nullopt;
}

std::optional<std::string> UnknownCommandMessage(const std::vector<std::string>& args,
                                                 const std::vector<std::string>& commands,
                                                 const std::vector<std::string>& with_value) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& w = args[i];
    if (w == "--") return std::nullopt;
    if (std::find(with_value.begin(), with_value.end(), w) != with_value.end()) {
      ++i;  // its value
      continue;
    }
    if (w.starts_with('-')) continue;
    if (std::find(commands.begin(), commands.end(), w) != commands.end()) return std::nullopt;
    std::string msg = "unknown command '" + w + "'";
    if (auto n = Nearest(w, commands)) msg += "; did you mean '" + *n + "'?";
    return msg + " (commands: see 'scribectl --help')";
  }
  return std::nullopt;
}

CLI::Validator PositiveSeconds() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        double d = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
        if (ec != std::errc() || end != v.data() + v.size() || !std::isfinite(d))
          return "must be a number of seconds, not '" + v + "'";
        return d > 0 ? "" : "must be > 0 (seconds), not " + v;
      },
      "");
}

CLI::Validator IntegerFromTo(long lo, long hi) {
  return CLI::Validator(
      [lo, hi](std::string& v) -> std::string {
        long n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < lo || n > hi)
          return "must be a whole number from " + std::to_string(lo) + " to " +
                 std::to_string(hi) + ", not '" + v + "'";
        return "";
      },
      "");
}

}  // namespace scribefs::ctl
