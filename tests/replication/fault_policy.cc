#include "tests/replication/fault_policy.h"

namespace scribefs::rep {

const char* FaultName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kNone:
      return "None";
    case FaultKind::kInternalError:
      return "InternalError";
    case FaultKind::kSlowDown:
      return "SlowDown";
    case FaultKind::kDropRequestBody:
      return "DropRequestBody";
    case FaultKind::kDropResponse:
      return "DropResponse";
    case FaultKind::kDelay:
      return "Delay";
  }
  return "?";
}

FaultPolicy& FaultPolicy::EveryNth(uint64_t n, Fault fault, Filter filter) {
  std::lock_guard lk(mu_);
  Rule r;
  r.kind = Rule::kEveryNth;
  r.fault = fault;
  r.filter = std::move(filter);
  r.n = n == 0 ? 1 : n;
  rules_.push_back(std::move(r));
  return *this;
}

FaultPolicy& FaultPolicy::WithProbability(double p, uint64_t seed, Fault fault, Filter filter) {
  std::lock_guard lk(mu_);
  Rule r;
  r.kind = Rule::kProbability;
  r.fault = fault;
  r.filter = std::move(filter);
  r.p = p;
  r.rng.seed(seed);
  rules_.push_back(std::move(r));
  return *this;
}

FaultPolicy& FaultPolicy::NextK(uint64_t k, Fault fault, Filter filter) {
  std::lock_guard lk(mu_);
  Rule r;
  r.kind = Rule::kNextK;
  r.fault = fault;
  r.filter = std::move(filter);
  r.n = k;
  rules_.push_back(std::move(r));
  return *this;
}

void FaultPolicy::Clear() {
  std::lock_guard lk(mu_);
  rules_.clear();
}

Fault FaultPolicy::Decide(const RequestInfo& request) {
  std::lock_guard lk(mu_);
  for (Rule& r : rules_) {
    if (r.filter && !r.filter(request)) continue;
    r.seen++;
    bool fire = false;
    switch (r.kind) {
      case Rule::kEveryNth:
        fire = r.seen % r.n == 0;
        break;
      case Rule::kProbability:
        fire = std::uniform_real_distribution<double>(0.0, 1.0)(r.rng) < r.p;
        break;
      case Rule::kNextK:
        if (r.n > 0) {
          r.n--;
          fire = true;
        }
        break;
    }
    if (fire) return r.fault;
  }
  return Fault::None();
}

FaultPolicy::Filter MethodIs(std::string method) {
  return [method = std::move(method)](const RequestInfo& r) { return r.method == method; };
}

FaultPolicy::Filter IsUpload() {
  return [](const RequestInfo& r) {
    return (r.method == "PUT" || r.method == "POST") && (r.body_length > 0 || r.chunked);
  };
}

FaultPolicy::Filter BodyAtLeast(uint64_t bytes) {
  return [bytes](const RequestInfo& r) { return r.body_length >= bytes; };
}

FaultPolicy::Filter TargetContains(std::string text) {
  return [text = std::move(text)](const RequestInfo& r) {
    return r.target.find(text) != std::string::npos;
  };
}

}  // namespace scribefs::rep
