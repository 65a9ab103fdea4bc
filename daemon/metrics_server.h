// Serving the metrics text (daemon/metrics_format.h): a minimal HTTP/1.1
// responder for Prometheus (--metrics-listen) and a file rewritten
// atomically for node_exporter's textfile collector (--metrics-file).
// README, "Monitoring (Prometheus)".
//
// The HTTP side answers GET (and HEAD) /metrics with 200, other paths 404,
// other methods 405, anything that is not an HTTP request line 400, a
// request head over kMaxRequestBytes 431, and always closes the connection
// after its one answer. One thread serves up to kMaxClients connections at
// once (non-blocking, one poll over all of them), so a client that sends
// nothing or sends slowly delays no other scrape: it is dropped after
// kReadTimeout, or earlier when a new connection needs its place (the
// oldest connection makes room when all kMaxClients are taken).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace scribefs {

// Renders the metrics text; called on the server's threads.
using MetricsRenderFn = std::function<std::string()>;

// ADDR:PORT as --metrics-listen takes it: an IPv4 address, [IPv6] or
// localhost, and a port (0: any free port).
struct ListenAddress {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  bool loopback = false;  // 127.0.0.0/8, ::1, localhost
  std::string text;       // as given
};
Result<ListenAddress> ParseListenAddress(const std::string& text);

// The decision for one request head (everything before the blank line):
// status code, reason, and whether the body is the metrics text.
struct HttpAnswer {
  int code = 400;
  std::string reason = "Bad Request";
  bool metrics = false;  // 200 with the metrics text
  bool head = false;     // HEAD: headers only
};
HttpAnswer DecideHttpAnswer(std::string_view request_head);
// The full response bytes for an answer (body: the metrics text when
// answer.metrics, else a one-line message).
std::string HttpResponse(const HttpAnswer& answer, const std::string& metrics_text);

inline constexpr size_t kMaxRequestBytes = 8192;
inline constexpr std::chrono::milliseconds kReadTimeout{2000};
// Connections served at once (each holds one fd and at most a request head
// or one answer in memory).
inline constexpr size_t kMaxClients = 16;

class MetricsServer {
 public:
  // Binds and listens (errors: EADDRINUSE, EACCES, ... with the address in
  // the message), then serves on its own thread until destroyed.
  static Result<std::unique_ptr<MetricsServer>> Start(const ListenAddress& address,
                                                       MetricsRenderFn render);
  ~MetricsServer();  // stops the thread; connections still open are closed
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  int port() const { return port_; }  // the bound port (useful with port 0)

 private:
  MetricsServer(UniqueFd listener, UniqueFd stop_read, UniqueFd stop_write, int port,
                MetricsRenderFn render);
  using Clock = std::chrono::steady_clock;
  struct Client;
  void Loop();
  void AcceptAll(std::vector<Client>& clients);
  // Reads, answers or sends for c (late: its deadline has passed); false
  // when c is finished and is to be closed.
  bool Step(Client& c, bool late);
  bool SendSome(Client& c);
  static std::optional<HttpAnswer> AnswerFor(const std::string& head, bool ended);

  UniqueFd listener_, stop_read_, stop_write_;
  int port_;
  MetricsRenderFn render_;
  std::thread thread_;
};

// Writes text to path atomically: a temporary file in the same directory,
// mode 0644 (node_exporter runs as another user), then rename.
Status WriteFileAtomically(const std::string& path, const std::string& text);

// Rewrites a file with the metrics text at once and then every interval,
// until destroyed (which writes it a last time, so the file shows the final
// counters). Failures are logged, once per change of error, and retried.
class MetricsFileWriter {
 public:
  MetricsFileWriter(std::string path, std::chrono::milliseconds interval, MetricsRenderFn render);
  ~MetricsFileWriter();
  MetricsFileWriter(const MetricsFileWriter&) = delete;
  MetricsFileWriter& operator=(const MetricsFileWriter&) = delete;

 private:
  void WriteOnce();
  const std::string path_;
  const std::chrono::milliseconds interval_;
  MetricsRenderFn render_;
  std::string last_error_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Both ways out, as the daemon starts them: the server when listen is set,
// the file writer when file is set. Destroying it stops both (the file gets
// its last write).
struct MetricsExportOptions {
  std::string listen;  // ADDR:PORT, checked by ParseListenAddress
  std::string file;
  std::chrono::milliseconds interval{15000};
};
struct MetricsExport {
  static Result<std::unique_ptr<MetricsExport>> Start(const MetricsExportOptions& options,
                                                      const MetricsRenderFn& render);
  std::unique_ptr<MetricsServer> server;      // null without listen
  std::unique_ptr<MetricsFileWriter> writer;  // null without file
};

}  // namespace scribefs
