#include "journal/record.h"

#include <charconv>
#include <chrono>
#include <cctype>

namespace scribefs {
namespace {
const std::vector<std::string_view> kOpNames = {
    "create", "mkdir", "mknod", "symlink", "link", "write", "truncate", "setattr", "setxattr",
    "removexattr", "rename", "unlink", "rmdir", "close", "fsync", "pause", "resume", "checkpoint",
    "reconcile",
};
}  // namespace

std::string_view OpName(Op op) { return kOpNames.at(static_cast<size_t>(op)); }

std::optional<Op> ParseOp(std::string_view name) {
  for (size_t i = 0; i < kOpNames.size(); ++i)
    if (kOpNames[i] == name) return static_cast<Op>(i);
  return std::nullopt;
}

const std::vector<std::string_view>& AllOpNames() { return kOpNames; }

bool IsValidState(std::string_view s) {
  return s == kStatePending || s == kStateUploading || s == kStateDone || s == kStateFailed ||
         s == kStateSkipped;
}

std::string RangesToJson(const std::vector<ByteRange>& ranges) {
  std::string out = "[";
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (i) out += ',';
    out += '[';
    out += std::to_string(ranges[i].offset);
    out += ',';
    out += std::to_string(ranges[i].length);
    out += ']';
  }
  out += ']';
  return out;
}

std::optional<std::vector<ByteRange>> RangesFromJson(std::string_view t) {
  std::vector<ByteRange> out;
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < t.size() && isspace(static_cast<unsigned char>(t[i]))) ++i;
  };
  auto expect = [&](char c) {
    skip_ws();
    if (i >= t.size() || t[i] != c) return false;
    ++i;
    return true;
  };
  auto number = [&](uint64_t* v) {
    skip_ws();
    auto [p, ec] = std::from_chars(t.data() + i, t.data() + t.size(), *v);
    if (ec != std::errc()) return false;
    i = p - t.data();
    return true;
  };
  if (!expect('[')) return std::nullopt;
  skip_ws();
  if (i < t.size() && t[i] == ']') {  // "[]": nothing may follow but whitespace
    ++i;
    skip_ws();
    return i == t.size() ? std::optional(out) : std::nullopt;
  }
  while (true) {
    ByteRange r;
    if (!expect('[') || !number(&r.offset) || !expect(',') || !number(&r.length) || !expect(']'))
      return std::nullopt;
    out.push_back(r);
    skip_ws();
    if (i < t.size() && t[i] == ',') {
      ++i;
      continue;
    }
    if (!expect(']')) return std::nullopt;
    skip_ws();
    return i == t.size() ? std::optional(out) : std::nullopt;
  }
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace scribefs
