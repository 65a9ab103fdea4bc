// FaultProxy: an HTTP/1.1-aware TcpProxy that injects the faults an S3
// server and the network between it and the uploader produce, per request,
// as its FaultPolicy (fault_policy.h) decides:
//
//   auto proxy = FaultProxy::Start("127.0.0.1", rgw_port);
//   proxy->policy().EveryNth(7, Fault::SlowDown());
//   scribefs --endpoint proxy->url() ...
//   ... proxy->injected(FaultKind::kSlowDown) ...
//
// Per request (connections are kept alive, so one connection carries many):
// - InternalError / SlowDown: answers 500 InternalError / 503 SlowDown with an
//   S3 XML error body (Code, Message, Resource, RequestId) without forwarding
//   anything. The request body is read and discarded first, as a server does,
//   and the connection stays open; if the client sent `Expect: 100-continue`
//   and waits, it gets the error instead of the 100 and the connection is
//   closed afterwards (curl does not send the body then).
// - DropRequestBody: forwards the head and half of the body (after passing on
//   the server's 100 Continue), then cuts both connections: the server never
//   answers, the client's send or receive fails.
// - DropResponse: forwards the request; of the answer it passes on the head
//   and half of the body, or half of the head when there is no body (a PUT's
//   answer), then cuts both connections. The server did the work.
// - Delay: forwards the request and holds the server's answer back for D ms.
//
// Everything else passes unchanged, including `Transfer-Encoding: chunked`
// bodies either way. Down()/Up() work as for TcpProxy.
//
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tests/replication/fault_policy.h"
#include "tests/replication/tcp_proxy.h"

namespace scribefs::rep {

class FaultProxy : public TcpProxy {
 public:
  // Listens on 127.0.0.1:listen_port (0: a free port). nullptr (and *error
  // set) when the port cannot be bound.
  static std::unique_ptr<FaultProxy> Start(const std::string& upstream_host, int upstream_port,
                                           int listen_port = 0, std::string* error = nullptr);
  ~FaultProxy() override;

  // Program it at any time; it applies to requests that arrive afterwards.
  FaultPolicy& policy() { return policy_; }

  uint64_t requests() const { return requests_; }  // request heads read from clients
  // Faults injected so far (a Delay counts when the answer was held back).
  uint64_t injected(FaultKind kind) const { return injected_[static_cast<int>(kind)]; }
  uint64_t injected_total() const;
  // One line per injected fault: "#12 SlowDown PUT /bucket/key", oldest first.
  std::vector<std::string> log();

 protected:
  void Serve(Conn* c) override;

 private:
  using TcpProxy::TcpProxy;
  void Count(FaultKind kind, uint64_t number, const std::string& method, const std::string& target);

  FaultPolicy policy_;
  std::atomic<uint64_t> requests_{0};
  std::array<std::atomic<uint64_t>, kFaultKinds> injected_{};
  std::mutex log_mu_;
  std::vector<std::string> log_;  // guarded by log_mu_
};

}  // namespace scribefs::rep
