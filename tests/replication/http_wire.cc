#include "tests/replication/http_wire.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace scribefs::rep {
namespace {

char LowerChar(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (LowerChar(a[i]) != LowerChar(b[i])) return false;
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Splits a head into its start line and fields; false when malformed.
bool SplitHead(HttpHead* h, std::string* start_line) {
  std::string_view rest(h->raw);
  size_t eol = rest.find("\r\n");
  if (eol == std::string_view::npos || eol == 0) return false;
  *start_line = std::string(rest.substr(0, eol));
  rest.remove_prefix(eol + 2);
  while (true) {
    eol = rest.find("\r\n");
    if (eol == std::string_view::npos) return false;
    if (eol == 0) return true;  // the blank line
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    h->fields.emplace_back(std::string(line.substr(0, colon)),
                           std::string(Trim(line.substr(colon + 1))));
  }
}

// A chunk-size line ("1a2b;ext\r\n") -> size; nullopt when malformed.
std::optional<uint64_t> ChunkSize(const std::string& line) {
  uint64_t v = 0;
  size_t i = 0;
  for (; i < line.size(); ++i) {
    char c = LowerChar(line[i]);
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) break;
    if (v > (UINT64_MAX >> 4)) return std::nullopt;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  if (i == 0) return std::nullopt;
  return v;
}

}  // namespace

// ---- WireSocket -----------------------------------------------------------------

bool WireSocket::Fill() {
  if (pos_ > 0) {  // drop what was consumed
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  char tmp[64 * 1024];
  while (true) {
    ssize_t n = read(fd_, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
}

bool WireSocket::ReadUntil(std::string_view terminator, std::string* out, size_t max) {
  size_t scanned = 0;  // bytes after pos_ known not to start the terminator
  while (true) {
    size_t end = buf_.find(terminator, pos_ + scanned);
    if (end != std::string::npos) {
      *out = buf_.substr(pos_, end + terminator.size() - pos_);
      pos_ = end + terminator.size();
      return true;
    }
    size_t have = buf_.size() - pos_;
    if (have > max) return false;
    scanned = have >= terminator.size() ? have - terminator.size() + 1 : 0;
    if (!Fill()) return false;  // (may move the unconsumed bytes to the front)
  }
}

bool WireSocket::ReadHead(std::string* head, size_t max) {
  return ReadUntil("\r\n\r\n", head, max);
}

bool WireSocket::ReadLine(std::string* line, size_t max) { return ReadUntil("\r\n", line, max); }

ssize_t WireSocket::ReadSome(char* out, size_t n) {
  if (pos_ == buf_.size() && !Fill()) return 0;
  size_t k = std::min(n, buf_.size() - pos_);
  std::copy_n(buf_.data() + pos_, k, out);
  pos_ += k;
  return static_cast<ssize_t>(k);
}

bool WireSocket::WriteAll(std::string_view data) {
  while (!data.empty()) {
    ssize_t w = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data.remove_prefix(static_cast<size_t>(w));
  }
  return true;
}

bool WireSocket::Readable(int timeout_ms) {
  if (pos_ < buf_.size()) return true;
  pollfd p{fd_, POLLIN, 0};
  return poll(&p, 1, timeout_ms) > 0;
}

// ---- heads --------------------------------------------------------------------

std::string HttpHead::Field(std::string_view name) const {
  for (const auto& [n, v] : fields)
    if (EqualNoCase(n, name)) return v;
  return "";
}

bool HttpHead::HasField(std::string_view name) const {
  for (const auto& f : fields)
    if (EqualNoCase(f.first, name)) return true;
  return false;
}

bool HttpHead::HasToken(std::string_view name, std::string_view token) const {
  for (const auto& [n, v] : fields) {
    if (!EqualNoCase(n, name)) continue;
    std::string_view rest(v);
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view item = Trim(rest.substr(0, comma));
      if (EqualNoCase(item, token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::optional<HttpHead> ParseRequestHead(std::string raw) {
  HttpHead h;
  h.raw = std::move(raw);
  std::string line;
  if (!SplitHead(&h, &line)) return std::nullopt;
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos) return std::nullopt;
  h.method = line.substr(0, sp1);
  h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  h.version = line.substr(sp2 + 1);
  if (h.method.empty() || h.target.empty() || h.version.rfind("HTTP/1.", 0) != 0)
    return std::nullopt;
  return h;
}

std::optional<HttpHead> ParseResponseHead(std::string raw) {
  HttpHead h;
  h.raw = std::move(raw);
  std::string line;
  if (!SplitHead(&h, &line)) return std::nullopt;
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12 || line[8] != ' ') return std::nullopt;
  h.version = line.substr(0, 8);
  h.status = atoi(line.c_str() + 9);
  if (h.status < 100 || h.status > 999) return std::nullopt;
  return h;
}

// ---- bodies ---------------------------------------------------------------------

BodyFraming RequestBodyFraming(const HttpHead& request) {
  BodyFraming f;
  if (request.HasToken("Transfer-Encoding", "chunked")) {
    f.kind = BodyFraming::kChunked;
  } else if (request.HasField("Content-Length")) {
    f.length = strtoull(request.Field("Content-Length").c_str(), nullptr, 10);
    f.kind = f.length > 0 ? BodyFraming::kLength : BodyFraming::kNone;
  }
  return f;
}

BodyFraming ResponseBodyFraming(const HttpHead& response, std::string_view request_method) {
  BodyFraming f;
  if (request_method == "HEAD" || response.status < 200 || response.status == 204 ||
      response.status == 304)
    return f;
  if (response.HasToken("Transfer-Encoding", "chunked")) {
    f.kind = BodyFraming::kChunked;
  } else if (response.HasField("Content-Length")) {
    f.length = strtoull(response.Field("Content-Length").c_str(), nullptr, 10);
    f.kind = f.length > 0 ? BodyFraming::kLength : BodyFraming::kNone;
  } else {
    f.kind = BodyFraming::kUntilClose;
  }
  return f;
}

bool KeepAlive(const HttpHead& request, const HttpHead& response, const BodyFraming& body) {
  if (body.kind == BodyFraming::kUntilClose) return false;
  if (request.HasToken("Connection", "close") || response.HasToken("Connection", "close"))
    return false;
  if (response.version == "HTTP/1.0") return response.HasToken("Connection", "keep-alive");
  return true;
}

std::optional<uint64_t> KnownBodySize(const BodyFraming& framing) {
  if (framing.kind == BodyFraming::kNone) return 0;
  if (framing.kind == BodyFraming::kLength) return framing.length;
  return std::nullopt;
}

int64_t CopyBody(WireSocket& from, WireSocket* to, const BodyFraming& framing, uint64_t limit,
                 bool* complete) {
  if (complete) *complete = false;
  uint64_t copied = 0;
  // Passes `data` on, up to the limit; false when the limit was reached.
  bool failed = false;
  auto pass = [&](std::string_view data) -> bool {
    size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), limit - copied));
    if (to && n > 0 && !to->WriteAll(data.substr(0, n))) failed = true;
    copied += n;
    return n == data.size() && !failed;
  };
  // Copies exactly n raw bytes; false at the limit, on EOF or failure.
  char buf[64 * 1024];
  auto raw = [&](uint64_t n) -> bool {
    while (n > 0) {
      ssize_t got = from.ReadSome(buf, static_cast<size_t>(std::min<uint64_t>(n, sizeof buf)));
      if (got <= 0) {
        failed = true;
        return false;
      }
      if (!pass(std::string_view(buf, static_cast<size_t>(got)))) return false;
      n -= static_cast<uint64_t>(got);
    }
    return true;
  };
  auto result = [&](bool done) -> int64_t {
    if (failed) return -1;
    if (complete) *complete = done;
    return static_cast<int64_t>(copied);
  };

  switch (framing.kind) {
    case BodyFraming::kNone:
      return result(true);
    case BodyFraming::kLength:
      return result(raw(framing.length));
    case BodyFraming::kUntilClose:
      while (true) {
        ssize_t got = from.ReadSome(buf, sizeof buf);
        if (got < 0) return -1;
        if (got == 0) return result(true);
        if (!pass(std::string_view(buf, static_cast<size_t>(got)))) return result(false);
      }
    case BodyFraming::kChunked:
      while (true) {
        std::string line;
        if (!from.ReadLine(&line)) return -1;
        auto size = ChunkSize(line);
        if (!size) return -1;
        if (!pass(line)) return result(false);
        if (*size == 0) {  // trailer fields, then a blank line
          while (true) {
            if (!from.ReadLine(&line)) return -1;
            if (!pass(line)) return result(false);
            if (line == "\r\n") return result(true);
          }
        }
        if (!raw(*size + 2)) return result(false);  // data and its CRLF
      }
  }
  return -1;
}

}  // namespace scribefs::rep
