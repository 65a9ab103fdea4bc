// TargetSet: the replicators of every target a daemon stores to (issue 16),
// one Replicator each, with its own store, options, queue and state in the
// journal (ReplicatorOptions::target, journal/targets.h). A slow or dead
// target never holds back another: each runs on its own threads, and only
// what a caller asks for waits on every member.
//
// - The mount's UploadWaiter (sync mode): waits for the sync members only.
// - Flush, retry, stop: every member (WaitUploadedThrough, WaitIdle).
//
// Thread-safe as Replicator is; the members are fixed at construction.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "journal/upload_waiter.h"
#include "uploader/replicator.h"

namespace scribefs {

class TargetSet : public UploadWaiter {
 public:
  struct Member {
    std::string name;
    bool sync = false;  // close/fsync wait for it (--mode sync)
    std::unique_ptr<Replicator> replicator;
  };
  explicit TargetSet(std::vector<Member> members) : members_(std::move(members)) {}

  size_t size() const { return members_.size(); }
  const std::string& name(size_t i) const { return members_[i].name; }
  bool sync(size_t i) const { return members_[i].sync; }
  Replicator& replicator(size_t i) { return *members_[i].replicator; }
  bool any_sync() const;

  // Every member; the first error stops (the members started stay started).
  Status Start();
  // Every member, within one grace in all.
  void Stop(std::chrono::milliseconds grace);
  void Notify();

  // The sync members: ok once each has stored record seq (or needs not).
  Status WaitUploaded(int64_t seq, std::chrono::steady_clock::time_point deadline) override;
  // Every member (a flush): the first member's error, naming it.
  Status WaitUploadedThrough(int64_t seq, std::chrono::steady_clock::time_point deadline,
                             const std::function<bool()>& cancelled = {});
  Status WaitIdle(std::chrono::steady_clock::time_point deadline);
  // `scribectl retry`: every member requeues the records it failed.
  Status RetryFailed();
  void SetMarkedStates(const std::shared_ptr<const MarkedStates>& marked);

 private:
  std::vector<Member> members_;
};

}  // namespace scribefs
