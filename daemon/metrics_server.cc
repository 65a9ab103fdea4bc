// The metrics HTTP responder and textfile writer (daemon/metrics_server.h).
#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

namespace scribefs {

Result<ListenAddress> ParseListenAddress(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status::Error(EINVAL, "--metrics-listen " + text + ": " + why +
                                     " (expected ADDR:PORT, e.g. 127.0.0.1:9108 or [::1]:9108)");
  };
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("no port");
  std::string host = text.substr(0, colon);
  std::string port_text = text.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535)
    return bad("the port must be a number from 0 to 65535");
  ListenAddress out;
  out.text = text;
  if (host == "localhost") host = "127.0.0.1";
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1)
      return bad("not an IPv6 address");
    out.addr_len = sizeof(sockaddr_in6);
    out.loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    return out;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out.addr);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1)
    return bad("not an IPv4 address, [IPv6 address] or localhost");
  out.addr_len = sizeof(sockaddr_in);
  out.loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
  return out;
}

HttpAnswer DecideHttpAnswer(std::string_view head) {
  HttpAnswer a;
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  // METHOD SP TARGET SP HTTP/1.x
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return a;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return a;
  if (method.empty() || target.empty() || target.front() != '/') return a;
  if (method != "GET" && method != "HEAD") return {405, "Method Not Allowed", false, false};
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return {404, "Not Found", false, method == "HEAD"};
  return {200, "OK", true, method == "HEAD"};
}

std::string HttpResponse(const HttpAnswer& a, const std::string& metrics_text) {
  std::string body = a.metrics ? metrics_text
                     : a.code == 404
                         ? "Not Found: scribefs serves /metrics only\n"
                         : std::to_string(a.code) + " " + a.reason + "\n";
  std::string type =
      a.metrics ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
  std::string r = "HTTP/1.1 " + std::to_string(a.code) + " " + a.reason + "\r\n";
  r += "Content-Type: " + type + "\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (a.code == 405) r += "Allow: GET, HEAD\r\n";
  r += "Connection: close\r\n\r\n";
  if (!a.head) r += body;
  return r;
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const ListenAddress& address,
                                                            MetricsRenderFn render) {
  // Non-blocking: the loop accepts until EAGAIN.
  UniqueFd s(socket(address.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return PosixError("metrics socket", errno);
  int one = 1;
  (void)setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s.get(), reinterpret_cast<const sockaddr*>(&address.addr), address.addr_len) != 0)
    return PosixError("--metrics-listen " + address.text + ": bind", errno);
  if (listen(s.get(), 16) != 0) return PosixError("--metrics-listen " + address.text, errno);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  int port = 0;
  if (getsockname(s.get(), reinterpret_cast<sockaddr*>(&bound), &len) == 0)
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return PosixError("metrics stop pipe", errno);
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(s), UniqueFd(p[0]),
                                                          UniqueFd(p[1]), port, std::move(render)));
}

MetricsServer::MetricsServer(UniqueFd listener, UniqueFd stop_read, UniqueFd stop_write, int port,
                             MetricsRenderFn render)
    : listener_(std::move(listener)),
      stop_read_(std::move(stop_read)),
      stop_write_(std::move(stop_write)),
      port_(port),
      render_(std::move(render)) {
  thread_ = std::thread([this] { Loop(); });
}

MetricsServer::~MetricsServer() {
  char c = 0;
  (void)!write(stop_write_.get(), &c, 1);
  if (thread_.joinable()) thread_.join();
}

// One connection, from accept to close. Reading: the request head
// accumulates in `in`; answering: `out` is sent from `sent` on.
struct MetricsServer::Client {
  UniqueFd fd;
  std::string in, out;
  size_t sent = 0;
  bool answering = false;
  Clock::time_point accepted, deadline;
};

// What to answer for the head read so far; nullopt while more may come.
// `ended`: the client closed its side, failed, or ran out of time.
std::optional<HttpAnswer> MetricsServer::AnswerFor(const std::string& head, bool ended) {
  size_t blank = head.find("\r\n\r\n");
  if (blank != std::string::npos && blank <= kMaxRequestBytes) return DecideHttpAnswer(head);
  if (head.size() > kMaxRequestBytes)
    return HttpAnswer{431, "Request Header Fields Too Large", false, false};
  if (!ended) return std::nullopt;
  if (head.empty()) return HttpAnswer{0, "", false, false};  // nothing asked: close
  return HttpAnswer{};                                       // a partial head: 400
}

