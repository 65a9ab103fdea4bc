// HTTP/1.1 message framing for the test proxies: just enough to find where
// one request or response ends and the next begins on a keep-alive
// connection (RFC 9112): the start line, the header fields, and the body's
// length from Content-Length or `Transfer-Encoding: chunked` (or "until the
// connection closes" for a response that has neither). Bodies are copied as
// they are on the wire (chunk framing included), never decoded.
//
// WireSocket is a blocking socket with a read buffer; not thread-safe (one
// thread reads it). The free functions are thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace scribefs::rep {

class WireSocket {
 public:
  explicit WireSocket(int fd) : fd_(fd) {}
  int fd() const { return fd_; }

  // Reads up to and including the blank line that ends a message head.
  // false at EOF or error, or when the head exceeds `max` bytes.
  bool ReadHead(std::string* head, size_t max = 64 * 1024);
  // One line including its CRLF (chunk sizes, trailers); false at EOF/error.
  bool ReadLine(std::string* line, size_t max = 8 * 1024);
  // Up to n bytes: what is buffered, else one read(). 0 at EOF, -1 on error.
  ssize_t ReadSome(char* buf, size_t n);
  // Everything, retrying short writes; false on error (e.g. the peer is gone).
  bool WriteAll(std::string_view data);
  // True when a byte can be read without blocking (buffered, or readable
  // within timeout_ms; EOF counts as readable).
  bool Readable(int timeout_ms);

 private:
  int fd_;
  std::string buf_;  // read but not yet consumed
  size_t pos_ = 0;   // start of the unconsumed bytes in buf_
  // One read() into buf_ (consumed bytes are dropped first, so pos_ becomes
  // 0); false at EOF/error.
  bool Fill();
  // Up to and including `terminator`, at most max bytes before it.
  bool ReadUntil(std::string_view terminator, std::string* out, size_t max);
};

struct HttpHead {
  std::string raw;  // the head as received, blank line included
  // Request line: METHOD TARGET VERSION.
  std::string method, target;
  // Status line: VERSION STATUS REASON.
  int status = 0;
  std::string version;
  std::vector<std::pair<std::string, std::string>> fields;  // in order, names as sent

  // The first field named `name` (case-insensitive); "" when absent.
  std::string Field(std::string_view name) const;
  bool HasField(std::string_view name) const;
  // Whether the comma-separated field `name` lists `token` (case-insensitive),
  // e.g. HasToken("Connection", "close"), HasToken("Expect", "100-continue").
  bool HasToken(std::string_view name, std::string_view token) const;
};

// nullopt when the head is not a well-formed request / response head.
std::optional<HttpHead> ParseRequestHead(std::string raw);
std::optional<HttpHead> ParseResponseHead(std::string raw);

struct BodyFraming {
  enum Kind { kNone, kLength, kChunked, kUntilClose } kind = kNone;
  uint64_t length = 0;  // kLength
};
// A request has a body when it says Content-Length or chunked.
BodyFraming RequestBodyFraming(const HttpHead& request);
// No body for HEAD answers, 1xx, 204 and 304; else chunked, Content-Length,
// or until the connection closes.
BodyFraming ResponseBodyFraming(const HttpHead& response, std::string_view request_method);
// Whether the connection stays open after this exchange (HTTP/1.1 default:
// yes, unless either side said `Connection: close` or the body ends at EOF).
bool KeepAlive(const HttpHead& request, const HttpHead& response, const BodyFraming& body);

// Copies a body framed as `framing` from `from` to `to` (nullptr: read and
// discard), wire bytes unchanged. Stops after `limit` wire bytes when the
// body is longer (to cut a transfer short; *complete is then false). Returns
// the wire bytes copied, or -1 when `from` ended early or either side failed.
int64_t CopyBody(WireSocket& from, WireSocket* to, const BodyFraming& framing,
                 uint64_t limit = UINT64_MAX, bool* complete = nullptr);
// The wire size of a body when known up front (kNone, kLength); nullopt for
// chunked and until-close bodies.
std::optional<uint64_t> KnownBodySize(const BodyFraming& framing);

}  // namespace scribefs::rep
