// The start-up check of the target: one cheap request (a List of at most one
// key) that finds an unreachable endpoint, bad credentials, a missing bucket
// or a CA file that does not load before the mount serves, instead of at the
// first upload. While the target does not answer, it is asked again every
// recheck interval, and `status` reports since when it has not answered.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "uploader/object_store.h"

namespace scribefs {

class TargetProbe {
 public:
  struct Health {
    int64_t unreachable_since_ns = 0;  // 0: the last probe was answered
    std::string error;                 // of the last failed probe
  };

  // store must outlive the probe.
  explicit TargetProbe(ObjectStore* store,
                       std::chrono::milliseconds recheck = std::chrono::seconds(30));
  ~TargetProbe();  // stops the rechecks
  TargetProbe(const TargetProbe&) = delete;
  TargetProbe& operator=(const TargetProbe&) = delete;

  // Asks the target once, now; updates health().
  StoreStatus ProbeNow();
  // After a failed ProbeNow: probes again every recheck interval (on its own
  // thread) until the target answers.
  void StartRechecks();
  Health health() const;

 private:
  void Recheck();

  ObjectStore* const store_;
  const std::chrono::milliseconds recheck_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Health health_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace scribefs