void MetricsServer::Loop() {
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}});
    auto now = Clock::now();
    int timeout_ms = -1;
    for (const Client& c : clients) {
      fds.push_back({c.fd.get(), static_cast<short>(c.answering ? POLLOUT : POLLIN), 0});
      auto left = std::chrono::ceil<std::chrono::milliseconds>(c.deadline - now).count();
      left = std::max<int64_t>(left, 0);
      if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
    }
    if (poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics server: poll: {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    now = Clock::now();
    // Step every client that is ready or out of time; drop the finished ones.
    for (size_t i = 0; i < clients.size(); ++i) {
      short rev = fds[2 + i].revents;
      bool late = now >= clients[i].deadline;
      if (rev || late) {
        if (!Step(clients[i], late)) clients[i].fd.Reset();
      }
    }
    std::erase_if(clients, [](const Client& c) { return !c.fd; });
    if (fds[0].revents & POLLIN) AcceptAll(clients);
  }
}

void MetricsServer::AcceptAll(std::vector<Client>& clients) {
  for (;;) {
    UniqueFd c(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!c) return;  // none left, the client went away already, or out of fds for now
    if (clients.size() >= kMaxClients) {
      // Full: the oldest connection makes room, so that clients that send
      // nothing (or send slowly) cannot keep a new scrape out.
      auto oldest = std::min_element(clients.begin(), clients.end(),
                                     [](auto& a, auto& b) { return a.accepted < b.accepted; });
      clients.erase(oldest);
    }
    auto now = Clock::now();
    clients.push_back(Client{std::move(c), {}, {}, 0, false, now, now + kReadTimeout});
  }
}

bool MetricsServer::Step(Client& c, bool late) {
  if (c.answering) return late ? false : SendSome(c);
  bool ended = late;
  char buf[1024];
  while (!ended && c.in.size() <= kMaxRequestBytes) {
    ssize_t n = recv(c.fd.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ended = true;  // closed or failed: answer what we have
      break;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.find("\r\n\r\n") != std::string::npos) break;
  }
  std::optional<HttpAnswer> a = AnswerFor(c.in, ended);
  if (!a) return true;
  if (a->code == 0) return false;
  std::string text;
  if (a->metrics) {
    try {
      text = render_();
    } catch (const std::exception& e) {
      *a = {500, "Internal Server Error", false, a->head};
      spdlog::warn("metrics: {}", e.what());
    }
  }
  c.out = HttpResponse(*a, text);
  c.in = std::string();
  c.answering = true;
  c.deadline = Clock::now() + kReadTimeout;  // to send the answer
  return SendSome(c);
}

bool MetricsServer::SendSome(Client& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    c.sent += static_cast<size_t>(n);
  }
  shutdown(c.fd.get(), SHUT_WR);
  return false;
}

Status WriteFileAtomically(const std::string& path, const std::string& text) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  // A dot name: node_exporter reads *.prom only, so it never sees a half file.
  std::string tmp = dir + "/." + base + ".tmp." + std::to_string(getpid());
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return PosixError("metrics file: create " + tmp, errno);
  (void)fchmod(fd.get(), 0644);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      unlink(tmp.c_str());
      return PosixError("metrics file: write " + tmp, e);
    }
    off += static_cast<size_t>(n);
  }
  fd.Reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return PosixError("metrics file: rename to " + path, e);
  }
  return Status::Ok();
}

MetricsFileWriter::MetricsFileWriter(std::string path, std::chrono::milliseconds interval,
                                     MetricsRenderFn render)
    : path_(std::move(path)), interval_(interval), render_(std::move(render)) {
  thread_ = std::thread([this] {
    std::unique_lock lk(mu_);
    for (;;) {
      lk.unlock();
      WriteOnce();
      lk.lock();
      if (cv_.wait_for(lk, interval_, [this] { return stop_; })) return;
    }
  });
}

MetricsFileWriter::~MetricsFileWriter() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  WriteOnce();
}

void MetricsFileWriter::WriteOnce() {
  Status s = Status::Ok();
  try {
    s = WriteFileAtomically(path_, render_());
  } catch (const std::exception& e) {
    s = Status::Error(EIO, std::string("metrics: ") + e.what());
  }
  std::string err = s.ok() ? "" : s.message();
  if (err != last_error_) {
    if (!err.empty())
      spdlog::warn("{} (retrying every {} s)", err, static_cast<double>(interval_.count()) / 1000.0);
    else
      spdlog::info("metrics file {} written again", path_);
  }
  last_error_ = err;
}

Result<std::unique_ptr<MetricsExport>> MetricsExport::Start(const MetricsExportOptions& o,
                                                            const MetricsRenderFn& render) {
  auto out = std::make_unique<MetricsExport>();
  if (!o.listen.empty()) {
    auto addr = ParseListenAddress(o.listen);
    if (!addr.ok()) return addr.status();
    auto server = MetricsServer::Start(*addr, render);
    if (!server.ok()) return server.status();
    out->server = std::move(server.value());
    spdlog::info("metrics at http://{}/metrics", o.listen);
  }
  if (!o.file.empty()) out->writer = std::make_unique<MetricsFileWriter>(o.file, o.interval, render);
  return out;
}

}  // namespace scribefs
