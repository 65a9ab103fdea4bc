// Stale multipart uploads: a daemon killed in the middle of a multipart
// upload leaves it unfinished in the target, where its parts take space
// (and cost money) until someone aborts it; S3 never completes it.
//
// At start, before it sends anything, the uploader lists the unfinished
// multipart uploads under the target's prefix and aborts those that this
// mount started and can no longer complete. One counts as this mount's when
//   - its key is under this target's PREFIX (the listing asks only for those),
//   - it is not under PREFIX/.scribefs/ (scribefs's own keys), and
//   - its key is a path this mount's journal knows: the objects table holds
//     it, or a record not yet uploaded names it. The uploader only ever
//     uploads such paths, and a killed upload leaves its records pending.
// Uploads by other writers under the same prefix (e.g. another mount whose
// PREFIX lies below ours, or a person's `aws s3 cp`) are therefore left
// alone, unless they write keys this mount writes too. And since the listing
// is made before this daemon starts any upload of its own, every upload it
// finds was started before this daemon: no clock comparison is needed.
#pragma once

#include <cstddef>
#include <string>

#include "uploader/object_store.h"

namespace scribefs {

struct StaleUploadReport {
  size_t listed = 0;   // unfinished uploads under the prefix
  size_t aborted = 0;  // this mount's, aborted
  size_t foreign = 0;  // not this mount's: left alone
  size_t failed = 0;   // this mount's, but the abort failed (tried again next start)
  std::string last_error;
};

// Lists and aborts as described above. Fails only when the listing (or the
// journal) cannot be read; failed aborts are counted.
// target: the store's id in the journal (journal/targets.h).
StoreResult<StaleUploadReport> AbortStaleUploads(ObjectStore& store,
                                                 const std::string& journal_path, int64_t target);

}  // namespace scribefs
