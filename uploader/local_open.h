// Opening a DATADIR file for reading without trusting what a path lookup said.
#pragma once

#include <sys/stat.h>

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace scribefs {

// A regular file opened for reading, and fstat() of that very descriptor.
struct OpenedFile {
  UniqueFd fd;
  struct stat st = {};
};

// Opens `rel` beneath root_fd for reading, safe against the path having been
// replaced since it was looked at: any user who can write in DATADIR can
// rename a FIFO (or a device, or a symlink) over a regular file between an
// O_PATH look and the open, and a plain O_RDONLY open of a FIFO blocks until a
// writer appears, i.e. forever for an upload worker. So: O_NONBLOCK (a FIFO
// opens at once, a device does not wait for carrier), O_NOFOLLOW, O_NOCTTY,
// then fstat the OPENED descriptor and keep it only if it is a regular file
// and, when `looked` is given, the same inode on the same device as that look.
// Errors: ESTALE when the path now names something else ("changed during":
// look again); otherwise the open's own errno (ENOENT when it vanished).
Result<OpenedFile> OpenLocalForRead(int root_fd, const std::string& rel,
                                    const struct stat* looked = nullptr);

}  // namespace scribefs
