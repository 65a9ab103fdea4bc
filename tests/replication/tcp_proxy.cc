#include "tests/replication/tcp_proxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace scribefs::rep {

std::unique_ptr<TcpProxy> TcpProxy::Start(const std::string& upstream_host, int upstream_port,
                                          int listen_port, std::string* error) {
  std::unique_ptr<TcpProxy> p(new TcpProxy(upstream_host, upstream_port));
  if (!p->Listen(listen_port, error)) return nullptr;
  return p;
}

TcpProxy::TcpProxy(std::string host, int upstream_port)
    : host_(std::move(host)), upstream_port_(upstream_port) {}

TcpProxy::~TcpProxy() { Down(); }

bool TcpProxy::Listen(int port, std::string* error) {
  auto fail = [&](const char* what) {
    if (error) *error = std::string(what) + ": " + strerror(errno);
    return false;
  };
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return fail("bind");
  }
  if (listen(fd, 128) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return fail("listen");
  }
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return fail("eventfd");
  }
  std::lock_guard lk(mu_);
  port_ = ntohs(addr.sin_port);
  listen_fd_ = fd;
  wake_fd_ = wake;
  up_ = true;
  acceptor_ = std::thread([this, fd, wake] { AcceptLoop(fd, wake); });
  return true;
}

bool TcpProxy::Up(std::string* error) {
  if (up_) return true;
  return Listen(port_, error);
}

void TcpProxy::Down() {
  std::thread acceptor;
  int listen_fd, wake_fd;
  {
    std::lock_guard lk(mu_);
    up_ = false;
    acceptor = std::move(acceptor_);
    listen_fd = listen_fd_;
    wake_fd = wake_fd_;
    listen_fd_ = wake_fd_ = -1;
  }
  if (acceptor.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd, &one, sizeof one);
    acceptor.join();
  }
  if (listen_fd >= 0) close(listen_fd);  // from now on connects are refused
  if (wake_fd >= 0) close(wake_fd);
  std::list<std::unique_ptr<Conn>> conns;
  {
    std::lock_guard lk(mu_);
    for (auto& c : conns_) {
      c->cut = true;
      if (c->client >= 0) shutdown(c->client, SHUT_RDWR);
      if (c->upstream >= 0) shutdown(c->upstream, SHUT_RDWR);
    }
    conns.swap(conns_);
  }
  for (auto& c : conns)
    if (c->thread.joinable()) c->thread.join();
}

size_t TcpProxy::open_connections() {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (auto& c : conns_)
    if (!c->finished) ++n;
  return n;
}

void TcpProxy::ReapFinished() {
  std::list<std::unique_ptr<Conn>> done;
  {
    std::lock_guard lk(mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      if ((*it)->finished) {
        done.push_back(std::move(*it));
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : done)
    if (c->thread.joinable()) c->thread.join();
}

void TcpProxy::AcceptLoop(int listen_fd, int wake_fd) {
  while (true) {
    pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    int n = poll(p, 2, 1000);
    if (n < 0 && errno != EINTR) return;
    if (p[1].revents) return;
    ReapFinished();
    if (!(p[0].revents & POLLIN)) continue;
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    accepted_++;
    auto c = std::make_unique<Conn>();
    c->client = fd;
    Conn* raw = c.get();
    std::lock_guard lk(mu_);
    conns_.push_back(std::move(c));
    raw->thread = std::thread([this, raw] { RunConnection(raw); });
  }
}

void TcpProxy::RunConnection(Conn* c) {
  Serve(c);
  std::lock_guard lk(mu_);
  if (c->client >= 0) close(c->client);
  if (c->upstream >= 0) close(c->upstream);
  c->client = c->upstream = -1;
  c->finished = true;
}

int TcpProxy::ConnectUpstream(Conn* c) {
  int up = -1;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host_.c_str(), std::to_string(upstream_port_).c_str(), &hints, &res) == 0 &&
      res) {
    up = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (up >= 0 && connect(up, res->ai_addr, res->ai_addrlen) != 0) {
      close(up);
      up = -1;
    }
    freeaddrinfo(res);
  }
  if (up >= 0) {
    int one = 1;
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  std::lock_guard lk(mu_);
  if (up >= 0 && c->cut) {
    close(up);
    up = -1;
  }
  if (c->upstream >= 0) close(c->upstream);
  c->upstream = up;
  return up;
}

void TcpProxy::Serve(Conn* c) {
  int up = ConnectUpstream(c);
  if (up < 0) return;
  const int client = c->client;
  std::vector<char> buf(256 * 1024);
  bool open = true;
  while (open) {
    pollfd p[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2 && open; ++i) {
      if (!p[i].revents) continue;
      int from = i == 0 ? client : up, to = i == 0 ? up : client;
      uint64_t rate = i == 0 ? upload_rate_.load() : 0;
      size_t want = buf.size();
      if (rate > 0) want = std::max<size_t>(1, std::min<uint64_t>(want, rate / 20));
      ssize_t n = read(from, buf.data(), want);
      if (n <= 0) {
        open = false;
        break;
      }
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = send(to, buf.data() + off, n - off, MSG_NOSIGNAL);
        if (w <= 0) {
          open = false;
          break;
        }
        off += w;
      }
      forwarded_ += off;
      if (rate > 0 && open)
        std::this_thread::sleep_for(std::chrono::microseconds(off * 1000000 / rate));
    }
  }
}

}  // namespace scribefs::rep
