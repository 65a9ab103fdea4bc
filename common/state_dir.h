// Where a mount keeps its state (journal.db, control.sock, lock file).
//
// The default is derived from the absolute DATADIR path so that
// `scribectl -m DATADIR` finds the state of the daemon serving DATADIR:
//   $SCRIBEFS_STATE_ROOT (default /var/lib/scribefs as root,
//   $XDG_STATE_HOME/scribefs or ~/.local/state/scribefs otherwise)
//   / <basename>-<first 16 hex of sha256(abs path)>
#pragma once

#include <string>

#include "common/status.h"

namespace scribefs {

struct StatePaths {
  std::string dir;
  std::string journal() const { return dir + "/journal.db"; }
  std::string socket() const { return dir + "/control.sock"; }
  std::string lock() const { return dir + "/lock"; }
};

// Absolute, normalized path of an existing directory (realpath), or an error naming it.
Result<std::string> CanonicalDir(const std::string& path);

// The default state directory for a canonical DATADIR path (does not create it).
std::string DefaultStateDir(const std::string& canonical_datadir);

// True when `inner` is `outer` or lies below it (both canonical).
bool PathIsWithin(const std::string& inner, const std::string& outer);

}  // namespace scribefs
