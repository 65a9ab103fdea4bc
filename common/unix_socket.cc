#include "common/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>

namespace scribefs {

Result<SocketAddress> ResolveSocketAddress(const std::string& path) {
  SocketAddress a;
  if (path.size() < sizeof(sockaddr_un{}.sun_path)) {
    a.path = path;
    return a;
  }
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  a.dir_fd.Reset(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!a.dir_fd) return PosixError(dir, errno);
  a.path = "/proc/self/fd/" + std::to_string(a.dir_fd.get()) + "/" + name;
  if (a.path.size() >= sizeof(sockaddr_un{}.sun_path))
    return Status::Error(ENAMETOOLONG, "socket name too long: " + name);
  return a;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  auto addr = ResolveSocketAddress(path);
  if (!addr.ok()) return addr.status();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return PosixError("socket", errno);
  sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  addr->path.copy(sa.sun_path, sizeof sa.sun_path - 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    return PosixError(path, errno);
  return fd;
}

Status SendAll(int fd, const std::string& data, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return PosixError("send", errno);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return Status::Error(ETIMEDOUT, "send: the peer does not read");
    pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) return PosixError("poll", errno);
  }
  return Status::Ok();
}

}  // namespace scribefs
