#include "uploader/stale_uploads.h"

#include "journal/reader.h"
#include "journal/remote_index.h"
#include "uploader/exclude_filter.h"

namespace scribefs {

StoreResult<StaleUploadReport> AbortStaleUploads(ObjectStore& store,
                                                 const std::string& journal_path, int64_t target) {
  auto uploads = store.ListMultipartUploads("");
  if (!uploads.ok()) return uploads.status().WithContext("listing unfinished multipart uploads");
  StaleUploadReport rep;
  rep.listed = uploads->size();
  if (uploads->empty()) return rep;

  auto reader = JournalReader::Open(journal_path);
  if (!reader.ok()) return StoreStatus(reader.status());
  auto index = RemoteIndex::Over(**reader, target);
  // A path this mount's journal knows: stored, or named by a record still to
  // upload (see the header).
  auto known = [&](const std::string& key) -> Result<bool> {
    auto stored = index->Get(key);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) return true;
    return (*reader)->NamesUnfinished(key);
  };

  for (const MultipartUpload& u : *uploads) {
    bool ours = false;
    if (!IsReservedPath(u.key)) {
      auto k = known(u.key);
      if (!k.ok()) return StoreStatus(k.status().WithContext("reading " + journal_path));
      ours = *k;
    }
    if (!ours) {
      rep.foreign++;
      continue;
    }
    StoreStatus s = store.AbortMultipartUpload(u.key, u.upload_id);
    if (s.ok() || s.not_found()) {  // not found: someone else aborted or completed it
      rep.aborted++;
    } else {
      rep.failed++;
      rep.last_error = u.key + ": " + s.message();
    }
  }
  return rep;
}

}  // namespace scribefs
