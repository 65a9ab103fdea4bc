// ExcludeFilter: which paths of DATADIR are never replicated.
//
// Two sources: the reserved top-level directory ".scribefs" (scribefs's own
// objects in the target, such as checkpoint manifests; a local file there
// would collide with them), and the --exclude glob patterns. A pattern
// matches either the whole relative path (fnmatch with FNM_PATHNAME, so "*"
// stays within one component: "logs/*.tmp") or the last component alone
// ("*.swp" matches "a/b/c.swp"), as rsync's unanchored patterns do. A path
// below an excluded directory is excluded ("--exclude cache" covers
// "cache/x" and "a/cache/y").
//
// The daemon (what it uploads), `scribectl verify` (what it compares) and
// `scribectl restore` share this one definition, so that they agree on what
// belongs in the target. Immutable after construction; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "uploader/object_layout.h"  // kReservedDir, IsReservedPath

namespace scribefs {

// The --exclude default: editor swap and backup files.
std::vector<std::string> DefaultExcludes();

class ExcludeFilter {
 public:
  ExcludeFilter() = default;
  explicit ExcludeFilter(std::vector<std::string> patterns) : patterns_(std::move(patterns)) {}

  // `path` is relative to DATADIR ("a/b.txt"), without a leading "/".
  bool Excluded(const std::string& path) const;
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;
};

}  // namespace scribefs
