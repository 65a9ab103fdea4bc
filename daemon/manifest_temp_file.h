// ManifestTempFile: a checkpoint manifest being written in the state
// directory, removed when this ends. A named file, not O_TMPFILE: the stores
// refuse to upload a file without a name. Its name is "." + stem + ".XXXXXX";
// a daemon that dies while writing leaves it, and the next start removes it
// (startup_checks.cc, kCheckpointTempStem).
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "common/unique_fd.h"

namespace scribefs {

class ManifestTempFile {
 public:
  ManifestTempFile(const std::string& dir, const std::string& stem)
      : path_(dir + "/." + stem + ".XXXXXX") {
    fd_ = UniqueFd(mkostemp(path_.data(), O_CLOEXEC));
    if (!fd_) path_.clear();
  }
  ~ManifestTempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  ManifestTempFile(const ManifestTempFile&) = delete;
  ManifestTempFile& operator=(const ManifestTempFile&) = delete;
  int fd() const { return fd_.get(); }  // -1: it could not be created

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace scribefs
