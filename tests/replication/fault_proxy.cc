#include "tests/replication/fault_proxy.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <thread>

#include "tests/replication/http_wire.h"
#include "uploader/xml.h"

namespace scribefs::rep {
namespace {

// The answer S3 gives for InternalError / SlowDown.
std::string ErrorAnswer(FaultKind kind, const HttpHead& request, uint64_t number, bool keep) {
  bool slow = kind == FaultKind::kSlowDown;
  std::string request_id = "faultproxy-" + std::to_string(number);
  std::string body;
  if (request.method != "HEAD") {
    body = std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>") +
           (slow ? "SlowDown" : "InternalError") + "</Code><Message>" +
           (slow ? "Please reduce your request rate."
                 : "We encountered an internal error. Please try again.") +
           "</Message><Resource>" + XmlEscape(request.target.substr(0, request.target.find('?'))) +
           "</Resource><RequestId>" + request_id + "</RequestId></Error>";
  }
  return std::string("HTTP/1.1 ") +
         (slow ? "503 Service Unavailable" : "500 Internal Server Error") +
         "\r\nContent-Type: application/xml\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nx-amz-request-id: " + request_id +
         "\r\nConnection: " + (keep ? "keep-alive" : "close") + "\r\n\r\n" + body;
}

// Ends a connection the proxy answered with `Connection: close`: no more
// writes, then read what the client still sends (briefly) so that closing
// does not reset the connection before the client has read the answer.
void LingerClose(WireSocket& client) {
  shutdown(client.fd(), SHUT_WR);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  char buf[16 * 1024];
  while (std::chrono::steady_clock::now() < until && client.Readable(100)) {
    if (client.ReadSome(buf, sizeof buf) <= 0) break;
  }
}

}  // namespace

std::unique_ptr<FaultProxy> FaultProxy::Start(const std::string& upstream_host, int upstream_port,
                                              int listen_port, std::string* error) {
  std::unique_ptr<FaultProxy> p(new FaultProxy(upstream_host, upstream_port));
  if (!p->Listen(listen_port, error)) return nullptr;
  return p;
}

FaultProxy::~FaultProxy() { Down(); }  // before policy_ and the counters go

uint64_t FaultProxy::injected_total() const {
  uint64_t n = 0;
  for (int k = 1; k < kFaultKinds; ++k) n += injected_[k];
  return n;
}

std::vector<std::string> FaultProxy::log() {
  std::lock_guard lk(log_mu_);
  return log_;
}

void FaultProxy::Count(FaultKind kind, uint64_t number, const std::string& method,
                       const std::string& target) {
  injected_[static_cast<int>(kind)]++;
  std::lock_guard lk(log_mu_);
  log_.push_back("#" + std::to_string(number) + " " + FaultName(kind) + " " + method + " " +
                 target);
}

void FaultProxy::Serve(Conn* c) {
  WireSocket client(c->client);
  std::unique_ptr<WireSocket> up;  // connected at the first request forwarded
  // Cuts both sides (the descriptors are closed when Serve returns).
  auto cut = [&] {
    shutdown(client.fd(), SHUT_RDWR);
    if (up) shutdown(up->fd(), SHUT_RDWR);
  };
  auto send_client = [&](std::string_view data) {
    CountForwarded(data.size());
    return client.WriteAll(data);
  };

  while (!c->cut) {
    // ---- the request head
    std::string raw;
    if (!client.ReadHead(&raw)) return;  // the client closed (or sent garbage)
    auto req = ParseRequestHead(std::move(raw));
    if (!req) {
      (void)client.WriteAll(
          "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const uint64_t number = ++requests_;
    const BodyFraming req_body = RequestBodyFraming(*req);
    RequestInfo info;
    info.number = number;
    info.method = req->method;
    info.target = req->target;
    info.body_length = req_body.kind == BodyFraming::kLength ? req_body.length : 0;
    info.chunked = req_body.kind == BodyFraming::kChunked;
    const Fault fault = policy_.Decide(info);
    const bool expect =
        req->HasToken("Expect", "100-continue") && req_body.kind != BodyFraming::kNone;

    // ---- answered here: 500 / 503
    if (fault.kind == FaultKind::kInternalError || fault.kind == FaultKind::kSlowDown) {
      Count(fault.kind, number, req->method, req->target);
      // A client waiting for 100 Continue gets the error instead and sends
      // no body; otherwise the body is on its way: read it, as a server does.
      bool keep = !expect && !req->HasToken("Connection", "close");
      if (!expect && CopyBody(client, nullptr, req_body) < 0) return;
      if (!client.WriteAll(ErrorAnswer(fault.kind, *req, number, keep))) return;
      if (!keep) {
        LingerClose(client);
        return;
      }
      continue;
    }

    // ---- forwarded
    if (!up) {
      int fd = ConnectUpstream(c);
      if (fd < 0) return;  // the client sees its connection closed
      up = std::make_unique<WireSocket>(fd);
    }
    CountForwarded(req->raw.size());
    if (!up->WriteAll(req->raw)) return;

    // With Expect: 100-continue the client sends the body once the server
    // says 100 (or after its own timeout, ~1 s for curl): pass the 100 on.
    // A final answer instead of the 100 ends the exchange without a body.
    std::optional<HttpHead> early;  // a final answer that came before the body
    if (expect) {
      while (true) {
        pollfd p[2] = {{client.fd(), POLLIN, 0}, {up->fd(), POLLIN, 0}};
        if (client.Readable(0)) break;  // the body is coming anyway
        if (poll(p, 2, 1000) < 0 && errno != EINTR) return;
        if (c->cut) return;
        if (p[0].revents) break;
        if (!p[1].revents) continue;
        std::string h;
        if (!up->ReadHead(&h)) return;
        auto resp = ParseResponseHead(std::move(h));
        if (!resp) return;
        if (resp->status == 100) {
          if (!send_client(resp->raw)) return;
          break;
        }
        early = std::move(resp);
        break;
      }
    }

    if (!early) {
      if (fault.kind == FaultKind::kDropRequestBody) {
        Count(fault.kind, number, req->method, req->target);
        auto known = KnownBodySize(req_body);
        uint64_t limit = known ? *known / 2 : 1024;
        int64_t n = CopyBody(client, up.get(), req_body, limit);
        if (n > 0) CountForwarded(static_cast<uint64_t>(n));
        cut();
        return;
      }
      int64_t n = CopyBody(client, up.get(), req_body);
      if (n < 0) return;
      CountForwarded(static_cast<uint64_t>(n));
    }

    // ---- the answer (1xx interim answers are passed on as they come)
    HttpHead resp;
    if (early) {
      resp = std::move(*early);
    } else {
      while (true) {
        std::string h;
        if (!up->ReadHead(&h)) return;  // the server closed: so does the client's connection
        auto r = ParseResponseHead(std::move(h));
        if (!r) return;
        if (r->status >= 200) {
          resp = std::move(*r);
          break;
        }
        if (!send_client(r->raw)) return;
      }
    }
    const BodyFraming resp_body = ResponseBodyFraming(resp, req->method);

    if (fault.kind == FaultKind::kDelay) {
      Count(fault.kind, number, req->method, req->target);
      auto until = std::chrono::steady_clock::now() + fault.delay;
      while (!c->cut && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (c->cut) return;
    }
    if (fault.kind == FaultKind::kDropResponse) {
      Count(fault.kind, number, req->method, req->target);
      auto known = KnownBodySize(resp_body);
      if (known && *known == 0) {
        (void)send_client(std::string_view(resp.raw).substr(0, resp.raw.size() / 2));
      } else if (send_client(resp.raw)) {
        int64_t n = CopyBody(*up, &client, resp_body, known ? *known / 2 : 16);
        if (n > 0) CountForwarded(static_cast<uint64_t>(n));
      }
      cut();
      return;
    }
    if (!send_client(resp.raw)) return;
    int64_t n = CopyBody(*up, &client, resp_body);
    if (n < 0) return;
    CountForwarded(static_cast<uint64_t>(n));
    if (early || !KeepAlive(*req, resp, resp_body)) return;
  }
}

}  // namespace scribefs::rep
