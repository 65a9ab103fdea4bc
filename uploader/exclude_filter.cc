#include "uploader/exclude_filter.h"

#include <fnmatch.h>

namespace scribefs {

std::vector<std::string> DefaultExcludes() { return {"*.swp", "*.swx", "*~", ".#*"}; }

bool IsReservedPath(std::string_view path) {
  return path == kReservedDir ||
         (path.size() > kReservedDir.size() && path.starts_with(kReservedDir) &&
          path[kReservedDir.size()] == '/');
}

bool ExcludeFilter::Excluded(const std::string& path) const {
  if (IsReservedPath(path)) return true;
  auto slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  for (const auto& g : patterns_) {
    if (fnmatch(g.c_str(), path.c_str(), FNM_PATHNAME) == 0) return true;
    if (fnmatch(g.c_str(), base.c_str(), 0) == 0) return true;
  }
  return false;
}

}  // namespace scribefs
