#include "uploader/local_open.h"

#include <fcntl.h>

#include <cerrno>

#include "common/beneath.h"

namespace scribefs {

Result<OpenedFile> OpenLocalForRead(int root_fd, const std::string& rel,
                                    const struct stat* looked) {
  auto fd = OpenBeneath(root_fd, rel, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
  if (!fd.ok()) {
    // O_NOFOLLOW on a symlink: ELOOP; O_NONBLOCK on a FIFO without a reader
    // is fine for O_RDONLY, but a socket gives ENXIO. Both mean "not the
    // regular file that was looked at".
    int err = fd.status().code();
    if (err == ELOOP || err == ENXIO) return PosixError(rel + ": changed during", ESTALE);
    return fd.status();
  }
  OpenedFile out;
  out.fd = std::move(fd.value());
  if (fstat(out.fd.get(), &out.st) != 0) return PosixError(rel, errno);
  if (!S_ISREG(out.st.st_mode) ||
      (looked && (out.st.st_ino != looked->st_ino || out.st.st_dev != looked->st_dev)))
    return PosixError(rel + ": changed during", ESTALE);
  return out;
}

}  // namespace scribefs
