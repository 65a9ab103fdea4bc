// Reaching a mount's target from scribectl (verify, restore) without the
// daemon: the target URL and its endpoint, region and CA file come from the
// command line, or else from what the daemon noted in the journal's meta
// table when it last started (keys target, endpoint, region, ca_file,
// excludes, datadir), or, for `--target NAME`, from that target's row of the
// journal's targets table (journal/targets.h). Credentials are never stored there: they come from
// the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), as for the daemon.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/ctl_common.h"
#include "uploader/exclude_filter.h"
#include "uploader/object_store.h"

namespace scribefs::ctl {

struct TargetFlags {
  std::string target;    // s3://BUCKET[/PREFIX] or file:///PATH
  std::string endpoint;  // S3 only
  std::string region;    // S3 only
  std::string ca_file;
  std::vector<std::string> excludes;  // added to the journal's (or the default) list
  bool no_default_excludes = false;
};

// Adds --target, --endpoint, --region, --ca-file, --exclude and
// --no-default-excludes to `cmd` (group "Target").
void AddTargetOptions(CLI::App* cmd, TargetFlags* flags);

struct ResolvedTarget {
  std::unique_ptr<ObjectStore> store;
  std::string url;      // what the store is (Describe(): no secrets)
  std::string datadir;  // the mount's DATADIR when known (-m, or the journal's note); else ""
  ExcludeFilter filter;
  bool from_journal = false;  // the URL came from the journal, not --target
};

// --target wins; otherwise the journal of the mount named by -m / --state-dir
// / $SCRIBEFS_STATE_DIR must name one. On failure prints what to do and
// returns nullopt with *exit_code set (kExitUsage, kExitNoState,
// kExitFailure). With --target, the journal is still read when a mount is
// named (for DATADIR and the excludes), but is not required.
std::optional<ResolvedTarget> ResolveTargetOrFail(const GlobalOptions& global,
                                                  const TargetFlags& flags, int* exit_code);

// The names of the targets the journal of the mount named by -m /
// --state-dir / $SCRIBEFS_STATE_DIR knows (journal/targets.h), in its order;
// empty when no mount is named or its journal cannot be read (the command
// then resolves one target as before, and reports that error itself).
std::vector<std::string> JournalTargetNames(const GlobalOptions& global);

}  // namespace scribefs::ctl
