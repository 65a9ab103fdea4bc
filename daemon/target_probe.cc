// The target's start-up check (daemon/target_probe.h).
#include "daemon/target_probe.h"

#include <spdlog/spdlog.h>

#include "journal/record.h"

namespace scribefs {

TargetProbe::TargetProbe(ObjectStore* store, std::chrono::milliseconds recheck)
    : store_(store), recheck_(recheck) {}

TargetProbe::~TargetProbe() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

StoreStatus TargetProbe::ProbeNow() {
  ListOptions lo;
  lo.page_size = 1;
  StoreStatus s = store_->List(lo, [](const ListEntry&) { return false; });
  std::lock_guard lk(mu_);
  if (s.ok()) {
    health_ = Health{};
  } else {
    if (health_.unreachable_since_ns == 0) health_.unreachable_since_ns = NowNs();
    health_.error = s.message();
  }
  return s;
}

void TargetProbe::StartRechecks() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Recheck(); });
}

void TargetProbe::Recheck() {
  std::unique_lock lk(mu_);
  while (!stop_ && health_.unreachable_since_ns != 0) {
    if (cv_.wait_for(lk, recheck_, [&] { return stop_; })) return;
    lk.unlock();
    StoreStatus s = ProbeNow();
    if (s.ok()) spdlog::info("the target answers again");
    lk.lock();
  }
}

TargetProbe::Health TargetProbe::health() const {
  std::lock_guard lk(mu_);
  return health_;
}

}  // namespace scribefs
