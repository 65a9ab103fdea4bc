// Friendlier command-line errors for scribectl: the nearest command for a
// misspelled one ("did you mean 'checkpoint'?") and validators whose
// messages name a readable range ("must be > 0") instead of CLI11's
// "Value -1 not in range 0.000000 to 1797693...".
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace scribefs::ctl {

// The candidate nearest to word, if it is near enough to be a typo (at most
// a third of the word's length, at least 1, or a candidate the word is a
// prefix of); nullopt otherwise.
std::optional<std::string> Nearest(const std::string& word,
                                   const std::vector<std::string>& candidates);

// When the command word of args (after the program name; options and the
// values of with_value options skipped) is not one of commands, the error
// message to print ("unknown command 'chekpoint'; did you mean
// 'checkpoint'?"); nullopt when it is known or absent.
std::optional<std::string> UnknownCommandMessage(const std::vector<std::string>& args,
                                                 const std::vector<std::string>& commands,
                                                 const std::vector<std::string>& with_value);

// A number of seconds > 0 ("must be > 0").
CLI::Validator PositiveSeconds();
// An integer in [lo, hi] ("must be from 1 to 64").
CLI::Validator IntegerFromTo(long lo, long hi);

}  // namespace scribefs::ctl
