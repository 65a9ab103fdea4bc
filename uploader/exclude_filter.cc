#include "uploader/exclude_filter.h"

#include <fnmatch.h>

namespace scribefs {

std::vector<std::string> DefaultExcludes() { return {"*.swp", "*.swx", "*~", ".#*"}; }

bool ExcludeFilter::Excluded(const std::string& path) const {
  if (IsReservedPath(path)) return true;
  if (patterns_.empty()) return false;
  // The path itself or any directory above it: what is below an excluded
  // directory is excluded too (the start-up scan does not descend into it).
  std::string prefix;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    size_t end = slash == std::string::npos ? path.size() : slash;
    prefix = path.substr(0, end);
    std::string base = path.substr(start, end - start);
    for (const auto& g : patterns_) {
      if (fnmatch(g.c_str(), prefix.c_str(), FNM_PATHNAME) == 0) return true;
      if (fnmatch(g.c_str(), base.c_str(), 0) == 0) return true;
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return false;
}

}  // namespace scribefs
