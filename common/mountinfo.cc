#include "common/mountinfo.h"

#include <fstream>
#include <sstream>

namespace scribefs {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo (octal).
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                                      (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string_view::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

}  // namespace

std::vector<MountEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountEntry> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    // id parent maj:min root mountpoint options [optional fields...] - fstype source superopts
    size_t sep = line.find(" - ");
    if (sep == std::string_view::npos) continue;
    std::vector<std::string_view> left = SplitSpaces(line.substr(0, sep));
    std::vector<std::string_view> right = SplitSpaces(line.substr(sep + 3));
    if (left.size() < 6 || right.size() < 2) continue;
    out.push_back({std::string(left[2]), Unescape(left[3]), Unescape(left[4]),
                   Unescape(right[0]), Unescape(right[1])});
  }
  return out;
}

std::vector<MountEntry> ReadMountInfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseMountInfo(ss.str());
}

std::vector<MountEntry> ScribefsMounts(const std::vector<MountEntry>& mounts) {
  std::vector<MountEntry> out;
  for (const MountEntry& m : mounts)
    if (m.fstype == kScribefsFsType) out.push_back(m);
  return out;
}

const MountEntry* ScribefsMountAt(const std::vector<MountEntry>& mounts,
                                  std::string_view mountpoint) {
  const MountEntry* found = nullptr;
  for (const MountEntry& m : mounts)
    if (m.fstype == kScribefsFsType && m.mountpoint == mountpoint) found = &m;
  return found;
}

}  // namespace scribefs
