// The `retry` verb: requeues failed records.
#include "daemon/verbs.h"
#include "journal/reader.h"

namespace scribefs::verbs {

json RetryVerb(const ControlDeps& d, const json&, const ControlRequest&) {
  if (!d.targets) return Error("no_target", "no --target: nothing is uploaded");
  int64_t failed = 0;
  if (auto reader = JournalReader::Open(d.journal->path()); reader.ok()) {
    JournalFilter f;
    f.state = std::string(kStateFailed);
    if (auto rs = reader.value()->Query(f); rs.ok()) failed = static_cast<int64_t>(rs->size());
  }
  Status s = d.targets->RetryFailed();
  if (!s.ok()) return Error(s);
  return json{{"requeued", failed}};
}

}  // namespace scribefs::verbs
