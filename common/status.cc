#include "common/status.h"

#include <cstring>

namespace scribefs {

Status PosixError(const std::string& context, int err) {
  char buf[256];
  // GNU strerror_r returns a pointer that may or may not be buf.
  const char* msg = strerror_r(err, buf, sizeof buf);
  return Status::Error(err, context + ": " + msg);
}

}  // namespace scribefs
