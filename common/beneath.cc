#include "common/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace scribefs {

Result<UniqueFd> OpenBeneath(int root_fd, const std::string& rel, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
  const char* p = rel.empty() ? "." : rel.c_str();
  int fd = static_cast<int>(syscall(SYS_openat2, root_fd, p, &how, sizeof how));
  if (fd < 0) return PosixError(rel.empty() ? "." : rel, errno == ELOOP ? ENOENT : errno);
  return UniqueFd(fd);
}

}  // namespace scribefs
