#include "uploader/target_set.h"

namespace scribefs {

bool TargetSet::any_sync() const {
  for (const Member& m : members_)
    if (m.sync) return true;
  return false;
}

Status TargetSet::Start() {
  for (Member& m : members_)
    SCRIBEFS_RETURN_IF_ERROR(m.replicator->Start().WithContext("target " + m.name));
  return Status::Ok();
}

void TargetSet::Stop(std::chrono::milliseconds grace) {
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (Member& m : members_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    m.replicator->Stop(std::max(left, std::chrono::milliseconds(0)));
  }
}

void TargetSet::Notify() {
  for (Member& m : members_) m.replicator->Notify();
}

Status TargetSet::WaitUploaded(int64_t seq, std::chrono::steady_clock::time_point deadline) {
  for (Member& m : members_)
    if (m.sync)
      SCRIBEFS_RETURN_IF_ERROR(
          m.replicator->WaitUploaded(seq, deadline).WithContext("target " + m.name));
  return Status::Ok();
}

Status TargetSet::WaitUploadedThrough(int64_t seq, std::chrono::steady_clock::time_point deadline,
                                      const std::function<bool()>& cancelled) {
  for (Member& m : members_)
    SCRIBEFS_RETURN_IF_ERROR(m.replicator->WaitUploadedThrough(seq, deadline, cancelled)
                                 .WithContext("target " + m.name));
  return Status::Ok();
}

Status TargetSet::WaitIdle(std::chrono::steady_clock::time_point deadline) {
  for (Member& m : members_)
    SCRIBEFS_RETURN_IF_ERROR(m.replicator->WaitIdle(deadline).WithContext("target " + m.name));
  return Status::Ok();
}

Status TargetSet::RetryFailed() {
  for (Member& m : members_)
    SCRIBEFS_RETURN_IF_ERROR(m.replicator->RetryFailed().WithContext("target " + m.name));
  return Status::Ok();
}

void TargetSet::SetMarkedStates(const std::shared_ptr<const MarkedStates>& marked) {
  for (Member& m : members_) m.replicator->SetMarkedStates(marked);
}

}  // namespace scribefs
