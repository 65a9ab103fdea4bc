#include "uploader/stale_uploads.h"

#include "journal/sqlite_util.h"
#include "uploader/exclude_filter.h"

namespace scribefs {

StoreResult<StaleUploadReport> AbortStaleUploads(ObjectStore& store,
                                                 const std::string& journal_path) {
  auto uploads = store.ListMultipartUploads("");
  if (!uploads.ok()) return uploads.status().WithContext("listing unfinished multipart uploads");
  StaleUploadReport rep;
  rep.listed = uploads->size();
  if (uploads->empty()) return rep;

  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(journal_path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return StoreStatus(SqliteError("opening " + journal_path, raw, rc));
  sqlite3_busy_timeout(raw, 10000);
  // The unfinished records are found through the partial index
  // records_unfinished, not by scanning the whole journal.
  auto known = Prepare(raw,
                       "SELECT EXISTS(SELECT 1 FROM objects WHERE path=?1) OR "
                       "EXISTS(SELECT 1 FROM records WHERE state IN ('pending','uploading','failed') "
                       "AND (path=?1 OR new_path=?1))");
  if (!known.ok()) return StoreStatus(known.status());

  for (const MultipartUpload& u : *uploads) {
    bool ours = false;
    if (!IsReservedPath(u.key)) {
      StmtResetter reset(known->get());
      sqlite3_bind_text(known->get(), 1, u.key.data(), static_cast<int>(u.key.size()),
                        SQLITE_STATIC);
      rc = sqlite3_step(known->get());
      if (rc != SQLITE_ROW) return StoreStatus(SqliteError("reading " + journal_path, raw, rc));
      ours = sqlite3_column_int(known->get(), 0) != 0;
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
