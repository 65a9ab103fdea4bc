// UploadWaiter: lets the filesystem wait, in sync mode, until a journal record's
// effect is stored in the target. Implemented by the uploader (fs/ does not
// depend on uploader/). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/status.h"

namespace scribefs {

class UploadWaiter {
 public:
  virtual ~UploadWaiter() = default;
  // Ok once record `seq` is uploaded (or needs no upload). ETIMEDOUT at the
  // deadline (the record stays pending), EIO if it failed permanently.
  virtual Status WaitUploaded(int64_t seq, std::chrono::steady_clock::time_point deadline) = 0;
};

}  // namespace scribefs
