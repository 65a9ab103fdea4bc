// The fault-injection tools themselves: FaultPolicy (which request gets
// which fault), the HTTP framing (http_wire.h), and FaultProxy against a tiny
// local HTTP server (chunked bodies both ways, keep-alive, each fault on the
// wire) and against the real RGW of the CTest fixture "rgw" through
// scribefs's own S3 client (what the uploader sees of each fault).
#include "tests/replication/fault_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "tests/replication/http_wire.h"
#include "tests/replication/replication_util.h"

namespace scribefs::rep {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

RequestInfo Req(const std::string& method, uint64_t body = 0) {
  RequestInfo r;
  r.method = method;
  r.target = "/b/k";
  r.body_length = body;
  return r;
}

// ---- FaultPolicy ---------------------------------------------------------------

TEST(FaultPolicy, EveryNthNextKAndFirstRuleWins) {
  FaultPolicy p;
  p.NextK(2, Fault::SlowDown(), MethodIs("GET"));
  p.EveryNth(3, Fault::InternalError());
  std::vector<FaultKind> got;
  for (int i = 0; i < 9; ++i) got.push_back(p.Decide(Req("PUT", 10)).kind);
  // The GET-only rule does not count PUTs; every 3rd PUT gets a 500.
  std::vector<FaultKind> want = {FaultKind::kNone, FaultKind::kNone, FaultKind::kInternalError,
                                 FaultKind::kNone, FaultKind::kNone, FaultKind::kInternalError,
                                 FaultKind::kNone, FaultKind::kNone, FaultKind::kInternalError};
  EXPECT_EQ(got, want);
  // The next two GETs are answered by the first rule, which stops the second
  // from counting them; then it is used up.
  EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kSlowDown);
  EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kSlowDown);
  EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kNone);  // 10th seen by rule 2
  EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kNone);
  EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kInternalError);  // 12th
  p.Clear();
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.Decide(Req("PUT")).kind, FaultKind::kNone);
}

TEST(FaultPolicy, ProbabilityIsReproducibleWithASeed) {
  auto run = [](uint64_t seed) {
    FaultPolicy p;
    p.WithProbability(0.2, seed, Fault::Delay(milliseconds(5)), IsUpload());
    std::vector<bool> fired;
    for (int i = 0; i < 2000; ++i) {
      EXPECT_EQ(p.Decide(Req("GET")).kind, FaultKind::kNone);  // filtered out
      fired.push_back(p.Decide(Req("PUT", 100)).kind == FaultKind::kDelay);
    }
    return fired;
  };
  auto a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  size_t n = std::count(a.begin(), a.end(), true);
  EXPECT_GT(n, 300u);
  EXPECT_LT(n, 500u);
}

// ---- HTTP framing ---------------------------------------------------------------

