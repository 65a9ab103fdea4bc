// TcpProxy: the project's fault-injection tool for the network between the
// uploader and its S3 server. It forwards 127.0.0.1:port() to an upstream
// host:port and can be taken down and brought back on the same port:
//
//   auto proxy = TcpProxy::Start("127.0.0.1", rgw_port);   // up
//   scribefs --endpoint proxy->url() ...
//   proxy->Down();   // new connections are refused, open ones are cut
//   proxy->Up();     // listens again on the same port
//
// Down() closes the listening socket (a connect gets ECONNREFUSED, as when the
// server is stopped) and shuts down both sides of every open connection (a
// request in flight sees its connection reset / closed early). Each accepted
// connection is served by its own thread; bytes are forwarded unchanged.
//
// Subclasses change what happens on a connection by overriding Serve() (see
// FaultProxy, fault_proxy.h, which speaks HTTP); the listening, Down/Up and
// the connection threads stay here. A subclass must call Down() in its own
// destructor, so that no connection thread runs its Serve() on a half
// destroyed object.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace scribefs::rep {

class TcpProxy {
 public:
  // Listens on 127.0.0.1:listen_port (0: a free port). nullptr (and *error
  // set) when the port cannot be bound.
  static std::unique_ptr<TcpProxy> Start(const std::string& upstream_host, int upstream_port,
                                         int listen_port = 0, std::string* error = nullptr);
  virtual ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Refuses new connections and cuts the open ones. Idempotent.
  void Down();
  // Listens again on the same port. Idempotent; false (with *error) when the
  // port cannot be bound again.
  bool Up(std::string* error = nullptr);
  bool is_up() const { return up_; }

  // Slows what clients send upstream to about this many bytes per second
  // per connection (0: no limit, the default), e.g. to catch an upload in
  // the middle. Applies to connections open and new.
  void SetUploadRate(uint64_t bytes_per_second) { upload_rate_ = bytes_per_second; }

  uint64_t accepted() const { return accepted_; }            // connections accepted so far
  uint64_t bytes_forwarded() const { return forwarded_; }    // both directions
  size_t open_connections();

 protected:
  // One accepted connection. Its descriptors are closed by the thread that
  // runs Serve() once Serve returns; Down() shuts them down (not closes) to
  // wake a Serve blocked in read/poll.
  struct Conn {
    int client = -1;
    int upstream = -1;             // guarded by mu_ (set through ConnectUpstream)
    std::atomic<bool> cut{false};  // Down() was called: do not (re)connect
    std::atomic<bool> finished{false};
    std::thread thread;
  };
  TcpProxy(std::string host, int upstream_port);
  // Listens on 127.0.0.1:port (0: any free port); called once by Start.
  bool Listen(int port, std::string* error);
  // Serves one connection until it ends; runs on the connection's own
  // thread. The default forwards bytes both ways unchanged.
  virtual void Serve(Conn* c);
  // Connects to the upstream server and registers the descriptor in c (so
  // that Down() cuts it); -1 when that fails or the proxy is going down.
  // Closes the previous upstream descriptor of c, if any.
  int ConnectUpstream(Conn* c);
  void CountForwarded(uint64_t n) { forwarded_ += n; }  // for bytes_forwarded()

 private:
  void AcceptLoop(int listen_fd, int wake_fd);
  void RunConnection(Conn* c);  // Serve, then close its descriptors
  void ReapFinished();          // joins connection threads that ended

  const std::string host_;
  const int upstream_port_;
  int port_ = 0;
  std::atomic<bool> up_{false};
  std::atomic<uint64_t> accepted_{0}, forwarded_{0};
  std::atomic<uint64_t> upload_rate_{0};

  std::mutex mu_;  // guards the members below
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the accept loop to stop
  std::thread acceptor_;
  std::list<std::unique_ptr<Conn>> conns_;
};

}  // namespace scribefs::rep
