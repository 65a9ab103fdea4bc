// scribectl verify: compares the mount's target with its directory
// (tools/verify.h) and reports missing, extra and different paths.
#pragma once

#include <string>

#include "tools/ctl_common.h"
#include "tools/target_access.h"

namespace scribefs::ctl {

struct VerifyOptions {
  bool quick = false;
  std::string path;  // --path PREFIX, as given
  std::string dir;   // --dir DIR; default: the mount's DATADIR
  int workers = 8;
  int limit = 20;  // paths listed per kind in the human output; 0 = all
  bool history = false;  // --history: the chunks of the target's history
  bool deep = false;     // --deep (with --history): and their SHA-256
  TargetFlags target;
};

// Exit codes: kExitOk when identical, kExitDifferences when the target
// differs, kExitFailure when some path could not be compared (or the listing
// failed), kExitUsage / kExitNoState as ResolveTargetOrFail. With --history:
// kExitDifferences when a chunk the history needs is missing, of another
// size or (--deep) corrupt; kExitFailure when a segment or chunk could not
// be read.
int RunVerify(const GlobalOptions& global, const VerifyOptions& options);

}  // namespace scribefs::ctl
