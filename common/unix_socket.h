// Unix stream socket helpers shared by the daemon's control socket and its
// client (scribectl). Thread-safe (plain functions).
#pragma once

#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace scribefs {

// A socket path as bind()/connect() can take it. sun_path holds 107 bytes;
// a longer path is reached through a descriptor of its directory
// ("/proc/self/fd/N/NAME"), which must stay open while the address is used.
struct SocketAddress {
  UniqueFd dir_fd;
  std::string path;
};
Result<SocketAddress> ResolveSocketAddress(const std::string& path);

// Connects to the Unix stream socket at path (close-on-exec). The status
// carries the errno: ENOENT (no socket), ECONNREFUSED (nobody listens: a
// stale socket), EACCES, ENOTSOCK...
Result<UniqueFd> ConnectUnix(const std::string& path);

// send() of all of data with MSG_NOSIGNAL, waiting (poll) at most timeout_ms
// in total for a slow reader. EPIPE/ECONNRESET when the peer has gone.
Status SendAll(int fd, const std::string& data, int timeout_ms);

}  // namespace scribefs
