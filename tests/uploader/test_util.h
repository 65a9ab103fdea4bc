// Small helpers shared by the uploader tests.
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace scribefs::testing_util {

// A directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Deterministic pseudo-random bytes.
std::string Blob(size_t size, uint32_t seed);

// Creates `path` with `content`; returns an fd open for reading (or invalid on error).
UniqueFd WriteFile(const std::string& path, const std::string& content);

// Whole file content ("" if unreadable); `ok` set when given.
std::string ReadFile(const std::string& path, bool* ok = nullptr);

std::string Md5Hex(const std::string& data);
std::string Sha256Hex(const std::string& data);

// Rewrites `path` in place (same inode) with `content`, then gives it back
// the mtime it had: a change that its stat shows only by ctime. False on error.
bool RewriteKeepingMtime(const std::string& path, const std::string& content);

// A random lower-case hex string of 2*bytes characters.
std::string RandomHex(size_t bytes);

}  // namespace scribefs::testing_util
