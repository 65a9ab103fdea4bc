// Shell completion for scribectl, generated from the CLI11 app itself (the
// hidden `scribectl completion bash`), so that it lists exactly the commands,
// aliases and options the parser accepts and cannot drift from them.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace scribefs::ctl {

// A bash script defining _scribectl and `complete -F _scribectl scribectl`.
// Needs nothing but bash (not the bash-completion package). Commands in the
// group "" (hidden) are left out.
std::string BashCompletion(const CLI::App& app);

}  // namespace scribefs::ctl
