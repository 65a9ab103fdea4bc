// SpoolStates: the daemon's adapter of its CowSpool (fs/cow_spool.h) to the
// replicator's MarkedStates (uploader/marked_states.h), so that the uploader
// reads frozen paths at their checkpoint's mark without depending on fs/.
//
// Thread-safe (as CowSpool).
#pragma once

#include <string>
#include <vector>

#include "fs/cow_spool.h"
#include "uploader/marked_states.h"

namespace scribefs {

class SpoolStates : public MarkedStates {
 public:
  // spool: not owned; must outlive this object (and the replicator using it).
  explicit SpoolStates(const CowSpool* spool) : spool_(spool) {}

  bool AnyLive() const override { return spool_->live(); }
  std::vector<MarkedCapture> LiveCaptures() const override;
  bool Frozen(const std::string& id, const std::string& path) const override;
  Result<MarkedState> Open(const std::string& id, const std::string& path) const override;

 private:
  const CowSpool* const spool_;
};

}  // namespace scribefs
