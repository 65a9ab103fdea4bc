#include "common/state_dir.h"

#include <pwd.h>
#include <unistd.h>

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace scribefs {
namespace {

// FNV-1a is not cryptographic, but the name only has to be stable and distinct
// per path; the basename keeps it readable. 64 bits -> 16 hex digits.
std::string PathDigest(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  static const char* kHex = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[i] = kHex[h & 0xf];
  return out;
}

std::string StateRoot() {
  if (const char* r = getenv("SCRIBEFS_STATE_ROOT"); r && *r) return r;
  if (geteuid() == 0) return "/var/lib/scribefs";
  if (const char* x = getenv("XDG_STATE_HOME"); x && *x) return std::string(x) + "/scribefs";
  const char* home = getenv("HOME");
  if (!home || !*home) {
    if (passwd* pw = getpwuid(geteuid())) home = pw->pw_dir;
  }
  return std::string(home ? home : "/tmp") + "/.local/state/scribefs";
}

}  // namespace

Result<std::string> CanonicalDir(const std::string& path) {
  char buf[PATH_MAX];
  if (!realpath(path.c_str(), buf)) return PosixError(path, errno);
  return std::string(buf);
}

std::string DefaultStateDir(const std::string& canonical_datadir) {
  std::string_view p = canonical_datadir;
  auto slash = p.find_last_of('/');
  std::string base(slash == std::string_view::npos ? p : p.substr(slash + 1));
  if (base.empty()) base = "root";
  return StateRoot() + "/" + base + "-" + PathDigest(p);
}

bool PathIsWithin(const std::string& inner, const std::string& outer) {
  if (outer == "/") return true;
  if (inner.size() < outer.size() || inner.compare(0, outer.size(), outer) != 0) return false;
  return inner.size() == outer.size() || inner[outer.size()] == '/';
}

}  // namespace scribefs
