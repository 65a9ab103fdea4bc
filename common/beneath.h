// Opening paths strictly beneath a directory descriptor.
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace scribefs {

// openat2(root_fd, rel, flags) that never leaves root_fd: no "..", no
// absolute or /proc magic links, no symlink anywhere in rel ("" opens root_fd's
// directory itself). A symlink in the way fails with ENOENT... except the
// last component with O_PATH|O_NOFOLLOW, which yields the link itself.
Result<UniqueFd> OpenBeneath(int root_fd, const std::string& rel, int flags);

}  // namespace scribefs