TEST(HttpWire, ParsesHeadsAndFindsBodies) {
  auto r = ParseRequestHead(
      "PUT /b/k?partNumber=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n"
      "Expect: 100-continue\r\nConnection: Keep-Alive, TE\r\n\r\n");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->method, "PUT");
  EXPECT_EQ(r->target, "/b/k?partNumber=1");
  EXPECT_EQ(r->Field("content-length"), "12");
  EXPECT_TRUE(r->HasToken("expect", "100-Continue"));
  EXPECT_TRUE(r->HasToken("Connection", "te"));
  EXPECT_FALSE(r->HasToken("Connection", "close"));
  auto f = RequestBodyFraming(*r);
  EXPECT_EQ(f.kind, BodyFraming::kLength);
  EXPECT_EQ(f.length, 12u);

  auto c = ParseRequestHead("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(RequestBodyFraming(*c).kind, BodyFraming::kChunked);
  EXPECT_EQ(RequestBodyFraming(*ParseRequestHead("GET / HTTP/1.1\r\n\r\n")).kind,
            BodyFraming::kNone);
  EXPECT_FALSE(ParseRequestHead("garbage\r\n\r\n").has_value());
  EXPECT_FALSE(ParseRequestHead("GET / HTTP/1.1\r\nno colon\r\n\r\n").has_value());

  auto s = ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->status, 200);
  EXPECT_EQ(ResponseBodyFraming(*s, "GET").kind, BodyFraming::kLength);
  EXPECT_EQ(ResponseBodyFraming(*s, "HEAD").kind, BodyFraming::kNone);
  auto e = ParseResponseHead("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(ResponseBodyFraming(*e, "GET").kind, BodyFraming::kUntilClose);
  EXPECT_FALSE(KeepAlive(*r, *e, ResponseBodyFraming(*e, "GET")));
  EXPECT_TRUE(KeepAlive(*r, *s, ResponseBodyFraming(*s, "GET")));
  auto cont = ParseResponseHead("HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(cont.has_value());
  EXPECT_EQ(cont->status, 100);
  EXPECT_EQ(ResponseBodyFraming(*cont, "PUT").kind, BodyFraming::kNone);
}

// ---- FaultProxy on a local HTTP server --------------------------------------------

int Listen(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Answers every request (keep-alive) with a chunked body that echoes the
// request's method, target and body size: "PUT /x 11".
class ChunkedServer {
 public:
  ChunkedServer() {
    fd_ = Listen(&port_);
    thread_ = std::thread([this] {
      while (true) {
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;
        std::thread([c] {
          WireSocket s(c);
          std::string raw;
          while (s.ReadHead(&raw)) {
            auto req = ParseRequestHead(raw);
            if (!req) break;
            int64_t n = CopyBody(s, nullptr, RequestBodyFraming(*req));
            if (n < 0) break;
            std::string text = req->method + " " + req->target + " " + std::to_string(n);
            std::string half1 = text.substr(0, text.size() / 2),
                        half2 = text.substr(text.size() / 2);
            char h1[16], h2[16];
            snprintf(h1, sizeof h1, "%zx", half1.size());
            snprintf(h2, sizeof h2, "%zx", half2.size());
            std::string answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                 std::string(h1) + "\r\n" + half1 + "\r\n" + h2 + ";ext=1\r\n" +
                                 half2 + "\r\n0\r\nX-Trailer: t\r\n\r\n";
            if (!s.WriteAll(answer)) break;
          }
          close(c);
        }).detach();
      }
    });
  }
  ~ChunkedServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
  std::thread thread_;
};

// Sends `request` on fd and reads one answer: head and body (decoded from
// chunks when chunked). status -1 when the connection ended first.
struct Answer {
  int status = -1;
  std::string head, body;
};
Answer Exchange(WireSocket& s, const std::string& request) {
  Answer a;
  if (!s.WriteAll(request)) return a;
  std::string raw;
  if (!s.ReadHead(&raw)) return a;
  auto h = ParseResponseHead(raw);
  if (!h) return a;
  a.head = raw;
  BodyFraming f = ResponseBodyFraming(*h, request.substr(0, request.find(' ')));
  if (f.kind == BodyFraming::kChunked) {
    while (true) {
      std::string line;
      if (!s.ReadLine(&line)) return a;
      uint64_t n = strtoull(line.c_str(), nullptr, 16);
      if (n == 0) {
        while (s.ReadLine(&line) && line != "\r\n") {
        }
        break;
      }
      std::string chunk(n + 2, '\0');
      for (size_t got = 0; got < chunk.size();) {
        ssize_t k = s.ReadSome(chunk.data() + got, chunk.size() - got);
        if (k <= 0) return a;
        got += static_cast<size_t>(k);
      }
      a.body += chunk.substr(0, n);
    }
  } else if (f.kind == BodyFraming::kLength) {
    a.body.resize(f.length);
    for (size_t got = 0; got < f.length;) {
      ssize_t k = s.ReadSome(a.body.data() + got, f.length - got);
      if (k <= 0) return a;
      got += static_cast<size_t>(k);
    }
  }
  a.status = h->status;
  return a;
}

// True when the peer closes the connection within 5 s (what it still sent
// before is skipped).
bool ClosedByPeer(WireSocket& s) {
  char buf[4096];
  auto until = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < until && s.Readable(100)) {
    if (s.ReadSome(buf, sizeof buf) <= 0) return true;
  }
  return false;
}

TEST(FaultProxy, KeepAliveChunkedBodiesAndEachFaultOnTheWire) {
  ChunkedServer server;
  std::string err;
  auto proxy = FaultProxy::Start("127.0.0.1", server.port(), 0, &err);
  ASSERT_NE(proxy, nullptr) << err;

  int fd = Connect(proxy->port());
  ASSERT_GE(fd, 0);
  WireSocket s(fd);
  // Two requests on one connection, one with a chunked body.
  Answer a1 = Exchange(s, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a1.status, 200);
  EXPECT_EQ(a1.body, "GET /one 0");
  Answer a2 = Exchange(s,
                       "POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(a2.status, 200);
  EXPECT_EQ(a2.body, "POST /two 26");  // the chunked wire size
  // 503 with an S3 error body, the body read and the connection kept.
  proxy->policy().NextK(1, Fault::SlowDown());
  Answer a3 = Exchange(s, "PUT /b/k?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody");
  EXPECT_EQ(a3.status, 503);
  EXPECT_NE(a3.body.find("<Code>SlowDown</Code>"), std::string::npos) << a3.body;
  EXPECT_NE(a3.body.find("<Resource>/b/k</Resource>"), std::string::npos) << a3.body;
  proxy->policy().NextK(1, Fault::InternalError());
  Answer a4 = Exchange(s, "GET /three HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a4.status, 500);
  EXPECT_NE(a4.body.find("<Code>InternalError</Code>"), std::string::npos) << a4.body;
  Answer a5 = Exchange(s, "GET /four HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a5.body, "GET /four 0");
  EXPECT_EQ(proxy->accepted(), 1u);
  EXPECT_EQ(proxy->requests(), 5u);

  // Delay.
  proxy->policy().NextK(1, Fault::Delay(milliseconds(300)));
  auto t0 = Clock::now();
  Answer a6 = Exchange(s, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a6.body, "GET /slow 0");
  EXPECT_GE(Clock::now() - t0, milliseconds(300));

  // The answer cut short: a part of the chunked body, then the end.
  proxy->policy().NextK(1, Fault::DropResponse());
  Answer a7 = Exchange(s, "GET /cut HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(a7.status, -1) << "a complete answer came through: " << a7.body;
  EXPECT_TRUE(ClosedByPeer(s));
  close(fd);

  // The request body cut short: no answer, the connection ends.
  fd = Connect(proxy->port());
  ASSERT_GE(fd, 0);
  WireSocket s2(fd);
  proxy->policy().NextK(1, Fault::DropRequestBody());
  std::string body(100000, 'b');
  (void)s2.WriteAll("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  (void)s2.WriteAll(body);
  EXPECT_TRUE(ClosedByPeer(s2));
  close(fd);

  EXPECT_EQ(proxy->injected(FaultKind::kSlowDown), 1u);
  EXPECT_EQ(proxy->injected(FaultKind::kInternalError), 1u);
  EXPECT_EQ(proxy->injected(FaultKind::kDelay), 1u);
  EXPECT_EQ(proxy->injected(FaultKind::kDropResponse), 1u);
  EXPECT_EQ(proxy->injected(FaultKind::kDropRequestBody), 1u);
  EXPECT_EQ(proxy->injected_total(), 5u);
  EXPECT_EQ(proxy->log().size(), 5u);
}

// ---- FaultProxy between scribefs's S3 client and RGW ---------------------------------

class FaultProxyS3 : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    auto env = LoadS3Env(&error);
    ASSERT_TRUE(env.has_value()) << error;
    env_ = *env;
    bucket_ = NewBucketName("proxy");
    ASSERT_EQ(CreateBucket(env_, bucket_), "");
    proxy_ = FaultProxy::Start(env_.host, env_.port, 0, &error);
    ASSERT_NE(proxy_, nullptr) << error;
    via_ = OpenS3(env_, bucket_, proxy_->url());
    direct_ = OpenS3(env_, bucket_);
    ASSERT_NE(via_, nullptr);
    ASSERT_NE(direct_, nullptr);
  }
  bool Exists(const std::string& key) { return direct_->Head(key).ok(); }

  S3Env env_;
  std::string bucket_;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<S3Store> via_, direct_;
};

std::string Show(const StoreStatus& s) {
  return s.ToString() + " [code " + s.error_code() + ", http " +
         std::to_string(s.info().http_status) + ", retryable " + (s.retryable() ? "yes" : "no") +
         "]";
}

TEST_F(FaultProxyS3, EveryFaultIsARetryableErrorAndTheNextRequestWorks) {
  const std::string small = "small body",
                    big = RandomBytes(2 << 20, 3);  // big: Expect: 100-continue
  ASSERT_TRUE(via_->Put("plain", Payload::FromMemory(small), {}).ok());

  struct Case {
    const char* name;
    Fault fault;
    const std::string* body;
    bool stored;  // the server did the work before the fault
    const char* code;
  };
  const Case cases[] = {
      {"500 small", Fault::InternalError(), &small, false, "InternalError"},
      {"500 big", Fault::InternalError(), &big, false, "InternalError"},
      {"503 small", Fault::SlowDown(), &small, false, "SlowDown"},
      {"503 big", Fault::SlowDown(), &big, false, "SlowDown"},
      {"request body cut, small", Fault::DropRequestBody(), &small, false, "CurlError"},
      {"request body cut, big", Fault::DropRequestBody(), &big, false, "CurlError"},
      {"answer cut, small", Fault::DropResponse(), &small, true, "CurlError"},
      {"answer cut, big", Fault::DropResponse(), &big, true, "CurlError"},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string key = "k" + std::to_string(i++);
    // Twice: when a connection it reused dies before any answer, curl sends
    // the request again on a new one by itself (and only once).
    proxy_->policy().NextK(2, c.fault, TargetContains("/" + key));
    auto put = via_->Put(key, Payload::FromMemory(*c.body), {});
    proxy_->policy().Clear();
    ASSERT_FALSE(put.ok());
    printf("[ %-24s] %s\n", c.name, Show(put.status()).c_str());
    EXPECT_TRUE(put.status().retryable()) << Show(put.status());
    EXPECT_EQ(put.status().error_code(), c.code) << Show(put.status());
    if (c.fault.kind == FaultKind::kSlowDown) {
      EXPECT_EQ(put.status().code(), EAGAIN);
    }
    if (c.fault.kind == FaultKind::kInternalError) {
      EXPECT_EQ(put.status().info().http_status, 500);
      EXPECT_NE(put.status().info().request_id.find("faultproxy-"), std::string::npos);
    }
    EXPECT_EQ(Exists(key), c.stored);
    // The same client goes on working (its connection was dropped or kept).
    auto again = via_->Put(key, Payload::FromMemory(*c.body), {});
    EXPECT_TRUE(again.ok()) << Show(again.status());
    EXPECT_TRUE(Exists(key));
  }
  // Answers without a body: HEAD, and a GET's body cut short.
  proxy_->policy().NextK(1, Fault::SlowDown());
  auto head = via_->Head("plain");
  EXPECT_FALSE(head.ok());
  EXPECT_TRUE(head.status().retryable()) << Show(head.status());
  proxy_->policy().NextK(1, Fault::DropResponse());
  auto get = via_->Get("k1");
  EXPECT_FALSE(get.ok());
  EXPECT_TRUE(get.status().retryable()) << Show(get.status());

  // Delay.
  proxy_->policy().NextK(1, Fault::Delay(milliseconds(400)));
  auto t0 = Clock::now();
  auto slow = via_->Head("plain");
  EXPECT_TRUE(slow.ok()) << Show(slow.status());
  EXPECT_GE(Clock::now() - t0, milliseconds(400));

  // Answered errors are never repeated by curl; the cut requests may be.
  EXPECT_EQ(proxy_->injected(FaultKind::kInternalError), 2u);
  EXPECT_EQ(proxy_->injected(FaultKind::kSlowDown), 3u);
  EXPECT_GE(proxy_->injected(FaultKind::kDropRequestBody), 2u);
  EXPECT_GE(proxy_->injected(FaultKind::kDropResponse), 3u);
  EXPECT_EQ(proxy_->injected(FaultKind::kDelay), 1u);
  for (const auto& l : proxy_->log()) printf("[ injected ] %s\n", l.c_str());
}

TEST_F(FaultProxyS3, KeepAliveManyRequestsOnOneConnection) {
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(via_->Put("ka" + std::to_string(i), Payload::FromMemory("x"), {}).ok());
  std::map<std::string, int> seen;
  auto st = via_->List({}, [&](const ListEntry& e) {
    seen[e.key]++;
    return true;
  });
  ASSERT_TRUE(st.ok()) << Show(st);
  EXPECT_EQ(seen.size(), 20u);
  EXPECT_EQ(proxy_->requests(), 21u);
  EXPECT_EQ(proxy_->accepted(), 1u) << "connections were not kept alive";
  EXPECT_EQ(proxy_->injected_total(), 0u);
}

}  // namespace
}  // namespace scribefs::rep
