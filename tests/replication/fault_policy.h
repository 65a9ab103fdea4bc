// FaultPolicy: decides, request by request, which fault the FaultProxy
// (fault_proxy.h) injects. A policy is a list of rules; each names a fault and
// when it fires:
//
//   FaultPolicy p;
//   p.EveryNth(5, Fault::InternalError(), IsUpload());     // 5th, 10th, ... upload
//   p.WithProbability(0.1, /*seed=*/42, Fault::SlowDown());  // reproducible coin
//   p.NextK(2, Fault::DropRequestBody(), BodyAtLeast(1 << 20));  // the next 2 big bodies
//
// Rules are consulted in the order they were added; a rule counts only the
// requests that reach it and that its filter matches; the first rule that
// fires decides, and the rules after it are not consulted for that request.
// A request no rule fires for is forwarded unchanged.
//
// Thread-safe: Decide() may run on many connection threads while the test
// adds or clears rules. With concurrent requests the order in which they
// reach the policy is the order of Decide() calls, so "every Nth" and a
// seeded probability are reproducible as counts, not as which request it hit.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace scribefs::rep {

enum class FaultKind {
  kNone,
  kInternalError,    // answer 500 InternalError (S3 XML error body), not forwarded
  kSlowDown,         // answer 503 SlowDown, not forwarded
  kDropRequestBody,  // forward the head and part of the body, then cut both sides
  kDropResponse,     // forward the request; pass on part of the answer, then cut
  kDelay,            // forward; hold the answer back for `delay`
};
inline constexpr int kFaultKinds = 6;
const char* FaultName(FaultKind kind);  // "InternalError", "DropResponse", ...

struct Fault {
  FaultKind kind = FaultKind::kNone;
  std::chrono::milliseconds delay{0};  // kDelay

  static Fault None() { return {}; }
  static Fault InternalError() { return {FaultKind::kInternalError}; }
  static Fault SlowDown() { return {FaultKind::kSlowDown}; }
  static Fault DropRequestBody() { return {FaultKind::kDropRequestBody}; }
  static Fault DropResponse() { return {FaultKind::kDropResponse}; }
  static Fault Delay(std::chrono::milliseconds d) { return {FaultKind::kDelay, d}; }
};

// What the policy sees of a request (its head; the body has not been read).
struct RequestInfo {
  uint64_t number = 0;       // 1, 2, ... over the proxy's lifetime
  std::string method;        // "PUT"
  std::string target;        // "/bucket/key?partNumber=2&uploadId=..."
  uint64_t body_length = 0;  // Content-Length (0 for none or chunked)
  bool chunked = false;
};

class FaultPolicy {
 public:
  using Filter = std::function<bool(const RequestInfo&)>;  // empty: every request

  // Fires on the n-th, 2n-th, ... request the filter matches.
  FaultPolicy& EveryNth(uint64_t n, Fault fault, Filter filter = {});
  // Fires with probability p (0..1) on each matching request; the coin is a
  // std::mt19937_64 seeded with `seed`.
  FaultPolicy& WithProbability(double p, uint64_t seed, Fault fault, Filter filter = {});
  // Fires on the next k matching requests, then never again.
  FaultPolicy& NextK(uint64_t k, Fault fault, Filter filter = {});
  // Removes every rule: from now on everything is forwarded unchanged.
  void Clear();

  // The fault for this request (Fault::None() when no rule fires).
  Fault Decide(const RequestInfo& request);

 private:
  struct Rule {
    enum Kind { kEveryNth, kProbability, kNextK } kind = kEveryNth;
    Fault fault;
    Filter filter;
    uint64_t n = 0;  // kEveryNth: period; kNextK: how many are left
    double p = 0;
    std::mt19937_64 rng;
    uint64_t seen = 0;  // matching requests that reached this rule
  };
  std::mutex mu_;
  std::vector<Rule> rules_;  // guarded by mu_
};

// Filters.
FaultPolicy::Filter MethodIs(std::string method);
// PUT and POST requests with a body: object and part uploads, completes, deletes.
FaultPolicy::Filter IsUpload();
FaultPolicy::Filter BodyAtLeast(uint64_t bytes);
FaultPolicy::Filter TargetContains(std::string text);

}  // namespace scribefs::rep
